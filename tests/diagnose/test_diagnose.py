"""Premise diagnostics: the session frame's derived columns by hand, each measure on data built
so that its answer is known, the delay profile's flips, the report round trip and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.diagnose import consistency, history_gain
from glan_ray.diagnose.delay import FlipPolicy, crn_profile
from glan_ray.diagnose.frame import SessionFrame, _sorted, from_day_logs
from glan_ray.diagnose.report import Diagnosis, _check, load, markdown, write
from glan_ray.diagnose.targets import PREMISE_TARGETS, met
from glan_ray.schema import OBS_DIM
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.worlds import world_config


def _frame(user, day, idx, usage, action=None, rng=None) -> SessionFrame:
    m = len(user)
    rng = rng or np.random.default_rng(0)
    return _sorted({
        "user_id": np.asarray(user), "day": np.asarray(day), "session_idx": np.asarray(idx),
        "obs": rng.normal(size=(m, OBS_DIM)).astype(np.float32),
        "action": np.zeros(m, np.int64) if action is None else np.asarray(action),
        "propensity": np.full(m, 0.5), "dur": np.ones((m, 3)) * 100.0, "y_sw": np.zeros(m),
        "usage": np.asarray(usage, float), "exit_page": np.zeros(m, np.int64),
    })  # fmt: skip


def test_frame_returns_lags_and_order_by_hand():
    # user 2's day given out of order; user 1 has two days
    f = _frame([2, 1, 1, 2, 1], [0, 0, 0, 0, 1], [1, 0, 1, 0, 0], [5, 10, 20, 7, 3])
    assert f.user_id.tolist() == [1, 1, 1, 2, 2]
    assert f.usage.tolist() == [10, 20, 3, 7, 5]
    assert f.group.tolist() == [0, 0, 1, 2, 2]
    assert f.remaining_return.tolist() == [30, 20, 3, 12, 5]
    assert f.usage_at_lag(1).tolist() == [20, 0, 0, 5, 0]
    assert f.another_today.tolist() == [1, 0, 0, 1, 0]
    assert f.day_length.tolist() == [2, 2, 1, 2, 2]


def test_frame_refuses_gaps_in_session_idx():
    with pytest.raises(ValueError, match=r"column 'session_idx' .* 1 rows do not"):
        _frame([1, 1], [0, 0], [0, 2], [1, 1])


def _synthetic(n_days: int, hidden_in_history: bool, seed: int = 0) -> SessionFrame:
    """Days of 6 sessions whose landing duration is set by a hidden day-level sign that the
    earlier sessions' durations reveal (``hidden_in_history``) or that is redrawn per session."""
    rng = np.random.default_rng(seed)
    idx = np.tile(np.arange(6), n_days)
    day = np.repeat(np.arange(n_days), 6)
    sign = rng.choice([-1.0, 1.0], size=n_days)[day] if hidden_in_history else rng.choice(
        [-1.0, 1.0], size=6 * n_days)  # fmt: skip
    logdur = 4.5 + 0.8 * sign + 0.2 * rng.normal(size=len(idx))
    dur = np.zeros((len(idx), 3))
    dur[:, 0] = np.expm1(logdur)
    obs = np.zeros((len(idx), OBS_DIM), np.float32)
    obs[:, 0] = idx / 5.0  # the observation knows the session index, as entries_today does
    return _sorted({
        "user_id": day, "day": np.zeros(len(idx), np.int64), "session_idx": idx,
        "obs": obs, "action": np.zeros(len(idx), np.int64),
        "propensity": np.ones(len(idx)), "dur": dur, "y_sw": np.zeros(len(idx)),
        "usage": dur[:, 0], "exit_page": np.zeros(len(idx), np.int64),
    }, latent=sign[:, None].astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("in_history", [True, False])
def test_history_closes_the_gap_only_when_the_past_reveals_the_latent(in_history):
    cfg = history_gain.FitConfig(epochs=20, hidden=32, gru_hidden=16, batch_days=32)
    r = history_gain.measure(_synthetic(500, in_history), cfg)
    assert set(r.loss) == {"obs", "hist_features", "sequence", "latent"}
    assert r.total["latent"] < r.total["obs"] - 0.3  # the latent explains the duration
    # the history predictor is the history variant with the lower validation loss
    pick = min(("sequence", "hist_features"), key=lambda v: (r.val_loss[v], v != "sequence"))
    assert r.history_variant == pick
    o, h, lat = r.total["obs"], r.total[pick], r.total["latent"]
    assert r.gap_closed == pytest.approx((o - h) / (o - lat))
    if in_history:
        assert r.gap_closed > 0.5
        assert r.gain_by_index["0"] == 0.0  # nothing to learn from at the first session
        assert r.gain_by_index["5-9"] > 0.2
    else:
        assert abs(r.gap_closed) < 0.1


def test_r2_gain_finds_a_page_effect_and_no_effect_when_there_is_none():
    rng = np.random.default_rng(1)
    m = 6000
    f = _frame(np.arange(m), np.zeros(m), np.zeros(m), np.zeros(m),
               action=rng.integers(0, 3, m), rng=rng)  # fmt: skip
    state = f.obs[:, 0].astype(float)
    with_page = state + 1.5 * (f.action == 2) + 0.3 * rng.normal(size=m)
    without = state + 0.3 * rng.normal(size=m)
    found = consistency.r2_gain(f, with_page, ipw=True)
    assert found.gain > 0.2
    # the paired gain: the page's share, Var(1.5 * 1[a = 2]) / Var(y), from the one (s, a) model
    share = 1.5**2 * (2 / 9) / with_page.var()
    assert found.paired_gain is not None and abs(found.paired_gain - share) < 0.05
    assert found.paired_gain_se > 0
    assert abs(consistency.r2_gain(f, without, ipw=False).gain) < 0.02
    assert consistency.r2_gain(f, without, ipw=False).paired_gain is None  # IPW only
    assert abs(consistency.r2_gain(f, without, ipw=True).paired_gain) < 0.01


def test_flip_policy_flips_only_the_chosen_session():
    cfg = SimConfig(seed=2)
    users = 200
    flip_at = np.full(users, 1)
    offset = np.ones(users, np.int64)
    base = next(iter(simulate(cfg, 0, users, 1, FlipPolicy(np.full(users, -1), offset))))
    flip = next(iter(simulate(cfg, 0, users, 1, FlipPolicy(flip_at, offset))))
    sb, sf = base.sessions, flip.sessions
    b0, f0 = sb["session_idx"] <= 1, sf["session_idx"] <= 1  # sessions 0 and 1 exist in both
    assert np.array_equal(sb["row"][b0], sf["row"][f0])
    a_b, a_f = sb["action"][b0].astype(int), sf["action"][f0].astype(int)
    first = sb["session_idx"][b0] == 0
    assert np.array_equal(a_b[first], a_f[first])
    assert np.array_equal((a_b[~first] + 1) % 3, a_f[~first])


def test_lagged_costs_move_the_delay_profile_later():
    plain = crn_profile(SimConfig(seed=6), users=400, days=2, burn_in=1)
    lagged = crn_profile(world_config("premise", seed=6), users=400, days=2, burn_in=1)
    assert len(plain.effect_s) == len(plain.lags) == 10
    assert plain.effect_s[0] > max(plain.effect_s[1:-1])  # most of it at the flipped session
    assert lagged.delayed_share > plain.delayed_share


def test_targets_semantics_and_report_round_trip(tmp_path):
    t = {x.name: x for x in PREMISE_TARGETS}
    assert met(t["history_gap_closed"], 0.5) and not met(t["history_gap_closed"], 0.49)
    assert not met(t["return_consistency_ipw"], 0.0) and met(t["return_consistency_ipw"], 1e-4)
    cfg = SimConfig(seed=8)
    logs = list(simulate(cfg, 0, 300, 3, LoggingPolicy(cfg), keep_latent=True))
    f = from_day_logs(logs)
    assert f.latent is not None and f.latent.shape[0] == len(f)
    d = Diagnosis(source="test", sessions=len(f), user_days=f.n_days, sessions_per_day=2.0,
                  history={"gap_closed": 0.6, "outcomes": ["dropoff"], "loss": {"obs": {
                      "dropoff": 0.3}}, "total": {"obs": 0.3}, "history_gain": 0.1,
                      "features_gain": 0.05, "features_gap_closed": 0.4,
                      "gain_by_index": {"0": 0.0}, "by_index": {"obs": {"0": 0.3}}},
                  consistency={"ipw_gain": -0.01, "splits": 1, "r2_state": 0.5,
                               **{k: 0.0 for k in ("plain_gain", "plain_gain_sd", "ipw_gain_sd",
                                                   "hist_plain_gain", "hist_plain_gain_sd",
                                                   "hist_ipw_gain", "hist_ipw_gain_sd")}},
                  delay={"kind": "simulator", "lags": ["0"], "effect_s": [1.0],
                         "delayed_share": 0.2, "next_day_ratio": 0.1, "flips": 5})  # fmt: skip
    _check(d)
    assert [x["met"] for x in d.targets] == [True, False, False]
    path = write(d, str(tmp_path))
    assert load(str(tmp_path)).targets == d.targets
    with open(path) as fh:
        text = fh.read()
    assert "| history_gap_closed |" in text and "**no**" in text
    assert (tmp_path / "delay.png").exists() and (tmp_path / "history_by_index.png").exists()
    assert markdown(d, []).startswith("# Premise diagnostics: test")
