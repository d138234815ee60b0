"""TrajectoriesPreLearner: user-days -> DT windows (RTG, deterministic days left out) and the
length bucketing of the windows into batches."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from glan_ray.data.windows import WINDOW_KEYS, cut_windows
from glan_ray.rllib.dt.dt import DTConfig
from glan_ray.rllib.dt.prelearner import TrajectoriesPreLearner, bucket_by_length
from glan_ray.rllib.offline import obs_space
from glan_ray.schema import OBS_DIM, TRAJECTORIES, DatasetValidationError

PREFIX = "default_policy/"


def _pre(context_len: int | None = 2, seed: int | None = 0, **training) -> TrajectoriesPreLearner:
    cfg = DTConfig().offline_data(input_="/data/trajectories").debugging(seed=seed)
    if context_len is not None:
        cfg = cfg.rl_module(model_config={"context_len": context_len})
    defaults = {"reward_column": "reward", "rtg_scale": 10.0, "bucket_by_length": False}
    return TrajectoriesPreLearner(config=cfg.training(**{**defaults, **training}),
                                  spaces=(obs_space(), None))  # fmt: skip


def _days(rewards: list[list[float]], propensity: list[list[float]]) -> pa.Table:
    """A trajectories table by hand: obs[0] of session t of day d is 100·d + t."""
    n = len(rewards)
    obs = [[[100.0 * d + t] + [0.0] * (OBS_DIM - 1) for t in range(len(r))]
           for d, r in enumerate(rewards)]  # fmt: skip
    cols = {
        "user_id": list(range(n)), "day": [0] * n, "weekday": [0] * n, "age": [1] * n,
        "region": [2] * n, "activity": [1] * n, "social_degree": [1.0] * n,
        "n_steps": [len(r) for r in rewards], "obs": obs,
        "actions": [[t % 3 for t in range(len(r))] for r in rewards],
        "hours": [[8.0 + t for t in range(len(r))] for r in rewards],
        "reward": rewards, "reward_hrm": [None] * n,
        "dropoff": [[0] * len(r) for r in rewards], "propensity": propensity,
        "value_true": rewards, "y_wt": [float(sum(r)) for r in rewards],
        "y_se": [len(r) for r in rewards],
    }  # fmt: skip
    return pa.table(cols, schema=TRAJECTORIES)


DAYS = _days([[10.0, 20.0, 30.0], [5.0], [4.0, 2.0]], [[0.5, 1.0, 0.25], [1.0], [1.0, 0.5]])


def _windows(pre: TrajectoriesPreLearner, table: pa.Table) -> dict[str, np.ndarray]:
    out = pre(table)
    assert set(out) == {PREFIX + k for k in WINDOW_KEYS}
    return {k: out[PREFIX + k] for k in WINDOW_KEYS}


def test_windows_by_hand_with_the_deterministic_day_left_out():
    w = _windows(_pre(), DAYS)  # day 1 (one session at probability 1) is left out
    assert w["obs"].shape == (3, 2, OBS_DIM)
    # day 0: R̂ = 60, 50, 30 -> [6, 5], [3, pad]; day 2: R̂ = 6, 2 -> [0.6, 0.2]
    np.testing.assert_allclose(w["rtg"], [[6.0, 5.0], [3.0, 0.0], [0.6, 0.2]], rtol=1e-6)
    np.testing.assert_array_equal(w["obs"][..., 0], [[0, 1], [2, 0], [200, 201]])
    np.testing.assert_array_equal(w["mask"], [[1, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(w["timesteps"], [[0, 1], [2, 0], [0, 1]])
    np.testing.assert_array_equal(w["actions"], [[0, 1], [2, 0], [0, 1]])
    np.testing.assert_allclose(w["propensity"], [[0.5, 1.0], [0.25, 1.0], [1.0, 0.5]])


def test_deterministic_days_are_kept_when_asked():
    w = _windows(_pre(skip_deterministic_days=False), DAYS)
    np.testing.assert_array_equal(w["obs"][..., 0], [[0, 1], [2, 0], [100, 0], [200, 201]])
    np.testing.assert_allclose(w["rtg"][2], [0.5, 0.0])


def test_context_len_comes_from_the_module_config(trajectories):
    assert _windows(_pre(context_len=None), DAYS)["obs"].shape[1] == 20  # DTConfig's default
    w = _windows(_pre(context_len=4, skip_deterministic_days=False), trajectories)
    want = cut_windows(trajectories, 4, reward_column="reward", rtg_scale=10.0)
    for k in WINDOW_KEYS:
        np.testing.assert_array_equal(w[k], want[k], err_msg=k)
    assert w["mask"].sum() == trajectories.column("n_steps").to_numpy().sum()


def test_unlabelled_hrm_rewards_are_refused_with_the_fix():
    with pytest.raises(DatasetValidationError, match=r"column 'reward_hrm'.*label-hrm"):
        _pre(reward_column="reward_hrm")(DAYS)


def test_bucketed_batches_are_a_permutation_of_the_same_windows(trajectories):
    plain = _windows(_pre(context_len=4), trajectories)
    pre = _pre(context_len=4, bucket_by_length=True, train_batch_size_per_learner=8)
    w = _windows(pre, trajectories)
    rows = {plain["obs"][i].tobytes(): i for i in range(len(plain["obs"]))}
    perm = np.array([rows[o.tobytes()] for o in w["obs"]])
    np.testing.assert_array_equal(np.sort(perm), np.arange(len(perm)))
    for k in WINDOW_KEYS:
        np.testing.assert_array_equal(w[k], plain[k][perm], err_msg=k)
    # each batch of 8 holds one run: sorted by their shortest window, the batches do not overlap
    lengths = _lengths(w)
    spans = sorted((lengths[i : i + 8].min(), lengths[i : i + 8].max())
                   for i in range(0, len(lengths), 8))  # fmt: skip
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(spans))
    assert len(set(spans)) > 1  # several lengths, so this says something
    # same seed, same batches
    again = _windows(_pre(context_len=4, bucket_by_length=True, train_batch_size_per_learner=8),
                     trajectories)  # fmt: skip
    np.testing.assert_array_equal(again["obs"], w["obs"])


def _lengths(w: dict[str, np.ndarray]) -> np.ndarray:
    return w["mask"].sum(1).astype(int)


def test_bucket_by_length_by_hand():
    n = np.array([4, 1, 3, 2, 1, 4, 2, 3, 1, 2])
    k = 4
    windows = {
        "mask": (np.arange(k)[None, :] < n[:, None]).astype(np.float32),
        "obs": np.arange(len(n), dtype=np.float32)[:, None, None] * np.ones((1, k, 3)),
    }
    out = bucket_by_length(windows, batch_size=3, rng=np.random.default_rng(0))
    ids = out["obs"][:, 0, 0].astype(int)
    np.testing.assert_array_equal(np.sort(ids), np.arange(len(n)))  # every window once
    np.testing.assert_array_equal(_lengths(out), n[ids])  # rows move together
    # batches of 3 (as the learner cuts them) are the length-sorted windows cut every 3,
    # 1,1,1 | 2,2,2 | 3,3,4 in random order, then the short run 4 last
    batches = [tuple(sorted(_lengths(out)[i : i + 3])) for i in range(0, len(n), 3)]
    assert sorted(batches[:3]) == [(1, 1, 1), (2, 2, 2), (3, 3, 4)] and batches[3] == (4,)
    # the runs come in random order
    firsts = {tuple(_lengths(bucket_by_length(windows, 3, np.random.default_rng(s)))[:3])
              for s in range(20)}  # fmt: skip
    assert len(firsts) > 1


def test_bucket_by_length_of_no_windows():
    empty = {"mask": np.zeros((0, 4), np.float32), "obs": np.zeros((0, 4, OBS_DIM), np.float32)}
    out = bucket_by_length(empty, 8, np.random.default_rng(0))
    assert out["mask"].shape == (0, 4) and out["obs"].shape == (0, 4, OBS_DIM)


def _cql_export(tmp_path, reward_scale: float = 0.5) -> str:
    """A CQL export whose Q(s, a) = relu(obs[0]) + 10·a (weights set by hand)."""
    import torch

    from glan_ray.models.checkpoint import save_checkpoint
    from glan_ray.models.cql import QNetConfig, QNetwork

    q = QNetwork(QNetConfig(hidden=(2,)))
    lin = [m for m in q.modules() if isinstance(m, torch.nn.Linear)]
    assert len(lin) == 2
    with torch.no_grad():
        for m in lin:
            m.weight.zero_()
            m.bias.zero_()
        lin[0].weight[0, 0] = 1.0  # h0 = relu(obs[0])
        lin[1].weight[:, 0] = 1.0
        lin[1].bias.copy_(torch.tensor([0.0, 10.0, 20.0]))
    path = str(tmp_path / "cql")
    save_checkpoint(path, "cql", q, {"obs_dim": OBS_DIM, "n_actions": 3, "hidden": [2]},
                    {"reward_scale": reward_scale}, None)  # fmt: skip
    return path


def test_q_labels_replace_the_return_tokens_by_q_of_the_logged_page(tmp_path):
    """q_labels: token = Q(s_t, a_t) / reward_scale / rtg_scale on real steps, 0 on padding."""
    from glan_ray.models.critic_labels import QLabeller

    path = _cql_export(tmp_path)
    labels = QLabeller(path)
    obs = np.zeros((1, 2, OBS_DIM), np.float32)
    obs[0, :, 0] = [3.0, 7.0]
    np.testing.assert_allclose(labels(obs, np.array([[0, 2]])), [[6.0, 54.0]])  # (Q) / 0.5
    w = _windows(_pre(q_labels=path), DAYS)
    # day 0 sessions obs 0, 1, 2 with pages 0, 1, 2: Q = 0, 11, 22 -> ×2 /10; day 2: 200, 211
    np.testing.assert_allclose(w["rtg"], [[0.0, 2.2], [4.4, 0.0], [40.0, 42.2]], rtol=1e-6)


def test_q_labels_are_checked(tmp_path):
    with pytest.raises(ValueError, match="alternatives"):
        _pre(q_labels=_cql_export(tmp_path), advantage_tokens=True).config.validate()
    from glan_ray.models.critic_labels import QLabeller

    with pytest.raises(ValueError, match="reward_scale"):
        QLabeller(_cql_export(tmp_path / "zero", reward_scale=0.0))


def test_act_tokens_are_the_critics_advantage_of_the_logged_page(tmp_path):
    """act_critic: token = (Q(s_t, a_t) − mean_a Q(s_t, a)) / reward_scale / rtg_scale; with
    Q = relu(obs[0]) + 10·a the advantage is 10·(a − 1), ×2 (reward_scale 0.5), /10 (rtg_scale)."""
    from glan_ray.models.critic_labels import QLabeller

    path = _cql_export(tmp_path)
    obs = np.zeros((1, 3, OBS_DIM), np.float32)
    obs[0, :, 0] = [3.0, -7.0, 50.0]
    np.testing.assert_allclose(QLabeller(path).advantage(obs, np.array([[0, 1, 2]])),
                               [[-20.0, 0.0, 20.0]])  # fmt: skip
    w = _windows(_pre(act_critic=path), DAYS)
    # day 0: pages 0, 1 | 2, (pad); day 2: pages 0, 1
    np.testing.assert_allclose(w["rtg"], [[-2.0, 0.0], [2.0, 0.0], [-2.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="alternatives"):
        _pre(act_critic=path, q_labels=path).config.validate()
    with pytest.raises(ValueError, match=r"command_expectile must be in \(0, 1\)"):
        _pre(act_critic=path, command_expectile=1.0).config.validate()
    with pytest.raises(ValueError, match="alternatives"):
        _pre(act_critic=path, state_target=True).config.validate()
    # the per-state target trains on GLAN's return tokens (only its inference differs)
    np.testing.assert_array_equal(_windows(_pre(state_target=True), DAYS)["rtg"],
                                  _windows(_pre(), DAYS)["rtg"])  # fmt: skip
    with pytest.raises(ValueError, match=r"act_critic: .* records no positive reward_scale"):
        QLabeller(_cql_export(tmp_path / "zero", reward_scale=0.0), option="act_critic")
