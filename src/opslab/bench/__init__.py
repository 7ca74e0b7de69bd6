"""Benchmarks: each prints its figures and records the medians in docs/performance.md."""
