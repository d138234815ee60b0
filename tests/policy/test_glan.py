"""GLAN's simulator policy: the cached per-user-day windows decide exactly as the full forward
over each window (``window_logits``, what Serve runs per request)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


def _play(
    models: str, full_window: bool, baseline=(), rtg_gain: float = 1.0, command=(),
    lrtg: bool = True,
) -> tuple[_Probs, GlanPolicy, dict]:
    glan = GlanPolicy(f"{models}/dt", f"{models}/lrtg" if lrtg else None, f"{models}/hrm",
                      explore="softmax")  # fmt: skip
    glan.baseline = tuple(baseline)  # advantage tokens (DTRecord.rtg_baseline)
    glan.command = tuple(command)  # ACT's command head (DTRecord.command)
    if rtg_gain != 1.0:  # a random DT barely reads R̂ (its token is layer-normed): make it
        with torch.no_grad():
            glan.net.embed_rtg.weight.mul_(rtg_gain)
            glan.net.embed_rtg.bias.copy_(torch.linspace(-0.05, 0.05, glan.net.cfg.embed_dim))
            glan.net.head.weight.mul_(100.0)  # and its logits far from 0
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


def test_advantage_tokens_are_the_same_in_the_cache_and_the_full_window(random_models):
    """Tokens R̂ − b(s): each cached token is the window's token at its position, and a
    baseline that is a constant c is the same as asking for R̂₁ − c."""
    from glan_ray.policy.glan import window_logits
    from glan_ray.schema import OBS_DIM

    coef = np.random.default_rng(0).normal(0, 3000, OBS_DIM + 1)
    cached, glan, _ = _play(random_models, False, baseline=coef, rtg_gain=10.0)
    full, _, _ = _play(random_models, True, baseline=coef, rtg_gain=10.0)
    plain, _, _ = _play(random_models, False, rtg_gain=10.0)
    for (_, p), (_, p_f) in zip(cached.seen, full.seen, strict=True):
        np.testing.assert_allclose(p, p_f, atol=1e-5)
    # the two policies take other pages, so later steps see other users: compare the steps
    # where the same users decide (the day's first entries at least)
    diffs = [np.abs(p - q).max() for (r, p), (r_q, q) in zip(cached.seen, plain.seen, strict=False)
             if np.array_equal(r, r_q)]  # fmt: skip
    assert diffs and max(diffs) > 1e-3
    rng = np.random.default_rng(1)
    r1, rewards = rng.uniform(500, 3000, 5), rng.uniform(0, 300, (5, 6))
    obs, acts = rng.normal(size=(5, 6, OBS_DIM)), rng.integers(0, 3, (5, 6))
    t, now = np.array([0, 1, 3, 5, 6]), rng.normal(size=(5, OBS_DIM))
    const = np.zeros(OBS_DIM + 1)
    const[-1] = 700.0
    a = window_logits(glan.net, r1, rewards, obs, acts, t, now, 3600.0, const)
    b = window_logits(glan.net, r1 - 700.0, rewards, obs, acts, t, now, 3600.0)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_act_tokens_are_the_command_head_in_the_cache_and_the_full_window(random_models):
    """ACT: every token is ĉ(s_t); the cached and the full-window paths agree, and R̂ is not
    read (R̂₁ from L-RTG or from the 7-day mean gives the same decisions)."""
    from glan_ray.policy.glan import window_logits
    from glan_ray.policy.registry import ARMS
    from glan_ray.schema import OBS_DIM

    coef = np.random.default_rng(2).normal(0, 3000, OBS_DIM + 1)
    cached, _, _ = _play(random_models, False, command=coef, rtg_gain=10.0)
    full, _, _ = _play(random_models, True, command=coef, rtg_gain=10.0)
    no_lrtg, glan, _ = _play(random_models, False, command=coef, rtg_gain=10.0, lrtg=False)
    for (r, p), (r_f, p_f), (r_n, p_n) in zip(cached.seen, full.seen, no_lrtg.seen, strict=True):
        assert np.array_equal(r, r_f) and np.array_equal(r, r_n)
        np.testing.assert_allclose(p, p_f, atol=1e-5)
        np.testing.assert_allclose(p, p_n, atol=1e-6)
    rng = np.random.default_rng(1)
    rewards = rng.uniform(0, 300, (5, 6))
    obs, acts = rng.normal(size=(5, 6, OBS_DIM)), rng.integers(0, 3, (5, 6))
    t, now = np.array([0, 1, 3, 5, 6]), rng.normal(size=(5, OBS_DIM))
    a = window_logits(glan.net, rng.uniform(500, 3000, 5), rewards, obs, acts, t, now, 3600.0,
                      command=coef)  # fmt: skip
    b = window_logits(glan.net, np.zeros(5), rewards * 0, obs, acts, t, now, 3600.0, command=coef)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # the command is not the R̂ tokens: without it the same windows give other logits
    c = window_logits(glan.net, np.full(5, 2000.0), rewards, obs, acts, t, now, 3600.0)
    assert np.abs(a.numpy() - c.numpy()).max() > 1e-3
    # the registry's glan_act loads dt_act's command head and neither L-RTG nor HRM
    act = ARMS["glan_act"](random_models, None)
    assert act.command[0] == pytest.approx(0.1) and act.command[-1] == pytest.approx(-300.0)
    assert act.lrtg is None and act.hrm is None and act.name == "glan_act"


def test_act_command_option_overrides_the_head_of_an_act_dt_only(random_models):
    from glan_ray.policy.registry import ARMS, make_arm
    from glan_ray.schema import OBS_DIM

    head = [1.0] * (OBS_DIM + 1)
    act = ARMS["glan_act"](random_models, None, command=head)
    assert act.command == tuple(head)
    with pytest.raises(ValueError, match=f"command must be empty or {OBS_DIM + 1} finite"):
        ARMS["glan_act"](random_models, None, command=[1.0, 2.0])
    with pytest.raises(ValueError, match="has no command head"):
        GlanPolicy(f"{random_models}/dt", command=head)
    with pytest.raises(ValueError, match=r"arm 'glan': unknown option\(s\) command"):
        make_arm("glan", random_models, None, {"command": head})
