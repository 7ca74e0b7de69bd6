"""Lab 3 grader: runs the learner's exporter (in the sandbox; it needs no Kubernetes access)
against the platform's Kafka, on topics and consumer groups of the run's own, and evaluates the
learner's rules in a Prometheus of the run's own (see support.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Case, Exporter, Pipeline, RunPrometheus, bootstrap, load_cases, start_exporter

from opslab.grading.fixtures import learner_file
from opslab.grading.sandbox import Sandbox

pytest_plugins = ["opslab.grading.fixtures"]
HELDOUT = Path(__file__).parent / "heldout"


@pytest.fixture(scope="session")
def exporter(lab_path: Path, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    running = start_exporter(lab_path, bootstrap(), tmp_path_factory.mktemp("exporter") / "exporter.log", sandbox)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def ground_truth(run_id: str, lab_namespace: str) -> Pipeline:
    """A topic of the run (2 partitions) with a consumer group that committed part of it.

    partition 0: 17 messages, committed 5 (lag 12); partition 1: 9 messages, committed 9 (lag 0).
    ``lab_namespace`` is the run's anchor: it must exist before anything of the run does.
    """
    truth = Pipeline(bootstrap(), run_id, "truth")
    truth.produce({0: 17, 1: 9})
    truth.commit(truth.worker, {0: 5, 1: 9})
    return truth


@pytest.fixture(scope="session")
def orders(run_id: str, lab_namespace: str) -> Pipeline:
    """The run's private orders pipeline: its group is relabelled orders-worker (and a decoy group
    analytics) in the run's Prometheus. It starts steady: orders-worker 60 messages behind in all
    (under the SLO's 100), analytics 5,000 behind (a group the SLO must not count)."""
    pipeline = Pipeline(bootstrap(), run_id, "orders")
    pipeline.produce({0: 2600, 1: 2600})
    pipeline.lag_to(pipeline.worker, {0: 30, 1: 30})
    pipeline.lag_to(pipeline.analytics, {0: 2500, 1: 2500})
    return pipeline


@pytest.fixture(scope="session")
def prometheus(
    exporter: Exporter, orders: Pipeline, lab_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunPrometheus]:
    """A Prometheus of the run with the learner's rules, scraping the learner's exporter."""
    rules = learner_file(lab_path, "rules.yml")
    running = RunPrometheus(tmp_path_factory.mktemp("prometheus"), exporter, rules, orders)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def heldout_cases() -> list[Case]:
    """The held-out promtool cases in heldout/*.yml (an instructor's grader copy may hold more)."""
    return load_cases(HELDOUT)


@pytest.fixture(scope="session")
def closed_port() -> int:
    """A port nothing listens on (Kafka "down" for the exporter)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
