"""GLAN's simulator policy: the cached per-user-day windows decide exactly as the full forward
over each window (``window_logits``, what Serve runs per request)."""

from __future__ import annotations

import numpy as np

from glan_ray.policy.glan import GlanPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import Policy


class _Probs(Policy):
    """Wraps a policy and keeps every probability matrix it returns."""

    def __init__(self, inner: GlanPolicy) -> None:
        self.inner, self.seen = inner, []

    def begin_day(self, day, features):
        self.inner.begin_day(day, features)

    def probs(self, obs, history):
        p = self.inner.probs(obs, history)
        self.seen.append((obs.rows.copy(), p))
        return p


def _play(models: str, full_window: bool) -> tuple[_Probs, GlanPolicy, dict]:
    glan = GlanPolicy(f"{models}/dt", f"{models}/lrtg", f"{models}/hrm", explore="softmax")
    if full_window:  # every row off the cache: the policy recomputes each window in full
        start = glan._start_day

        def no_cache(weekday, history):
            start(weekday, history)
            glan._cache.fed[:] = -1

        glan._start_day = no_cache
    probe = _Probs(glan)
    logs = list(simulate(SimConfig(seed=4, block_size=100), 0, 100, 2, probe))
    return probe, glan, logs[-1].sessions


def test_cached_windows_give_the_full_window_probabilities(random_models):
    cached, glan, sessions = _play(random_models, full_window=False)
    full, _, sessions_full = _play(random_models, full_window=True)
    assert len(cached.seen) == len(full.seen) > 10
    for (rows, p), (rows_f, p_f) in zip(cached.seen, full.seen, strict=True):
        assert np.array_equal(rows, rows_f)
        np.testing.assert_allclose(p, p_f, atol=1e-5)
    np.testing.assert_array_equal(sessions["action"], sessions_full["action"])
    # the random DT's windows are K = 4 sessions: some user-days restart a window
    assert (np.bincount(sessions["row"]) > glan.k).any()
    assert (glan._cache.fed >= 0).all()  # nobody fell back to the full forward
