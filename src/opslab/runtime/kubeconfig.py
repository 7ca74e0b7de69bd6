"""Kubeconfig files for the platform's users and components (mode 0600, certificates embedded)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from kubernetes import client

from opslab.primitives.files import write_private
from opslab.runtime.pki import Pki

CLUSTER = "opslab"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(pki: Pki, server: str, client: str, *, context: str = CLUSTER) -> str:
    """A kubeconfig for ``client`` (a name from pki.CLIENTS) talking to ``server``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate-data": _b64(pki.cert(client)),
                    "client-key-data": _b64(pki.key(client)),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER, "user": client}}],
        "current-context": context,
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, pki: Pki, server: str, client: str) -> Path:
    return write_private(path, render(pki, server, client))


def write_token(path: Path, admin_kubeconfig: Path, token: str, *, user: str, namespace: str, context: str) -> Path:
    """A kubeconfig (0600) that authenticates with a ServiceAccount ``token`` to the cluster of
    ``admin_kubeconfig`` (its server and CA, never its credentials), defaulting to ``namespace``."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority-data": cluster["certificate-authority-data"],
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER, "user": user, "namespace": namespace}}],
        "current-context": context,
    }
    return write_private(path, yaml.safe_dump(config, sort_keys=False))


def write_service_account(
    path: Path,
    admin_kubeconfig: Path,
    core: client.CoreV1Api,
    *,
    account: str,
    namespace: str,
    seconds: int,
    context: str,
) -> Path:
    """Issue a token for ServiceAccount ``namespace/account`` (TokenRequest, valid ``seconds``) and
    write a kubeconfig with it (0600). Deleting the ServiceAccount revokes the token."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    status = core.create_namespaced_service_account_token(account, namespace, request).status
    if status is None or not status.token:
        raise RuntimeError(f"the API server issued no token for {namespace}/{account}")
    return write_token(
        path, admin_kubeconfig, status.token, user=f"{namespace}:{account}", namespace=namespace, context=context
    )
