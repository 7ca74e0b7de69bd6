"""A toolbox bound to the running incident: the responder's kubeconfig, the platform's endpoints,
the incident's run directory for the record, and submit wired to the incident."""

from __future__ import annotations

from pathlib import Path

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
