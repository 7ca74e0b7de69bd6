"""bench-incidents: the oracle and lab 6's reference remediator over the whole incident catalog,
and the catalog with nobody responding.

For the oracle (the platform's own responder, in process) and the remediator (lab 6's reference
agent.py, a separate program on the deterministic model, through MCP and the policy, as `make demo`
runs it): the share of incidents mitigated, the median and worst time to mitigate, and the actions
on the quiet incidents (targets: oracle 100 %, remediator >= 90 %, <= 60 s median, 0 actions).
With no remediation: how many incidents are mitigated anyway after ``--unattended`` seconds.
Runs on a platform of its own (ports shifted by 3000), like the other benches.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opslab.agent import remediation
from opslab.agent.session import oracle_response
from opslab.bench.platform import bench_settings, fresh_platform
from opslab.bench.report import Measure, report_measures
from opslab.incidents import engine
from opslab.incidents.catalog import Incident, catalog
from opslab.settings import Settings
from opslab.toolchain.resolve import toolchain_for

HEALTHY_WITHIN = 240.0


def respond(settings: Settings, name: str) -> engine.Outcome:
    return oracle_response(settings, name, healthy_within=HEALTHY_WITHIN, within=600)[1]


def remediate(settings: Settings, name: str, model: Sequence[str] = (), who: str = "agent:reference") -> engine.Outcome:
    """Lab 6's reference remediator on ``name``: on the deterministic model, or on ``model`` (its
    --model, --model-name and --key-file arguments: a configured endpoint)."""
    engine.start(settings, name, seed=1, time_limit=900, healthy_within=HEALTHY_WITHIN, responder=who)
    opa = toolchain_for(settings).require("opa")
    try:
        with tempfile.TemporaryDirectory(prefix="opslab-bench-") as work:
            remediation.run(settings, opa, settings.paths.root / remediation.REFERENCE, Path(work),
                            [*model, "--quiet-after", "60", "--max-seconds", "400"], timeout=480)  # fmt: skip
    except BaseException:
        engine.stop(settings, force=True)
        raise
    outcome = engine.stop(settings)
    assert outcome is not None
    return outcome


def unattended(settings: Settings, name: str, seconds: float) -> engine.Outcome:
    engine.start(settings, name, seed=1, time_limit=900, healthy_within=HEALTHY_WITHIN, responder="none")
    time.sleep(seconds)  # nobody responds: that is the measure
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None
    return outcome


RESPONDERS: dict[str, Callable[[Settings, str], engine.Outcome]] = {"oracle": respond, "remediator": remediate}
TARGETS = {"oracle": "100 %", "remediator": ">= 90 %"}


def responder_rows(who: str, runs: dict[str, engine.Outcome], incidents: list[Incident]) -> list[Measure]:
    quiet = {i.name for i in incidents if i.quiet}
    faulty = [n for n in runs if n not in quiet]
    times = [t for n in faulty if (t := runs[n].score.time_to_mitigate) is not None]
    mitigated = sum(o.score.mitigated for o in runs.values())
    return [
        (f"{who}: incidents mitigated", f"{mitigated} of {len(runs)}", TARGETS.get(who, "-"),
         ", ".join(n for n, o in runs.items() if not o.score.mitigated) or "all"),
        (f"{who}: time to mitigate, median", f"{statistics.median(times):.0f} s" if times else "-", "<= 60 s",
         ", ".join(f"{n} {t:.0f}" for n in faulty if (t := runs[n].score.time_to_mitigate) is not None)),
        (f"{who}: time to mitigate, worst", f"{max(times):.0f} s" if times else "-", "-", ""),
        (f"{who}: actions on quiet incidents", str(sum(runs[n].score.actions for n in runs if n in quiet)), "0", ""),
        (f"{who}: objects deleted, services harmed",
         str(sum(len(o.score.deleted) + len(o.score.harmed) for o in runs.values())), "0", ""),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unattended", type=float, default=150, help="seconds each unattended incident runs")
    parser.add_argument("--only", nargs="*", default=[], help="incident names (default: the whole catalog)")
    parser.add_argument("--responders", nargs="*", default=[*RESPONDERS, "none"],
                        choices=[*RESPONDERS, "none"], help="who responds (default: all, and nobody)")  # fmt: skip
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument("--model", default="", help="also the reference remediator on a configured endpoint: "
                        "openai:URL (with --model-name, and --key-file if it needs a key) or replay:PATH")  # fmt: skip
    parser.add_argument("--model-name", default="", help="the model the endpoint serves")
    parser.add_argument("--key-file", default="", help="the endpoint's API key, in a 0600 file")
    args = parser.parse_args(argv)
    if args.model.startswith("openai:") and not args.model_name:
        parser.error("--model openai:URL needs --model-name (the model the server serves)")
    model = remediation.model_args(args.model, args.model_name, args.key_file) if args.model else []
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the figures, not every request behind them
    settings = bench_settings(nodes=3)
    root = Path(settings.paths.root)
    incidents = [i for i in catalog(root) if not args.only or i.name in args.only]
    runs: dict[str, dict[str, engine.Outcome]] = {who: {} for who in RESPONDERS if who in args.responders}
    responders = dict(RESPONDERS)
    if model:  # a column of its own: the remediator's reasoning on the configured model
        endpoint = remediation.responder("reference", args.model, args.model_name)
        runs[endpoint] = {}
        responders[endpoint] = lambda s, name: remediate(s, name, model, endpoint)
    alone: dict[str, engine.Outcome] = {}
    with fresh_platform(settings):
        for who, results in runs.items():
            for incident in incidents:
                results[incident.name] = outcome = responders[who](settings, incident.name)
                s = outcome.score
                print(f"  {who} {incident.name}: mitigated {s.mitigated}, {s.time_to_mitigate}, {s.points} points")
        if "none" in args.responders:
            for incident in incidents:
                if not incident.quiet:
                    alone[incident.name] = outcome = unattended(settings, incident.name, args.unattended)
                    print(f"  unattended {incident.name}: mitigated {outcome.score.mitigated}")
    rows: list[Measure] = [row for who, results in runs.items() for row in responder_rows(who, results, incidents)]
    if alone:
        healed = sum(o.score.mitigated for o in alone.values())
        rows.append((f"no remediation: mitigated after {args.unattended:.0f} s", f"{healed} of {len(alone)}", "-",
                     ", ".join(n for n, o in alone.items() if o.score.mitigated) or "none"))  # fmt: skip
    who = ", ".join(args.responders).replace("none", "nobody") + (f", the remediator on {args.model}" if model else "")
    document = None if args.no_record or args.only else root / "docs" / "performance.md"
    report_measures(
        document, "bench-incidents", f"each incident once, responders {who}, on a platform of the bench's own.", rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
