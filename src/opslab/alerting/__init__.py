"""Alert delivery beyond Alertmanager: the bridge that puts every alert on Kafka."""
