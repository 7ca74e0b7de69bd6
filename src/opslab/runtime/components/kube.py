"""The Kubernetes control plane: kube-apiserver, kube-controller-manager, kube-scheduler.

Secure by default even on a laptop: TLS everywhere, client-certificate authentication, RBAC, no
anonymous access, bound service-account tokens, and every port on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from opslab.primitives.files import write_atomic
from opslab.primitives.readiness import ProbeResult
from opslab.runtime import kubeconfig
from opslab.runtime.component import Component, http_probe
from opslab.runtime.pki import SERVICE_CIDR

ADMISSION_PLUGINS = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,"
    "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota,"
    "Priority,NodeRestriction,PodSecurity"
)


AUDIT_LOG = Path("data/kube-apiserver/audit.log")
"""Where the API server's audit log is, relative to the platform's state directory."""

INCIDENT_RESPONDER = "system:serviceaccount:shop:incident-responder"
"""The identity an incident's responder (a person's kubeconfig or an agent's toolbox) acts as."""

TERRAFORM_RUNNER = "system:serviceaccount:opslab-terraform:terraform-runner"
"""The identity an agent's terraform_plan and terraform_apply run as (platform/k8s/bootstrap/terraform.yaml):
its writes outside its own namespace (state and lock) are the responder's actions too."""

# Audit only what graders and incident reviews ask "who did this?" about: evictions (a refused
# eviction writes nothing else anywhere), pod removals and the node controller marking pods not
# ready (what took a pod that a budget protected), and every write of an incident's responder and
# of the terraform runner that an agent's terraform tools act through (the scorer's record of their
# actions). Everything else stays unaudited, so the log stays small.
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods/eviction"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods"]
    verbs: ["delete", "deletecollection"]
  - level: Metadata
    users: ["system:serviceaccount:kube-system:node-controller"]
    resources:
      - group: ""
        resources: ["pods/status"]
    verbs: ["update", "patch"]
  - level: Metadata
    users: ["{INCIDENT_RESPONDER}", "{TERRAFORM_RUNNER}"]
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
"""


@dataclass(frozen=True)
class AuditedRequest:
    """One request in the API server's audit log."""

    user: str
    verb: str
    namespace: str
    name: str
    resource: str
    code: int
    time: float = 0.0
    """When the API server answered (Unix seconds)."""


def audited_requests(log: Path) -> Iterator[AuditedRequest]:
    """The requests in an audit log (JSON lines), oldest first; unreadable lines are skipped."""
    if not log.is_file():
        return
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # a line being written as we read
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            yield AuditedRequest(
                user=(event.get("user") or {}).get("username", ""),
                verb=event.get("verb", ""),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                resource=resource,
                code=int((event.get("responseStatus") or {}).get("code", 0)),
                time=_timestamp(event.get("stageTimestamp") or event.get("requestReceivedTimestamp") or ""),
            )


def _timestamp(text: str) -> float:
    """An audit event's RFC 3339 timestamp (microseconds, Z) in Unix seconds; 0 if unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class ApiServer(Component):
    name = "kube-apiserver"
    summary = "Kubernetes API server"
    ready_timeout = 90.0
    stop_seconds = 20

    @property
    def ports(self) -> dict[str, int]:
        return {"https": self.ctx.ports.apiserver}

    @property
    def endpoint(self) -> str:
        return self.ctx.apiserver_url

    @property
    def audit_policy(self) -> Path:
        return self.ctx.config_file("audit-policy.yaml")

    def config_files(self) -> list[Path]:
        return [self.audit_policy]

    def prepare(self) -> None:
        self.ctx.pki.ensure()
        write_atomic(self.audit_policy, AUDIT_POLICY)
        (self.ctx.settings.paths.state / AUDIT_LOG).parent.mkdir(parents=True, exist_ok=True)
        for client in ("admin", "controller-manager", "scheduler", "kwok", "shop", "gitops"):
            kubeconfig.write(self.ctx.kubeconfig_for(client), self.ctx.pki, self.ctx.apiserver_url, client)

    def command(self) -> list[str]:
        pki = self.ctx.pki
        eviction = self.ctx.settings.cluster.eviction_seconds
        return [
            str(self.ctx.toolchain.require("kube-apiserver")),
            f"--etcd-servers=https://127.0.0.1:{self.ctx.ports.etcd}",
            f"--etcd-cafile={pki.etcd_ca_cert}",
            f"--etcd-certfile={pki.cert('etcd-client')}",
            f"--etcd-keyfile={pki.key('etcd-client')}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ctx.ports.apiserver}",
            f"--tls-cert-file={pki.cert('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_cert}",
            "--anonymous-auth=false",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            # The `kubernetes` Service cannot point at a loopback address; nothing in the cluster
            # runs real code that would call it, so no endpoints are reconciled.
            "--endpoint-reconciler-type=none",
            f"--default-not-ready-toleration-seconds={eviction}",
            f"--default-unreachable-toleration-seconds={eviction}",
            "--event-ttl=1h",
            f"--audit-policy-file={self.audit_policy}",
            f"--audit-log-path={self.ctx.settings.paths.state / AUDIT_LOG}",
            "--audit-log-maxsize=20",
            "--audit-log-maxbackup=1",
            "--watch-cache=true",
            "--v=1",
        ]

    def probe(self) -> ProbeResult:
        client = self.ctx.http(client_cert="admin")
        return http_probe(client, f"{self.ctx.apiserver_url}/readyz", expect="ok")


class _DelegatingComponent(Component):
    """A control-plane component that authenticates callers through the API server."""

    client: str
    port_attr: str

    @property
    def ports(self) -> dict[str, int]:
        return {"https": getattr(self.ctx.ports, self.port_attr)}

    def common_flags(self) -> list[str]:
        kc = self.ctx.kubeconfig_for(self.client)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            # Verify callers' client certificates against opslab's CA directly; there is no
            # front proxy, so the request-header part of the in-cluster lookup has nothing to find.
            "--authentication-skip-lookup=true",
            f"--client-ca-file={self.ctx.pki.ca_cert}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['https']}",
            f"--cert-dir={self.ctx.data_dir(self.name)}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def prepare(self) -> None:
        self.ctx.data_dir(self.name).mkdir(parents=True, exist_ok=True)

    def probe(self) -> ProbeResult:
        # Its serving certificate is self-signed, in its --cert-dir; /healthz needs no credentials.
        return http_probe(self.ctx.http(verify=False), f"https://127.0.0.1:{self.ports['https']}/healthz")


class ControllerManager(_DelegatingComponent):
    name = "kube-controller-manager"
    summary = "Kubernetes controller manager"
    client = "controller-manager"
    port_attr = "controller_manager"

    def command(self) -> list[str]:
        pki = self.ctx.pki
        return [
            str(self.ctx.toolchain.require("kube-controller-manager")),
            *self.common_flags(),
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--node-monitor-period=2s",
            "--node-monitor-grace-period=40s",
            "--terminated-pod-gc-threshold=500",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]


class Scheduler(_DelegatingComponent):
    name = "kube-scheduler"
    summary = "Kubernetes scheduler"
    client = "scheduler"
    port_attr = "scheduler"

    def command(self) -> list[str]:
        return [str(self.ctx.toolchain.require("kube-scheduler")), *self.common_flags()]
