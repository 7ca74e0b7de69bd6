"""Lab 8 grader: the learner's delivery repository, pipeline and promotion on the platform's GitOps
reconciler, Git server and registry, in three environments of the run (see support.py). The
learner's scripts run in the run's sandbox as its ServiceAccount, which may only read."""

from __future__ import annotations

import pytest
from support import SCRIPTS_ACCESS

from opslab.grading.isolation import Grant

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def learner_access() -> Grant:
    return SCRIPTS_ACCESS
