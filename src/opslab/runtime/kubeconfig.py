"""Kubeconfig files for the platform's users and components (mode 0600, certificates embedded)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

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
