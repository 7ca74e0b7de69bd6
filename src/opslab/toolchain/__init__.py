"""The offline toolchain: pinned versions, binary resolution, and builds from source.

Each binary is resolved in this order: an explicit environment override, PATH (right version),
opslab's cache (~/.cache/opslab/<component>/<version>/), and finally a build from source through
the language's own package registry (Go modules, Maven, Debian packages).
"""
