"""The agent toolbox: read and action tools over the platform, every action checked by policy."""
