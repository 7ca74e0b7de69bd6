"""The shop: the simulated production system learners operate (see docs/shop.md)."""
