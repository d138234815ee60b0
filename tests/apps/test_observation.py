"""The spec-driven observation builder gives the simulator's ``obs`` for the plpm spec."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.apps.observation import MissingColumn, build_obs
from glan_ray.sim import observation as sim_obs
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


def _columns(rng: np.random.Generator, r: int) -> dict[str, np.ndarray]:
    f32 = np.float32
    return {
        "activity": rng.integers(0, 4, r).astype(np.int8),
        "age": rng.integers(0, 6, r).astype(np.int8),
        "region": rng.integers(0, 8, r).astype(np.int8),
        "social_degree": rng.exponential(5, r).astype(f32),
        "usage_7d": rng.exponential(900, r).astype(f32),
        "usage_30d": rng.exponential(900, r).astype(f32),
        "sessions_7d": rng.exponential(3, r).astype(f32),
        "sessions_30d": rng.exponential(3, r).astype(f32),
        "page_dur_7d": rng.exponential(200, (r, 3)).astype(f32),
        "page_dur_14d": rng.exponential(200, (r, 3)).astype(f32),
        "page_entries_7d": rng.exponential(1, (r, 3)).astype(f32),
        "page_entries_14d": rng.exponential(1, (r, 3)).astype(f32),
    }


def test_plpm_spec_gives_the_simulators_obs_on_random_columns():
    rng = np.random.default_rng(0)
    r = 500
    cols = _columns(rng, r)
    cols["page_entries_7d"][:5] = 0.0  # no landing in the window: shares 0
    cols["page_entries_7d"][5:9, 1] = 0.0
    ctx = {"hour": rng.uniform(0, 24, r), "weekday": rng.integers(0, 7, r),
           "entries_today": rng.integers(0, 9, r), "live_count": rng.integers(0, 6, r),
           "today_dur": rng.exponential(300, (r, 3)), "prev_dropoff": rng.integers(0, 2, r),
           "last_exit": rng.integers(0, 3, r)}  # fmt: skip
    want = sim_obs.build_obs(
        {k: cols[k] for k in ("activity", "age", "region", "social_degree")},
        cols, ctx["hour"], ctx["weekday"], ctx["entries_today"], ctx["live_count"],
        ctx["today_dur"], ctx["prev_dropoff"], ctx["last_exit"],
    )  # fmt: skip
    got = build_obs(plpm_spec(), {**cols, **ctx})
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_plpm_spec_gives_the_logged_obs_of_a_simulated_day():
    """The simulator's own sessions: obs rebuilt from the logged columns equals the logged obs."""
    cfg = SimConfig(seed=5, block_size=100)
    log = list(simulate(cfg, 0, 200, 2, LoggingPolicy(cfg)))[-1]
    s, rows = log.sessions, log.sessions["row"]
    users = {k: getattr(log.users, k)[rows] for k in ("activity", "age", "region",
                                                       "social_degree")}  # fmt: skip
    stats = {k: v[rows] for k, v in log.stats.items()}
    # last_exit and prev_dropoff are in the logged obs only: read them back from its columns
    spec = plpm_spec()
    names = spec.obs_features
    last = np.argmax(s["obs"][:, [names.index(f"last_exit_{p}") for p in spec.pages]], 1)
    cols = {**users, **stats, "hour": s["hour"], "weekday": log.weekday,
            "entries_today": s["entries_today"], "live_count": s["live_count"],
            "today_dur": s["today_dur"], "prev_dropoff": s["obs"][:, names.index("prev_dropoff")],
            "last_exit": last}  # fmt: skip
    np.testing.assert_array_equal(build_obs(spec, cols), s["obs"])


def test_a_four_page_spec_sizes_obs_and_a_missing_column_is_named():
    d = plpm_spec().to_dict()
    spec = AppSpec.from_dict({**d, "name": "mall4", "pages": [*d["pages"], "mall"]})
    assert spec.n_pages == 4
    rng = np.random.default_rng(1)
    r = 7
    cols = {k: (np.concatenate([v, v[:, :1]], 1) if np.ndim(v) == 2 else v)
            for k, v in _columns(rng, r).items()}  # fmt: skip
    ctx = {"hour": np.full(r, 6.0), "weekday": 5, "entries_today": np.zeros(r),
           "live_count": np.ones(r), "today_dur": np.zeros((r, 4)), "prev_dropoff": np.zeros(r),
           "last_exit": np.full(r, 3)}  # fmt: skip
    obs = build_obs(spec, {**cols, **ctx})
    assert obs.shape == (r, spec.obs_dim)
    assert obs[0, spec.obs_features.index("last_exit_mall")] == 1.0
    assert obs[0, spec.obs_features.index("weekend")] == 1.0
    assert obs[0, spec.obs_features.index("hour_cos")] == pytest.approx(0.0, abs=1e-6)
    del ctx["live_count"]
    with pytest.raises(MissingColumn, match="'live_count'"):
        build_obs(spec, {**cols, **ctx})
