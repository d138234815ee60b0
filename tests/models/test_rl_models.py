"""The RL policies' torch parts without Ray: CQL loss terms, dynamic α, DT causality, KV cache,
and DT windows/RTG on hand-built trajectories."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from glan_ray.data.windows import cut_windows, deterministic_days
from glan_ray.models.cql import (
    DynamicAlpha,
    QNetConfig,
    QNetwork,
    activity_ratios,
    conservative_term,
    double_dqn_target,
    interest_scores,
)
from glan_ray.models.dt import DecisionTransformer, DTConfig, dt_loss, propensity_weights
from glan_ray.schema import OBS_DIM, DatasetValidationError

# --- discrete CQL ------------------------------------------------------------------------


def test_conservative_term_is_log3_for_equal_q_and_never_negative():
    q = torch.full((4, 3), 2.5)
    a = torch.tensor([0, 1, 2, 1])
    assert torch.allclose(conservative_term(q, a), torch.full((4,), math.log(3)))
    q = torch.randn(1000, 3) * 5
    a = torch.randint(0, 3, (1000,))
    assert (conservative_term(q, a) >= 0).all()
    # hand value: q = (0, ln 2, 0), a = 1 -> log(1 + 2 + 1) - ln 2 = ln 2
    c = conservative_term(torch.tensor([[0.0, math.log(2), 0.0]]), torch.tensor([1]))
    assert c.item() == pytest.approx(math.log(2))


def test_double_dqn_target_uses_online_argmax_and_target_value():
    online = torch.tensor([[1.0, 5.0, 0.0], [3.0, 0.0, 0.0]])
    target = torch.tensor([[10.0, 2.0, 30.0], [4.0, 40.0, 0.0]])
    y = double_dqn_target(online, target, torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), 0.5)
    # row 0: argmax online = 1 -> target 2.0 -> 1 + 0.5·2 = 2; row 1: done -> r = 1
    assert y.tolist() == [2.0, 1.0]
    assert not y.requires_grad


def test_dynamic_alpha_follows_the_hour_curve_and_stays_in_bounds():
    counts = np.ones(24) * 100
    counts[3], counts[20] = 5, 400  # a quiet night hour and a busy evening hour
    alpha = DynamicAlpha(
        alpha0=1.0,
        alpha_min=0.2,
        alpha_max=3.0,
        kappa_hour=0.5,
        kappa_freq=0.0,
        hour_ratio=tuple(activity_ratios(counts)),
    )
    hours = torch.arange(24, dtype=torch.float32) + 0.5
    a = alpha(hours, torch.zeros(24))
    assert a[3] > a[12] > a[20]  # quiet -> more conservative
    rho = activity_ratios(counts)
    assert a[12].item() == pytest.approx(rho[12] ** -0.5, rel=1e-5)
    assert ((a >= 0.2) & (a <= 3.0)).all()
    assert a[3].item() == pytest.approx(min(3.0, rho[3] ** -0.5))
    # frequency term: rare entry counts (the tail bucket) raise alpha too
    freq = DynamicAlpha(kappa_hour=0.0, kappa_freq=1.0, freq_ratio=(2.0, 1.0, 0.25))
    f = freq(torch.zeros(4), torch.tensor([0, 1, 2, 9]))
    assert f.tolist() == pytest.approx([0.5, 1.0, 4.0, 4.0])
    static = DynamicAlpha(alpha0=0.7, static=True)
    assert static(hours, torch.zeros(24)).unique().tolist() == pytest.approx([0.7])


def test_dynamic_alpha_rejects_bad_bounds():
    with pytest.raises(ValueError, match="alpha_min"):
        DynamicAlpha(alpha_min=2.0, alpha_max=1.0)
    with pytest.raises(ValueError, match="24"):
        DynamicAlpha(hour_ratio=(1.0,) * 5)


def test_qnetwork_shapes_and_interest_scores():
    net = QNetwork(QNetConfig(hidden=(8, 8)))
    q = net(torch.randn(5, OBS_DIM))
    assert q.shape == (5, 3)
    d = interest_scores(q, temperature=2.0)
    assert torch.allclose(d.sum(-1), torch.ones(5))
    assert torch.allclose(d, torch.softmax(q / 2.0, -1))


# --- Decision Transformer ----------------------------------------------------------------


def _dt(k: int = 6) -> DecisionTransformer:
    torch.manual_seed(0)
    cfg = DTConfig(context_len=k, embed_dim=32, n_heads=4, n_layers=2, dropout=0.0)
    return DecisionTransformer(cfg).eval()


def _inputs(b: int = 3, k: int = 6):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(b, k, generator=g),
        torch.randn(b, k, OBS_DIM, generator=g),
        torch.randint(0, 3, (b, k), generator=g),
        torch.arange(k).expand(b, k),
    )


def test_dt_attends_only_to_the_past():
    m = _dt()
    rtg, obs, act, ts = _inputs()
    base = m(rtg, obs, act, ts)
    assert base.shape == (3, 6, 3)
    t = 3
    for change in ("rtg", "obs", "act"):
        r2, o2, a2 = rtg.clone(), obs.clone(), act.clone()
        if change == "rtg":
            r2[:, t] += 1.0
        elif change == "obs":
            o2[:, t] += 1.0
        else:
            a2[:, t] = (a2[:, t] + 1) % 3
        out = m(r2, o2, a2, ts)
        assert torch.equal(out[:, :t], base[:, :t]), change  # earlier logits untouched
        if change == "act":  # a_t is not visible to the s_t token that predicts it
            assert torch.equal(out[:, t], base[:, t])
        else:
            assert not torch.allclose(out[:, t], base[:, t])


def test_kv_cache_step_equals_full_forward():
    m = _dt(k=6)
    rtg, obs, act, ts = _inputs(k=6)
    full = m(rtg, obs, act, ts)
    cache = m.new_cache()
    steps = [
        m.step(cache, rtg[:, t], obs[:, t], None if t == 0 else act[:, t - 1]) for t in range(6)
    ]
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert cache.n_tokens == 3 * 6 - 1
    # beyond K sessions the cache rolls: bounded size, still finite logits
    for _ in range(10):
        out = m.step(cache, rtg[:, 0], obs[:, 0], act[:, 0])
    assert cache.n_tokens == m.cfg.max_cache_tokens and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="prev_action"):
        m.step(m.new_cache(), rtg[:, 0], obs[:, 0], act[:, 0])


def test_row_cache_gives_each_rows_window_forward_with_rows_at_different_sessions():
    k, days = 3, 8  # windows of 3 sessions: sessions 0-2, 3-5, 6-7
    m = _dt(k=k)
    n = 4
    g = torch.Generator().manual_seed(2)
    rtg, obs = torch.randn(n, days, generator=g), torch.randn(n, days, OBS_DIM, generator=g)
    act = torch.randint(0, 3, (n, days), generator=g)
    cache = m.new_row_cache(n)
    # each call decides a different subset of rows, each row at its own next session
    schedule = [[0, 1, 2, 3], [0, 2], [0, 1, 3], [0], [0, 2, 3], [0, 1], [0, 3], [0, 2]]
    for rows in schedule:
        rows = np.asarray(rows)
        t = cache.fed[rows].copy()
        prev = act[rows, np.maximum(t - 1, 0)]
        got = m.step_rows(cache, rows, rtg[rows, t], obs[rows, t], prev)
        for j, (row, tj) in enumerate(zip(rows, t, strict=True)):
            start = (tj // k) * k  # the training window holding session tj
            sl = slice(start, tj + 1)
            want = m(rtg[row : row + 1, sl], obs[row : row + 1, sl], act[row : row + 1, sl],
                     torch.arange(start, tj + 1)[None])[0, -1]  # fmt: skip
            assert torch.allclose(got[j], want, atol=1e-5), (row, tj)
    assert cache.fed.tolist() == [8, 3, 4, 4]  # sessions fed per row
    # tokens of the current window: row 0 sessions 6-7, row 1 sessions 0-2, rows 2-3 session 3
    assert cache.n_tokens.tolist() == [2 + 3, 2 + 3 + 3, 2, 2]


def test_dt_loss_masks_padding():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    actions = torch.tensor([[0, 1]])
    mask = torch.tensor([[1.0, 0.0]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0, 0.0]), 0)[0]
    assert dt_loss(logits, actions, mask).item() == pytest.approx(expected.item())
    logits2 = logits.clone()
    logits2[0, 1] = torch.tensor([9.0, -9.0, 3.0])  # padded position changes nothing
    assert dt_loss(logits2, actions, mask).item() == pytest.approx(expected.item())


def test_weighted_dt_loss_by_hand():
    # two sessions, uniform logits: CE = ln 3 each; one with logits favouring its action
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0]]])  # (1, 2, 3)
    actions = torch.tensor([[1, 0]])
    mask = torch.ones(1, 2)
    ce = torch.tensor([math.log(3), math.log(4) - math.log(2)])
    w = torch.tensor([[3.0, 1.0]])
    expected = (3 * ce[0] + ce[1]) / 4
    assert dt_loss(logits, actions, mask, w).item() == pytest.approx(expected.item())
    # weights of masked positions do not count
    assert dt_loss(logits, actions, torch.tensor([[1.0, 0.0]]), w).item() == pytest.approx(
        math.log(3)
    )
    # unit weights = the unweighted loss
    assert dt_loss(logits, actions, mask, torch.ones(1, 2)).item() == pytest.approx(
        dt_loss(logits, actions, mask).item()
    )


def test_propensity_weights_are_capped_inverse_propensities():
    mu = torch.tensor([1.0, 0.5, 0.1, 0.01])
    assert propensity_weights(mu, 20.0).tolist() == pytest.approx([1.0, 2.0, 10.0, 20.0])


# --- windows and RTG ---------------------------------------------------------------------


def _trajectories(rewards: list[list[float]]) -> pa.Table:
    obs = [[[float(d * 100 + t)] * OBS_DIM for t in range(len(r))] for d, r in enumerate(rewards)]
    acts = [[t % 3 for t in range(len(r))] for r in rewards]
    return pa.table(
        {
            "obs": pa.array(obs, pa.list_(pa.list_(pa.float32(), OBS_DIM))),
            "actions": pa.array(acts, pa.list_(pa.int8())),
            "reward": pa.array(rewards, pa.list_(pa.float32())),
            "reward_hrm": pa.array([None] * len(rewards), pa.list_(pa.float32())),
        }
    )


def test_windows_and_rtg_on_a_hand_built_trajectory():
    t = _trajectories([[10, 20, 30, 40, 50], [7]])
    w = cut_windows(t, k=2, reward_column="reward", rtg_scale=10.0)
    # day 0 -> windows [0,1], [2,3], [4,pad]; day 1 -> [0,pad]
    assert w["obs"].shape == (4, 2, OBS_DIM)
    expected_rtg = [[15.0, 14.0], [12.0, 9.0], [5.0, 0.0], [0.7, 0.0]]
    np.testing.assert_allclose(w["rtg"], expected_rtg, rtol=1e-6)
    assert w["timesteps"].tolist() == [[0, 1], [2, 3], [4, 0], [0, 0]]
    assert w["mask"].tolist() == [[1, 1], [1, 1], [1, 0], [1, 0]]
    assert w["actions"].tolist() == [[0, 1], [2, 0], [1, 0], [0, 0]]
    assert w["obs"][1, 1, 0] == 3.0 and w["obs"][3, 0, 0] == 100.0
    assert w["mask"].sum() == 6  # every session exactly once


def test_windows_refuse_unlabelled_hrm_rewards_and_unknown_columns():
    t = _trajectories([[1.0, 2.0]])
    with pytest.raises(DatasetValidationError, match=r"reward_hrm.*label"):
        cut_windows(t, k=4, reward_column="reward_hrm")
    with pytest.raises(ValueError, match="reward_column"):
        cut_windows(t, k=4, reward_column="usage")


def test_windows_carry_the_logged_propensity_and_deterministic_days_are_found():
    t = _trajectories([[1.0, 2.0, 3.0], [4.0, 5.0], [6.0], []])
    mu = pa.array([[1.0, 1.0, 1.0], [0.5, 1.0], [0.25], []], pa.list_(pa.float32()))
    assert cut_windows(t, k=2, reward_column="reward")["propensity"].tolist() == [[1, 1]] * 4
    t = t.append_column("propensity", mu)
    w = cut_windows(t, k=2, reward_column="reward")
    assert w["propensity"].tolist() == [[1.0, 1.0], [1.0, 1.0], [0.5, 1.0], [0.25, 1.0]]
    # a day all at probability 1 (an RCT treatment day) and an empty day are deterministic
    assert deterministic_days(t).tolist() == [True, False, False, True]
    assert deterministic_days(t.slice(1)).tolist() == [False, False, True]
    zero = pa.array([[1.0, 1.0, 0.0], [0.5, 1.0], [0.25], []], pa.list_(pa.float32()))
    bad = t.set_column(t.column_names.index("propensity"), "propensity", zero)
    with pytest.raises(DatasetValidationError, match="propensity"):
        cut_windows(bad, k=2, reward_column="reward")


def test_rtg_baseline_recovers_a_linear_return_and_the_record_checks_it():
    """The advantage tokens' baseline: remaining returns per session, least squares by sums."""
    import pyarrow as pa

    from glan_ray.data.windows import remaining_returns
    from glan_ray.models.dt import fit_rtg_baseline, rtg_baseline_s
    from glan_ray.models.exports import DTRecord
    from glan_ray.schema import OBS_DIM

    # two days: rewards (10, 20, 30) and (5,): remaining returns 60, 50, 30 and 5
    obs = [[[float(i)] * OBS_DIM for i in range(3)], [[9.0] * OBS_DIM]]
    t = pa.table({"obs": obs, "reward_hrm": [[10.0, 20.0, 30.0], [5.0]]})
    o, y = remaining_returns(t, "reward_hrm")
    np.testing.assert_array_equal(y, [60, 50, 30, 5])
    assert o.shape == (4, OBS_DIM) and o[3, 0] == 9.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, OBS_DIM))
    w = rng.normal(size=OBS_DIM)
    target = x @ w + 300.0
    xa = np.concatenate([x, np.ones((500, 1))], 1)
    coef = fit_rtg_baseline(xa.T @ xa, xa.T @ target, ridge=0.0)
    np.testing.assert_allclose(coef[:-1], w, atol=1e-8)
    np.testing.assert_allclose(rtg_baseline_s(x, coef), target, atol=1e-6)
    assert DTRecord(rtg_baseline=coef).rtg_baseline == tuple(coef)
    with pytest.raises(ValueError, match=f"rtg_baseline must be empty or {OBS_DIM + 1} finite"):
        DTRecord(rtg_baseline=(1.0, 2.0))
    with pytest.raises(ValueError, match="rtg_baseline"):
        DTRecord(rtg_baseline=(float("nan"),) * (OBS_DIM + 1))


def test_expectile_regression_by_hand_and_act_tokens():
    """ACT's command head: the τ-expectile m of y solves τ·Σ_{y>m}(y − m) = (1 − τ)·Σ_{y<m}(m − y);
    for y = 0, 0, 0, 10 and τ = 0.9: 0.9(10 − m) = 0.1·3m, m = 7.5 (τ = 0.5: the mean 2.5)."""
    from glan_ray.models.dt import fit_expectile, return_tokens_s
    from glan_ray.models.exports import DTRecord

    y = np.array([0.0, 0.0, 0.0, 10.0])
    assert fit_expectile(np.zeros((4, 0)), y, 0.9) == pytest.approx([7.5])
    assert fit_expectile(np.zeros((4, 0)), y, 0.5) == pytest.approx([2.5])
    # with a feature: y = 2x + noise ±1 -> the 0.9-expectile line is 2x + 0.8 (per x: 0.9(1 − m)
    # = 0.1(m + 1) -> m = 0.8), the least-squares line 2x
    x = np.repeat(np.arange(5.0), 2)[:, None]  # (10, 1)
    yy = 2 * x[:, 0] + np.tile([-1.0, 1.0], 5)
    np.testing.assert_allclose(fit_expectile(x, yy, 0.9, ridge=0.0), [2.0, 0.8], atol=1e-9)
    np.testing.assert_allclose(fit_expectile(x, yy, 0.5, ridge=0.0), [2.0, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match=r"tau must be in \(0, 1\); got 1.0"):
        fit_expectile(x, yy, 1.0)
    # tokens: R̂ (published), R̂ − b(s) (advantage tokens), ĉ(s) whatever R̂ (ACT)
    obs = np.ones((2, OBS_DIM))
    coef = np.zeros(OBS_DIM + 1)
    coef[0], coef[-1] = 3.0, 100.0  # w·s + c = 103
    rtg = np.array([500.0, 900.0])
    np.testing.assert_array_equal(return_tokens_s(rtg, obs), rtg)
    np.testing.assert_array_equal(return_tokens_s(rtg, obs, baseline=coef), rtg - 103.0)
    np.testing.assert_array_equal(return_tokens_s(rtg, obs, command=coef), [103.0, 103.0])
    assert DTRecord(command=coef).command == tuple(coef)
    with pytest.raises(ValueError, match=f"command must be empty or {OBS_DIM + 1} finite"):
        DTRecord(command=(1.0,))
    with pytest.raises(ValueError, match="alternatives"):
        DTRecord(command=coef, rtg_baseline=coef)
