"""The RLlib offline algorithms end to end on tiny data, inside the shared Ray fixture: training
iterations with finite, falling losses; RLlib checkpoint and torch export round trips; HRM
labelling of the trajectories; bad data rejected with the column's name."""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from glan_ray.data.features import SPECS, Normalizer, as_columns, feature_dims
from glan_ray.data.generate import GenerateOptions, generate
from glan_ray.label import hrm_rewards, label_hrm
from glan_ray.models.checkpoint import load_checkpoint, save_checkpoint
from glan_ray.models.registry import build_model, model_config
from glan_ray.schema import OBS_DIM, DatasetValidationError
from glan_ray.sim.config import SimConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(ray_session, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rldata"))
    generate(SimConfig(seed=11, block_size=100), GenerateOptions(users=200, days=3), out)
    return out


def _cfg(algo: str, data: str, out: str, **kw):
    from glan_ray.rllib.launch import RLTrainConfig

    flat = {"data": data, "out": out, "iterations": 1, "updates_per_iteration": 8, **kw}
    return RLTrainConfig.from_flat(algo, flat)


def _batch(algo_obj, n: int = 32) -> dict[str, torch.Tensor]:
    """A fixed train batch straight from the algorithm's own pre-learner."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    cfg = algo_obj.config
    pre = cfg.prelearner_class(config=cfg, spaces=(cfg.observation_space, cfg.action_space))
    files = sorted(glob.glob(os.path.join(cfg.input_, "*", "*.parquet")))
    out = pre(pq.read_table(files[0]).slice(0, n))
    prefix = DEFAULT_MODULE_ID + "/"
    return {k[len(prefix) :]: torch.as_tensor(v) for k, v in out.items()}


@torch.no_grad()
def _dt_batch_loss(algo_obj, batch: dict[str, torch.Tensor]) -> float:
    """The DT learner's own loss (``models.dt.dt_loss``, IPW as configured) on a fixed batch."""
    from ray.rllib.core.columns import Columns

    from glan_ray.models.dt import dt_loss, propensity_weights
    from glan_ray.rllib.dt.torch.dt_torch_rl_module import LOGITS, MASK, PROPENSITY

    module = algo_obj.get_module()
    was_training = module.training
    module.eval()
    logits = module.forward_train(batch)[LOGITS]  # (B, n, A)
    module.train(was_training)
    n, cfg = logits.size(1), algo_obj.config
    actions, mask = batch[Columns.ACTIONS][:, :n], batch[MASK][:, :n]
    weight = (propensity_weights(batch[PROPENSITY][:, :n], cfg.max_weight)
              if cfg.propensity_weighting else None)  # fmt: skip
    return float(dt_loss(logits, actions, mask, weight))


def test_cql_trains_logs_its_loss_parts_and_round_trips(data_dir, tmp_path):
    from glan_ray.rllib.cql.cql import DiscreteCQL
    from glan_ray.rllib.launch import algorithm_config, learner_metrics

    # Target net frozen at its init (update freq beyond the run): TD is plain regression and
    # must fall; the conservative term must stay >= 0.
    cfg = _cfg(
        "cql",
        data_dir,
        str(tmp_path),
        hidden=[32, 32],
        lr=3e-3,
        batch_size=128,
        target_network_update_freq=10**9,
    )
    algo = algorithm_config(cfg).build_algo()
    try:
        logs = [learner_metrics(algo.train(), "cql") for _ in range(4)]
        assert all(np.isfinite(list(m.values())).all() for m in logs)
        assert {"td_loss", "conservative_loss", "alpha_mean", "q_mean"} <= set(logs[0])
        assert logs[-1]["td_loss"] < logs[0]["td_loss"]
        assert all(m["conservative_loss"] >= 0 for m in logs)
        assert all(0.1 <= m["alpha_mean"] <= 10.0 for m in logs)
        batch = _batch(algo)
        module = algo.get_module()
        q = module.forward_inference(batch)["q"]
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        export = algo.export_model(str(tmp_path / "export"))
    finally:
        algo.stop()
    restored = DiscreteCQL.from_checkpoint(path)
    try:
        q2 = restored.get_module().forward_inference(batch)["q"]
        assert torch.equal(q.argmax(-1), q2.argmax(-1)) and torch.allclose(q, q2)
    finally:
        restored.stop()
    net, _, meta = load_checkpoint(export)
    assert meta["model"] == "cql" and meta["model_config"]["hidden"] == [32, 32]
    with torch.no_grad():
        assert torch.allclose(net(batch["obs"]), q, atol=1e-6)


def test_init_from_warm_starts_the_network_and_refuses_another_shape(data_dir, tmp_path):
    """RLTrainConfig.init_from: the learner's Q-network and its target start as the export;
    an export of another architecture is refused naming init_from."""
    from glan_ray.rllib.launch import algorithm_config

    algo = algorithm_config(_cfg("cql", data_dir, str(tmp_path), hidden=[16])).build_algo()
    try:
        export = algo.export_model(str(tmp_path / "first"))
    finally:
        algo.stop()
    want, _, _ = load_checkpoint(export)
    cfg = _cfg("cql", data_dir, str(tmp_path / "b"), hidden=[16], seed=7, init_from=export)
    algo = algorithm_config(cfg).build_algo()
    try:
        fresh = [p.clone() for p in algo.get_module().qnet.parameters()]
        algo.warm_start(cfg.init_from)
        module = algo.get_module()
        for a, b in zip(module.qnet.parameters(), want.parameters(), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(module._target_qnet.parameters(), want.parameters(), strict=True):
            assert torch.equal(a, b)
        assert not all(torch.equal(a, b) for a, b in zip(fresh, want.parameters(), strict=True))
    finally:
        algo.stop()
    other = algorithm_config(_cfg("cql", data_dir, str(tmp_path / "c"), hidden=[8])).build_algo()
    try:
        with pytest.raises(ValueError, match=r"init_from .* does not fit"):
            other.warm_start(export)
    finally:
        other.stop()


def test_cql_static_alpha_ablation_is_constant(data_dir, tmp_path):
    from glan_ray.rllib.launch import algorithm_config, learner_metrics

    cfg = _cfg("cql", data_dir, str(tmp_path), hidden=[16], static_alpha=True, alpha0=0.5)
    algo = algorithm_config(cfg).build_algo()
    try:
        m = learner_metrics(algo.train(), "cql")
    finally:
        algo.stop()
    assert m["alpha_mean"] == pytest.approx(0.5)


def test_cql_with_history_trains_on_obs_and_history_features(data_dir, tmp_path):
    """history=True: fit_rl writes transitions_hist next to transitions, the Q-network reads
    OBS_DIM + HIST_DIM inputs, and its export says which history features it expects."""
    from glan_ray.apps import plpm_spec
    from glan_ray.models.exports import make_record
    from glan_ray.rllib.launch import fit_rl
    from glan_ray.schema import HIST_DIM, HIST_FEATURES, OBS_DIM

    cfg = _cfg("cql", data_dir, str(tmp_path), hidden=[16], history=True, iterations=2)
    assert cfg.run_dir == os.path.join(str(tmp_path), "cql_hist")
    res = fit_rl(cfg)
    assert os.path.isdir(os.path.join(data_dir, "transitions_hist"))
    assert np.isfinite(list(res.metrics.values())).all() and res.metrics["td_loss"] > 0
    net, _, meta = load_checkpoint(res.export)
    assert net.cfg.obs_dim == OBS_DIM + HIST_DIM
    assert make_record("cql", meta["extra"]).history_features == HIST_FEATURES
    assert make_record("cql", meta["extra"]).app == plpm_spec()  # the app of its data
    assert meta["train_config"]["history"] is True


def _random_hrm(data_dir: str, path: str) -> str:
    sessions = pq.read_table(sorted(glob.glob(f"{data_dir}/sessions/*/*.parquet"))[0])
    cols = as_columns(sessions.slice(0, 256))
    dims = feature_dims("hrm", cols)
    mc = model_config("hrm", dims, {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8})
    torch.manual_seed(0)
    model = build_model("hrm", mc)
    feats = SPECS["hrm"].build(cols)
    norm = Normalizer.fit([feats], ("x_num",))
    save_checkpoint(path, "hrm", model, mc, {}, norm)
    return path


# heavy: ~50 s; label_hrm then the DT on its rewards run in CI in the tiny pipeline
# (tests/test_pipeline.py)
@pytest.mark.heavy
def test_label_hrm_fills_rewards_in_seconds_then_dt_trains_on_them(data_dir, tmp_path):
    from glan_ray.rllib.dt.dt import DT
    from glan_ray.rllib.launch import algorithm_config, fit_rl, learner_metrics

    hrm = _random_hrm(data_dir, str(tmp_path / "hrm"))
    n = label_hrm(data_dir, hrm)
    part = sorted(glob.glob(f"{data_dir}/trajectories/*/*.parquet"))[0]
    traj = pq.read_table(part)
    sess = pq.read_table(part.replace("trajectories", "sessions"))
    assert traj.column("reward_hrm").null_count == 0
    assert n >= len(sess)
    flat = pc.list_flatten(traj.column("reward_hrm")).to_numpy()
    np.testing.assert_allclose(flat, hrm_rewards(hrm, sess), rtol=1e-6)
    assert (flat >= 0).all()
    # labelling again is idempotent
    label_hrm(data_dir, hrm)
    assert pq.read_table(part).column("reward_hrm").equals(traj.column("reward_hrm"))

    cfg = _cfg(
        "dt",
        data_dir,
        str(tmp_path),
        embed_dim=32,
        n_layers=1,
        n_heads=2,
        context_len=8,
        dropout=0.0,
        lr=1e-3,
        batch_size=32,
    )
    algo = algorithm_config(cfg).build_algo()
    try:
        batch = _batch(algo)
        before = _dt_batch_loss(algo, batch)
        logs = [learner_metrics(algo.train(), "dt") for _ in range(4)]
        assert all(np.isfinite(list(m.values())).all() for m in logs)
        # Minibatch losses of single updates are too noisy to compare (importance weights up to
        # max_weight); the loss on one fixed batch of the training data must fall.
        assert _dt_batch_loss(algo, batch) < before
        assert 0 < logs[0]["sessions_per_window"] <= 8
        actions = algo.get_module().forward_inference(batch)["actions"]
        path = algo.save_to_path(str(tmp_path / "dtckpt"))
    finally:
        algo.stop()
    restored = DT.from_checkpoint(path)
    try:
        assert torch.equal(restored.get_module().forward_inference(batch)["actions"], actions)
    finally:
        restored.stop()
    # the CLI path: progress.csv, RLlib checkpoint and a torch export that loads bare
    result = fit_rl(_cfg("dt", data_dir, str(tmp_path / "run"), iterations=2, embed_dim=16))
    net, _, meta = load_checkpoint(result.export)
    assert meta["model"] == "dt" and meta["train_config"]["reward_column"] == "reward_hrm"
    assert meta["train_config"]["propensity_weighting"] is True
    assert meta["extra"]["target_gain"] == meta["train_config"]["target_gain"] == 2.0
    assert os.path.exists(os.path.join(result.export, "progress.csv"))
    assert type(net).__name__ == "DecisionTransformer"


def test_unlabelled_rewards_and_bad_rows_fail_with_the_column_name(data_dir, tmp_path):
    from glan_ray.rllib.launch import algorithm_config

    # a copy of the transitions with a NaN reward
    src = sorted(glob.glob(f"{data_dir}/transitions/*/*.parquet"))[0]
    t = pq.read_table(src)
    r = t.column("reward").to_numpy().copy()
    r[3] = np.nan
    t = t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(r, pa.float32()))
    bad = tmp_path / "bad" / "transitions" / "part-0"
    bad.mkdir(parents=True)
    pq.write_table(t, bad / "x.parquet")
    algo = algorithm_config(_cfg("cql", str(tmp_path / "bad"), str(tmp_path))).build_algo()
    try:
        with pytest.raises(Exception, match="reward"):
            algo.train()
    finally:
        algo.stop()


def test_dt_refuses_data_whose_every_day_is_deterministic(data_dir, tmp_path):
    from glan_ray.rllib.launch import algorithm_config

    src = sorted(glob.glob(f"{data_dir}/trajectories/*/*.parquet"))[0]
    t = pq.read_table(src)
    ones = [[1.0] * len(x) for x in t.column("propensity").to_pylist()]
    i = t.schema.get_field_index("propensity")
    t = t.set_column(i, "propensity", pa.array(ones, pa.list_(pa.float32())))
    part = tmp_path / "det" / "trajectories" / "part-0"
    part.mkdir(parents=True)
    pq.write_table(t, part / "x.parquet")
    det = str(tmp_path / "det")
    with pytest.raises(ValueError, match=r"deterministic policy.*'propensity'"):
        algorithm_config(_cfg("dt", det, str(tmp_path)))
    # opting out of the filter accepts the same data
    algorithm_config(_cfg("dt", det, str(tmp_path), skip_deterministic_days=False))


# heavy: ~50 s (two CQL builds); replay_batches itself runs in every CQL test and the tiny
# pipeline
@pytest.mark.heavy
def test_replayed_batches_train_the_same_weights_as_streaming_every_pass(data_dir, tmp_path):
    """replay_batches keeps the first pass's minibatches and replays them in the same order:
    past one pass over the data (40 updates of 128 rows, ~3,000 transitions) the weights are
    those of streaming every pass from Ray Data."""
    from glan_ray.rllib.launch import algorithm_config

    weights = {}
    for replay in (True, False):
        cfg = _cfg("cql", data_dir, str(tmp_path / str(replay)), updates_per_iteration=10,
                   batch_size=128, hidden=[16], replay_batches=replay)  # fmt: skip
        algo = algorithm_config(cfg).build_algo()
        try:
            for _ in range(4):
                algo.train()
            learner = algo.learner_group._learner
            if replay:
                assert learner.iterator.complete  # the later batches were replays
            weights[replay] = {k: v.clone() for k, v in algo.get_module().qnet.state_dict().items()}
        finally:
            algo.stop()
    for k, v in weights[True].items():
        torch.testing.assert_close(v, weights[False][k])


@pytest.mark.parametrize("algo", ["cql", "dt"])
def test_rl_stops_on_its_held_out_criterion(algo, data_dir, tmp_path):
    """patience=1 with an unreachable min_delta: iteration 1 is the best, iteration 2 does not
    improve, so the run stops there (of 4). The DT exports iteration 1's weights (a held-out
    loss), CQL its last (its criterion is a level that converges)."""
    import csv

    from glan_ray.rllib.launch import fit_rl

    net = {"hidden": [16]} if algo == "cql" else {"embed_dim": 16, "n_layers": 1}
    extra = {"reward_column": "reward"} if algo == "dt" else {}
    cfg = _cfg(algo, data_dir, str(tmp_path), iterations=4, patience=1, min_delta=1e9,
               val_fraction=0.3, **net, **extra)  # fmt: skip
    res = fit_rl(cfg)
    metric = {"cql": "val_q_mean", "dt": "val_loss"}[algo]
    assert res.iterations == 2
    assert res.stop.startswith(f"stopped after iteration 2: {metric} did not improve by")
    exported = "; exported iteration 1's weights"
    assert re.search(r"best [-0-9.e]+ at iteration 1" + ("" if algo == "cql" else exported) + "$",
                     res.stop)  # fmt: skip
    with open(os.path.join(res.export, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["1", "2"]
    assert np.isfinite(float(rows[0][metric]))
    if algo == "cql":
        assert {"val_snips", "val_churn", "val_regret", "val_td_loss"} <= set(rows[0])
        assert np.isnan(float(rows[0]["val_churn"]))
    assert res.metrics[metric] == float(rows[1][metric])


def test_rl_train_config_names_unknown_keys(tmp_path):
    from glan_ray.rllib.launch import RLTrainConfig, algorithm_config

    with pytest.raises(ValueError, match="alpha_zero"):
        RLTrainConfig.from_flat("cql", {"alpha_zero": 1.0})
    for bad, match in [({"patience": 0}, "patience must be >= 1"),
                       ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\)"),
                       ({"val_rows": 0}, "val_rows must be >= 1"),
                       ({"min_delta": -1.0}, "min_delta must be >= 0")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            RLTrainConfig.from_flat("dt", bad)
    with pytest.raises(FileNotFoundError, match="trajectories"):
        algorithm_config(RLTrainConfig.from_flat("dt", {"data": str(tmp_path)}))
    (tmp_path / "trajectories").mkdir()
    with pytest.raises(ValueError, match="reward_column"):
        algorithm_config(
            RLTrainConfig.from_flat("dt", {"data": str(tmp_path), "reward_column": "clicks"})
        ).validate()


def test_label_refuses_misaligned_parts(data_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    part = sorted(glob.glob(f"{copy}/sessions/*/*.parquet"))[0]
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)  # drop the first session
    with pytest.raises(DatasetValidationError, match=r"user_id|session_idx"):
        label_hrm(str(copy), _random_hrm(data_dir, str(tmp_path / "hrm")))


# heavy: ~100 s in CI (two RLlib trials under Tune); run_sweep's Tune path runs in CI in
# tests/train/test_ray_train.py::test_small_sweep_runs_two_trials
@pytest.mark.heavy
def test_cql_alpha_sweep_runs_two_trials(data_dir, tmp_path):
    from glan_ray.train.tune import SweepConfig, run_sweep

    sweep = SweepConfig.load(
        "tune_configs/cql_alpha.yaml",
        {
            "data": data_dir,
            "out": str(tmp_path),
            "iterations": 2,
            "updates_per_iteration": 4,
            "batch_size": 64,
            "hidden": [16],
        },
    )
    sweep = SweepConfig(**{**sweep.__dict__, "num_samples": 2, "scheduler": {"type": "fifo"}})
    summary = run_sweep(sweep)
    assert summary["trials"] == 2 and summary["errors"] == 0
    assert np.isfinite(summary["best_value"])
    table = summary["table"]
    assert {"config/alpha0", "td_loss", "conservative_loss"} <= set(table.columns)
    assert os.path.exists(os.path.join(summary["dir"], "best_config.yaml"))



def _random_critic(models) -> str:
    """A random CQL export over obs (reward_scale 0.01): its advantages differ per state."""
    import dataclasses

    from glan_ray.models.cql import QNetConfig, QNetwork

    torch.manual_seed(0)
    q = QNetwork(QNetConfig(hidden=(8,)))
    cql = str(models / "cql")
    save_checkpoint(cql, "cql", q, dataclasses.asdict(q.cfg), {"reward_scale": 0.01}, None)
    return cql


def test_command_heads_are_expectiles_of_the_advantages_and_of_the_returns(data_dir, tmp_path):
    """ACT's command head, fitted with Ray Data over the trajectories (deterministic days left
    out): the τ-expectile of the critic's advantages of the logged pages given the state."""
    from glan_ray.data.windows import deterministic_days, remaining_returns
    from glan_ray.models.command_head import logged_advantages, measure_command
    from glan_ray.models.critic_labels import QLabeller
    from glan_ray.models.dt import rtg_baseline_s

    cql = _random_critic(tmp_path)
    traj = os.path.join(data_dir, "trajectories")
    command = measure_command(traj, 0.8, True, cql)
    assert len(command) == OBS_DIM + 1
    table = pa.concat_tables(pq.read_table(f) for f in
                             sorted(glob.glob(f"{traj}/*/*.parquet")))  # fmt: skip
    table = table.filter(pa.array(~deterministic_days(table)))
    obs, adv = logged_advantages(table, QLabeller(cql))
    resid = adv - rtg_baseline_s(obs, command)  # (S,)
    w = np.where(resid > 0, 0.8, 0.2)
    # the expectile's normal equation for the intercept: Σ w·(y − ŷ) = 0 (the intercept is not
    # penalised), and a τ = 0.8 head sits above the mean advantage
    assert abs((w * resid).sum()) < 1e-6 * (w * np.abs(resid)).sum()
    assert rtg_baseline_s(obs, command).mean() > adv.mean()
    with pytest.raises(ValueError, match=r"act_critic: .* holds a 'dt' model; expected cql"):
        measure_command(traj, 0.8, True, _dt_export(tmp_path))
    # the per-state target: the same expectile of the remaining return (no critic)
    target = measure_command(traj, 0.8, True, reward_column="reward")
    _, rtg = remaining_returns(table, "reward")
    resid = rtg - rtg_baseline_s(obs, target)
    w = np.where(resid > 0, 0.8, 0.2)
    assert abs((w * resid).sum()) < 1e-6 * (w * np.abs(resid)).sum()
    assert rtg_baseline_s(obs, target).mean() > rtg.mean() > 0


def _dt_export(tmp_path) -> str:
    from glan_ray.models.dt import DecisionTransformer, DTConfig

    path = str(tmp_path / "dt")
    dt = DecisionTransformer(DTConfig(embed_dim=8, n_layers=1))
    save_checkpoint(path, "dt", dt, {"embed_dim": 8, "n_layers": 1}, {}, None)
    return path


@pytest.mark.heavy  # 40 s: an RLlib DT build; its pieces (tokens, head, policy) are in CI
def test_act_dt_trains_on_the_critics_advantages_and_exports_its_command_head(data_dir, tmp_path):
    """act_critic: the command head is fitted once before the build and stored in the export,
    and the exported DT plays as ``glan_act`` from it alone."""
    from glan_ray.models.command_head import measure_command
    from glan_ray.policy.registry import ARMS
    from glan_ray.rllib.launch import fit_rl

    models = tmp_path / "models"
    cql = _random_critic(models)
    res = fit_rl(_cfg("dt", data_dir, str(models), name="dt_act", embed_dim=16, n_layers=1,
                      act_critic=cql, command_expectile=0.8, reward_column="reward"))  # fmt: skip
    _, _, meta = load_checkpoint(res.export)
    command = meta["extra"]["command"]
    assert meta["train_config"]["act_critic"] == cql and len(command) == OBS_DIM + 1
    traj = os.path.join(data_dir, "trajectories")
    np.testing.assert_allclose(command, measure_command(traj, 0.8, True, cql))
    act = ARMS["glan_act"](str(models), None)
    assert act.command == tuple(command)
