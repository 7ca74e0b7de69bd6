"""How everything else finds the platform: one set of environment variables.

The same variables go into .opslab/env (for a learner's shell), into graders and learner programs,
and into scenario runs, so a program that works in one works in the others.
"""

from __future__ import annotations

from opslab.runtime import redis_auth, sqs
from opslab.settings import Settings


def endpoint_environment(settings: Settings) -> dict[str, str]:
    """KUBECONFIG, the OPSLAB_* variables that point at this platform, and the AWS_* ones boto3 needs
    to reach its SQS queue (endpoint, dummy credentials, region)."""
    p, paths = settings.ports, settings.paths
    env = {
        "KUBECONFIG": str(paths.kubeconfig),
        "OPSLAB_KUBECONFIG": str(paths.kubeconfig),
        "OPSLAB_PROMETHEUS_URL": f"http://127.0.0.1:{p.prometheus}",
        "OPSLAB_THANOS_URL": f"http://127.0.0.1:{p.thanos_query}",  # the querier: live and long-term data
        "OPSLAB_ALERTMANAGER_URL": f"http://127.0.0.1:{p.alertmanager}",
        "OPSLAB_PUSHGATEWAY_URL": f"http://127.0.0.1:{p.pushgateway}",
        "OPSLAB_KAFKA_BOOTSTRAP": f"127.0.0.1:{p.kafka}",
        "OPSLAB_REDIS_URL": redis_auth.url(settings),
        "OPSLAB_ETCD_URL": f"https://127.0.0.1:{p.etcd}",  # only the API server's etcd client certificate gets in
        "OPSLAB_SHOP_URL": f"http://127.0.0.1:{p.shop}",
        "OPSLAB_OPA_URL": f"http://127.0.0.1:{p.opa}",
        "OPSLAB_GIT_URL": f"http://127.0.0.1:{p.git_server}",
        "OPSLAB_REGISTRY": f"127.0.0.1:{p.registry}",
        **sqs.environment(settings),
        "OPSLAB_ROOT": str(paths.root),
        "OPSLAB_STATE_DIR": str(paths.state),
        "OPSLAB_CACHE_DIR": str(paths.cache),
    }
    env.update({f"OPSLAB_PORT_{name.upper()}": str(port) for name, port in p.items()})
    return env
