"""The real platform, started once per test session in its own state directory and ports.

The session's platform never touches the learner's own (`make up`) platform: it lives under a
temporary state directory and every port is shifted by PORT_OFFSET. It is stopped and purged at the
end of the session. When a test fails, the tail of every component log is printed.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kubernetes import client

from opslab import settings as settings_module
from opslab.primitives.processes import processes_mentioning, terminate
from opslab.runtime import kube
from opslab.runtime.lifecycle import Platform
from opslab.settings import Ports, Settings
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

PORT_OFFSET = 1000


def shifted_settings(state: Path, offset: int, nodes: int = 3) -> Settings:
    base = settings_module.load({"nodes": nodes, "state_dir": str(state)})
    ports = Ports(**{name: port + offset for name, port in base.ports.items()})
    return dataclasses.replace(base, ports=ports)


def make_platform(settings: Settings) -> Platform:
    versions = load_versions(settings.paths.platform / "versions.toml")
    return Platform(settings, Toolchain(versions, settings.paths.cache))


def stop_stale_test_platforms(current: Path) -> None:
    """Stop platforms an earlier, killed test session left running (they hold the shifted ports).

    They run from state directories under pytest's temporary root, outside this session's own.
    """
    pytest_root = current.parent
    if not pytest_root.name.startswith("pytest-of-"):
        return  # a --basetemp of the caller's choosing: its siblings are not ours to stop
    stale = []
    for proc in processes_mentioning(str(pytest_root)):
        try:
            cwd = Path(proc.cwd())
            if cwd.is_relative_to(pytest_root) and not cwd.is_relative_to(current):
                stale.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    terminate(stale, grace=10)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    stop_stale_test_platforms(tmp_path_factory.getbasetemp())
    state = tmp_path_factory.mktemp("opslab-state")
    instance = make_platform(shifted_settings(state, PORT_OFFSET))
    try:
        instance.up()
        yield instance
    finally:
        instance.down(purge=True)


@pytest.fixture(scope="session")
def api(platform: Platform) -> client.ApiClient:
    return kube.api_client(platform.paths.kubeconfig)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "platform" in getattr(item, "fixturenames", ()):
        instance = item.funcargs.get("platform") if hasattr(item, "funcargs") else None
        if isinstance(instance, Platform):
            report.sections.append(("platform logs", _log_tails(instance)))


def _log_tails(instance: Platform, lines: int = 15) -> str:
    parts = []
    for log in sorted(instance.paths.logs.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)
