"""The simulated online A/B test in the papers' protocol (SPEC §4): existing users, an A/A phase,
then the A/B; every arm runs the same users, days and random numbers.

Phases, on one timeline of simulator days:

1. **burn-in** (``burn_in_days``, default 30): the users live under ``burn_in_arm`` (default: the
   control, the system the papers' users had lived with) so that every 7/30-day feature and
   sequence the policies read is real history, not the simulator's synthetic start;
2. **A/A** (``aa_days``): every bucket runs the control;
3. **A/B** (``ab_days``): each bucket runs its arm.

Buckets: ``shared`` (default) gives every arm the same users; with common random numbers an arm
and the control differ only by the policy, so comparisons are paired per user and the burn-in and
A/A are simulated once per (seed, shard) and shared by every arm (the A/A comparison of bucket vs
control is then an exact tie by construction; ``aa_split`` is the statistical A/A: the control's
users in two disjoint halves, unpaired). ``disjoint`` gives each arm its own users (the papers'
buckets): every bucket has its own burn-in and A/A, comparisons are unpaired (Welch) and the A/A
phase is a real test of bucket balance, at the cost of power and compute; the A/B comparisons are
then adjusted by CUPED on each user's A/A-phase metric (``cuped``), which removes the imbalance
the A/A phase measured.

Metrics (``METRICS``) are ratios of per-user sums over the **headline window**, the last
``headline_days`` (7) A/B days, as the papers' tables: DAU, LT (GLAN eq. 31), app usage time,
watch time and video views per user-day, PDR (drop-offs / sessions), effective page entries per
user-day overall and per page (sessions with ≥ ``EFFECTIVE_S`` s on the page), page assign ratios,
and the policy's inference latency per decision. LT is computed every experiment day T with
T0 = the first A/A day: Σ_{i=max(T−6,T0)}^{T} DAU_i / (users active at least once in [T0, T]); the
headline LT pools the window's days (per user: Σ_T active days in [T−6, T], over Σ_T ever active).
Growth curves (``growth``) are each arm's daily DAU and LT relative to the control's over the
whole run (A/A then A/B). Beside the control, every arm is compared with every reference arm of
``references`` (the papers' tables compare GLAN with KLAN and KLAN with the heuristic, from the
same units) and with the best constant page of the same run (``best_constant``; direction per
metric in ``DIRECTION``): personalization uplift captured and paired head-to-heads.
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

from glan_ray.eval.lifetime import LT_WINDOW, lt_daily, lt_units
from glan_ray.eval.refresh import Refresh
from glan_ray.eval.stats import compare, ratio, uplift_captured
from glan_ray.schema import PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import DayLog, simulate
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy
from glan_ray.sim.state import UserState

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
    "effective_entries": ("effective_all", "days"),
    **{f"effective_entries_{p}": (f"effective_{p}", "days") for p in PAGES},
    **{f"assign_ratio_{p}": (f"assign_{p}", "sessions") for p in PAGES},
}
"""Metric -> (numerator, denominator) of per-unit sums; the metric is ΣY / ΣX over units."""
DIRECTION: dict[str, str] = {
    m: "min" if m == "pdr" else "max" for m in METRICS if not m.startswith("assign_ratio_")
}
"""Metric -> the better direction, ``"max"`` or ``"min"`` (as ``train.objectives.VAL_METRIC``); page
assign ratios describe a policy and have none."""
UPLIFT_METRICS = ("usage_time", "dau")
"""Metrics with uplift captured and personalization uplift captured in ``ab.json``."""
REFERENCES = ("logging", "klan", "glan")
"""Arms every other arm is also compared with when present (``ABResult.vs``): the heuristic
(KLAN's tables), KLAN (GLAN's tables) and GLAN (the significance of GLAN Table 2's variants)."""
BUCKETS = ("shared", "disjoint")
DAILY = ("dau", "usage", "sessions", "dropoffs")
"""Per-day totals of each arm (summed over users and seeds); ``lt`` is added per day."""


@dataclass(frozen=True)
class ABConfig:
    """One simulated A/B test (phases and buckets: the module docstring)."""

    arms: tuple[str, ...] = (
        "logging", "last_exit", "most_visited", "always_featured", "always_explore",
        "always_following", "uniform", "oracle",
    )  # fmt: skip
    """Arm names (``glan_ray.policy.registry.ARMS`` or ``external``); ``control`` is added if
    missing."""
    control: str = "logging"
    """The arm every other is compared with; it runs every bucket during the A/A phase."""
    users: int = 2000
    """Users per arm (the same users in every arm with ``buckets="shared"``)."""
    ab_days: int = 7
    """Days of the A/B phase (each arm's policy)."""
    aa_days: int = 7
    """Days of the A/A phase before it (every bucket runs the control); 0: none."""
    burn_in_days: int = 30
    """Days the users live under ``burn_in_arm`` before the A/A phase (not measured); 0: new
    users with the simulator's synthetic 30-day history."""
    burn_in_arm: str | None = None
    """The policy of the burn-in; None: the control."""
    buckets: str = "shared"
    """``shared``: every arm the same users (paired, CRN); ``disjoint``: each arm its own users
    (unpaired, the papers' buckets)."""
    headline_days: int = 7
    """The headline metrics are sums over the last this many A/B days (all, if fewer)."""
    cuped: bool = True
    """With disjoint buckets and an A/A phase, adjust every A/B comparison by CUPED on the same
    users' A/A-phase metric (``stats.compare(pre=...)``): it removes the buckets' pre-existing
    imbalance that the A/A phase measures. Paired comparisons need no adjustment."""
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
    """SimConfig overrides (besides the seed), on top of the ``world``'s."""
    world: str = "default"
    """The simulated world (``sim.worlds.WORLDS``: default or premise); ``sim`` holds its
    overrides merged with the ones given once the config is built."""
    first_user: int = 50_000_000
    """First user id: far from the training populations' ids, so test users are not the users
    the models were trained on."""
    external: dict[str, str] = field(default_factory=dict)
    """Extra arms: name -> a TorchScript policy file (``glan_ray.policy.external``), e.g. a peer
    library's exported policy."""
    variants: dict[str, Any] = field(default_factory=dict)
    """Extra arms: name -> a ``policy.registry.Variant`` (or a dict of its fields): a built-in
    arm with another models directory or options, e.g. ``{"klan_gen0": {"arm": "klan",
    "models": "runs/demo/models"}}`` or ``{"klan_explore": {"arm": "klan", "options":
    {"explore": "epsilon=0.1"}}}``."""
    refresh_every: int = 0
    """Refresh during the A/B (``eval.refresh``): every this many A/B days, each arm of
    ``refresh_arms`` is retrained on its own arm's logs of the A/B so far and serves the new
    models from the next day on; 0 (default): every arm keeps its models."""
    refresh_arms: tuple[str, ...] = ()
    """Built-in learned arms that refresh (``train.refresh.REFRESHED``), e.g. ``("klan",
    "glan")``; they should explore (``options``), or their logs hold no off-policy signal."""

    def __post_init__(self) -> None:
        from glan_ray.sim.worlds import world_overrides

        object.__setattr__(self, "sim", {**world_overrides(self.world), **self.sim})
        object.__setattr__(self, "arms", tuple(dict.fromkeys((self.control, *self.arms))))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        for name in ("users", "ab_days", "shard_users", "headline_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("aa_days", "burn_in_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds: need at least one simulator seed")
        if self.buckets not in BUCKETS:
            raise ValueError(f"buckets: unknown {self.buckets!r}; expected one of {BUCKETS}")
        from glan_ray.policy.registry import ARMS, Variant, check_options

        clash = sorted(set(self.external) & set(ARMS))
        if clash:
            raise ValueError(f"external: arm name(s) {', '.join(clash)} are built-in arms")
        clash = sorted(set(self.variants) & (set(ARMS) | set(self.external)))
        if clash:
            raise ValueError(f"variants: arm name(s) {', '.join(clash)} are built-in or external")
        variants = {}
        for name, spec in self.variants.items():
            try:
                variants[name] = Variant.of(spec)
            except (TypeError, ValueError) as e:
                raise ValueError(f"variants[{name!r}]: {e}") from None
        object.__setattr__(self, "variants", variants)
        stray = sorted(set(self.options) - set(self.arms))
        if stray:
            raise ValueError(f"options: arm(s) {', '.join(stray)} not in arms {self.arms}")
        for arm, opts in self.options.items():
            check_options(variants[arm].arm if arm in variants else arm, opts)
        object.__setattr__(self, "refresh_arms", tuple(self.refresh_arms))
        if self.refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0; got {self.refresh_every}")
        if bool(self.refresh_every) != bool(self.refresh_arms):
            raise ValueError("refresh_every and refresh_arms go together: set both or neither")
        if self.refresh_arms:
            bad = sorted(set(self.refresh_arms) - (set(self.arms) & set(ARMS)))
            if bad:
                raise ValueError(f"refresh_arms: {', '.join(bad)} not built-in arms of this A/B")
            if self.window != self.ab_days:
                raise ValueError("refresh: headline_days must cover every A/B day (>= "
                                 f"ab_days {self.ab_days}); got {self.headline_days}")  # fmt: skip

    @property
    def burn_arm(self) -> str:
        """The arm the users live under during the burn-in."""
        return self.burn_in_arm or self.control

    @property
    def window(self) -> int:
        """Days of the headline window (the last ``headline_days`` A/B days)."""
        return min(self.headline_days, self.ab_days)

    @property
    def paired(self) -> bool:
        """Whether arms are compared per user (shared buckets)."""
        return self.buckets == "shared"


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


UNIT_SUMS = ("active_days", "usage", "watch", "views", "dropoffs", "sessions", "effective_all",
             *(f"effective_{p}" for p in PAGES), *(f"assign_{p}" for p in PAGES))  # fmt: skip
"""Per-user sums a shard collects (the LT sums come from its activity matrix)."""


class _Collector:
    """Per-user sums over the last ``window`` of ``days`` days, per-day totals and each user's
    activity per day, fed one ``DayLog`` at a time."""

    def __init__(self, n: int, days: int, window: int) -> None:
        self.n, self.days, self.first_summed = n, days, days - window
        self.units = {k: np.zeros(n) for k in UNIT_SUMS}
        self.daily = {k: np.zeros(days) for k in DAILY}
        self.active = np.zeros((n, days), dtype=bool)  # (N, days)

    def add(self, i: int, log: DayLog) -> None:
        n, s = self.n, log.sessions
        self.active[:, i] = log.active
        row = s["row"] if s else np.zeros(0, dtype=np.int64)
        sessions = np.bincount(row, minlength=n)
        drops = np.bincount(row, weights=s["y_sw"], minlength=n) if s else np.zeros(n)
        self.daily["dau"][i] = log.active.sum()
        self.daily["usage"][i] = log.y_wt.sum()
        self.daily["sessions"][i] = sessions.sum()
        self.daily["dropoffs"][i] = drops.sum()
        if i < self.first_summed:
            return
        u = self.units
        u["active_days"] += log.active
        u["usage"] += log.y_wt
        if not s:
            return
        u["watch"] += np.bincount(row, weights=s["watch"], minlength=n)
        u["views"] += np.bincount(row, weights=s["views"].sum(1), minlength=n)
        u["dropoffs"] += drops
        u["sessions"] += sessions
        for j, p in enumerate(PAGES):
            eff = np.bincount(row, weights=s["dur"][:, j] >= EFFECTIVE_S, minlength=n)
            u[f"effective_{p}"] += eff
            u["effective_all"] += eff
            u[f"assign_{p}"] += np.bincount(row, weights=s["action"] == j, minlength=n)

    def result(self) -> dict[str, Any]:
        window = self.days - self.first_summed
        units = {**self.units, "days": np.full(self.n, float(window))}
        units["lt_active"], units["ever_active"] = lt_units(self.active, window)
        return {"units": units, "daily": self.daily, "active": self.active}


def _play(
    policy: Policy,
    cfg: SimConfig,
    first: int,
    n: int,
    days: int,
    first_day: int,
    start: UserState | None,
    window: int | None = None,
    log: Callable[[DayLog], None] | None = None,
) -> tuple[dict[str, Any], UserState | None]:
    """Simulate ``days`` days from ``first_day`` (state ``start``; None: fresh users); returns
    the collected sums (over the last ``window`` days, None: all) and the state after; ``log``
    is called with every day's log."""
    col = _Collector(n, days, days if window is None else min(window, days))
    state = start
    for i, day_log in enumerate(simulate(cfg, first, n, days, policy, first_day=first_day,
                                         start=start)):  # fmt: skip
        col.add(i, day_log)
        if log is not None:
            log(day_log)
        state = day_log.next_state
    return col.result(), state


def _day_writer(log_dir: str, seed: int, first: int) -> Callable[[DayLog], None]:
    """Writes a day's datasets under ``log_dir/<dataset>/`` (the simulator's layout; one part
    per seed, shard and day)."""
    import io

    import pyarrow.parquet as pq

    from glan_ray import storage
    from glan_ray.data.tables import day_tables

    def write(log: DayLog) -> None:
        for name, table in day_tables(log, rct=False).items():
            buf = io.BytesIO()
            pq.write_table(table, buf)
            part = f"part-s{seed}-u{first}-d{log.day:05d}"
            storage.write_bytes(storage.join(log_dir, name, part, f"{name}-0000.parquet"),
                                buf.getvalue())  # fmt: skip

    return write


def run_shard(
    arm: str,
    models: str | None,
    sim: dict[str, Any],
    seed: int,
    first: int,
    n: int,
    days: int,
    options: dict[str, Any] | None = None,
    *,
    external: dict[str, str] | None = None,
    variants: dict[str, Any] | None = None,
    start: UserState | None = None,
    first_day: int = 0,
    window: int | None = None,
    keep_state: bool = False,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """Simulate one shard under one arm (``options``: the arm's builder options) for ``days``
    days from ``first_day``, continuing ``start`` (None: fresh users). Per-user sums over the
    last ``window`` days (None: all), per-day totals and the (N, days) activity matrix; with
    ``keep_state``, also the users' state after the last day (``"state"``); with ``log_dir``,
    the days' datasets are written there (``eval.refresh``)."""
    from glan_ray.policy.registry import make_arm

    cfg = SimConfig.from_dict({**sim, "seed": seed})
    policy = TimedPolicy(make_arm(arm, models, cfg, options, external=external,
                                  variants=variants))  # fmt: skip
    out, state = _play(policy, cfg, first, n, days, first_day, start, window,
                       log=_day_writer(log_dir, seed, first) if log_dir else None)  # fmt: skip
    return {"arm": arm, "seed": seed, "first": first, **out, "latency_s": policy.seconds,
            "decisions": policy.decisions, **({"state": state} if keep_state else {})}  # fmt: skip


def run_prefix(
    cfg: ABConfig, seed: int, first: int, n: int
) -> tuple[UserState | None, dict[str, Any] | None]:
    """Burn-in (``cfg.burn_arm``) then A/A (``cfg.control``) for one shard: the users' state at
    the start of the A/B and the A/A phase's sums (None without an A/A phase)."""
    state, aa = None, None
    common = (cfg.models, cfg.sim, seed, first, n)
    if cfg.burn_in_days:
        arm = cfg.burn_arm
        state = run_shard(arm, *common, cfg.burn_in_days, cfg.options.get(arm),
                          external=cfg.external, variants=cfg.variants,
                          keep_state=True)["state"]  # fmt: skip
    if cfg.aa_days:
        arm = cfg.control
        aa = run_shard(arm, *common, cfg.aa_days, cfg.options.get(arm), external=cfg.external,
                       variants=cfg.variants, start=state, first_day=cfg.burn_in_days,
                       keep_state=True)  # fmt: skip
        state = aa.pop("state")
    return state, aa


@dataclass
class ABResult:
    config: ABConfig
    units: dict[str, dict[str, np.ndarray]]
    """arm -> unit sums over the headline window, units ordered (seed, user) alike in every arm."""
    daily: dict[str, dict[str, np.ndarray]]
    """arm -> per-day totals over all seeds (``DAILY`` and ``lt``), A/A days first."""
    latency_ms: dict[str, float]
    """arm -> mean policy time per decision (ms) during the A/B."""
    aa_units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """arm -> unit sums over the A/A phase (its bucket under the control); empty without one."""

    def value(self, arm: str, metric: str) -> float:
        y, x = METRICS[metric]
        u = self.units[arm]
        return ratio(u[y], u[x] if x else None)

    @property
    def adjusted(self) -> bool:
        """Whether A/B comparisons are CUPED-adjusted by the A/A phase (``ABConfig.cuped``)."""
        return self.config.cuped and not self.config.paired and bool(self.aa_units)

    def _compare(
        self, a: str, b: str, metric: str, units: dict[str, dict[str, np.ndarray]] | None = None
    ) -> dict[str, float]:
        """Arm ``a`` vs arm ``b`` on ``metric`` over the headline window (or ``units``)."""
        y, x = METRICS[metric]
        pre = None
        if units is None:
            units = self.units
            if self.adjusted:
                pa, pb = self.aa_units[a], self.aa_units[b]
                pre = (pa[y], pb[y], pa[x] if x else None, pb[x] if x else None)
        ua, ub = units[a], units[b]
        return compare(ua[y], ub[y], ua[x] if x else None, ub[x] if x else None,
                       paired=self.config.paired, pre=pre).to_dict()  # fmt: skip

    def comparisons(
        self, control: str | None = None, units: dict[str, dict[str, np.ndarray]] | None = None
    ) -> dict[str, dict[str, dict[str, float]]]:
        """arm -> metric -> Comparison against ``control`` (default: the config's), on the
        headline window's units (or ``units``); paired with shared buckets, else unpaired."""
        c = control or self.config.control
        return {arm: {m: self._compare(arm, c, m, units) for m in METRICS}
                for arm in self.config.arms}  # fmt: skip

    def vs(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """Reference arm -> ``comparisons(reference)``, for the control and every arm of
        ``REFERENCES`` in this run."""
        refs = dict.fromkeys((self.config.control, *REFERENCES))
        return {r: self.comparisons(r) for r in refs if r in self.config.arms}

    def aa(self) -> dict[str, dict[str, dict[str, float]]]:
        """arm -> metric -> its bucket vs the control's over the A/A phase (every bucket under
        the control); with shared buckets an exact tie by construction. Empty without A/A."""
        return self.comparisons(units=self.aa_units) if self.aa_units else {}

    def aa_split(self) -> dict[str, dict[str, float]]:
        """The control's units in two halves (alternating users), compared unpaired: over the
        A/A phase when there is one, else over the headline window."""
        ctl = (self.aa_units or self.units)[self.config.control]
        half = np.arange(len(ctl["days"])) % 2 == 0
        return {
            m: compare(ctl[y][half], ctl[y][~half], ctl[x][half] if x else None,
                       ctl[x][~half] if x else None, paired=False).to_dict()
            for m, (y, x) in METRICS.items()
        }  # fmt: skip

    def growth(self) -> dict[str, dict[str, list[float]]]:
        """arm -> {"dau", "lt", "usage"} -> relative change vs the control (%) per experiment
        day, A/A days first (GLAN/KLAN Fig. 5); empty without the control's daily totals."""
        if self.config.control not in self.daily:
            return {}
        ctl = self.daily[self.config.control]
        out = {}
        for arm, d in self.daily.items():
            out[arm] = {k: (100.0 * (np.asarray(d[k]) / np.asarray(ctl[k]) - 1.0)).tolist()
                        for k in ("dau", "lt", "usage")}  # fmt: skip
        return out

    def latency_rel_pct(self, reference: str | None = None) -> dict[str, float]:
        """arm -> its latency per decision relative to ``reference``'s (%), as the papers'
        tables (NaN where the reference's is zero)."""
        ref = self.latency_ms.get(reference or self.config.control, float("nan"))
        return {a: 100.0 * (v / ref - 1.0) if ref else float("nan")
                for a, v in self.latency_ms.items()}  # fmt: skip

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
        GLAN vs the best constant page and vs the best heuristic (both by usage time), GLAN vs
        its ablations, KLAN vs its ablations, dynamic vs static α, and the history features'
        control: KLAN-IIT with them vs without, GLAN vs KLAN-IIT with them."""
        from glan_ray.policy.registry import CONSTANT_ARMS, HEURISTICS

        arms = set(self.config.arms)
        const, heur = self.best(CONSTANT_ARMS), self.best(HEURISTICS)
        pairs = [("glan", "klan"), ("klan", const), ("glan", const), ("glan", heur),
                 ("klan", heur), ("glan", "glan_no_lrtg"), ("glan", "glan_no_hrm"),
                 ("glan_no_hrm", "glan_no_lrtg"), ("klan", "klan_iit"), ("klan", "klan_isp"),
                 ("klan_isp", "klan_iit"), ("klan_iit", "cql_static"),
                 ("klan_iit_hist", "klan_iit"), ("glan", "klan_iit_hist")]  # fmt: skip
        return list(dict.fromkeys((a, b) for a, b in pairs if a in arms and b in arms))

    def direct(
        self, metrics: tuple[str, ...] = ("usage_time", "dau", "pdr")
    ) -> list[dict[str, Any]]:
        """Comparisons of ``direct_pairs`` (arm a against arm b) on ``metrics``."""
        out = []
        for a, b in self.direct_pairs():
            row: dict[str, Any] = {"arm": a, "vs": b}
            for m in metrics:
                row[m] = self._compare(a, b, m)
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
        vs, daily = self.vs(), self.daily.items()
        return {
            "config": asdict(self.config),
            "protocol": {
                "burn_in_days": self.config.burn_in_days,
                "burn_in_arm": self.config.burn_arm,
                "aa_days": self.config.aa_days,
                "ab_days": self.config.ab_days,
                "headline_days": self.config.window,
                "buckets": self.config.buckets,
                "paired": self.config.paired,
                "cuped": self.adjusted,
            },
            "metrics": {a: {m: self.value(a, m) for m in METRICS} for a in self.config.arms},
            "vs_control": vs[self.config.control],
            "vs": vs,
            "direct": self.direct(),
            "aa": self.aa(),
            "aa_split": self.aa_split(),
            "best_constant": self.best_constant(),
            **{f"uplift_captured_{m}": self.uplift_captured(m) for m in UPLIFT_METRICS},
            **{
                f"personalization_uplift_captured_{m}": self.personalization_uplift_captured(m)
                for m in UPLIFT_METRICS
            },
            "latency_ms": self.latency_ms,
            "latency_rel_pct": {r: self.latency_rel_pct(r) for r in vs},
            "daily": {a: {k: np.asarray(v).tolist() for k, v in d.items()} for a, d in daily},
            "growth_pct": self.growth(),
        }

    def save(self, out: str) -> str:
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "ab.json")
        with open(path, "w") as f:
            json.dump(self.summary(), f, indent=1, default=float)
        # Any: numpy's stub types savez's **kwds apart from its allow_pickle: bool keyword
        arrays: dict[str, Any] = {
            **{f"{a}/{k}": v for a, d in self.units.items() for k, v in d.items()},
            **{f"aa/{a}/{k}": v for a, d in self.aa_units.items() for k, v in d.items()},
        }
        np.savez_compressed(os.path.join(out, "ab_units.npz"), **arrays)
        return path


def _shards(cfg: ABConfig, block: int) -> list[tuple[int, int]]:
    """(first user offset, users) of each shard, on the simulator's RNG block boundaries."""
    step = -(-cfg.shard_users // block) * block
    return [(s, min(step, cfg.users - s)) for s in range(0, cfg.users, step)]


def run_ab(
    cfg: ABConfig,
    progress: Callable[[int, int], None] | None = None,
    refresh: Refresh | None = None,
    refresh_dir: str | None = None,
) -> ABResult:
    """Run the protocol as Ray tasks (1 CPU each): one burn-in + A/A task per (bucket, seed,
    shard), then one A/B task per (arm, seed, shard) continuing its bucket's users. Arms of
    ``cfg.refresh_arms`` play their A/B in segments, ``refresh`` retraining their models in
    between on their logs written under ``refresh_dir`` (``eval.refresh``)."""
    import ray

    from glan_ray.eval.refresh import run_refreshed

    if cfg.refresh_arms and (refresh is None or refresh_dir is None):
        raise ValueError("refresh_arms: run_ab needs a refresh callback and a refresh_dir "
                         "(glan_ray.train.refresh)")  # fmt: skip

    from glan_ray.policy.registry import make_arm

    sim0 = SimConfig.from_dict({**cfg.sim, "seed": cfg.seeds[0]})
    for arm in dict.fromkeys((*cfg.arms, cfg.burn_arm)):  # fail fast, before any task runs
        make_arm(arm, cfg.models, sim0, cfg.options.get(arm), external=cfg.external,
                 variants=cfg.variants)  # fmt: skip
    block = sim0.block_size
    if cfg.first_user % block:
        raise ValueError(f"first_user must be a multiple of the block size {block}")
    shards = _shards(cfg, block)
    stride = -(-cfg.users // block) * block  # users of one bucket, in whole blocks
    buckets = {a: (0 if cfg.paired else i) for i, a in enumerate(cfg.arms)}
    prefix = ray.remote(num_cpus=1, num_returns=2)(run_prefix)
    task = ray.remote(num_cpus=1)(run_shard)
    has_prefix = bool(cfg.burn_in_days or cfg.aa_days)
    pre: dict[tuple[int, int, int], Any] = {}
    refs = []
    refreshed: dict[str, list[tuple[int, tuple[int, int], Any]]] = {}
    for arm in cfg.arms:
        b = buckets[arm]
        for seed in cfg.seeds:
            for off, n in shards:
                first = cfg.first_user + b * stride + off
                key = (b, seed, off)
                if has_prefix and key not in pre:
                    pre[key] = prefix.remote(cfg, seed, first, n)
                start = pre[key][0] if has_prefix else None
                if arm in cfg.refresh_arms:  # played segment by segment below
                    refreshed.setdefault(arm, []).append((seed, (first, n), start))
                    continue
                refs.append(task.remote(
                    arm, cfg.models, cfg.sim, seed, first, n, cfg.ab_days,
                    cfg.options.get(arm), external=cfg.external, variants=cfg.variants,
                    start=start, first_day=cfg.burn_in_days + cfg.aa_days,
                    window=cfg.window))  # fmt: skip
    total = len(refs) + len(pre)
    results, pending, done_n = [], list(refs) + [p[1] for p in pre.values()], 0
    aa_by_ref = {p[1]: k for k, p in pre.items()}
    aa: dict[tuple[int, int, int], dict[str, Any] | None] = {}
    while pending:
        done, pending = ray.wait(pending)
        for ref in done:
            if ref in aa_by_ref:
                aa[aa_by_ref[ref]] = ray.get(ref)
            else:
                results.append(ray.get(ref))
        done_n += len(done)
        if progress:
            progress(done_n, total)
    for arm, arm_shards in refreshed.items():
        assert refresh is not None and refresh_dir is not None  # refresh_arms checked them above
        results += run_refreshed(cfg, arm, arm_shards, task, refresh, refresh_dir)
    order = {(seed, off): i for i, (seed, (off, _)) in enumerate(
        (s, sh) for s in cfg.seeds for sh in shards)}  # fmt: skip
    units: dict[str, dict[str, np.ndarray]] = {}
    aa_units: dict[str, dict[str, np.ndarray]] = {}
    daily: dict[str, dict[str, np.ndarray]] = {}
    latency: dict[str, float] = {}
    for arm in cfg.arms:
        b = buckets[arm]
        mine = sorted(
            (r for r in results if r["arm"] == arm),
            key=lambda r: order[(r["seed"], r["first"] - cfg.first_user - b * stride)],
        )
        prior = [aa.get((b, r["seed"], r["first"] - cfg.first_user - b * stride)) for r in mine]
        aa_prior = [p for p in prior if p]  # the A/A results of these shards: all or none
        assert len(aa_prior) in (0, len(prior)), "an A/A phase for every shard or for none"
        units[arm] = {k: np.concatenate([r["units"][k] for r in mine]) for k in mine[0]["units"]}
        # LT's T0 is the first A/A day: recompute its sums over A/A + A/B activity
        active = np.concatenate(
            [np.concatenate([p["active"], r["active"]], axis=1) if p else r["active"]
             for p, r in zip(prior, mine, strict=True)]
        )  # fmt: skip
        units[arm]["lt_active"], units[arm]["ever_active"] = lt_units(active, cfg.window)
        daily[arm] = {
            k: np.concatenate([(sum(p["daily"][k] for p in aa_prior) if aa_prior else
                                np.zeros(0)), sum(r["daily"][k] for r in mine)])
            for k in DAILY
        }  # fmt: skip
        daily[arm]["lt"] = lt_daily(active)
        if aa_prior:
            aa_units[arm] = {k: np.concatenate([p["units"][k] for p in aa_prior])
                             for k in aa_prior[0]["units"]}  # fmt: skip
        decisions = sum(r["decisions"] for r in mine)
        latency[arm] = 1e3 * sum(r["latency_s"] for r in mine) / max(decisions, 1)
    return ABResult(cfg, units, daily, latency, aa_units)


__all__ = [
    "DIRECTION",
    "LT_WINDOW",
    "METRICS",
    "REFERENCES",
    "UPLIFT_METRICS",
    "ABConfig",
    "ABResult",
    "lt_daily",
    "lt_units",
    "run_ab",
    "run_prefix",
    "run_shard",
]
