"""The health agent (task 4): probes the services it is given, exports a health score, heals on its own.

Run with ``python agent.py``. Every OPSLAB_AGENT_INTERVAL seconds, probe each target of
OPSLAB_AGENT_TARGETS (a JSON list of {service, url, namespace, deployment}): its endpoint (2xx
within 2 s) and its Deployment (every wanted replica available). Export
opslab_health_score{service} (the share of probes that pass) on 127.0.0.1:OPSLAB_AGENT_PORT.
After THRESHOLD endpoint failures in a row, enqueue a rollout-restart job (alert name
HealthProbeFailing) through workers.enqueue, as the API does.
"""

from __future__ import annotations

import os
import time

from prometheus_client import start_http_server

THRESHOLD = 3
INTERVAL_S = float(os.environ.get("OPSLAB_AGENT_INTERVAL", "5"))


def main() -> None:
    start_http_server(int(os.environ.get("OPSLAB_AGENT_PORT", "8086")), addr="127.0.0.1")
    while True:
        # TODO: probe every target, set the score, count failures in a row, enqueue a job.
        time.sleep(INTERVAL_S)


if __name__ == "__main__":
    main()
