"""opslab: a hands-on lab platform for advanced DevOps, SRE and AIOps."""

__version__ = "0.1.0"
