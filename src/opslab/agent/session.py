"""A toolbox bound to the running incident: the responder's kubeconfig, the platform's endpoints,
the incident's run directory for the record, and submit wired to the incident."""

from __future__ import annotations

import time
from pathlib import Path

from opslab.agent.oracle import Oracle, OracleRun
from opslab.agent.policy import Policy
from opslab.agent.terraform_tools import TerraformTools
from opslab.agent.toolbox import Toolbox
from opslab.incidents import engine
from opslab.settings import Settings

RECORD = "tool-calls.jsonl"


def incident_toolbox(settings: Settings) -> Toolbox:
    active = engine.require_active(settings)
    p = settings.ports

    def submit(service: str, fault_type: str, notes: str) -> None:
        engine.submit(settings, service, fault_type, notes)

    return Toolbox(
        kubeconfig=Path(active.kubeconfig),
        prometheus=f"http://127.0.0.1:{p.prometheus}",
        alertmanager=f"http://127.0.0.1:{p.alertmanager}",
        policy=Policy(f"http://127.0.0.1:{p.opa}"),
        record=Path(active.run_dir) / RECORD,
        logs=settings.paths.logs / "shop",
        submit=submit,
        playbooks=settings.paths.platform / "playbooks",
        terraform=TerraformTools(settings),
    )


def oracle_response(
    settings: Settings, name: str, *, healthy_within: float, within: float, time_limit: float = 900.0,
    quiet_after: float = 45.0,
) -> tuple[OracleRun, engine.Outcome]:  # fmt: skip
    """Incident ``name`` from start to scored stop with the oracle responding for up to ``within``
    seconds (the bench and the tests); whatever stops it half-way, the incident is undone."""
    engine.start(settings, name, seed=1, time_limit=time_limit, healthy_within=healthy_within, responder="oracle")
    try:
        toolbox = incident_toolbox(settings)
        try:
            run = Oracle(toolbox, quiet_after=quiet_after).run(time.monotonic() + within)
        finally:
            toolbox.close()
        outcome = engine.stop(settings)
    except BaseException:
        engine.stop(settings, force=True)
        raise
    if outcome is None:
        raise engine.IncidentError(f"{name} was no longer running when the oracle finished", fix="run it again")
    return run, outcome
