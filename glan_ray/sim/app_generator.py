"""A synthetic app of any spec: raw page-visit events from a small stochastic world
(``glan-ray gen-events``; docs/ingest.md, "A synthetic app").

Given an app specification (pages, profile fields, context inputs, drop-off threshold, session
gap), ``AppWorld`` draws users and plays their days, vectorised over users with numpy:

- **users**: each profile field drawn (a categorical uniformly, a numeric from a gamma), a page
  affinity (log-dwell, one per page) that is part noise and part a function of the first
  categorical profile field (so a policy can learn it from x), an entry rate;
- **days**: a user is active with a base probability moved by yesterday's share of sessions
  that held (retention); an active day has a Poisson number of planned entries at hours drawn
  around a midday and an evening peak; after each session the user returns for the next entry
  with a probability that a held session raises and a drop-off lowers (return);
- **a session**: the logging policy lands on the page the user last exited with probability
  1 − ``explore`` and uniformly otherwise (its propensity recorded); on a randomised user-day
  (share ``rct_share``) the treatment forces the page instead (propensity 1; 0 = control keeps
  the logging policy). The landing page's dwell is log-normal around a median set by the user's
  affinity for it, the hour and the context inputs, so landing a user on the page they like
  lengthens the session, avoids the drop-off (dwell < ``spec.dropoff_s``) and brings them back;
  other pages are visited with a probability that rises with their affinity gap and after a
  drop-off.

Sessions become visits with ``sim.events.session_events`` (visits back to back, a session
delayed when it starts less than ``spec.session_gap_s`` after the previous one ended). Every
random number of day d comes from ``default_rng([seed, 1, d])`` and the users' from
``default_rng([seed, 0])``, so a seed gives the same events whatever is generated after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glan_ray import storage
from glan_ray.apps.features import ProfileSpec
from glan_ray.apps.quantities import INPUT
from glan_ray.apps.spec import AppSpec
from glan_ray.sim.events import MONDAY, EventExport, ExportSummary, LastEnds, session_events

logger = logging.getLogger(__name__)

EVENTS, USERS, MANIFEST = "events", "users.parquet", "generate.json"
"""What ``write_events`` writes under its output directory."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class AppWorld:
    """The synthetic world's size, seed and behaviour (every rate per user-day or session)."""

    users: int = 1000
    """Number of users."""
    days: int = 14
    """Consecutive days played."""
    seed: int = 0
    """Seed of every draw."""
    epoch_day: int = MONDAY
    """UTC day (days since 1970-01-01) of day 0: a Monday by default."""
    p_active: float = 0.75
    """Base probability that a user opens the app on a day."""
    retention_gain: float = 1.5
    """Next-day activity logit gain per unit of yesterday's share of held sessions − 0.5."""
    entries_per_day: float = 3.0
    """Mean planned entries of an active day (Poisson, at least 1, times the user's rate)."""
    max_entries: int = 12
    """Most planned entries in a day."""
    explore: float = 0.2
    """The logging policy's uniform share: p = (1 − explore)·[last exited page] + explore / P."""
    rct_share: float = 0.1
    """Share of user-days randomised (their visits carry ``treatment``)."""
    rct_control_share: float = 0.25
    """Share of randomised user-days in control (treatment 0, the logging policy)."""
    dwell_median_s: float = 60.0
    """Median page dwell (s) at zero affinity."""
    dwell_sigma: float = 0.9
    """Log-normal sigma of a page's dwell."""
    affinity_std: float = 0.7
    """Spread of the users' page affinities (log-dwell), half of it from the first categorical
    profile field."""
    hour_gain: float = 0.3
    """Amplitude of each page's daily cycle (log-dwell), a random phase per page."""
    input_gain: float = 0.3
    """Log-dwell gain of the last page per ln(1 + each context input)."""
    input_rate: float = 1.5
    """Mean of each context input (a Poisson count per entry)."""
    nav_logit: float = -1.0
    """Logit of visiting another page at zero affinity gap (+1 after a drop-off)."""
    nav_fraction: float = 0.5
    """A navigated page's dwell as a share of its landing dwell."""
    return_logit: float = 0.0
    """Logit of returning for the next planned entry after a drop-off."""
    return_held: float = 1.5
    """Logit gain of returning after a held session (dwell ≥ the spec's drop-off threshold)."""
    video_s: float = 30.0
    """Seconds per video: views = floor(dwell / video_s + u)."""

    def __post_init__(self) -> None:
        for name in ("users", "days", "max_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"AppWorld.{name} must be >= 1; got {getattr(self, name)}")
        for name in ("p_active", "explore", "rct_share", "rct_control_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"AppWorld.{name} must be in [0, 1]; got {getattr(self, name)}")
        for name in ("entries_per_day", "dwell_median_s", "dwell_sigma", "video_s",
                     "nav_fraction"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"AppWorld.{name} must be > 0; got {getattr(self, name)}")


@dataclass(frozen=True)
class Population:
    """The users of a world: their profile and their hidden behaviour."""

    user_id: np.ndarray
    """(N,) int64 ids 0..N-1."""
    profile: dict[str, np.ndarray]
    """Each profile field's (N,) values, under its source (or name)."""
    affinity: np.ndarray
    """(N, P) page affinity (log-dwell)."""
    rate: np.ndarray
    """(N,) entry-rate multiplier."""
    phase: np.ndarray
    """(P,) each page's daily-cycle phase (rad)."""


def _field(p: ProfileSpec) -> str:
    return p.source or p.name


def make_population(spec: AppSpec, world: AppWorld) -> Population:
    """Draw the users of ``world`` for ``spec`` (from ``default_rng([seed, 0])``)."""
    rng = np.random.default_rng([world.seed, 0])
    n, k = world.users, spec.n_pages
    profile: dict[str, np.ndarray] = {}
    for p in spec.features.profile:
        if p.kind == "categorical":
            profile[_field(p)] = rng.integers(0, int(p.cardinality or 2), n).astype(np.int16)
        else:
            profile[_field(p)] = rng.gamma(2.0, 5.0, n).astype(np.float32)
    s = world.affinity_std / np.sqrt(2.0)
    affinity = s * rng.normal(size=(n, k))  # (N, P)
    cats = [p for p in spec.features.profile if p.kind == "categorical"]
    if cats:  # half the spread is a function of the first categorical field: learnable from x
        table = s * rng.normal(size=(int(cats[0].cardinality or 2), k))  # (C, P)
        affinity += table[profile[_field(cats[0])].astype(np.int64)]
    else:
        affinity *= np.sqrt(2.0)
    rate, phase = rng.lognormal(0.0, 0.3, n), rng.uniform(0, 2 * np.pi, k)
    return Population(user_id=np.arange(n, dtype=np.int64), profile=profile, affinity=affinity,
                      rate=rate, phase=phase)  # fmt: skip


def users_table(pop: Population) -> pa.Table:
    """The users table keyed by ``user_id`` (ingest's ``--users``)."""
    return pa.table({"user_id": pop.user_id, **pop.profile})


def _inputs(spec: AppSpec) -> list[str]:
    return [str(c.name) for c in spec.features.context if c.quantity == INPUT]


def _day_sessions(
    spec: AppSpec, world: AppWorld, pop: Population, day: int, state: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Play ``day`` for every user: the session columns of ``session_events`` (sorted by user,
    session index). ``state`` (held share yesterday, last exited page) is updated in place."""
    rng = np.random.default_rng([world.seed, 1, day])
    n, k, s = world.users, spec.n_pages, world.max_entries
    logit = np.log(world.p_active / max(1 - world.p_active, 1e-9))
    active = rng.random(n) < _sigmoid(logit + world.retention_gain * state["held_share"])
    planned = np.clip(rng.poisson(world.entries_per_day * pop.rate), 1, s)  # (N,)
    peak = rng.random((n, s)) < 0.5
    hours = np.where(peak, rng.normal(13.0, 2.5, (n, s)), rng.normal(20.5, 2.0, (n, s)))
    hours = np.sort(np.clip(hours, 0.0, 23.99), axis=1)  # (N, S)
    randomised = rng.random(n) < world.rct_share
    control = rng.random(n) < world.rct_control_share
    treatment = np.where(randomised, np.where(control, 0, rng.integers(1, k + 1, n)), -1)
    inputs = {name: rng.poisson(world.input_rate, (n, s)) for name in _inputs(spec)}
    going = active.copy()
    held = np.zeros(n)
    records: list[dict[str, np.ndarray]] = []
    for t in range(s):
        rows = np.flatnonzero(going & (t < planned))
        if rows.size == 0:
            break
        b = rows.size
        h = hours[rows, t]
        cycle = world.hour_gain * np.sin(2 * np.pi * h[:, None] / 24 + pop.phase)  # (B, P)
        median = np.log(world.dwell_median_s) + pop.affinity[rows] + cycle  # (B, P) log-dwell
        for v in inputs.values():
            median[:, -1] += world.input_gain * np.log1p(v[rows, t])
        heuristic = state["last_exit"][rows]
        probs = np.full((b, k), world.explore / k)
        probs[np.arange(b), heuristic] += 1 - world.explore  # (B, P)
        action = (rng.random(b)[:, None] > np.cumsum(probs, 1)).sum(1).clip(0, k - 1)
        forced = treatment[rows] > 0
        action = np.where(forced, treatment[rows] - 1, action)
        prop = np.where(forced, 1.0, probs[np.arange(b), action])
        raw = np.exp(median + world.dwell_sigma * rng.normal(size=(b, k)))  # (B, P)
        landing = raw[np.arange(b), action]
        dropped = landing < spec.dropoff_s
        gap = pop.affinity[rows] - pop.affinity[rows, action][:, None]  # (B, P)
        nav = rng.random((b, k)) < _sigmoid(world.nav_logit + gap + dropped[:, None])
        nav[np.arange(b), action] = False
        dur = np.where(nav, world.nav_fraction * raw, 0.0)
        dur[np.arange(b), action] = landing
        key = np.where(nav, rng.random((b, k)), np.inf)
        key[np.arange(b), action] = -1.0
        page_seq = np.argsort(key, 1)  # (B, P): landing first, then the navigated pages
        seq_len = 1 + nav.sum(1)
        page_seq[np.arange(k)[None, :] >= seq_len[:, None]] = -1
        views = np.floor(dur / world.video_s + rng.random((b, k)) * (dur > 0)).astype(np.int64)
        records.append({"row": rows, "session_idx": np.full(b, t), "hour": h,
                        "propensity": prop, "page_seq": page_seq, "dur": dur, "views": views,
                        **{name: v[rows, t] for name, v in inputs.items()}})  # fmt: skip
        state["last_exit"][rows] = page_seq[np.arange(b), seq_len - 1]
        held[rows] += ~dropped
        back = rng.random(b) < _sigmoid(world.return_logit + world.return_held * ~dropped)
        going[rows] = back
    entries = np.zeros(n)
    for r in records:
        entries[r["row"]] += 1
    state["held_share"] = np.where(active, held / np.maximum(entries, 1) - 0.5, 0.0)
    if not records:
        return {}
    out = {c: np.concatenate([r[c] for r in records]) for c in records[0]}
    order = np.lexsort((out["session_idx"], out["row"]))
    out = {c: v[order] for c, v in out.items()}
    rows = out.pop("row")
    return {"user_id": pop.user_id[rows], "day": np.full(len(rows), day), "treatment":
            treatment[rows], **out}  # fmt: skip


def generate_events(spec: AppSpec, world: AppWorld) -> Iterator[tuple[pa.Table, ExportSummary]]:
    """Yield each day's events (one row per page visit, the raw-event contract) and summary."""
    pop = make_population(spec, world)
    state = {"held_share": np.zeros(world.users),
             "last_exit": np.zeros(world.users, dtype=np.int64)}  # fmt: skip
    opts = EventExport(pages=spec.pages, epoch_day=world.epoch_day, gap_s=spec.session_gap_s)
    last = LastEnds()
    for day in range(world.days):
        cols = _day_sessions(spec, world, pop, day, state)
        if not cols:
            continue
        events, _, summary = session_events(cols, opts, last)
        yield events, summary


def write_events(spec: AppSpec, world: AppWorld, out: str, overwrite: bool = False
                 ) -> ExportSummary:  # fmt: skip
    """Write ``world``'s events under ``<out>/events/`` (one Parquet file per day), the users
    as ``<out>/users.parquet`` and the world and summary as ``<out>/generate.json``."""
    events_dir = storage.join(out, EVENTS)
    if storage.isdir(events_dir) and storage.listdir(events_dir):
        if not overwrite:
            raise FileExistsError(f"{events_dir} already holds events; pass --overwrite")
        storage.rmtree(events_dir)
    storage.makedirs(events_dir)
    total = ExportSummary()
    for i, (events, summary) in enumerate(generate_events(spec, world)):
        fs, inner = storage.filesystem(storage.join(events_dir, f"part-{i:05d}.parquet"))
        pq.write_table(events, inner, filesystem=fs)
        total.add(summary)
        logger.info("day %d/%d: %d events (%d in all)", i + 1, world.days, events.num_rows,
                    total.visits)  # fmt: skip
    fs, inner = storage.filesystem(storage.join(out, USERS))
    pq.write_table(users_table(make_population(spec, world)), inner, filesystem=fs)
    storage.write_json(storage.join(out, MANIFEST), {"spec": spec.to_dict(),
        "spec_fingerprint": spec.fingerprint(), "world": asdict(world),
        "summary": asdict(total)}, indent=2)  # fmt: skip
    return total


__all__ = ["EVENTS", "MANIFEST", "USERS", "AppWorld", "Population", "generate_events",
           "make_population", "users_table", "write_events"]  # fmt: skip
