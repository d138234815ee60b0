"""The fused finite check of our learners' gradients (``rllib.learner.FusedFiniteCheck``)."""

from __future__ import annotations

import math

import torch

from glan_ray.rllib.launch import config_class
from glan_ray.rllib.learner import FusedFiniteCheck, MeanPerTrain


class _Base:
    def apply_gradients(self, gradients_dict):
        self.got = gradients_dict


class _Learner(FusedFiniteCheck, _Base):
    pass


def test_finite_gradients_pass_through_unchanged():
    g = {"w": torch.tensor([1.0, -2.0]), "b": torch.tensor([0.5]), "frozen": None}
    learner = _Learner()
    learner.apply_gradients(g)
    assert learner.got is g  # no copy, no check per parameter


def test_nan_and_inf_entries_are_zeroed_the_others_kept():
    g = {"w": torch.tensor([1.0, math.nan]), "b": torch.tensor([math.inf]),
         "c": torch.tensor([3.0]), "frozen": None}  # fmt: skip
    learner = _Learner()
    learner.apply_gradients(g)
    assert learner.got["w"].tolist() == [1.0, 0.0]
    assert learner.got["b"].tolist() == [0.0]
    assert learner.got["c"].tolist() == [3.0]
    assert learner.got["frozen"] is None


def test_both_algorithms_skip_rllibs_per_parameter_checks():
    for algo in ("cql", "dt"):
        assert config_class(algo)().torch_skip_nan_gradients is True


class _Metrics:
    def __init__(self):
        self.logged = []

    def log_dict(self, values, key, window):
        self.logged.append((key, {k: float(v) for k, v in values.items()}, window))


class _Meaner(MeanPerTrain):
    def __init__(self, per_train):
        self.config = type("C", (), {"dataset_num_iters_per_learner": per_train})()
        self.metrics = _Metrics()


def test_metrics_reach_the_logger_once_per_train_call_as_their_mean():
    m = _Meaner(per_train=3)
    for v in (1.0, 2.0, 6.0, 10.0):  # one train() call of 3 updates, then the next one's first
        m.log_mean("default_policy", {"td_loss": torch.tensor(v), "q": torch.tensor(-v)})
    assert m.metrics.logged == [("default_policy", {"td_loss": 3.0, "q": -3.0}, 1)]
    for v in (20.0, 30.0):
        m.log_mean("default_policy", {"td_loss": torch.tensor(v), "q": torch.tensor(-v)})
    assert m.metrics.logged[1] == ("default_policy", {"td_loss": 20.0, "q": -20.0}, 1)
