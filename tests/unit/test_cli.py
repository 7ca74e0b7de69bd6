"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def opslab(*args: str, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opslab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPSLAB_STATE_DIR": str(state), **env},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("up", "--nodes", "abc"),
            {},
            "error: --nodes='abc' is not a number of nodes; use an integer from 1 to 500",
        ),
        (("up", "--nodes", "0"), {}, "error: --nodes=0 is out of range; use 1 to 500 nodes"),
        (("up",), {"OPSLAB_PORT_KAFKA": "kafka"}, "error: OPSLAB_PORT_KAFKA='kafka' is not a port number"),
        (("logs", "kubelet"), {}, "error: unknown component 'kubelet'; use one of: etcd, kube-apiserver"),
        (("setup", "--only", "docker"), {}, "error: unknown component 'docker'; use one of: alertmanager"),
        (("agent", "terraform"), {}, "error: no incident is running; start one with `opslab incident start"),
        (("demo", "--automation", "/none"), {}, "error: no api.py and workers.py in /none; give --automation"),
        (("demo", "--agent", "/none/agent.py"), {}, "error: no remediator at /none/agent.py; give --agent"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = opslab(*args, state=tmp_path, **env)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_status_of_a_stopped_platform_says_how_to_start_it(tmp_path: Path) -> None:
    result = opslab("status", state=tmp_path)
    assert result.returncode == 3
    assert "not running: start it with `make up`" in result.stdout


def test_down_when_nothing_runs_is_harmless(tmp_path: Path) -> None:
    result = opslab("down", state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing was running" in result.stdout


def test_outside_a_checkout_opslab_says_where_to_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opslab", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OPSLAB_ROOT": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "is not an opslab checkout" in result.stderr


def test_a_grade_shows_reasons_and_hints_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hints quote code with square brackets (`module.tenant[each.key]`): never read as console markup."""
    from opslab.cli import lab_commands  # noqa: PLC0415 (the console is only needed here)
    from opslab.grading.labs import find_lab  # noqa: PLC0415
    from opslab.grading.rubric import CheckResult, Grade  # noqa: PLC0415

    entry = CheckResult(id="t", title="moves [state]", section="Pipeline", points=4, earned=0, status="failed",
                        reason='plan destroys module.team["a"]', hint="to = module.tenant[each.key].x",
                        seconds=1.0)  # fmt: skip
    lab_commands.print_grade(find_lab(ROOT, 7), Grade(lab="7", path=str(tmp_path), checks=[entry]), tmp_path)
    shown = "".join(ch for ch in capsys.readouterr().out if not ch.isspace() and ch not in "│┃┆")
    for text in ("module.tenant[each.key].x", 'module.team["a"]', "moves[state]"):
        assert text in shown, f"{text} is not shown as written"
