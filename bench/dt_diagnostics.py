"""What a learned arm's pages are, against the oracle and each user's best constant page.

Held-out users (the A/B's first id, 50,000,000) are burned in under the logging policy, then
live ``--days`` days under each ``--arms`` arm with common random numbers. At every decision the
oracle's long-term action values of the simulator's hidden state (``sim.dynamics.action_values``)
score the three pages; the bench records the arm's page, the oracle's, and the arm's regret (the
oracle's value minus the value of the page taken, in expected usage seconds). Each user's best
constant page is the ``always_*`` arm with the most usage for that user over the same days.
Reported per arm, overall, by activity segment and by hour of the day:

- agreement with the oracle, and with the user's best constant page;
- page shares and mean regret (and, for reference, the regret of the user's best constant page
  on the states the arm visited);
- within-day variation: the share of user-days on which the arm / the oracle picks > 1 page.

No A/B is run and nothing is tuned on it. Writes ``bench/results/dt_diagnostics.json``.

    python bench/dt_diagnostics.py --models runs/demo/models --arms glan dt klan
    python bench/dt_diagnostics.py --models runs/demo/models_gen1 --arms glan klan --tag gen1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from glan_ray.policy.registry import make_arm
from glan_ray.schema import N_PAGES, PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.dynamics import action_values
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy

HERE = os.path.dirname(os.path.abspath(__file__))
HOURS = ((0, 6), (6, 12), (12, 18), (18, 24))


class Recorder(Policy):
    """Plays ``inner`` and records, per decision, its page, the oracle's and their values."""

    privileged = True

    def __init__(self, inner: Policy, cfg: SimConfig, activity: np.ndarray) -> None:
        self.inner, self.cfg, self.activity, self.name = inner, cfg, activity, inner.name
        self.rows: list[dict[str, np.ndarray]] = []
        self.day = 0

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.day = day
        self.inner.begin_day(day, features)

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        latent, obs.latent = obs.latent, None  # the arm never sees the hidden state
        p = np.asarray(self.inner.probs(obs, history), dtype=np.float64)
        _, value = action_values(self.cfg, latent)  # (B, 3) long-term expected usage (s)
        self.rows.append({
            "row": obs.rows, "day": np.full(len(obs.rows), self.day), "hour": obs.hour,
            "page": p.argmax(1), "oracle": value.argmax(1), "value": value,
            "activity": self.activity[obs.rows],
        })  # fmt: skip
        return p

    def table(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate([r[k] for r in self.rows]) for k in self.rows[0]}


def play(arm: str, models: str | None, cfg: SimConfig, first: int, n: int, days: int,
         start_day: int, state) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """One arm from the burned-in state: its decisions and each user's usage (N,)."""
    from glan_ray.sim.users import make_users

    users = make_users(cfg, first, n)
    rec = Recorder(make_arm(arm, models, cfg), cfg, np.asarray(users.activity))
    usage = np.zeros(n)
    for log in simulate(cfg, first, n, days, rec, first_day=start_day, start=state):
        usage += log.y_wt
    return rec.table(), usage


def summarise(t: dict[str, np.ndarray], best_const: np.ndarray) -> dict[str, object]:
    """Agreement, shares, regret and within-day variation of one arm's decisions ``t``."""
    idx = np.arange(len(t["page"]))
    best = t["value"].max(1)
    regret = best - t["value"][idx, t["page"]]
    const = best_const[t["row"]]
    const_regret = best - t["value"][idx, const]

    def stats(m: np.ndarray) -> dict[str, float]:
        return {
            "decisions": int(m.sum()),
            "agree_oracle": float((t["page"][m] == t["oracle"][m]).mean()),
            "agree_best_constant": float((t["page"][m] == const[m]).mean()),
            "oracle_agrees_best_constant": float((t["oracle"][m] == const[m]).mean()),
            "regret_s": float(regret[m].mean()),
            "best_constant_regret_s": float(const_regret[m].mean()),
            **{f"share_{p}": float((t["page"][m] == k).mean()) for k, p in enumerate(PAGES)},
            **{f"oracle_share_{p}": float((t["oracle"][m] == k).mean())
               for k, p in enumerate(PAGES)},
        }  # fmt: skip

    key = t["row"] * 10_000 + t["day"]
    _, inv = np.unique(key, return_inverse=True)

    def varies(pages: np.ndarray) -> float:
        seen = np.zeros((inv.max() + 1, N_PAGES), dtype=bool)
        seen[inv, pages] = True
        multi = np.bincount(inv) > 1
        return float((seen.sum(1)[multi] > 1).mean())

    return {
        "all": stats(np.ones(len(idx), dtype=bool)),
        "by_activity": {int(a): stats(t["activity"] == a) for a in np.unique(t["activity"])},
        "by_hour": {
            f"{lo:02d}-{hi:02d}": stats((t["hour"] >= lo) & (t["hour"] < hi)) for lo, hi in HOURS
        },
        "user_days_with_more_than_one_page": varies(t["page"]),
        "oracle_user_days_with_more_than_one_page": varies(t["oracle"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="exported models directory")
    ap.add_argument("--arms", nargs="+", default=["glan", "dt", "klan"], help="arms to diagnose")
    ap.add_argument("--users", type=int, default=1000, help="held-out users")
    ap.add_argument("--days", type=int, default=7, help="days played by each arm")
    ap.add_argument("--burn-in-days", type=int, default=30, help="days under logging first")
    ap.add_argument("--seed", type=int, default=0, help="simulator seed of the held-out users")
    ap.add_argument("--tag", default="gen0", help="key of this run in the results file")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dt_diagnostics.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    cfg, first = SimConfig(seed=args.seed), 50_000_000
    state = None
    for log in simulate(cfg, first, args.users, args.burn_in_days, make_arm("logging", None, cfg)):
        state = log.next_state
    usage = {}
    for p in PAGES:
        _, usage[p] = play(f"always_{p}", None, cfg, first, args.users, args.days,
                           args.burn_in_days, state)  # fmt: skip
    best_const = np.stack([usage[p] for p in PAGES], 1).argmax(1)  # (N,)
    out: dict[str, object] = {
        "models": args.models, "users": args.users, "days": args.days,
        "burn_in_days": args.burn_in_days, "seed": args.seed,
        "best_constant_share": {p: float((best_const == k).mean()) for k, p in enumerate(PAGES)},
        "arms": {},
    }  # fmt: skip
    for arm in args.arms:
        t, _ = play(arm, args.models, cfg, first, args.users, args.days, args.burn_in_days, state)
        s = summarise(t, best_const)
        out["arms"][arm] = s
        a = s["all"]
        print(f"{arm:>14}: agree oracle {a['agree_oracle']:.3f}, agree best constant "
              f"{a['agree_best_constant']:.3f}, regret {a['regret_s']:.1f} s (best constant "
              f"{a['best_constant_regret_s']:.1f} s), shares "
              + "/".join(f"{a[f'share_{p}']:.2f}" for p in PAGES)
              + f"; >1 page per day {s['user_days_with_more_than_one_page']:.2f} (oracle "
              f"{s['oracle_user_days_with_more_than_one_page']:.2f})")  # fmt: skip
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    results[args.tag] = out
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"best constant page per user: {out['best_constant_share']}; wrote {args.out}")


if __name__ == "__main__":
    main()
