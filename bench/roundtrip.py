"""The round trip (issue 30, item 4): simulate a tiny world, write its days as raw events, ingest
them with the plpm spec and compare every dataset with the simulator's own.

Steps, in one process with one local Ray:

1. ``generate`` (the engine of ``glan-ray simulate``) writes ``--users`` x ``--days`` in RCT mode
   (every user-day randomised, so ``rct`` is compared too) with ``browse_overhead = 0``: the
   simulator adds 4 s per page visited to a session's usage that no page's dwell holds, and raw
   events carry only dwell (``--browse-overhead 4`` shows the difference it makes);
2. ``export_run`` (``glan-ray sim-events``) writes one event per page visit, sessions spaced by
   ``--gap-s`` (a session starting less than that after the user's previous one ended is
   delayed; the simulator's sessions take no time);
3. ``ingest`` with ``plpm.yaml`` whose ``session_gap_s`` is ``--gap-s`` and the export's users;
4. ``compare_runs``: rows, columns and per column the largest difference, clean rows only
   (statistics from day ``--warmup``; user-days with a delayed session left out) and all rows.

Prints the table and writes ``bench/results/roundtrip.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any


def run(args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from glan_ray.apps import plpm_spec
    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.data.roundtrip import Tolerance, compare_runs, format_report
    from glan_ray.data.sim_events import EVENTS, SHIFTS, USERS, export_run
    from glan_ray.ingest import ingest
    from glan_ray.runtime import init_ray
    from glan_ray.sim.config import SimConfig
    from glan_ray.sim.events import EventExport, epoch_day

    init_ray(num_cpus=args.num_cpus)
    cfg = SimConfig(seed=args.seed, block_size=args.users, browse_overhead=args.browse_overhead)
    spec = dataclasses.replace(plpm_spec(), session_gap_s=args.gap_s)
    data, events, ingested = (os.path.join(scratch, d) for d in ("data", "events", "ingested"))
    t = {}
    t0 = time.perf_counter()
    generate(cfg, GenerateOptions(users=args.users, days=args.days, rct=True), data)
    t["simulate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    opts = EventExport(pages=spec.pages, epoch_day=epoch_day(cfg.start_weekday), gap_s=args.gap_s)
    export = export_run(data, events, opts)
    t["export_s"] = time.perf_counter() - t0
    res = ingest(spec, os.path.join(events, EVENTS), ingested, users=os.path.join(events, USERS))
    t["ingest_s"] = res.seconds
    t0 = time.perf_counter()
    report = compare_runs(data, ingested, spec, shifts=pq.read_table(os.path.join(events, SHIFTS)),
                          warmup_days=args.warmup, tol=Tolerance(args.atol, args.rtol))  # fmt: skip
    t["compare_s"] = time.perf_counter() - t0
    table = format_report(report)
    print(table)
    return {"config": {k: getattr(args, k) for k in ("users", "days", "seed", "gap_s",
                                                      "warmup", "browse_overhead", "num_cpus")},
            "spec_fingerprint": spec.fingerprint(), "epoch_day": opts.epoch_day,
            "export": dataclasses.asdict(export), "ingest": res.summary(),
            "timings_s": t, "equal": report.equal, "report": report.to_dict(),
            "table_md": table}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--days", type=int, default=35, help="simulated days (> --warmup)")
    ap.add_argument("--warmup", type=int, default=30,
                    help="statistics are compared from this day on (the simulator's synthetic "
                    "30-day history before day 0 is in no event)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gap-s",
        type=float,
        default=1.0,
        help="session gap of the export and the ingest spec (plpm.yaml says 1800)",
    )
    ap.add_argument(
        "--browse-overhead",
        type=float,
        default=0.0,
        help="SimConfig.browse_overhead (s per page, in usage but in no dwell)",
    )
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--out-dir", default=None, help="parent of the scratch directory")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--results", default="bench/results/roundtrip.json")
    args = ap.parse_args()
    if args.days <= args.warmup:
        ap.error("--days must exceed --warmup: the statistics are compared after it")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    scratch = tempfile.mkdtemp(prefix="glan-roundtrip-", dir=args.out_dir)
    try:
        result = run(args, scratch)
    finally:
        if args.keep:
            print(f"[bench] scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    result["timestamp"] = datetime.now(timezone.utc).isoformat()
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(result, f, indent=1)
    e = result["export"]
    print(
        f"\n{e['sessions']} sessions, {e['visits']} events; {e['shifted']} delayed by the "
        f"export (at most {e['max_shift_s']:.0f} s, {e['shifted_to_next_day']} past midnight); "
        f"{'EQUAL' if result['equal'] else 'NOT equal'} on the clean rows; {args.results}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
