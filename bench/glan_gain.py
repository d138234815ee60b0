"""GLAN's target gain g (R̂₁ = g · forecast) swept on held-out validation users.

The A/B test's users start at id 50,000,000 (seeds 0, 1); this sweep uses other users and another
seed, so choosing g here does not peek at the test. For each gain and GLAN arm it runs the users
under that arm and under the logging policy with common random numbers (one Ray task per arm and
gain) and prints usage time and DAU relative to logging, and the page-assign shares.

    python bench/glan_gain.py --models runs/demo/models --gains 1,1.5,2,3
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import ray

from glan_ray import storage
from glan_ray.eval.ab import run_shard
from glan_ray.eval.stats import compare
from glan_ray.schema import PAGES

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/demo/models", help="exported models directory")
    ap.add_argument("--gains", default="1,1.5,2,3", help="comma-separated target gains")
    ap.add_argument("--arms", default="glan,glan_no_lrtg,glan_no_hrm", help="GLAN arms to sweep")
    ap.add_argument("--users", type=int, default=1000, help="validation users")
    ap.add_argument("--days", type=int, default=5, help="days simulated")
    ap.add_argument("--seed", type=int, default=5, help="simulator seed (the A/B uses 0, 1)")
    ap.add_argument("--first-user", type=int, default=60_000_000, help="first validation user id")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "glan_gain.json"))
    args = ap.parse_args()
    gains = [float(g) for g in args.gains.split(",")]
    ray.init(include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(run_shard)
    common = ({}, args.seed, args.first_user, args.users, args.days)
    base_ref = task.remote("logging", args.models, *common)
    refs = {
        (arm, g): task.remote(arm, args.models, *common, {"target_gain": g})
        for arm in args.arms.split(",")
        for g in gains
    }
    base = ray.get(base_ref)["units"]
    rows = []
    for (arm, g), ref in refs.items():
        u = ray.get(ref)["units"]
        usage = compare(u["usage"], base["usage"], u["days"], base["days"], paired=True)
        dau = compare(u["active_days"], base["active_days"], u["days"], base["days"], paired=True)
        shares = {p: float(u[f"assign_{p}"].sum() / max(u["sessions"].sum(), 1)) for p in PAGES}
        rows.append({"arm": arm, "target_gain": g, "usage_time": usage.to_dict(),
                     "dau": dau.to_dict(), "assign": shares})  # fmt: skip
        print(
            f"{arm:14s} g={g:<4g} usage {usage.rel_pct:+6.2f}% (p={usage.p_value:.3g})  "
            f"DAU {dau.rel_pct:+6.2f}%  assign "
            + " ".join(f"{p[:3]} {s:.2f}" for p, s in shares.items())
        )
    best = max((r for r in rows if r["arm"] == "glan"), key=lambda r: r["usage_time"]["rel_pct"])
    print(f"best gain for glan on validation users: {best['target_gain']:g}")
    logging_usage = float(np.sum(base["usage"]) / np.sum(base["days"]))
    out = {"config": vars(args), "rows": rows, "best_glan_gain": best["target_gain"],
           "logging_usage_per_day": logging_usage}  # fmt: skip
    storage.write_json(args.results, out, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
