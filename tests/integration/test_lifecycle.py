"""up/down/repair on a second, small platform with its own state directory and ports."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from opslab.grading import isolation
from opslab.primitives.errors import PortInUse
from opslab.primitives.ports import listener
from opslab.primitives.readiness import ProbeResult, wait_until
from opslab.runtime.lifecycle import Platform
from tests.conftest import PORT_OFFSET
from tests.platforms import OWNER_FILE, make_platform, shifted_settings

pytestmark = pytest.mark.platform

OFFSET = PORT_OFFSET + 1000
"""The small platform's ports: next to the session platform's (which has PORT_OFFSET)."""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("small")
    (state / OWNER_FILE).write_text(isolation.owner_token() + "\n")  # not stale while this session runs
    instance = make_platform(shifted_settings(state, OFFSET, nodes=1))
    yield instance
    instance.down(purge=True)


def all_ports(instance: Platform) -> list[int]:
    return [port for component in instance.registry for port in component.ports.values()]


def test_up_with_a_port_taken_names_the_port_and_the_holder(small: Platform) -> None:
    port = small.settings.ports.redis
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(PortInUse) as error:
            small.up()
    message = str(error.value)
    assert f"port {port} is in use by pid {os.getpid()}" in message
    assert "OPSLAB_PORT_REDIS" in message
    assert not small.supervisor.alive(), "nothing was started"
    assert not small.own_processes()


def test_a_second_up_starts_nothing_twice(small: Platform) -> None:
    first = small.up()
    assert "kube-apiserver" in first.started
    pids = {c.name: c.pid for c in small.status()}
    second = small.up()
    assert second.started == []
    assert set(second.already_running) == set(pids)
    assert {c.name: c.pid for c in small.status()} == pids


def test_a_crashed_component_is_restarted_by_the_supervisor(small: Platform) -> None:
    before = small.supervisor.state("redis").pid
    assert before, "redis is not running"  # os.kill(0, ...) would kill this test's own process group
    os.kill(before, signal.SIGKILL)

    def restarted() -> ProbeResult:
        state = small.supervisor.state("redis")
        return ProbeResult(state.state == "RUNNING" and state.pid != before, state.state)

    wait_until(restarted, what="redis restart", timeout=30)


def test_stale_state_from_a_killed_run_is_repaired(small: Platform) -> None:
    daemon = small.supervisor.daemon_pid()
    assert daemon
    os.kill(daemon, signal.SIGKILL)
    psutil.Process(daemon).wait(10) if psutil.pid_exists(daemon) else None
    orphans = small.own_processes()
    assert orphans, "the components outlive a killed supervisor"
    report = small.up()
    assert any("crashed run" in note for note in report.repaired)
    assert all(c.ready for c in report.components)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans)


def process_group(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return found


def test_down_leaves_no_process_and_no_listener(small: Platform) -> None:
    pids = {name: small.supervisor.state(name).pid for name in ("kafka", "elasticmq")}
    assert all(pids.values()), f"the JVMs must run before down: {pids}"
    groups = {name: os.getpgid(pid) for name, pid in pids.items()}
    small.down()
    assert not small.own_processes()
    for name, pgid in groups.items():
        assert process_group(pgid) == [], f"{name}'s process group outlived down"
    assert [p for p in all_ports(small) if listener(p) is not None] == []
    assert not Path(small.supervisor.socket).exists()
