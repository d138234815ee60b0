"""Critic-guided GLAN by hand: argmax_a [log π_DT(a | h) + λ·Â(s, a)/T] (``glan_step``), its
λ and arm options, and the ``glan_cg`` arm at λ = 0 (GLAN as published) and λ → ∞ (the critic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glan_ray.policy import glan_step
from glan_ray.policy.registry import make_arm
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

LN2, LN4 = math.log(2.0), math.log(4.0)
# the DT: π = (1/4, 1/2, 1/4), argmax page 1; the critic: Q = (3, 1, 2), mean 2, Â = (1, −1, 0)
LOGITS = torch.tensor([[0.0, LN2, 0.0]])
Q = torch.tensor([[3.0, 1.0, 2.0]])


def test_lambda_zero_is_the_dts_log_softmax():
    got = glan_step.critic_guided_scores(LOGITS, Q, 0.0)
    torch.testing.assert_close(got, torch.tensor([[-LN4, -LN2, -LN4]]))


def test_lambda_flips_the_argmax_from_the_dt_to_the_critic():
    # scores = (−ln 4 + λ, −ln 2 − λ, −ln 4): page 0 overtakes page 1 once 2λ > ln 2 (λ > 0.347)
    got = glan_step.critic_guided_scores(LOGITS, Q, 1.0)
    torch.testing.assert_close(got, torch.tensor([[1.0 - LN4, -1.0 - LN2, -LN4]]))
    assert glan_step.critic_guided_scores(LOGITS, Q, 0.3).argmax().item() == 1  # the DT's page
    assert glan_step.critic_guided_scores(LOGITS, Q, 0.4).argmax().item() == 0  # the critic's
    # π = softmax(scores) ∝ π_DT · exp(λ·Â) = (e/4, 1/(2e), 1/4) at λ = 1
    e = math.e
    want = torch.tensor([[e / 4, 1 / (2 * e), 1 / 4]]) / (e / 4 + 1 / (2 * e) + 1 / 4)
    torch.testing.assert_close(torch.softmax(got, -1), want)
    # T = 2 halves Â/T: the flip needs λ > ln 2 (0.693), so λ = 0.5 keeps the DT's page
    assert glan_step.critic_guided_scores(LOGITS, Q, 0.5, temperature=2.0).argmax().item() == 1
    assert glan_step.critic_guided_scores(LOGITS, Q, 0.8, temperature=2.0).argmax().item() == 0


def test_a_per_state_shift_of_q_changes_nothing():
    shifted = Q + torch.tensor([[100.0]])  # Â = Q − mean_a Q: the state's level cancels
    torch.testing.assert_close(glan_step.critic_guided_scores(LOGITS, shifted, 1.0),
                               glan_step.critic_guided_scores(LOGITS, Q, 1.0))  # fmt: skip


def test_lambda_to_infinity_is_the_critics_argmax():
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(500, 3, generator=g)  # (B, A)
    q = torch.randn(500, 3, generator=g)  # (B, A)
    got = glan_step.critic_guided_scores(logits, q, 1e6).argmax(-1)
    torch.testing.assert_close(got, q.argmax(-1))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "x", [1.0]])
def test_critic_lambda_is_a_finite_number_at_least_zero(bad):
    with pytest.raises(ValueError, match=r"critic_lambda must be a finite number >= 0"):
        glan_step.critic_lambda(bad)


def test_critic_lambda_reads_numbers_strings_and_none():
    assert glan_step.critic_lambda(None) == glan_step.CRITIC_LAMBDA == 1.0
    assert glan_step.critic_lambda(0) == 0.0
    assert glan_step.critic_lambda("1e6") == 1e6  # YAML reads 1e6 as a string


def test_arm_option_critic_lambda_is_checked_and_reaches_the_policy(random_models):
    cfg = SimConfig(block_size=100)
    with pytest.raises(ValueError, match=r"critic_lambda must be a finite number >= 0 .*; got -1"):
        make_arm("glan_cg", random_models, cfg, {"critic_lambda": -1})
    with pytest.raises(ValueError, match=r"'glan': unknown option\(s\) critic_lambda; valid: "
                                         r"target_gain, explore"):  # fmt: skip
        make_arm("glan", random_models, cfg, {"critic_lambda": 1.0})
    cg = make_arm("glan_cg", random_models, cfg, {"critic_lambda": 3.0, "target_gain": 2.0})
    assert cg.critic_lambda == 3.0 and cg.target_gain == 2.0 and cg.critic is not None
    assert make_arm("glan_cg_no_hrm", random_models, cfg).critic_lambda == 1.0
    assert make_arm("glan_cg_no_lrtg", random_models, cfg).lrtg is None


def _pages(arm: str, models: str, options: dict | None = None) -> np.ndarray:
    cfg = SimConfig(seed=4, block_size=100)
    policy = make_arm(arm, models, cfg, options)
    return np.concatenate([log.sessions["action"] for log in simulate(cfg, 0, 100, 1, policy)])


def test_glan_cg_is_glan_at_lambda_zero_and_the_critic_as_lambda_grows(random_models):
    glan = _pages("glan", random_models)
    assert len(glan) > 0
    np.testing.assert_array_equal(_pages("glan_cg", random_models, {"critic_lambda": 0}), glan)
    critic = _pages("klan_iit", random_models)  # greedy on the same cql export's Q
    assert not np.array_equal(critic, glan)  # the two ends of λ play differently
    np.testing.assert_array_equal(_pages("glan_cg", random_models, {"critic_lambda": 1e6}),
                                  critic)  # fmt: skip
