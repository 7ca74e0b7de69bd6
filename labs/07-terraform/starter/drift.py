"""Drift detection for lab 7's environments (task 4): per workspace, is the cluster still what its
state and configuration say? Push the answer to the Pushgateway.

usage: python drift.py [--envs DIR] [--workspace W ...] [--pushgateway URL] [--terraform BIN]
"""

from __future__ import annotations

import sys


def main() -> int:
    print("drift.py: TODO", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
