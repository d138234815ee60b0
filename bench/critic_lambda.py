"""Critic-guided GLAN's λ swept on held-out validation users (never the A/B's).

The ``glan_cg`` arm picks argmax_a [log π_DT(a | h) + λ·Â(s, a)/T] (``policy.glan_step``). The
A/B's users start at id 50,000,000 with simulator seeds 0, 1; this sweep uses other users (id
70,000,000 on) and another seed (9), so choosing λ here does not peek at the test. For each λ it
runs the users under the arm and under the logging policy with common random numbers (one Ray
task per λ) and reports usage time and DAU relative to logging, the page shares and, on the
decisions of the first ``--agree-users`` users under that λ, how often the choice is the critic's
own argmax and the DT's argmax (``eval.critic_agreement``). The critic alone (``klan_iit``,
greedy on the same Q) is played beside as the λ → ∞ reference. The best λ is the one of highest
usage (ties: the larger λ). Unless it beats the largest λ of the grid (the critic alone) at
p < 0.05, paired, the DT adds nothing to the critic on these users; the script says so.

    python bench/critic_lambda.py --models runs/demo/models --lambdas 0,0.3,1,3,10,1e6
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import ray

from glan_ray import storage
from glan_ray.eval.ab import run_shard
from glan_ray.eval.critic_agreement import collect_decisions, critic_agreement
from glan_ray.eval.stats import compare
from glan_ray.schema import PAGES
from glan_ray.sim.worlds import world_overrides

HERE = os.path.dirname(os.path.abspath(__file__))


def play(arm: str, lam: float | None, args: argparse.Namespace, sim: dict[str, Any]) -> dict:
    """One arm at one λ (None: not a critic-guided arm): its units and, for a critic-guided
    arm, the agreement of its choices on the first ``agree_users`` users."""
    opts = {"critic_lambda": lam} if lam is not None else {}
    common = (sim, args.seed, args.first_user)
    out = {"units": run_shard(arm, args.models, *common, args.users, args.days, opts)["units"]}
    if lam is not None:
        d = collect_decisions(arm, args.models, *common, args.agree_users, args.days, opts)
        out["agreement"] = critic_agreement(d.logits, d.q, [lam], d.temperature)[0].to_dict()
    return out


def versus(u: dict, base: dict) -> dict[str, Any]:
    """Usage and DAU of units ``u`` vs ``base`` (paired: the same users and random numbers)."""
    usage = compare(u["usage"], base["usage"], u["days"], base["days"], paired=True)
    dau = compare(u["active_days"], base["active_days"], u["days"], base["days"], paired=True)
    shares = {p: float(u[f"assign_{p}"].sum() / max(u["sessions"].sum(), 1)) for p in PAGES}
    return {"usage_time": usage.to_dict(), "dau": dau.to_dict(), "assign": shares}


def main() -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=fmt)
    ap.add_argument("--models", default="runs/demo/models", help="exported models (dt, cql, ...)")
    ap.add_argument("--lambdas", default="0,0.3,1,3,10,1e6", help="comma-separated λ grid")
    ap.add_argument("--arm", default="glan_cg", help="critic-guided arm (glan_cg, glan_cg_no_*)")
    ap.add_argument("--world", default="default", help="simulated world (sim.worlds.WORLDS)")
    ap.add_argument("--users", type=int, default=1000, help="validation users")
    ap.add_argument("--agree-users", type=int, default=200, help="the first this many users "
                    "are played again under each λ to measure the agreement")  # fmt: skip
    ap.add_argument("--days", type=int, default=5, help="days simulated")
    ap.add_argument("--seed", type=int, default=9, help="simulator seed (the A/B uses 0, 1)")
    ap.add_argument("--first-user", type=int, default=70_000_000, help="first validation user")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "critic_lambda.json"),
                    help="where the JSON goes")  # fmt: skip
    args = ap.parse_args()
    lams = [float(x) for x in args.lambdas.split(",")]
    sim = world_overrides(args.world)
    ray.init(include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(play)
    refs = {lam: task.remote(args.arm, lam, args, sim) for lam in lams}
    base_ref = task.remote("logging", None, args, sim)
    critic_ref = task.remote("klan_iit", None, args, sim)
    base = ray.get(base_ref)["units"]
    got = {lam: ray.get(ref) for lam, ref in refs.items()}
    rows = []
    for lam, r in got.items():
        row = {"critic_lambda": lam, **versus(r["units"], base), "agreement": r["agreement"]}
        rows.append(row)
        a, usage = r["agreement"], row["usage_time"]
        print(f"λ={lam:<8g} usage {usage['rel_pct']:+6.2f}% (p={usage['p_value']:.3g})  DAU "
              f"{row['dau']['rel_pct']:+6.2f}%  = critic's argmax {a['with_critic']:.2f}  = DT's "
              f"{a['with_dt']:.2f}  assign "
              + " ".join(f"{p[:3]} {s:.2f}" for p, s in row["assign"].items()))  # fmt: skip
    critic = versus(ray.get(critic_ref)["units"], base)
    print(f"critic alone (klan_iit): usage {critic['usage_time']['rel_pct']:+6.2f}%")
    best = max(rows, key=lambda r: (r["usage_time"]["rel_pct"], r["critic_lambda"]))
    top = max(lams)
    # does the DT add anything? the best λ against the critic-only end of the grid, paired
    best_vs_top = versus(got[best["critic_lambda"]]["units"], got[top]["units"])["usage_time"]
    best_vs_zero = versus(got[best["critic_lambda"]]["units"], got[min(lams)]["units"])
    print(f"best λ on validation users: {best['critic_lambda']:g} (usage vs λ={top:g} "
          f"{best_vs_top['rel_pct']:+.2f}%, p={best_vs_top['p_value']:.3g}; vs λ={min(lams):g} "
          f"{best_vs_zero['usage_time']['rel_pct']:+.2f}%)")  # fmt: skip
    dt_adds_nothing = not (best_vs_top["rel_pct"] > 0 and best_vs_top["p_value"] < 0.05)
    if dt_adds_nothing:
        print(f"the best λ does not beat λ={top:g} (the critic alone) at p < 0.05: the DT adds "
              "nothing to the critic on these users")  # fmt: skip
    out = {"config": vars(args), "rows": rows, "critic_alone": critic,
           "best_critic_lambda": best["critic_lambda"], "best_vs_largest": best_vs_top,
           "best_vs_smallest": best_vs_zero["usage_time"],
           "dt_adds_nothing": dt_adds_nothing}  # fmt: skip
    storage.write_json(args.results, out, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
