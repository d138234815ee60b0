"""rllib.heldout: the held-out users' rows, the pre-learner leaving them out of training, and
the criteria computed by hand (no Ray: configs, pre-learners and modules are built in-process)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from ray.rllib.core.columns import Columns

from glan_ray.data.split import is_val_user
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.dt import dt_loss, propensity_weights
from glan_ray.rllib import heldout
from glan_ray.rllib.cql.cql import DiscreteCQLConfig
from glan_ray.rllib.cql.prelearner import TransitionsPreLearner
from glan_ray.rllib.offline import obs_space
from glan_ray.schema import N_PAGES, OBS_DIM


def _cql_config(**training):
    return DiscreteCQLConfig().offline_data(input_="/data/transitions").training(**training)


def test_split_is_the_deterministic_user_hash():
    ids = np.arange(1000)
    val = is_val_user(ids, 0.1)
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1000)
    np.testing.assert_array_equal(val, h < 100)
    np.testing.assert_array_equal(is_val_user(pa.chunked_array([ids[:5], ids[5:]]), 0.1), val)
    assert 0.05 < val.mean() < 0.15


def test_read_heldout_keeps_only_held_out_users_and_caps_rows(transitions, tmp_path):
    path = tmp_path / "transitions"
    path.mkdir()
    pq.write_table(transitions.slice(0, 150), path / "a.parquet")
    pq.write_table(transitions.slice(150), path / "b.parquet")
    want = transitions.filter(pa.array(is_val_user(transitions.column("user_id"), 0.3)))
    got = heldout.read_heldout(str(path), 0.3, 10**9)
    assert got.num_rows == want.num_rows > 0
    assert set(got.column("user_id").to_pylist()) == set(want.column("user_id").to_pylist())
    assert heldout.read_heldout(str(path), 0.3, 7).num_rows == 7
    with pytest.raises(ValueError, match=r"no held-out users in .*val_fraction 0\.0001"):
        heldout.read_heldout(str(path), 0.0001, 10)


def test_prelearner_leaves_the_held_out_users_out_when_asked(transitions):
    pre = TransitionsPreLearner(config=_cql_config(), spaces=(obs_space(), None))
    assert len(pre(transitions)["default_policy/" + Columns.ACTIONS]) == transitions.num_rows
    cfg = _cql_config()
    cfg.holdout_fraction = 0.3
    out = TransitionsPreLearner(config=cfg, spaces=(obs_space(), None))(transitions)
    kept = (~is_val_user(transitions.column("user_id"), 0.3)).sum()
    assert 0 < len(out["default_policy/" + Columns.ACTIONS]) == kept < transitions.num_rows


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qnet = QNetwork(QNetConfig(obs_dim=OBS_DIM, n_actions=N_PAGES, hidden=(8,)))


def test_cql_criterion_is_the_held_out_q_level_beside_the_greedy_figures(transitions, monkeypatch):
    monkeypatch.setattr(heldout, "CHUNK", 64)  # several chunks, as on a large held-out set
    cfg = _cql_config()
    scorer = heldout.held_out("cql", cfg, transitions)
    assert (scorer.metric, scorer.mode, scorer.keep_best) == ("val_q_mean", "max", False)
    torch.manual_seed(0)
    module = _Module()
    first = scorer.measure(module)
    assert np.isnan(first["val_churn"]) and np.isnan(first["val_regret"])
    # by hand: the greedy page's logged sessions among those a stochastic policy logged,
    # weighted by 1/μ
    obs = np.asarray(pc.list_flatten(transitions.column("obs")), np.float32).reshape(-1, OBS_DIM)
    with torch.no_grad():
        q = module.qnet(torch.from_numpy(obs)).numpy()
    a = transitions.column("action").to_numpy()
    mu = transitions.column("propensity").to_numpy().astype(np.float64)
    r = transitions.column("reward").to_numpy() * cfg.reward_scale
    assert first["val_q_mean"] == pytest.approx(q[np.arange(len(a)), a].mean(), rel=1e-5)
    hit = (q.argmax(1) == a) & (mu < 1)
    assert first["val_snips"] == pytest.approx((r[hit] / mu[hit]).sum() / (1 / mu[hit]).sum())
    again = scorer.measure(module)  # the same weights: nothing changed
    assert again["val_churn"] == 0 and again["val_regret"] == 0
    with torch.no_grad():
        module.qnet.net[-1].bias += torch.tensor([0.0, 0.0, 1e6])  # every state now picks page 2
    moved = scorer.measure(module)
    assert moved["val_churn"] == pytest.approx((q.argmax(1) != 2).mean())
    hit = (a == 2) & (mu < 1)
    assert moved["val_snips"] == pytest.approx((r[hit] / mu[hit]).sum() / (1 / mu[hit]).sum())


def test_dt_criterion_is_the_learners_loss_over_the_held_out_windows(trajectories, monkeypatch):
    from glan_ray.rllib.dt.dt import DTConfig
    from glan_ray.rllib.dt.torch.dt_torch_rl_module import MASK, PROPENSITY, DTTorchRLModule

    monkeypatch.setattr(heldout, "CHUNK", 16)
    cfg = (DTConfig().offline_data(input_="/data/trajectories").training(reward_column="reward")
           .rl_module(model_config={"embed_dim": 16, "n_layers": 1, "n_heads": 2}))  # fmt: skip
    scorer = heldout.held_out("dt", cfg, trajectories)
    assert (scorer.metric, scorer.mode, scorer.keep_best) == ("val_loss", "min", True)
    assert scorer.rows > 16
    torch.manual_seed(0)
    module = cfg.get_rl_module_spec().build()
    assert isinstance(module, DTTorchRLModule)
    got = scorer.measure(module)
    assert module.training  # measured without dropout, left as it was
    module.eval()
    b = scorer.batch  # the whole held-out set in one forward pass
    with torch.no_grad():
        logits = module.dt(b["rtg"], b[Columns.OBS], b[Columns.ACTIONS], b["timesteps"])
    w = propensity_weights(b[PROPENSITY], cfg.max_weight)
    assert got["val_loss"] == pytest.approx(float(dt_loss(logits, b[Columns.ACTIONS], b[MASK], w)),
                                            rel=1e-5)  # fmt: skip
    assert got["val_ce"] == pytest.approx(float(dt_loss(logits, b[Columns.ACTIONS], b[MASK])),
                                          rel=1e-5)  # fmt: skip
    assert 0 <= got["val_accuracy"] <= 1
