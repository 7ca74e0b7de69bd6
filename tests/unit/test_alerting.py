"""The alert bridge's events and the relay's webhook notifications: one alert each way, nothing lost."""

from __future__ import annotations

from opslab.alerting.bridge import alert_events
from opslab.alerting.relay import notification

WEBHOOK = {
    "version": "4",
    "status": "firing",
    "receiver": "kafka-bridge",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ShopAvailabilityBudgetBurnFast", "service": "gateway", "severity": "page"},
            "annotations": {"summary": "gateway burns its budget"},
            "startsAt": "2026-12-04T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "a1",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "ShopLatencyBudgetBurnFast", "service": "payments"},
            "annotations": {},
            "startsAt": "2026-12-04T09:00:00Z",
            "endsAt": "2026-12-04T09:30:00Z",
            "fingerprint": "b2",
        },
    ],
}


def test_a_notification_round_trips_through_the_topic_one_alert_per_notification() -> None:
    events = alert_events(WEBHOOK, received_at=1.0)
    assert [e["fingerprint"] for e in events] == ["a1", "b2"]
    for original, event in zip(WEBHOOK["alerts"], events, strict=True):
        relayed = notification(event)
        assert relayed["version"] == "4" and relayed["receiver"] == "kafka-bridge"
        (alert,) = relayed["alerts"]
        for key in ("status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"):
            assert alert[key] == original[key], key
        assert relayed["status"] == original["status"] and relayed["commonLabels"] == original["labels"]
        assert relayed["groupKey"] == f"relay:{original['fingerprint']}"


def test_an_event_without_labels_still_names_its_alert_and_has_an_end() -> None:
    relayed = notification({"alertname": "Watchdog", "status": "firing", "fingerprint": "w"})
    (alert,) = relayed["alerts"]
    assert alert["labels"] == {"alertname": "Watchdog"} and relayed["groupLabels"] == {"alertname": "Watchdog"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["annotations"] == {}
