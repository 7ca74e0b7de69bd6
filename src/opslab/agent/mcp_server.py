"""The toolbox as an MCP server (the official `mcp` SDK, streamable HTTP on 127.0.0.1).

Every tool of opslab.agent.toolbox is an MCP tool with the same name and arguments; an action the
policy denies comes back as a tool error carrying the policy's reasons. Each request must carry
``Authorization: Bearer <token>`` with the run's token (a file of mode 0600); anything else is
answered 401 before it reaches the MCP session.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from opslab.agent.toolbox import PolicyDenied, Toolbox, ToolError
from opslab.primitives.files import write_private

INSTRUCTIONS = (
    "You are on call for the shop, a seven-service system on Kubernetes (namespace shop). Read before "
    "you act: alerts, query (PromQL: shop:sli_error_ratio:rate25s, shop:sli_slow_ratio:rate25s), "
    "deployments, pods, nodes, rollout_history, events, logs, topology. Actions (scale, rollout_undo, "
    "rollout_restart, patch_resources, set_image, cordon, uncordon, drain, run_playbook, terraform_plan, "
    "terraform_apply) pass a policy "
    "first; a denial says why. Submit one diagnosis per finding with submit(service, fault_type)."
)


def build(toolbox: Toolbox) -> MCPServer[Any]:
    """An MCP server whose tools are ``toolbox``'s."""
    server: MCPServer[Any] = MCPServer("opslab-toolbox", instructions=INSTRUCTIONS)

    def guarded(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except (PolicyDenied, ToolError) as exc:
                raise McpToolError(str(exc)) from None

        return run

    @server.tool(description="Alerts firing now (Watchdog aside).")
    def alerts() -> list[dict[str, Any]]:
        return guarded(toolbox.alerts)()

    @server.tool(description="A PromQL instant query.")
    def query(promql: str) -> list[dict[str, Any]]:
        return guarded(toolbox.query)(promql)

    @server.tool(description="A PromQL range query over the last `minutes`, one point per `step` seconds.")
    def query_range(promql: str, minutes: float = 10, step: float = 15) -> list[dict[str, Any]]:
        return guarded(toolbox.query_range)(promql, minutes, step)

    @server.tool(description="The last lines of a shop service's JSON log.")
    def logs(service: str, lines: int = 40) -> list[str]:
        return guarded(toolbox.logs)(service, lines)

    @server.tool(description="The newest Kubernetes events in namespace shop.")
    def events(limit: int = 40) -> list[dict[str, Any]]:
        return guarded(toolbox.events)(limit)

    @server.tool(description="Each shop Deployment: replicas (spec, intended, ready, updated), image, CPU limit.")
    def deployments() -> list[dict[str, Any]]:
        return guarded(toolbox.deployments)()

    @server.tool(description="Shop pods (optionally of one service): node, phase, ready, restarts, reasons.")
    def pods(service: str = "") -> list[dict[str, Any]]:
        return guarded(toolbox.pods)(service)

    @server.tool(description="Nodes: ready, cordoned, the reason they are not ready, taints.")
    def nodes() -> list[dict[str, Any]]:
        return guarded(toolbox.nodes)()

    @server.tool(description="A Deployment's revisions, oldest first: image, CPU limit, created.")
    def rollout_history(service: str) -> list[dict[str, Any]]:
        return guarded(toolbox.rollout_history)(service)

    @server.tool(description="A Deployment, Pod or Node as the API server has it.")
    def describe(kind: str, name: str) -> dict[str, Any]:
        return guarded(toolbox.describe)(kind, name)

    @server.tool(description="The shop's services and the call graph of each public route.")
    def topology() -> dict[str, Any]:
        return guarded(toolbox.topology)()

    @server.tool(description="Scale a shop Deployment (policy-checked).")
    def scale(service: str, replicas: int) -> dict[str, Any]:
        return guarded(toolbox.scale)(service, replicas)

    @server.tool(description="Roll a Deployment back (default: to the revision before the current; policy-checked).")
    def rollout_undo(service: str, to_revision: int = 0) -> dict[str, Any]:
        return guarded(toolbox.rollout_undo)(service, to_revision)

    @server.tool(description="Restart a Deployment's pods (policy-checked).")
    def rollout_restart(service: str) -> dict[str, Any]:
        return guarded(toolbox.rollout_restart)(service)

    @server.tool(description="Set a Deployment's CPU and/or memory limit (policy-checked).")
    def patch_resources(service: str, cpu_limit: str = "", memory_limit: str = "") -> dict[str, Any]:
        return guarded(toolbox.patch_resources)(service, cpu_limit, memory_limit)

    @server.tool(description="Set a Deployment's image tag (policy-checked).")
    def set_image(service: str, image: str) -> dict[str, Any]:
        return guarded(toolbox.set_image)(service, image)

    @server.tool(description="Cordon a node (policy-checked).")
    def cordon(node: str) -> dict[str, Any]:
        return guarded(toolbox.cordon)(node)

    @server.tool(description="Uncordon a node (policy-checked).")
    def uncordon(node: str) -> dict[str, Any]:
        return guarded(toolbox.uncordon)(node)

    @server.tool(description="Cordon a node and evict the shop's pods from it (policy-checked).")
    def drain(node: str) -> dict[str, Any]:
        return guarded(toolbox.drain)(node)

    @server.tool(description="Run an allow-listed playbook (platform/playbooks, e.g. scale-to-intended) on a shop "
                 "Deployment through ansible-runner (policy-checked).")  # fmt: skip
    def run_playbook(playbook: str, service: str) -> dict[str, Any]:
        return guarded(toolbox.run_playbook)(playbook, service)

    @server.tool(description="Plan an allow-listed Terraform configuration (platform: namespaces, quotas, "
                 "limit ranges) as a least-privilege account: what would change, and the plan's digest "
                 "(policy-checked).")  # fmt: skip
    def terraform_plan(config: str) -> dict[str, Any]:
        return guarded(toolbox.terraform_plan)(config)

    @server.tool(description="Apply exactly the plan terraform_plan just showed, named by its digest, "
                 "within 300 s of it (policy-checked).")  # fmt: skip
    def terraform_apply(config: str, plan_digest: str) -> dict[str, Any]:
        return guarded(toolbox.terraform_apply)(config, plan_digest)

    @server.tool(description="Record a diagnosis: a service (or node, or none) and a fault type from the vocabulary.")
    def submit(service: str, fault_type: str, notes: str = "") -> dict[str, Any]:
        return guarded(toolbox.submit)(service, fault_type, notes)

    return server


class BearerToken:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``, else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _unauthorised(send)
                return
        await self.app(scope, receive, send)


async def _unauthorised(send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    body = b'{"error": "a bearer token is required (the run\'s MCP token file)"}'
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def new_token(path: Path) -> str:
    """A fresh token for one run, written to ``path`` (mode 0600)."""
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def app(toolbox: Toolbox, token: str) -> ASGIApp:
    """The streamable-HTTP app at /mcp, behind the bearer token."""
    return BearerToken(build(toolbox).streamable_http_app(host="127.0.0.1"), token)
