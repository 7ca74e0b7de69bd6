"""The alert bridge: Alertmanager's webhook receiver, publishing each alert to Kafka topic `alerts`.

Alertmanager posts grouped notifications; the bridge splits them into one event per alert (keyed
by its fingerprint) so consumers, such as the automation backend and the AI remediator of later
labs, see each alert firing and resolving. It also keeps the most recent alerts in memory
(GET /alerts) for scenario reports, and exports its own counters at /metrics.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest

TOPIC = "alerts"
log = logging.getLogger("opslab.alerting")


class Publisher(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes) -> None: ...

    def poll(self, timeout: float) -> int: ...


def alert_events(notification: dict[str, Any], received_at: float) -> list[dict[str, Any]]:
    """One event per alert of an Alertmanager webhook notification (version 4)."""
    events = []
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        events.append(
            {
                "fingerprint": alert.get("fingerprint", ""),
                "status": alert.get("status", notification.get("status", "")),
                "alertname": labels.get("alertname", ""),
                "service": labels.get("service", ""),
                "severity": labels.get("severity", ""),
                "labels": labels,
                "annotations": alert.get("annotations", {}),
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "receiver": notification.get("receiver", ""),
                "receivedAt": received_at,
            }
        )
    return events


class Bridge:
    """ASGI app: POST /alerts (Alertmanager webhook), GET /alerts (recent), GET /metrics."""

    def __init__(self, publisher: Publisher, clock: Callable[[], float] = time.time, keep: int = 500) -> None:
        self.publisher = publisher
        self.clock = clock
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.registry = CollectorRegistry()
        self.received = Counter(
            "opslab_alert_bridge_notifications", "Webhook notifications received.", registry=self.registry
        )
        self.published = Counter(
            "opslab_alert_bridge_alerts_published",
            "Alert events published to Kafka.",
            ["status"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "opslab_alert_bridge_rejected", "Requests that were not valid notifications.", registry=self.registry
        )

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            notification = json.loads(body)
            if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
                raise ValueError("no alerts list")
        except ValueError as exc:
            self.rejected.inc()
            return 400, {"error": f"not an Alertmanager webhook notification: {exc}"}
        self.received.inc()
        events = alert_events(notification, self.clock())
        for event in events:
            self.publisher.produce(TOPIC, json.dumps(event).encode(), key=event["fingerprint"].encode())
            self.published.labels(event["status"]).inc()
            self.recent.append(event)
        self.publisher.poll(0)
        return 200, {"published": len(events)}

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/metrics":
            status, payload, ctype = 200, generate_latest(self.registry), b"text/plain; version=0.0.4"
        elif path == "/alerts" and method == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            code, answer = self.handle(body)
            status, payload, ctype = code, json.dumps(answer).encode(), b"application/json"
        elif path == "/alerts":
            status, payload, ctype = 200, json.dumps(list(self.recent)).encode(), b"application/json"
        elif path == "/healthz":
            status, payload, ctype = 200, b"ok", b"text/plain"
        else:
            status, payload, ctype = 404, b'{"error": "not found"}', b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
