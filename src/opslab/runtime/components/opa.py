"""Open Policy Agent: the policy server every agent action is checked against before it runs.

It serves the Rego in platform/policy (its `*_test.rego` files are `opa test`'s, not the server's)
on 127.0.0.1 and reloads it when a file changes (`--watch`), so a learner's added rules apply at once.
Its own API is guarded by platform/policy-server/authz.rego (`--authorization=basic`): anyone may
ask for a decision, nobody may replace a policy or write data over HTTP, so an agent under test
cannot rewrite the rules that check it.
"""

from __future__ import annotations

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe


class Opa(Component):
    name = "opa"
    summary = "Open Policy Agent, the policy agent actions pass (platform/policy)"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.opa}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.opa}"

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("opa")),
            "run",
            "--server",
            f"--addr=127.0.0.1:{self.ctx.ports.opa}",
            "--disable-telemetry",
            "--log-level=error",
            "--watch",
            "--ignore=*_test.rego",
            "--authorization=basic",
            str(self.ctx.settings.paths.platform / "policy"),
            str(self.ctx.settings.paths.platform / "policy-server"),
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/health")
