"""The automation API: Alertmanager's webhook in, remediation jobs out (task 1).

Run with ``python -m uvicorn api:app --host 127.0.0.1 --port 8085``.

What it must do (README, task 1):
- POST /alerts: Alertmanager's webhook (version 4), validated by pydantic models (a bad field is
  a 422 naming it), with the bearer token of OPSLAB_AUTOMATION_TOKEN_FILE (else 401); a job per
  firing alert, created once however often the alert is delivered; answer 202
  {"jobs": [{"id", "runbook", "target", "duplicate"}], "ignored": <resolved alerts>} at once.
- Enrich each new job with a PromQL query (OPSLAB_PROMETHEUS_URL) without blocking the loop.
- GET /jobs/{id} and GET /jobs?target=&state= (bearer token too); /healthz; /readyz (pings the
  broker: 503 when it does not answer); /metrics (automation_webhook_seconds histogram,
  automation_jobs{state} and automation_queue_depth gauges).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

PROMETHEUS_URL = os.environ.get("OPSLAB_PROMETHEUS_URL", "http://127.0.0.1:9090")
TOKEN_FILE = Path(os.environ.get("OPSLAB_AUTOMATION_TOKEN_FILE", "token"))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TODO: read the token once, open an async Redis client and an httpx.AsyncClient; close them after.
    yield


app = FastAPI(title="opslab automation", version="0.1", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# TODO: the pydantic models of the webhook (Alert, Webhook), the bearer-token dependency,
# POST /alerts, GET /jobs, GET /jobs/{id}, /readyz and /metrics.
