from collections.abc import Iterator
from pathlib import Path

import pytest

from opslab.shop.telemetry import ServiceLogs


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[ServiceLogs]:
    """The shop's service logs in a temporary directory, closed after the test."""
    service_logs = ServiceLogs(tmp_path / "logs")
    yield service_logs
    service_logs.close()
