"""Graded labs: the rubric, the pytest plugin, grader fixtures, the runner and the gradebook."""
