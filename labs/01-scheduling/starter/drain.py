"""Drain a node safely (lab 1, task 5).

usage: python drain.py NODE [--timeout SECONDS] [--kubeconfig FILE]

Cordon the node, then evict its pods through the Eviction API so that PodDisruptionBudgets are
respected. Retry evictions a budget refuses until --timeout. Print a JSON report on stdout:
  {"node": ..., "cordoned": true, "evicted": ["ns/pod", ...],
   "refused": [{"pod": "ns/pod", "reason": "..."}], "timed_out": false, "seconds": 1.2}
Exit 0 if every pod was evicted, 1 if some were refused, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import sys


def main() -> int:
    # TODO task 5: parse the arguments, load the kubeconfig (KUBECONFIG or --kubeconfig),
    # check the node exists, cordon it, evict its pods, print the report.
    print("error: drain.py is not written yet (lab 1, task 5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
