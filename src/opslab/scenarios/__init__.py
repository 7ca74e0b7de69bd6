"""Chaos scenarios against the shop: catalog, validation, load, observation, reports."""
