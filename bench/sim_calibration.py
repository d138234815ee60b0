"""The simulated world against its calibration targets (SPEC §1, issue 13), seed by seed.

Plays every calibration policy (logging, each constant page, uniform, greedy, oracle) on the same
users and days with common random numbers, prints every target with the required and measured
value per seed, the usage and PDR of every policy and the distribution of each user's best constant
page, and writes it all to ``bench/results/sim_calibration.json``.
Run: ``python bench/sim_calibration.py [--seeds 101,202,303] [--users 4000] [--days 14]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from datetime import datetime, timezone

from glan_ray import storage
from glan_ray.sim.calibration import TARGETS, measure
from glan_ray.sim.config import SimConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="101,202,303", help="simulator seeds, comma-separated")
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--results", default="bench/results/sim_calibration.json")
    args = ap.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    runs, t0 = [], time.perf_counter()
    for seed in seeds:
        t = time.perf_counter()
        c = measure(SimConfig(seed=seed), users=args.users, days=args.days)
        runs.append(c)
        print(f"[bench] seed {seed}: {args.users:,} users x {args.days} days in "
              f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip

    name_w = max(len(t.name) for t in TARGETS)
    head = f"{'target':<{name_w}}  {'required':>9}  " + "  ".join(f"{'seed ' + str(s):>10}"
                                                              for s in seeds)  # fmt: skip
    print("\n" + head + "\n" + "-" * len(head))
    for t in TARGETS:
        cells = "  ".join(f"{c.values[t.name]:>9.3f}{' ' if t.met(c.values[t.name]) else '!'}"
                          for c in runs)  # fmt: skip
        print(f"{t.name:<{name_w}}  {t.required:>9}  {cells}")
    print("\nusage vs logging (%) / PDR per policy:")
    for p in runs[0].usage_vs_logging_pct:
        cells = "  ".join(f"{c.usage_vs_logging_pct[p]:+7.2f}% / {c.pdr[p]:.3f}" for c in runs)
        print(f"  {p:<10} {cells}")
    print("\neach user's best constant page (first half):")
    for c in runs:
        dist = ", ".join(f"{k} {v:.1%}" for k, v in c.best_page_share.items())
        print(f"  seed {c.seed}: {dist}; population best: {c.population_best_page}")
    ok = all(c.all_met for c in runs)
    print(f"\nall targets met on every seed: {ok} ({time.perf_counter() - t0:.0f} s)")

    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "users": args.users,
        "days": args.days,
        "sim_config": dataclasses.asdict(SimConfig()),
        "targets": [{"name": t.name, "description": t.description, "required": t.required}
                    for t in TARGETS],
        "all_met": ok,
        "seeds": [{**dataclasses.asdict(c),
                   "checks": {t.name: {"measured": v, "met": m} for t, v, m in c.checks()}}
                  for c in runs],
    }
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    storage.write_json(args.results, report, indent=1)
    print(f"results in {args.results}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
