"""Off-policy estimates of a policy's daily usage from the logging policy's logs, against the
simulator's true value of that policy on the same users and days.

Logs: the logging policy (with its propensities) on ``--users`` users for ``--days`` days. Each
user-day is an episode; the value is the expected usage (minutes) per active user-day, the sum of
session usage over the day (γ = 1). Targets: ``last_exit``, ``always_featured`` and, when
``--models`` holds an exported ``cql``, KLAN-IIT's greedy policy. Estimators: per-decision IS,
per-decision DR (q̂ from FQE) and FQE itself (``glan_ray.eval.ope``). Truth: the same users and
days simulated under the target policy with common random numbers (the users' starting state is
identical; later days differ by the policy's own carry-over, which the per-day estimators do not
model, so small gaps are expected). Writes ``bench/results/ope_sim.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from glan_ray.eval.ope import FQEConfig, fqe, fqe_value, per_decision_dr, per_decision_is
from glan_ray.policy.registry import make_arm
from glan_ray.schema import N_PAGES, OBS_FEATURES
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

HERE = os.path.dirname(os.path.abspath(__file__))
LAST_EXIT = [OBS_FEATURES.index(f"last_exit_{p}") for p in ("featured", "explore", "following")]


def logs(cfg: SimConfig, users: int, days: int) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    n_active = 0
    for log in simulate(cfg, 0, users, days, LoggingPolicy(cfg)):
        s = log.sessions
        n_active += int(log.active.sum())
        if not s:
            continue
        ep = log.day * users + s["row"]
        for k, v in (("obs", s["obs"]), ("action", s["action"]), ("prop", s["propensity"]),
                     ("r", s["usage"] / 60.0), ("t", s["session_idx"]), ("ep", ep)):  # fmt: skip
            parts.setdefault(k, []).append(np.asarray(v))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["n_active"] = np.array(n_active)
    return out


def true_value(arm: str, models: str | None, cfg: SimConfig, users: int, days: int) -> float:
    policy = make_arm(arm, models, cfg)
    usage, active = 0.0, 0
    for log in simulate(cfg, 0, users, days, policy):
        usage += log.y_wt.sum() / 60.0
        active += int(log.active.sum())
    return usage / active


def target_probs(arm: str, obs: np.ndarray, models: str | None) -> np.ndarray:
    if arm == "last_exit":
        return np.eye(N_PAGES)[obs[:, LAST_EXIT].argmax(1)]
    if arm == "always_featured":
        return np.eye(N_PAGES)[np.zeros(len(obs), dtype=int)]
    from glan_ray.models.checkpoint import load_checkpoint

    q, _, _ = load_checkpoint(os.path.join(models, "cql"))
    with torch.no_grad():
        return np.eye(N_PAGES)[q(torch.from_numpy(obs)).argmax(1).numpy()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--models", default="runs/demo/models", help="exported models (for cql)")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "ope_sim.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = SimConfig(seed=args.seed)
    d = logs(cfg, args.users, args.days)
    # episodes with no session are worth 0: scale per-episode means to per-active-user-day
    n_ep, n_active = len(np.unique(d["ep"])), int(d["n_active"])
    scale = n_ep / n_active
    last = np.r_[d["ep"][1:] != d["ep"][:-1], True]
    nxt = np.where(last, np.arange(len(last)), np.minimum(np.arange(len(last)) + 1, len(last) - 1))
    arms = ["last_exit", "always_featured"]
    if args.models and os.path.exists(os.path.join(args.models, "cql", "model.pt")):
        arms.append("cql")
    results = {"logs": {"sessions": len(d["r"]), "episodes": n_ep, "active_user_days": n_active},
               "logging_value_min": float(d["r"].sum() / n_active), "targets": {}}  # fmt: skip
    for arm in arms:
        pi = target_probs(arm, d["obs"], args.models)
        q = fqe(d["obs"], d["action"], d["r"], d["obs"][nxt], last, pi[nxt],
                FQEConfig(gamma=1.0, iterations=15, steps_per_iteration=150))  # fmt: skip
        with torch.no_grad():
            q_hat = q(torch.from_numpy(d["obs"])).numpy()
        first = d["t"] == 0
        est = {
            "per_decision_is": per_decision_is(d["r"], d["action"], d["prop"], pi, d["ep"], d["t"])
            * scale,
            "per_decision_dr": per_decision_dr(
                d["r"], d["action"], d["prop"], pi, q_hat, d["ep"], d["t"]
            )
            * scale,
            "fqe": fqe_value(q, d["obs"][first], pi[first]) * scale,
        }
        truth = true_value(arm, args.models, cfg, args.users, args.days)
        results["targets"][arm] = {
            "true_value_min": truth,
            **{k: {"estimate": v, "rel_error": (v - truth) / truth} for k, v in est.items()},
        }
        row = " ".join(f"{k} {v:.2f}" for k, v in est.items())
        print(f"{arm:16s} true {truth:.2f} min/active user-day | {row}", flush=True)
    results["runtime_s"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
