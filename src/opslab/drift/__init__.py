"""Drift detection: a periodic `terraform plan` of the platform module, exported as a metric."""
