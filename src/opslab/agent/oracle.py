"""The oracle: a deterministic responder that proves every incident in the catalog can be diagnosed
and mitigated with the toolbox alone. It knows nothing of the injector: it reads what on-call
reads (workloads, pods, nodes, rollout history, SLIs) and reasons with opslab.agent.diagnosis:

- a Deployment below its intended size (annotation opslab.dev/replicas): capacity-loss, scale back;
- pods of the current revision crash-looping: crash-loop (OOMKilled: memory-leak), roll back;
- pods of the current revision running but never ready: failing-readiness, roll back;
- a node not Ready: node-not-ready, cordon and drain it;
- a Deployment short of ready pods whose ReplicaSet is refused by a quota (FailedCreate, exceeded
  quota): quota-exhausted; plan the platform's Terraform configuration and apply that plan (the
  quota is Terraform's; a hand edit made it drift);
- errors or slowness that last: blame the deepest service in the call graph whose own SLI is bad;
  if its recent revision changed the image, a release (errors: bad-rollout, slow: latency); if it
  changed the CPU limit, cpu-throttling; roll back.
Nothing found for ``quiet_after`` seconds: submit none / none and change nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opslab.agent.diagnosis import Diagnosis, Persistence, diagnose, gather, healthy, settled
from opslab.agent.toolbox import PolicyDenied, Toolbox, ToolError


@dataclass
class OracleRun:
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    actions: int = 0
    quiet: bool = False
    escalations: list[str] = field(default_factory=list)
    """Findings the oracle could not act on (the policy denied it, or the tool failed): for a human."""


class Oracle:
    def __init__(self, toolbox: Toolbox, *, poll: float = 3.0, quiet_after: float = 45.0) -> None:
        self.tools = toolbox
        self.poll = poll
        self.quiet_after = quiet_after
        self.handled: set[str] = set()
        self.persistence = Persistence()

    def findings(self) -> list[Diagnosis]:
        evidence = gather(self.tools)
        return diagnose(evidence, self.persistence.lasting(evidence, time.monotonic()))

    def _act(self, finding: Diagnosis) -> None:
        if finding.tool == "terraform_apply":  # only a plan just shown is applied: show it first
            config = finding.arguments["config"]
            shown = self.tools.terraform_plan(config)
            self.tools.terraform_apply(config, shown["plan_digest"])
            return
        getattr(self.tools, finding.tool)(**finding.arguments)

    def run(self, deadline: float) -> OracleRun:
        """Respond until everything found is handled and the SLIs are back, or ``deadline`` passes."""
        result = OracleRun()
        began = time.monotonic()
        last_new = began
        while time.monotonic() < deadline:
            new = [f for f in self.findings() if f"{f.service}/{f.fault_type}" not in self.handled]
            for finding in new:
                self.tools.submit(finding.service, finding.fault_type, finding.why)
                self.handled.add(f"{finding.service}/{finding.fault_type}")
                result.findings.append((finding.service, finding.fault_type, finding.why))
                last_new = time.monotonic()
                try:
                    self._act(finding)
                    result.actions += 1
                except (PolicyDenied, ToolError) as exc:
                    result.escalations.append(f"{finding.service} / {finding.fault_type}: {exc}")
            if not self.handled and time.monotonic() - began >= self.quiet_after and settled(gather(self.tools)):
                self.tools.submit("none", "none", f"nothing found in {self.quiet_after:.0f} s")
                result.quiet = True
                return result
            if self.handled and time.monotonic() - last_new >= 20 and healthy(gather(self.tools)):
                return result
            time.sleep(self.poll)
        return result
