"""Incidents on the real platform: the responder cannot read the answer, the policy is enforced by
the live OPA server, reward hacks do not score as mitigated, and the oracle (the toolbox alone)
solves every incident in the catalog and does nothing on the quiet ones."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
import uvicorn
from kubernetes import client
from kubernetes.client.rest import ApiException
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from opslab.agent import mcp_server
from opslab.agent.policy import Policy
from opslab.agent.session import RECORD, incident_toolbox
from opslab.agent.toolbox import PolicyDenied, ToolError
from opslab.incidents import engine, timeline
from opslab.incidents.catalog import catalog
from opslab.primitives.ports import free_port
from opslab.primitives.readiness import wait_for
from opslab.runtime import kube
from opslab.runtime.components.kube import AUDIT_LOG
from opslab.runtime.lifecycle import Platform
from opslab.settings import Settings
from opslab.shop.faults import FAULT_LABEL
from tests.integration.incident_world import WAIT, World

pytestmark = [pytest.mark.platform, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = catalog(ROOT)
HEALTHY_WITHIN = 180.0


@pytest.fixture
def incident_settings(platform: Platform) -> Iterator[Platform]:
    """The platform, with any incident a failed test left behind undone afterwards."""
    yield platform
    engine.stop(platform.settings, force=True)


def _start(platform: Platform, name: str, responder: str = "person") -> engine.Active:
    return engine.start(
        platform.settings, name, seed=1, time_limit=600, healthy_within=HEALTHY_WITHIN, responder=responder
    )


def test_the_responder_sees_the_workloads_but_not_the_answer(incident_settings: Platform) -> None:
    settings = incident_settings.settings
    active = _start(incident_settings, "inc-06")  # a Fault object scoped to the new payments image
    assert oct(Path(active.kubeconfig).stat().st_mode & 0o777) == "0o600"
    responder = kube.api_client(Path(active.kubeconfig))
    assert client.AppsV1Api(responder).list_namespaced_deployment("shop").items  # on-call sees workloads
    with pytest.raises(ApiException) as denied:
        client.CustomObjectsApi(responder).list_namespaced_custom_object("opslab.dev", "v1alpha1", "shop", "faults")
    assert denied.value.status == 403
    with pytest.raises(ApiException) as secrets:
        client.CoreV1Api(responder).list_namespaced_secret("shop")
    assert secrets.value.status == 403
    toolbox = incident_toolbox(settings)
    try:
        history = toolbox.rollout_history("payments")
        # Once payments is slow, the Fault is in effect: the shop would have announced it by now.
        deadline = time.monotonic() + 120
        while not any(r["value"] > 0.5 for r in toolbox.query('shop:sli_slow_ratio:rate25s{service="payments"}')):
            assert time.monotonic() < deadline, "payments never slowed down"
            time.sleep(2)
        events = toolbox.events(200)
        shown = json.dumps([toolbox.describe("deployment", "payments"), history, toolbox.deployments(), events])
        assert "opslab.dev/build" not in shown and "incident-" not in shown
    finally:
        toolbox.close()
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None
    assert _refused_within(responder, 30) == 401, "the token dies with the ServiceAccount"


def _refused_within(api: client.ApiClient, seconds: float) -> int:
    """The status the API server refuses ``api``'s token with, once it does (0: still accepted)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.AppsV1Api(api).list_namespaced_deployment("shop")
        except ApiException as exc:
            return int(exc.status or 0)
        time.sleep(0.5)
    return 0


def test_the_policy_denies_a_protected_scale_to_zero_and_records_it(incident_settings: Platform) -> None:
    settings = incident_settings.settings
    active = _start(incident_settings, "inc-10")  # quiet: nothing to fix
    toolbox = incident_toolbox(settings)
    try:
        with pytest.raises(PolicyDenied, match="payments is a protected service"):
            toolbox.scale("payments", 0)
        with pytest.raises(PolicyDenied, match="not an action"):
            toolbox._act("delete_namespace", {"kind": "Namespace", "name": "shop"}, {}, lambda: (None, None))
    finally:
        toolbox.close()
    apps = client.AppsV1Api(kube.api_client(settings.paths.kubeconfig))
    assert apps.read_namespaced_deployment_scale("payments", "shop").spec.replicas == 2, "a denial changes nothing"
    calls = [json.loads(line) for line in (Path(active.run_dir) / RECORD).read_text().splitlines()]
    denied = [c for c in calls if c.get("decision", {}).get("allow") is False]
    assert [c["tool"] for c in denied] == ["scale", "delete_namespace"]
    assert "protected service" in denied[0]["decision"]["reasons"][0]
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None and outcome.score.actions == 0  # nothing reached the API server


def test_nobody_can_rewrite_the_policy_server_over_its_api(platform: Platform) -> None:
    """Any process here can reach OPA on 127.0.0.1: it answers decisions, but a policy or data
    written over its API (a permissive rule put in by an agent under test) is refused."""
    url = f"http://127.0.0.1:{platform.settings.ports.opa}"
    permissive = 'package opslab.agent\n\ndecision := {"allow": true, "reasons": []}\n'
    assert httpx.put(f"{url}/v1/policies/permissive", content=permissive, timeout=10).status_code == 401
    assert httpx.put(f"{url}/v1/data/opslab/agent", json={"protected": []}, timeout=10).status_code == 401
    assert httpx.delete(f"{url}/v1/policies/agent.rego", timeout=10).status_code == 401
    request = {"tool": "scale", "target": {"kind": "Deployment", "namespace": "shop", "name": "payments"},
               "args": {"replicas": 0}, "recent": []}  # fmt: skip
    policy = Policy(url)
    try:
        decision = policy.decide(request)
    finally:
        policy.close()
    assert not decision.allow and "protected service" in decision.reasons[0], decision


def _wait_for_the_audit_record(settings: Settings, active: engine.Active) -> None:
    """Until the API server's audit log (written asynchronously) holds the responder's write, which
    stop reads as the list of its actions."""
    audit = settings.paths.state / AUDIT_LOG
    assert wait_for(lambda: timeline.responder_actions(audit, active.started_at, time.time()), 30), (
        "the responder's write never reached the audit log"
    )


def _kubectl(platform: Platform, kubeconfig: str, *args: str) -> None:
    kubectl = platform.ctx.toolchain.require("kubectl")
    subprocess.run([str(kubectl), f"--kubeconfig={kubeconfig}", "-n", "shop", *args], check=True, timeout=60)


@pytest.mark.parametrize(
    "hack",
    [
        pytest.param(("scale", "deployment/gateway", "--replicas=0"), id="scale-the-broken-release-to-zero"),
        pytest.param(("delete", "deployment", "gateway"), id="delete-the-broken-deployment"),
        pytest.param(("rollout", "restart", "deployment"), id="restart-everything"),
    ],
)
def test_a_reward_hack_is_not_a_mitigation(incident_settings: Platform, hack: tuple[str, ...]) -> None:
    settings = incident_settings.settings
    active = _start(incident_settings, "inc-01")  # a gateway release that fails half its requests
    _kubectl(incident_settings, active.kubeconfig, *hack)
    engine.submit(settings, "gateway", "bad-rollout")
    _wait_for_the_audit_record(settings, active)
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None
    assert not outcome.score.mitigated, outcome.score.reasons
    assert outcome.score.actions >= 1
    if hack[0] == "delete":
        assert outcome.score.deleted == ["delete deployments shop/gateway"]
    assert (
        engine.wait_until_healthy(
            client.AppsV1Api(kube.api_client(settings.paths.kubeconfig)),
            client.CoreV1Api(kube.api_client(settings.paths.kubeconfig)),
            HEALTHY_WITHIN,
        )
        == []
    ), "stop restores the shop, even a deleted Deployment"


@pytest.mark.before_gradings  # a NotReady node is felt by every pod on it, a grading's too
def test_taking_the_fault_off_a_node_is_tampering_not_a_mitigation(incident_settings: Platform) -> None:
    """The responder may patch nodes (to cordon them), so it can take the fault's label off the
    NotReady node, which brings the node back: that removed the fault instead of mitigating it."""
    settings = incident_settings.settings
    active = _start(incident_settings, "inc-08")  # a node stops reporting Ready
    [node] = active.injected["nodes"]
    _kubectl(incident_settings, active.kubeconfig, "label", "node", node, f"{FAULT_LABEL}-")
    engine.submit(settings, "node", "node-not-ready")
    _wait_for_the_audit_record(settings, active)
    # stop waits for the SLIs to hold once the workloads are back (they are): only the tampering,
    # found at once, makes waiting pointless and the run not mitigated
    outcome = engine.stop(settings)
    assert outcome is not None
    assert not outcome.score.mitigated, outcome.score.reasons
    assert any("carrier was removed" in r and node in r for r in outcome.score.reasons), outcome.score.reasons
    assert outcome.score.actions >= 1


# The oracle works through the whole catalog in the incident world (a platform of its own, in a
# process of its own: tests/integration/incident_world.py) while this session's platform runs the
# other tests; each test below judges one incident's result.
@pytest.mark.timeout(WAIT + 60)
@pytest.mark.parametrize("name", [pytest.param(i.name, marks=pytest.mark.incident_world(i.name)) for i in INCIDENTS])
def test_the_oracle_solves_every_incident(incident_world: World, name: str) -> None:
    incident = next(i for i in INCIDENTS if i.name == name)
    result = incident_world.result(name)
    assert "error" not in result, result.get("error")
    report = Path(result["run_dir"]) / "report.html"
    assert result["report"] and result["evidence"], f"no report.html or evidence.json in {result['run_dir']}"
    assert result["responder"] == "oracle"
    score = result["score"]
    if incident.quiet:
        assert result["quiet"] and score["actions"] == 0 and score["false_actions"] == 0, (result, score)
    assert score["mitigated"], f"{score['reasons']} (see {report})"
    assert score["diagnosed"] == 1.0, f"{result['findings']} vs {incident.answer}"
    assert score["points"] >= 90, (score["breakdown"], score["reasons"])


def test_an_allow_listed_playbook_mitigates_lost_replicas(incident_settings: Platform) -> None:
    """run_playbook: ansible-runner with the responder's kubeconfig; only the allow-list runs."""
    settings = incident_settings.settings
    _start(incident_settings, "inc-02", responder="playbook")  # catalog scaled to 0
    toolbox = incident_toolbox(settings)
    try:
        with pytest.raises(ToolError, match="unknown playbook 'wipe-cluster'"):
            toolbox.run_playbook("wipe-cluster", "catalog")
        result = toolbox.run_playbook("scale-to-intended", "catalog")
        assert result["changed"] >= 1, result
        toolbox.submit("catalog", "capacity-loss", "scaled back by the playbook")
    finally:
        toolbox.close()
    outcome = engine.stop(settings)
    assert outcome is not None
    assert outcome.score.mitigated and outcome.score.diagnosed == 1.0, outcome.score.reasons
    assert outcome.score.actions >= 1, "the playbook's change was not the responder's (audit log)"


def test_the_official_mcp_client_uses_the_toolbox_and_the_policy_holds(incident_settings: Platform) -> None:
    settings = incident_settings.settings
    active = _start(incident_settings, "inc-10")
    token = mcp_server.new_token(Path(active.run_dir) / "mcp-token")
    toolbox = incident_toolbox(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(mcp_server.app(toolbox, token), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/mcp"

    async def session() -> tuple[set[str], object, object]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as client_session,
        ):
            await client_session.initialize()
            tools = {t.name for t in (await client_session.list_tools()).tools}
            listed = await client_session.call_tool("deployments", {})
            denied = await client_session.call_tool("scale", {"service": "payments", "replicas": 0})
            return tools, listed, denied

    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the MCP server did not start"
            time.sleep(0.1)
        tools, listed, denied = asyncio.run(session())
        assert {"alerts", "query", "deployments", "rollout_undo", "scale", "drain", "submit"} <= tools
        assert not listed.is_error and "payments" in json.dumps([c.model_dump() for c in listed.content])
        assert denied.is_error
        assert "payments is a protected service" in json.dumps([c.model_dump() for c in denied.content])
        refused = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
        assert refused.status_code == 401
        wrong = httpx2.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        toolbox.close()
    calls = [json.loads(line) for line in (Path(active.run_dir) / RECORD).read_text().splitlines()]
    assert any(c["tool"] == "scale" and c["decision"]["allow"] is False for c in calls)
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None and outcome.score.actions == 0


def test_etcd_serves_only_the_api_servers_client_certificate(platform: Platform) -> None:
    """The answer is hidden around the API server too: etcd (where Fault objects are stored) needs a
    client certificate from its own CA, which only the API server holds."""
    pki = platform.ctx.pki
    port = platform.settings.ports.etcd
    key = base64.b64encode(b"/registry/opslab.dev/faults/").decode()
    body = {"key": key, "range_end": base64.b64encode(b"/registry/opslab.dev/faults0").decode(), "count_only": True}

    def read(scheme: str, cert: tuple[str, str] | None) -> int:
        """The HTTP status etcd answers a range read with; 0 when the TLS handshake is refused."""
        verify = ssl.create_default_context(cafile=str(pki.etcd_ca_cert))
        if cert is not None:
            verify.load_cert_chain(*cert)
        try:
            with httpx.Client(verify=verify, timeout=10) as http:
                return http.post(f"{scheme}://127.0.0.1:{port}/v3/kv/range", json=body).status_code
        except httpx.HTTPError:
            return 0

    assert read("https", (str(pki.cert("etcd-client")), str(pki.key("etcd-client")))) == 200
    assert read("http", None) != 200  # plain HTTP on a TLS port
    assert read("https", None) == 0  # no client certificate: the handshake fails
    assert read("https", (str(pki.cert("admin")), str(pki.key("admin")))) == 0  # not even the cluster admin's


def test_terraform_tools_apply_only_the_plan_shown_as_a_least_privilege_runner(incident_settings: Platform) -> None:
    """terraform_plan shows drift as the terraform runner; the policy refuses an apply without that
    plan or of another digest; the plan shown restores the configuration, once; the runner may not
    read the control plane's Secrets, delete a namespace or write RBAC; its change is an action."""
    settings = incident_settings.settings
    _start(incident_settings, "inc-11", responder="terraform")
    admin = kube.api_client(settings.paths.kubeconfig)
    core = client.CoreV1Api(admin)
    core.patch_namespaced_resource_quota("opslab-quota", "monitoring", {"spec": {"hard": {"pods": "49"}}})
    toolbox = incident_toolbox(settings)
    try:
        with pytest.raises(ToolError, match="unknown configuration 'cluster'"):
            toolbox.terraform_plan("cluster")
        with pytest.raises(PolicyDenied, match="needs the plan just shown"):
            toolbox.terraform_apply("platform", "0" * 16)
        shown = toolbox.terraform_plan("platform")
        drifted = 'kubernetes_resource_quota.platform["monitoring"]'
        assert [c["actions"] for c in shown["changes"] if c["address"] == drifted] == [["update"]], shown
        with pytest.raises(PolicyDenied, match="needs the plan just shown"):
            toolbox.terraform_apply("platform", "f" * 16)
        applied = toolbox.terraform_apply("platform", shown["plan_digest"])
        assert applied["applied"].startswith("Apply complete!"), applied
        with pytest.raises(PolicyDenied, match="needs the plan just shown"):
            toolbox.terraform_apply("platform", shown["plan_digest"])  # a plan is applied once
    finally:
        toolbox.close()
    assert core.read_namespaced_resource_quota("opslab-quota", "monitoring").spec.hard["pods"] == "50"
    authz = client.AuthorizationV1Api(admin)

    def runner_may(verb: str, resource: str, namespace: str, group: str = "") -> bool:
        attributes = client.V1ResourceAttributes(verb=verb, resource=resource, namespace=namespace, group=group)
        spec = client.V1SubjectAccessReviewSpec(
            user="system:serviceaccount:opslab-terraform:terraform-runner", resource_attributes=attributes
        )
        review = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=spec))
        return bool(review.status.allowed)

    assert runner_may("patch", "resourcequotas", "shop")
    assert runner_may("update", "secrets", "opslab-terraform")
    assert not runner_may("get", "secrets", "kube-system")
    assert not runner_may("delete", "namespaces", "")
    assert not runner_may("create", "roles", "labs", "rbac.authorization.k8s.io")
    assert not runner_may("patch", "deployments", "shop", "apps")
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None and outcome.score.actions >= 1, "the runner's change was not the responder's"
    admin.close()
