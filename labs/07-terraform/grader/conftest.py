"""Lab 7 grader: Terraform (or OpenTofu) on a copy of the learner's work in the run's sandbox, with
providers from the platform's mirror; OPA and promtool from the toolchain; the platform's
Pushgateway for drift (see support.py). Nothing here touches the cluster."""

from __future__ import annotations

pytest_plugins = ["opslab.grading.fixtures"]
