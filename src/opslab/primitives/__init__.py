"""The lowest layer: processes, ports, readiness probes, files, the clock and the error tree.

Nothing here imports from the rest of opslab.
"""
