"""bench-incidents: the oracle over the whole incident catalog, and the catalog with nobody responding.

For the oracle: the share of incidents mitigated, the median and worst time to mitigate, and the
actions it took on the quiet incidents (target: 100 %, <= 60 s median, 0). With no remediation:
how many incidents are mitigated anyway after ``--unattended`` seconds (they heal by themselves).
Runs on a platform of its own (ports shifted by 3000), like the other benches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from opslab.agent.oracle import Oracle
from opslab.agent.session import incident_toolbox
from opslab.bench.platform import bench_settings, fresh_platform
from opslab.bench.report import Measure, report_measures
from opslab.incidents import engine
from opslab.incidents.catalog import catalog
from opslab.settings import Settings

HEALTHY_WITHIN = 240.0


def respond(settings: Settings, name: str) -> engine.Outcome:
    engine.start(settings, name, seed=1, time_limit=900, healthy_within=HEALTHY_WITHIN, responder="oracle")
    toolbox = incident_toolbox(settings)
    try:
        Oracle(toolbox).run(time.monotonic() + 600)
    finally:
        toolbox.close()
    outcome = engine.stop(settings)
    assert outcome is not None
    return outcome


def unattended(settings: Settings, name: str, seconds: float) -> engine.Outcome:
    engine.start(settings, name, seed=1, time_limit=900, healthy_within=HEALTHY_WITHIN, responder="none")
    time.sleep(seconds)  # nobody responds: that is the measure
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unattended", type=float, default=150, help="seconds each unattended incident runs")
    parser.add_argument("--only", nargs="*", default=[], help="incident names (default: the whole catalog)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    settings = bench_settings(nodes=3)
    root = Path(settings.paths.root)
    incidents = [i for i in catalog(root) if not args.only or i.name in args.only]
    oracle: dict[str, engine.Outcome] = {}
    alone: dict[str, engine.Outcome] = {}
    with fresh_platform(settings):
        for incident in incidents:
            oracle[incident.name] = outcome = respond(settings, incident.name)
            s = outcome.score
            print(f"  oracle {incident.name}: mitigated {s.mitigated}, {s.time_to_mitigate}, {s.points} points")
        for incident in incidents:
            if incident.quiet:
                continue
            alone[incident.name] = outcome = unattended(settings, incident.name, args.unattended)
            print(f"  unattended {incident.name}: mitigated {outcome.score.mitigated}")
    faulty = [n for n in oracle if not next(i for i in incidents if i.name == n).quiet]
    times = [t for n in faulty if (t := oracle[n].score.time_to_mitigate) is not None]
    healed = sum(o.score.mitigated for o in alone.values())
    mitigated = sum(o.score.mitigated for o in oracle.values())
    quiet_actions = sum(o.score.actions for n, o in oracle.items() if n not in faulty)
    rows: list[Measure] = [
        ("oracle: incidents mitigated", f"{mitigated} of {len(oracle)}", "100 %",
         ", ".join(n for n, o in oracle.items() if not o.score.mitigated) or "all"),
        ("oracle: time to mitigate, median", f"{statistics.median(times):.0f} s" if times else "-", "<= 60 s",
         ", ".join(f"{n} {oracle[n].score.time_to_mitigate:.0f}" for n in faulty
                   if oracle[n].score.time_to_mitigate is not None)),
        ("oracle: time to mitigate, worst", f"{max(times):.0f} s" if times else "-", "-", ""),
        ("oracle: actions on quiet incidents", str(quiet_actions), "0", ""),
        (f"no remediation: mitigated after {args.unattended:.0f} s", f"{healed} of {len(alone)}", "-",
         ", ".join(n for n, o in alone.items() if o.score.mitigated) or "none"),
    ]  # fmt: skip
    document = None if args.no_record or args.only else root / "docs" / "performance.md"
    report_measures(document, "bench-incidents", "each incident once, on a platform of the bench's own.", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
