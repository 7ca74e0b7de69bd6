"""The lab tests collect results from the session's concurrent gradings (the ``gradings`` fixture in
tests/conftest.py starts them with the platform, so they overlap the integration tests)."""
