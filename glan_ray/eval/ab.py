"""The simulated online A/B test (SPEC §4): every arm runs the same users, days and random
numbers; Ray runs one task per (arm, seed, user shard); results are compared per user.

Common random numbers make the comparison paired: an arm and control differ only by the policy
(the simulator's randomness is keyed by seed, user block, day and stream). Units are (seed, user)
pairs. The A/A check splits control's users into two disjoint halves and compares them unpaired.

Metrics per arm (``METRICS``): DAU, LT (GLAN eq. 31 at the last day), app usage time, watch
time and video views per user-day, PDR (drop-offs / sessions), effective page entries per page
per user-day (sessions with ≥ ``EFFECTIVE_S`` seconds on the page), page assign ratios, and the
policy's inference latency per decision. Beside the control, arms are compared with the best
constant page of the same run (``best_constant``; direction per metric in ``DIRECTION``):
personalization uplift captured and paired head-to-heads of KLAN and GLAN against it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glan_ray.eval.stats import compare, ratio, uplift_captured
from glan_ray.schema import PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.policy import IntraDayHistory, Observation, Policy

logger = logging.getLogger(__name__)

EFFECTIVE_S = 30.0
"""A page entry is effective when the user spends at least this long on the page."""
METRICS: dict[str, tuple[str, str | None]] = {
    "dau": ("active_days", "days"),
    "lt": ("lt_active", "ever_active"),
    "usage_time": ("usage", "days"),
    "watch_time": ("watch", "days"),
    "video_views": ("views", "days"),
    "pdr": ("dropoffs", "sessions"),
    **{f"effective_entries_{p}": (f"effective_{p}", "days") for p in PAGES},
    **{f"assign_ratio_{p}": (f"assign_{p}", "sessions") for p in PAGES},
}
"""Metric -> (numerator, denominator) of per-unit sums; the metric is ΣY / ΣX over units."""
DIRECTION: dict[str, str] = {
    m: "min" if m == "pdr" else "max" for m in METRICS if not m.startswith("assign_ratio_")
}
"""Metric -> the better direction, ``"max"`` or ``"min"`` (as ``train.tasks.VAL_METRIC``); page
assign ratios describe a policy and have none."""
UPLIFT_METRICS = ("usage_time", "dau")
"""Metrics with uplift captured and personalization uplift captured in ``ab.json``."""


@dataclass(frozen=True)
class ABConfig:
    """One simulated A/B test."""

    arms: tuple[str, ...] = (
        "logging", "last_exit", "most_visited", "always_featured", "always_explore",
        "always_following", "uniform", "oracle",
    )  # fmt: skip
    """Arm names (``glan_ray.policy.registry.ARMS``); ``control`` is added if missing."""
    control: str = "logging"
    """The arm every other is compared with."""
    users: int = 2000
    """Users per arm (the same users in every arm)."""
    days: int = 7
    """Days of the test."""
    seeds: tuple[int, ...] = (0, 1)
    """Simulator seeds; each is a fresh population realisation (units are seed × user)."""
    shard_users: int = 500
    """Users per Ray task (rounded up to whole RNG blocks of the simulator)."""
    models: str | None = None
    """Directory of exported models for the learned arms."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Arm -> builder options (``policy.registry.ARM_OPTIONS``), e.g. ``{"glan": {"target_gain":
    1.5}}``; arms not listed use their models' defaults."""
    sim: dict[str, Any] = field(default_factory=dict)
    """SimConfig overrides (besides the seed)."""
    first_user: int = 50_000_000
    """First user id: far from the training populations' ids, so test users are new users."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(dict.fromkeys((self.control, *self.arms))))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if min(self.users, self.days, self.shard_users, len(self.seeds)) < 1:
            raise ValueError(f"users, days, shard_users and seeds must be >= 1: {self}")
        from glan_ray.policy.registry import ARM_OPTIONS

        stray = sorted(set(self.options) - set(self.arms))
        if stray:
            raise ValueError(f"options: arm(s) {', '.join(stray)} not in arms {self.arms}")
        for arm, opts in self.options.items():
            unknown = sorted(set(opts) - set(ARM_OPTIONS.get(arm, ())))
            if unknown:
                valid = ", ".join(ARM_OPTIONS.get(arm, ())) or "none"
                raise ValueError(f"arm {arm!r}: unknown option(s) {', '.join(unknown)}; "
                                 f"valid: {valid}")  # fmt: skip


class TimedPolicy(Policy):
    """Wraps a policy and accumulates its decision time (``probs``) and decision count."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name, self.privileged = inner, inner.name, inner.privileged
        self.seconds, self.decisions, self.calls = 0.0, 0, 0

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.inner.begin_day(day, features)

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        t0 = time.perf_counter()
        p = self.inner.probs(obs, history)
        self.seconds += time.perf_counter() - t0
        self.decisions += len(obs.rows)
        self.calls += 1
        return p


def run_shard(
    arm: str,
    models: str | None,
    sim: dict[str, Any],
    seed: int,
    first: int,
    n: int,
    days: int,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate one shard under one arm (``options``: the arm's builder options); per-user sums
    and per-day totals."""
    from glan_ray.policy.registry import make_arm

    cfg = SimConfig.from_dict({**sim, "seed": seed})
    policy = TimedPolicy(make_arm(arm, models, cfg, options))
    u: dict[str, np.ndarray] = {
        k: np.zeros(n)
        for k in ("active_days", "usage", "watch", "views", "dropoffs", "sessions", "lt_active")
    }
    for p in PAGES:
        u[f"effective_{p}"], u[f"assign_{p}"] = np.zeros(n), np.zeros(n)
    daily = {"dau": np.zeros(days), "usage": np.zeros(days)}
    for i, log in enumerate(simulate(cfg, first, n, days, policy)):
        s = log.sessions
        row = s["row"] if s else np.zeros(0, dtype=np.int64)
        u["active_days"] += log.active
        if i >= days - 7:
            u["lt_active"] += log.active
        u["usage"] += log.y_wt
        if s:
            u["watch"] += np.bincount(row, weights=s["watch"], minlength=n)
            u["views"] += np.bincount(row, weights=s["views"].sum(1), minlength=n)
            u["dropoffs"] += np.bincount(row, weights=s["y_sw"], minlength=n)
            u["sessions"] += np.bincount(row, minlength=n)
            for j, p in enumerate(PAGES):
                eff = s["dur"][:, j] >= EFFECTIVE_S
                u[f"effective_{p}"] += np.bincount(row, weights=eff, minlength=n)
                u[f"assign_{p}"] += np.bincount(row, weights=s["action"] == j, minlength=n)
        daily["dau"][i] = log.active.sum()
        daily["usage"][i] = log.y_wt.sum()
    u["ever_active"] = (u["active_days"] > 0).astype(float)
    u["days"] = np.full(n, float(days))
    return {
        "arm": arm,
        "seed": seed,
        "first": first,
        "units": u,
        "daily": daily,
        "latency_s": policy.seconds,
        "decisions": policy.decisions,
    }


@dataclass
class ABResult:
    config: ABConfig
    units: dict[str, dict[str, np.ndarray]]
    """arm -> unit sums, units ordered (seed, user) identically in every arm."""
    daily: dict[str, dict[str, np.ndarray]]
    """arm -> per-day totals over all seeds (dau, usage)."""
    latency_ms: dict[str, float]
    """arm -> mean policy time per decision (ms)."""

    def value(self, arm: str, metric: str) -> float:
        y, x = METRICS[metric]
        return ratio(self.units[arm][y], self.units[arm][x])

    def comparisons(self) -> dict[str, dict[str, dict[str, float]]]:
        """arm -> metric -> Comparison (paired, against control)."""
        c = self.config.control
        out: dict[str, dict[str, dict[str, float]]] = {}
        for arm in self.config.arms:
            out[arm] = {}
            for m, (y, x) in METRICS.items():
                a, b = self.units[arm], self.units[c]
                out[arm][m] = compare(a[y], b[y], a[x], b[x], paired=True).to_dict()
        return out

    def aa(self) -> dict[str, dict[str, float]]:
        """Control's units split in two halves (alternating users), compared unpaired."""
        ctl = self.units[self.config.control]
        half = np.arange(len(ctl["days"])) % 2 == 0
        return {
            m: compare(ctl[y][half], ctl[y][~half], ctl[x][half], ctl[x][~half], paired=False)
            .to_dict()
            for m, (y, x) in METRICS.items()
        }  # fmt: skip

    def best(self, candidates: tuple[str, ...], metric: str = "usage_time") -> str | None:
        """The arm of ``candidates`` present in this run with the best ``metric``
        (``DIRECTION``); None when none is present."""
        present = [a for a in candidates if a in self.config.arms]
        if not present:
            return None
        pick = min if DIRECTION[metric] == "min" else max
        return pick(present, key=lambda a: self.value(a, metric))

    def best_constant(self) -> dict[str, dict[str, Any]]:
        """Metric -> ``{"arm", "value"}``: the best constant-page arm of this run on each metric
        with a direction (highest, or lowest for PDR); empty without constant arms."""
        from glan_ray.policy.registry import CONSTANT_ARMS

        out: dict[str, dict[str, Any]] = {}
        for m in DIRECTION:
            arm = self.best(CONSTANT_ARMS, m)
            if arm is not None:
                out[m] = {"arm": arm, "value": self.value(arm, m)}
        return out

    def direct_pairs(self) -> list[tuple[str, str]]:
        """The head-to-head questions of SPEC §4 among the arms present: GLAN vs KLAN, KLAN and
        GLAN vs the best constant page and vs the best heuristic (both by usage time), and GLAN
        vs its ablations."""
        from glan_ray.policy.registry import CONSTANT_ARMS, HEURISTICS

        arms = set(self.config.arms)
        const, heur = self.best(CONSTANT_ARMS), self.best(HEURISTICS)
        pairs = [("glan", "klan"), ("klan", const), ("glan", const), ("glan", heur),
                 ("klan", heur), ("glan", "glan_no_lrtg"), ("glan", "glan_no_hrm"),
                 ("glan_no_hrm", "glan_no_lrtg")]  # fmt: skip
        return list(dict.fromkeys((a, b) for a, b in pairs if a in arms and b in arms))

    def direct(self, metrics: tuple[str, ...] = ("usage_time", "dau")) -> list[dict[str, Any]]:
        """Paired comparisons of ``direct_pairs`` (arm a against arm b) on ``metrics``."""
        out = []
        for a, b in self.direct_pairs():
            ua, ub = self.units[a], self.units[b]
            row: dict[str, Any] = {"arm": a, "vs": b}
            for m in metrics:
                y, x = METRICS[m]
                row[m] = compare(ua[y], ub[y], ua[x], ub[x], paired=True).to_dict()
            out.append(row)
        return out

    def uplift_captured(self, metric: str = "usage_time") -> dict[str, float]:
        """Arm -> (arm − logging) / (oracle − logging) on ``metric``; empty without both."""
        arms = self.config.arms
        if "logging" not in arms or "oracle" not in arms:
            return {}
        lo, hi = self.value("logging", metric), self.value("oracle", metric)
        return {a: uplift_captured(self.value(a, metric), lo, hi) for a in arms}

    def personalization_uplift_captured(self, metric: str = "usage_time") -> dict[str, float]:
        """Arm -> (arm − best constant) / (oracle − best constant) on ``metric``: the share of
        the oracle's gain over the best constant page an arm recovers; empty without the oracle
        or a constant arm."""
        const = self.best_constant().get(metric)
        if const is None or "oracle" not in self.config.arms:
            return {}
        lo, hi = const["value"], self.value("oracle", metric)
        return {a: uplift_captured(self.value(a, metric), lo, hi) for a in self.config.arms}

    def summary(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "metrics": {a: {m: self.value(a, m) for m in METRICS} for a in self.config.arms},
            "vs_control": self.comparisons(),
            "direct": self.direct(),
            "aa": self.aa(),
            "best_constant": self.best_constant(),
            **{f"uplift_captured_{m}": self.uplift_captured(m) for m in UPLIFT_METRICS},
            **{
                f"personalization_uplift_captured_{m}": self.personalization_uplift_captured(m)
                for m in UPLIFT_METRICS
            },
            "latency_ms": self.latency_ms,
            "daily": {a: {k: v.tolist() for k, v in d.items()} for a, d in self.daily.items()},
        }

    def save(self, out: str) -> str:
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "ab.json")
        with open(path, "w") as f:
            json.dump(self.summary(), f, indent=1, default=float)
        np.savez_compressed(
            os.path.join(out, "ab_units.npz"),
            **{f"{a}/{k}": v for a, d in self.units.items() for k, v in d.items()},
        )
        return path


def run_ab(cfg: ABConfig, progress: Callable[[int, int], None] | None = None) -> ABResult:
    """Run every (arm, seed, shard) as a Ray task (1 CPU each) and gather per-user results."""
    import ray

    from glan_ray.policy.registry import make_arm

    for arm in cfg.arms:  # fail fast on unknown arms or missing models, before any task runs
        sim = SimConfig.from_dict({**cfg.sim, "seed": cfg.seeds[0]})
        make_arm(arm, cfg.models, sim, cfg.options.get(arm))
    task = ray.remote(num_cpus=1)(run_shard)
    # shards start on the simulator's RNG block boundaries (whole blocks per task)
    block = SimConfig.from_dict({**cfg.sim, "seed": cfg.seeds[0]}).block_size
    if cfg.first_user % block:
        raise ValueError(f"first_user must be a multiple of the block size {block}")
    step = -(-cfg.shard_users // block) * block
    shards = [(cfg.first_user + s, min(step, cfg.users - s)) for s in range(0, cfg.users, step)]
    refs = [
        task.remote(arm, cfg.models, cfg.sim, seed, first, n, cfg.days, cfg.options.get(arm))
        for arm in cfg.arms
        for seed in cfg.seeds
        for first, n in shards
    ]
    results, pending = [], list(refs)
    while pending:
        done, pending = ray.wait(pending)
        results += ray.get(done)
        if progress:
            progress(len(results), len(refs))
    order = {(seed, first): i for i, (seed, (first, _)) in enumerate(
        (s, sh) for s in cfg.seeds for sh in shards)}  # fmt: skip
    units: dict[str, dict[str, np.ndarray]] = {}
    daily: dict[str, dict[str, np.ndarray]] = {}
    latency: dict[str, float] = {}
    for arm in cfg.arms:
        mine = sorted(
            (r for r in results if r["arm"] == arm), key=lambda r: order[(r["seed"], r["first"])]
        )
        units[arm] = {k: np.concatenate([r["units"][k] for r in mine]) for k in mine[0]["units"]}
        daily[arm] = {k: sum(r["daily"][k] for r in mine) for k in mine[0]["daily"]}
        decisions = sum(r["decisions"] for r in mine)
        latency[arm] = 1e3 * sum(r["latency_s"] for r in mine) / max(decisions, 1)
    return ABResult(cfg, units, daily, latency)


__all__ = [
    "DIRECTION",
    "METRICS",
    "UPLIFT_METRICS",
    "ABConfig",
    "ABResult",
    "run_ab",
    "run_shard",
]
