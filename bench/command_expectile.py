"""A command head's expectile τ swept on held-out validation users (never the A/B's).

A command line over ``glan_ray.eval.command_expectile.tune_command_expectile`` (its docstring
has the protocol): one trained DT (``<models>/dt_act`` for ``glan_act``, ``dt_target`` for
``glan_target``) played with the command head of each τ, fitted on ``--data``'s trajectories as
its own was; users from id 70,000,000 with
simulator seed 9, each τ against logging with common random numbers, the critic alone
(``klan_iit`` on ``<models>/cql``) beside.

    python bench/command_expectile.py --models runs/act/tune_0 --data runs/demo/data
"""

from __future__ import annotations

import argparse
import os

from glan_ray import storage
from glan_ray.eval.command_expectile import DT_OF_ARM, TAUS, tune_command_expectile
from glan_ray.eval.critic_lambda import LambdaPlay
from glan_ray.runtime import init_ray
from glan_ray.sim.worlds import parse_world

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    d = LambdaPlay(models="runs/demo/models", arm="glan_act")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=fmt)
    ap.add_argument("--models", default=d.models, help="exported models (dt_act, cql, ...)")
    ap.add_argument("--arm", default=d.arm, choices=list(DT_OF_ARM), help="command arm")
    ap.add_argument("--data", required=True, help="run directory whose trajectories the DT "
                    "trained on (the command heads are fitted there)")  # fmt: skip
    ap.add_argument("--expectiles", default=",".join(f"{x:g}" for x in TAUS),
                    help="comma-separated τ grid, each in (0, 1)")  # fmt: skip
    ap.add_argument("--world", default=d.world, type=parse_world,
                    help="simulated world (a name of sim.worlds.WORLDS or a scaled spec)")
    ap.add_argument("--users", type=int, default=d.users, help="validation users")
    ap.add_argument("--days", type=int, default=d.days, help="days simulated")
    ap.add_argument("--seed", type=int, default=d.seed, help="simulator seed (the A/B uses 0, 1)")
    ap.add_argument("--first-user", type=int, default=d.first_user, help="first validation user")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "command_expectile.json"),
                    help="where the JSON goes")  # fmt: skip
    args = ap.parse_args()
    taus = [float(x) for x in args.expectiles.split(",")]
    play = LambdaPlay(models=args.models, arm=args.arm, world=args.world, users=args.users,
                      days=args.days, seed=args.seed, first_user=args.first_user)  # fmt: skip
    init_ray()
    t = tune_command_expectile(play, args.data, taus)
    for row in t.rows:
        usage = row["usage_time"]
        print(f"τ={row['expectile']:<5g} usage {usage['rel_pct']:+6.2f}% (p={usage['p_value']:.3g})"
              f"  DAU {row['dau']['rel_pct']:+6.2f}%  assign "
              + " ".join(f"{p[:3]} {s:.2f}" for p, s in row["assign"].items()))  # fmt: skip
    print(f"critic alone (klan_iit): usage {t.critic_alone['usage_time']['rel_pct']:+6.2f}%")
    print(f"best τ on validation users: {t.best_expectile:g} (usage vs the critic alone "
          f"{t.best_vs_critic['rel_pct']:+.2f}%, p={t.best_vs_critic['p_value']:.3g})")
    if t.dt_adds_nothing:
        print("the best τ does not beat the critic alone at p < 0.05: the DT adds nothing")
    storage.write_json(args.results, {"config": vars(args), **t.to_dict()}, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
