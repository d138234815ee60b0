"""Exploration (``policy.explore``): the serving distribution of each mode computed by hand, the
spec parser's errors, and the simulator logging the served page's probability as propensity."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.policy.explore import Exploration, ExploringPolicy, sample_pages
from glan_ray.policy.registry import Variant, make_arm
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

PI = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])


def test_greedy_epsilon_and_softmax_by_hand():
    np.testing.assert_array_equal(Exploration().probs(PI), [[0, 1, 0], [1, 0, 0]])
    eps = Exploration.parse("epsilon=0.3").probs(PI)
    np.testing.assert_allclose(eps, [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(Exploration.parse("softmax").probs(PI), PI)  # eq. 29: π itself
    # T = 0.5: π² renormalised; unnormalised rows give the same distribution
    sq = PI**2 / (PI**2).sum(1, keepdims=True)
    np.testing.assert_allclose(Exploration.parse("softmax=0.5").probs(3 * PI), sq)
    # a zero entry keeps probability 0 at any temperature (no NaN from log 0)
    p = Exploration.parse("softmax=2").probs(np.array([[0.0, 0.25, 0.75]]))
    root = np.sqrt([0.25, 0.75])
    np.testing.assert_allclose(p, [[0.0, *(root / root.sum())]])


def test_parse_round_trips_and_names_what_is_wrong():
    for spec in ("greedy", "epsilon=0.1", "softmax=0.5", "softmax=1"):
        assert str(Exploration.parse(spec)) == spec
    assert Exploration.parse("softmax").temperature == 1.0
    assert Exploration.parse("epsilon=0").greedy and not Exploration.parse("epsilon=0.1").greedy
    with pytest.raises(ValueError, match="unknown mode 'boltzmann'"):
        Exploration.parse("boltzmann=1")
    with pytest.raises(ValueError, match="epsilon needs a value"):
        Exploration.parse("epsilon")
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]; got 1.5"):
        Exploration.parse("epsilon=1.5")
    with pytest.raises(ValueError, match="temperature must be > 0; got 0"):
        Exploration.parse("softmax=0")
    with pytest.raises(ValueError, match="'x' is not a number"):
        Exploration.parse("softmax=x")
    with pytest.raises(ValueError, match="greedy takes no value"):
        Exploration.parse("greedy=1")
    with pytest.raises(ValueError, match="pi must be finite"):
        Exploration().probs(np.array([[0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        Exploration().probs(np.ones((2, 2)))


def test_sample_pages_inverse_cdf():
    p = np.array([[0.1, 0.8, 0.1]] * 4)
    np.testing.assert_array_equal(sample_pages(p, np.array([0.05, 0.1, 0.85, 0.95])), [0, 0, 1, 2])


class _Fixed(ExploringPolicy):
    """π = (0.2, 0.5, 0.3) for everyone: greedy lands on Explore."""

    def pi(self, obs, history):
        return np.tile([0.2, 0.5, 0.3], (len(obs.rows), 1))


def test_simulator_logs_the_served_pages_probability():
    cfg = SimConfig(seed=3)
    greedy = [log.sessions for log in simulate(cfg, 0, 64, 2, _Fixed())]
    assert all((s["action"] == 1).all() and (s["propensity"] == 1).all() for s in greedy)
    logs = [log.sessions for log in simulate(cfg, 0, 64, 2, _Fixed().explore("epsilon=0.3"))]
    a = np.concatenate([s["action"] for s in logs])
    prop = np.concatenate([s["propensity"] for s in logs])
    np.testing.assert_allclose(prop, np.where(a == 1, 0.8, 0.1))
    assert set(np.unique(a)) == {0, 1, 2}
    assert 0.7 < (a == 1).mean() < 0.9  # ~0.8 of the entries on the argmax


def test_variants_build_another_arm_under_their_name():
    cfg = SimConfig()
    p = make_arm("heur", None, cfg, variants={"heur": {"arm": "last_exit"}})
    assert p.name == "heur" and type(p).__name__ == "LastExitPolicy"
    with pytest.raises(ValueError, match="unknown option"):
        Variant("logging", options={"explore": "epsilon=0.1"})
    with pytest.raises(ValueError, match="unknown field"):
        Variant.of({"arm": "klan", "model": "x"})
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        Variant("nope")
