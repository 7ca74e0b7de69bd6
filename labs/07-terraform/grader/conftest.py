"""Lab 7 grader: Terraform (or OpenTofu) on a copy of the learner's work in the run's sandbox, with
providers from the platform's mirror; OPA and promtool from the toolchain; the platform's
Pushgateway for drift. The pipeline's checks apply to the platform's cluster as the run's
ServiceAccount, confined by an admission policy to namespaces named ``<run>-...`` (see support.py)."""

from __future__ import annotations

import dataclasses

import pytest
from support import PIPELINE_ACCESS

from opslab.grading.isolation import Grant

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def learner_access(run_id: str) -> Grant:
    return dataclasses.replace(PIPELINE_ACCESS, writes_only_in=f"{run_id}-")
