"""Kubernetes API clients for the platform, built from a kubeconfig file."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path, *, timeout: float = 10.0) -> client.ApiClient:
    """An ApiClient for ``kubeconfig`` that never shares state with other clients."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.retries = 2
    api = client.ApiClient(configuration)
    api.rest_client.pool_manager.connection_pool_kw["timeout"] = timeout
    return api


def core(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(kubeconfig))
