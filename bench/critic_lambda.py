"""Critic-guided GLAN's λ swept on held-out validation users (never the A/B's).

A command line over ``glan_ray.eval.critic_lambda.tune_critic_lambda`` (its docstring has the
protocol): users from id 70,000,000 with simulator seed 9, each λ against logging with common
random numbers, the critic alone (``klan_iit``) beside, the agreement with each expert per λ.

    python bench/critic_lambda.py --models runs/demo/models --lambdas 0,0.3,1,3,10,1e6
"""

from __future__ import annotations

import argparse
import os

from glan_ray import storage
from glan_ray.eval.critic_lambda import LAMBDAS, LambdaPlay, tune_critic_lambda
from glan_ray.runtime import init_ray
from glan_ray.sim.worlds import parse_world

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    d = LambdaPlay(models="runs/demo/models")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=fmt)
    ap.add_argument("--models", default=d.models, help="exported models (dt, cql, ...)")
    ap.add_argument("--lambdas", default=",".join(f"{x:g}" for x in LAMBDAS),
                    help="comma-separated λ grid")  # fmt: skip
    ap.add_argument("--arm", default=d.arm, help="critic-guided arm (glan_cg, glan_cg_no_*)")
    ap.add_argument("--world", default=d.world, type=parse_world,
                    help="simulated world (a name of sim.worlds.WORLDS or a scaled spec)")
    ap.add_argument("--users", type=int, default=d.users, help="validation users")
    ap.add_argument("--agree-users", type=int, default=d.agree_users, help="the first this many "
                    "users are played again under each λ to measure the agreement")  # fmt: skip
    ap.add_argument("--days", type=int, default=d.days, help="days simulated")
    ap.add_argument("--seed", type=int, default=d.seed, help="simulator seed (the A/B uses 0, 1)")
    ap.add_argument("--first-user", type=int, default=d.first_user, help="first validation user")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "critic_lambda.json"),
                    help="where the JSON goes")  # fmt: skip
    args = ap.parse_args()
    lams = [float(x) for x in args.lambdas.split(",")]
    play = LambdaPlay(models=args.models, arm=args.arm, world=args.world, users=args.users,
                      agree_users=args.agree_users, days=args.days, seed=args.seed,
                      first_user=args.first_user)  # fmt: skip
    init_ray()
    t = tune_critic_lambda(play, lams)
    for row in t.rows:
        a, usage = row["agreement"], row["usage_time"]
        print(f"λ={row['critic_lambda']:<8g} usage {usage['rel_pct']:+6.2f}% "
              f"(p={usage['p_value']:.3g})  DAU {row['dau']['rel_pct']:+6.2f}%  = critic's argmax "
              f"{a['with_critic']:.2f}  = DT's {a['with_dt']:.2f}  assign "
              + " ".join(f"{p[:3]} {s:.2f}" for p, s in row["assign"].items()))  # fmt: skip
    print(f"critic alone (klan_iit): usage {t.critic_alone['usage_time']['rel_pct']:+6.2f}%")
    top, bottom = max(lams), min(lams)
    print(f"best λ on validation users: {t.best_critic_lambda:g} (usage vs λ={top:g} "
          f"{t.best_vs_largest['rel_pct']:+.2f}%, p={t.best_vs_largest['p_value']:.3g}; vs "
          f"λ={bottom:g} {t.best_vs_smallest['rel_pct']:+.2f}%)")  # fmt: skip
    if t.dt_adds_nothing:
        print(f"the best λ does not beat λ={top:g} (the critic alone) at p < 0.05: the DT adds "
              "nothing to the critic on these users")  # fmt: skip
    storage.write_json(args.results, {"config": vars(args), **t.to_dict()}, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
