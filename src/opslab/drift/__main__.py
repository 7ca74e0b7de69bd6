"""`python -m opslab.drift`: plan the platform's Terraform module every INTERVAL seconds.

Exports at /metrics:
  opslab_terraform_drift{module}            1 if the last plan found changes, 0 if none
  opslab_terraform_plan_errors_total{module} plans that failed
  opslab_terraform_last_plan_timestamp_seconds{module}
The plan runs with -lock=false: it only reads, and must never block an apply.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from opslab import settings as settings_module
from opslab.primitives.processes import kill_running_commands
from opslab.runtime.component import RuntimeContext
from opslab.runtime.terraform import Terraform
from opslab.toolchain.resolve import toolchain_for

log = logging.getLogger("opslab.drift")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opslab.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--state-marker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    settings = settings_module.load({"state_dir": args.state_dir})
    ctx = RuntimeContext(settings, toolchain_for(settings))
    terraform = Terraform(ctx, name="drift-check")

    registry = CollectorRegistry()
    drift = Gauge("opslab_terraform_drift", "1 if the last plan found changes.", ["module"], registry=registry)
    errors = Counter("opslab_terraform_plan_errors", "Plans that failed.", ["module"], registry=registry)
    last = Gauge(
        "opslab_terraform_last_plan_timestamp_seconds", "When the last plan finished.", ["module"], registry=registry
    )
    module = "platform"
    start_http_server(args.port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def stopped(signum: int, _frame: object) -> None:
        # A plan in progress runs in its own session: stop it (and its provider plugins) with us.
        kill_running_commands()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    while not stop.is_set():
        began = time.monotonic()
        try:
            code, output = terraform.plan_exit_code(lock=False)
            if code == 1:
                errors.labels(module).inc()
                log.warning("terraform plan failed: %s", output.strip().splitlines()[-1:] or "")
            else:
                drift.labels(module).set(1 if code == 2 else 0)
                if code == 2:
                    log.info("Drift: the platform module's resources differ from its configuration.")
            last.labels(module).set(time.time())
        except Exception as exc:
            errors.labels(module).inc()
            log.warning("terraform plan could not run: %s", exc)
        stop.wait(max(args.interval - (time.monotonic() - began), 1.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
