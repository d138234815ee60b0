"""Agreement of the critic-guided choice with the critic's and the DT's argmax, by hand, and on
the decisions a ``glan_cg`` arm makes in the simulator."""

from __future__ import annotations

import math

import pytest
import torch

from glan_ray.eval.critic_agreement import collect_decisions, critic_agreement

LN2, LN4 = math.log(2.0), math.log(4.0)
# 1: π_DT = (1/4, 1/2, 1/4), Â = (1, −1, 0): the DT says 1, the critic 0; flips at λ > ln2/2 = 0.35
# 2: π_DT = (2/3, 1/6, 1/6), Â = (−1, −1, 2): the DT says 0, the critic 2; flips at λ > ln4/3 = 0.46
# 3: both say page 2
LOGITS = torch.tensor([[0.0, LN2, 0.0], [LN4, 0.0, 0.0], [0.0, 0.0, LN2]])
Q = torch.tensor([[3.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]])


def test_agreement_by_hand():
    at0, at04, at1 = critic_agreement(LOGITS, Q, [0.0, 0.4, 1.0])
    third = pytest.approx(1 / 3)
    assert (at0.decisions, at0.with_dt, at0.with_critic, at0.dt_with_critic) == (3, 1.0, third,
                                                                                 third)  # fmt: skip
    # λ = 0.4: decision 1 has flipped to the critic's page, decision 2 not yet
    assert (at04.with_critic, at04.with_dt) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (at1.with_critic, at1.with_dt, at1.critic_lambda) == (1.0, third, 1.0)
    # T = 2 halves Â/T: at λ = 0.4 neither decision has flipped yet
    assert critic_agreement(LOGITS, Q, [0.4], temperature=2.0)[0].with_dt == 1.0


def test_agreement_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="one shape"):
        critic_agreement(LOGITS, Q[:2], [1.0])


def test_decisions_of_a_played_arm(random_models):
    sim = {"block_size": 100}
    d = collect_decisions("glan_cg", random_models, sim, 1, 0, 100, 1, {"critic_lambda": 0})
    assert d.logits.shape == d.q.shape and d.logits.shape[1] == 3 and len(d.logits) > 0
    assert d.temperature == 1.0
    at0, inf = critic_agreement(d.logits, d.q, [0.0, 1e6], d.temperature)
    assert at0.with_dt == 1.0 and inf.with_critic == 1.0
    assert at0.with_critic == inf.with_dt == at0.dt_with_critic
    with pytest.raises(ValueError, match="no critic"):
        collect_decisions("glan", random_models, sim, 1, 0, 100, 1)
