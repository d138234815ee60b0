"""Serve's critic-guided GLAN (app arg ``critic_lambda``): the DT deployment, run in-process,
scores as ``glan_step.critic_guided_scores``; bad values are refused naming the arg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glan_ray.policy.klan import q_values
from glan_ray.policy.runner import ModelRunner
from glan_ray.serving.ingress import parse_user_config

OBS = [0.1 * i for i in range(28)]
REQS = [
    {"r1": 600.0, "rewards": [], "obs": [], "actions": [], "obs_now": OBS},
    {"r1": 900.0, "rewards": [60.0], "obs": [OBS], "actions": [1], "obs_now": OBS[::-1]},
]


def _dt(models: str, **critic):
    from glan_ray.serving.deployments import DTModel

    return DTModel.func_or_class({"path": f"{models}/dt", **critic})


def test_dt_deployment_with_a_critic_scores_as_the_glan_step(random_models):
    plain = np.asarray(_dt(random_models).probs(REQS))  # (B, 3)
    at0 = _dt(random_models, critic=f"{random_models}/cql", critic_lambda=0)
    np.testing.assert_allclose(at0.probs(REQS), plain, rtol=1e-6)  # λ = 0: the DT alone
    at1 = _dt(random_models, critic=f"{random_models}/cql", critic_lambda=1.0)
    q = q_values(ModelRunner(f"{random_models}/cql", "cql"), np.asarray([r["obs_now"] for r in
                                                                         REQS]))  # fmt: skip
    adv = (q - q.mean(-1, keepdim=True)).numpy()  # T = 1
    want = plain * np.exp(adv)  # π ∝ π_DT · exp(λ·Â)
    np.testing.assert_allclose(at1.probs(REQS), want / want.sum(1, keepdims=True), rtol=1e-5)
    big = _dt(random_models, critic=f"{random_models}/cql", critic_lambda=1e6)
    np.testing.assert_array_equal(np.argmax(big.probs(REQS), 1), torch.argmax(q, 1).numpy())
    assert "+critic=" in big.version_ and big.version_.endswith("@lambda=1e+06")
    assert big.config()["critic_lambda"] == 1e6


def test_bad_critic_settings_are_refused_naming_them(random_models, monkeypatch):
    with pytest.raises(ValueError, match="critic_lambda must be a finite number >= 0"):
        _dt(random_models, critic=f"{random_models}/cql", critic_lambda=-1)
    with pytest.raises(ValueError, match=r"dt user_config: unknown field\(s\) \['lam'\]"):
        _dt(random_models, lam=1.0)
    with pytest.raises(ValueError, match="history features"):  # the critic reads obs alone
        _dt(random_models, critic=f"{random_models}/cql_hist")
    with pytest.raises(ValueError, match=r"user_config\.critic_lambda must be a finite number"):
        parse_user_config({"critic_lambda": "x"})
    from glan_ray.serving import app

    monkeypatch.setattr(app, "_serve_http_host", lambda: "127.0.0.1")
    with pytest.raises(ValueError, match="app arg critic_lambda must be a finite number >= 0"):
        app.build_app({"models": random_models, "critic_lambda": -2})
    app.build_app({"models": random_models, "critic_lambda": 3})  # builds
