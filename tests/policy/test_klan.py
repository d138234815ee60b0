"""KLAN and its ablations on randomly initialised exports: IIT is greedy on Q, ISP's static
scores are computed once per user-day, and AM's weight moves KLAN between the two."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from glan_ray.data.history import history_features
from glan_ray.models.checkpoint import load_checkpoint, save_checkpoint
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.exports import CQLRecord
from glan_ray.models.klan_isp import static_scores
from glan_ray.policy.context import daily_columns
from glan_ray.policy.klan import CQLHistPolicy, CQLPolicy, ISPPolicy, KlanPolicy, StaticScores
from glan_ray.policy.runner import ModelRunner
from glan_ray.schema import HIST_DIM, HIST_FEATURES, OBS_DIM
from glan_ray.sim.baselines import FixedPagePolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate, user_features
from glan_ray.sim.interface import IntraDayHistory, Observation

CFG = SimConfig(seed=8, block_size=100)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _paths(models: str) -> dict[str, str]:
    return {k: os.path.join(models, k) for k in ("isp", "cql", "am")}


def _obs(x: np.ndarray) -> Observation:
    b = len(x)
    return Observation(
        rows=np.arange(b),
        user_id=np.arange(b),
        obs=x.astype(np.float32),
        hour=np.full(b, 12.0),
        weekday=2,
        entries_today=np.zeros(b, dtype=np.int64),
        last_exit=np.zeros(b, dtype=np.int64),
        most_visited=np.zeros(b, dtype=np.int64),
    )


def _actions(policy, days: int = 2) -> np.ndarray:
    return np.concatenate([log.sessions["action"] for log in simulate(CFG, 0, 100, days, policy)])


class ConstantWeight:
    """A stand-in for KLAN-AM's runner: the same weight w on every page."""

    def __init__(self, w: float) -> None:
        self.w, self.calls = w, 0

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        self.calls += 1
        assert (cols["action"] == 0).all()  # AM scores every page at once
        return {"w": torch.full((len(cols["hour"]), 3), self.w)}


def test_cql_policy_is_greedy_on_the_q_network(random_models):
    policy = CQLPolicy(_paths(random_models)["cql"])
    net, _, _ = load_checkpoint(_paths(random_models)["cql"])
    x = np.random.default_rng(0).normal(size=(64, OBS_DIM))
    p = policy.probs(_obs(x), IntraDayHistory.empty(64, 4, OBS_DIM))
    with torch.no_grad():
        q = net(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_array_equal(p.argmax(1), q.argmax(1))
    np.testing.assert_array_equal(p.sum(1), 1.0)
    assert set(np.unique(p)) == {0.0, 1.0}
    assert len(set(p.argmax(1))) > 1  # random weights, random states: not one page


def test_cql_policy_reads_the_exports_temperature(tmp_path):
    q = QNetwork(QNetConfig(hidden=(4,)))
    path = str(tmp_path / "cql")
    save_checkpoint(path, "cql", q, dataclasses.asdict(q.cfg), {}, None, CQLRecord(temperature=0.5))
    assert CQLPolicy(path).temperature == 0.5


def test_policies_refuse_a_model_of_the_wrong_kind(random_models):
    paths = _paths(random_models)
    with pytest.raises(ValueError, match="holds a 'isp' model; expected cql"):
        CQLPolicy(paths["isp"])
    with pytest.raises(ValueError, match="holds a 'cql' model; expected isp"):
        ISPPolicy(paths["cql"])
    with pytest.raises(ValueError, match="holds a 'isp' model; expected am"):
        KlanPolicy(paths["isp"], paths["cql"], paths["isp"])


class _Seen(CQLHistPolicy):
    """klan_iit_hist, keeping every state it fed its Q-network and the history it came from."""

    def states(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        x = super().states(obs, history)
        r = obs.rows
        h = history_features(history.length[r], history.action[r], history.dur[r],
                             history.y_sw[r], history.exit_page[r], history.obs[r])  # fmt: skip
        self.seen.append((x, obs.obs, h, history.length[r].copy()))
        return x


def test_klan_iit_hist_plays_a_day_on_obs_and_todays_history(random_models):
    policy = _Seen(os.path.join(random_models, "cql_hist"))
    policy.seen = []
    actions = _actions(policy.explore("epsilon=0.2"), days=1)
    assert len(actions) > 50 and len(set(actions.tolist())) == 3
    x, obs, h, length = (np.concatenate(v) for v in zip(*policy.seen, strict=True))
    assert x.shape == (len(actions), OBS_DIM + HIST_DIM)
    np.testing.assert_array_equal(x, np.concatenate([obs, h], axis=1))
    assert (length > 0).any() and np.abs(h[length > 0]).sum() > 0  # later entries see history
    assert not h[length == 0].any()  # a day's first entry has none


def _cql_export(path: str, obs_dim: int, names: tuple[str, ...] = ()) -> str:
    q = QNetwork(QNetConfig(obs_dim=obs_dim, hidden=(4,)))
    save_checkpoint(path, "cql", q, dataclasses.asdict(q.cfg), {}, None,
                    CQLRecord(history_features=names))  # fmt: skip
    return path


def test_cql_exports_are_refused_by_the_arm_they_do_not_fit(random_models, tmp_path):
    plain, hist = os.path.join(random_models, "cql"), os.path.join(random_models, "cql_hist")
    with pytest.raises(ValueError, match=r"reads obs alone .* glan-ray train cql --history"):
        CQLHistPolicy(plain)
    with pytest.raises(ValueError, match="play it as the klan_iit_hist arm, not as 'cql'"):
        CQLPolicy(hist)
    with pytest.raises(ValueError, match="not as 'klan'"):
        KlanPolicy(_paths(random_models)["isp"], hist, _paths(random_models)["am"])
    wide = _cql_export(str(tmp_path / "wide"), OBS_DIM + HIST_DIM)  # wide net, plain record
    with pytest.raises(ValueError, match=f"reads {OBS_DIM + HIST_DIM} inputs, but obs"):
        CQLPolicy(wide)
    narrow = _cql_export(str(tmp_path / "narrow"), OBS_DIM, HIST_FEATURES)
    with pytest.raises(ValueError, match=rf"reads {OBS_DIM} inputs, but obs .* make"):
        CQLHistPolicy(narrow)
    old = _cql_export(str(tmp_path / "old"), OBS_DIM + 2, HIST_FEATURES[:2])
    with pytest.raises(ValueError, match=r"schema\.HIST_FEATURES is now"):
        CQLHistPolicy(old)


class Counting:
    """Wraps a model runner and counts its calls."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner, self.calls = runner, 0

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.runner(cols)


def test_static_scores_are_computed_once_per_user_day(random_models):
    log = next(simulate(CFG, 0, 100, 1, FixedPagePolicy(0)))
    features = {
        "user_id": log.users.user_id,
        **user_features(log.users),
        **log.stats,
        "seq_sessions": log.seq_sessions,
        "seq_usage": log.seq_usage,
    }  # as begin_day's
    static = StaticScores(_paths(random_models)["isp"], temperature=2.0)
    static.isp = counting = Counting(static.isp)  # type: ignore[assignment]
    static.begin_day(features)
    day, s = static.of(log.weekday)
    assert (day["weekday"] == log.weekday).all() and s.shape == (100, 3)
    torch.testing.assert_close(s.sum(1), torch.ones(100))  # a softmax over the pages
    want = static_scores(counting.runner(daily_columns(features, log.weekday)), 2.0)
    torch.testing.assert_close(s, want)
    assert static.of(log.weekday)[1] is s and counting.calls == 1  # cached for the day
    static.begin_day(features)  # a new day: computed again
    static.of(log.weekday)
    assert counting.calls == 2


def test_klan_with_full_static_weight_is_isp_and_with_none_is_iit(random_models):
    p = _paths(random_models)
    klan = KlanPolicy(p["isp"], p["cql"], p["am"])
    klan.am = ConstantWeight(1.0)  # type: ignore[assignment]
    np.testing.assert_array_equal(_actions(klan), _actions(ISPPolicy(p["isp"])))
    assert klan.am.calls > 0
    klan.am = ConstantWeight(0.0)  # type: ignore[assignment]
    iit = _actions(CQLPolicy(p["cql"]))
    np.testing.assert_array_equal(_actions(klan), iit)
    assert len(set(iit)) > 1  # the two ablations are told apart
    assert not np.array_equal(iit, _actions(ISPPolicy(p["isp"])))


def test_klan_with_its_attention_model_plays_one_hot_pages(random_models):
    p = _paths(random_models)
    log = next(simulate(CFG, 0, 100, 1, KlanPolicy(p["isp"], p["cql"], p["am"])))
    np.testing.assert_array_equal(log.sessions["propensity"], 1.0)
    assert len(log.sessions["action"]) > 0
