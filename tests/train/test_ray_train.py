"""Ray Train and Tune end to end on tiny data: every model trains, checkpoints load with
weights_only=True, and a 2-trial sweep runs to completion with its results table."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
import yaml

from glan_ray.apps import plpm_spec
from glan_ray.data.generate import GenerateOptions, generate
from glan_ray.models.checkpoint import WEIGHTS, load_checkpoint
from glan_ray.sim.config import SimConfig
from glan_ray.train.config import train_config
from glan_ray.train.trainer import fit
from glan_ray.train.tune import SweepConfig, run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(ray_session, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data"))
    generate(SimConfig(seed=5, block_size=100), GenerateOptions(users=300, days=3, rct=True), out)
    return out


FIT = {"epochs": 2, "batch_size": 128, "val_fraction": 0.2}
"""The tests' training config (besides data and out)."""
STOP = {"epochs": 3, "patience": 1, "min_delta": 1e9}
"""HRM's fields in the tests: epoch 1 cannot improve on epoch 0 by min_delta, so the run
stops after 2 of its 3 epochs (one fit serves the round trip, the cache and the early stop)."""
FIELDS = {"lrtg": {}, "hrm": STOP, "isp": {}, "am": {}}


@pytest.fixture(scope="module")
def fitted(data_dir, tmp_path_factory):
    """``fitted(model, **fields)`` -> (config, TrainResult): one fit per distinct config, shared
    by the tests that read it (each Ray Train fit costs ~20 s)."""
    done = {}

    def get(model, **fields):
        key = (model, tuple(sorted(fields.items())))
        if key not in done:
            out = str(tmp_path_factory.mktemp(model))
            cfg = train_config(model, {"data": data_dir, "out": out, **FIT, **fields})
            done[key] = (cfg, fit(model, cfg))
        return done[key]

    return get


@pytest.mark.parametrize(
    "model",
    # ISP and AM run the same Ray Train loop as HRM (~27 s each); their objectives are tested
    # by hand in tests/train/test_tasks.py, and the tiny pipeline trains both
    ["lrtg", "hrm", pytest.param("isp", marks=pytest.mark.heavy),
     pytest.param("am", marks=pytest.mark.heavy)],
)
def test_model_trains_and_checkpoint_round_trips(model, fitted):
    cfg, result = fitted(model, **FIELDS[model])
    assert os.path.exists(os.path.join(result.checkpoint, WEIGHTS))
    vals = {k: v for k, v in result.metrics.items() if k.startswith("val/")}
    assert vals and all(np.isfinite(v) for v in vals.values() if not np.isnan(v))
    assert result.metrics["epoch"] == 1  # the last of 2 epochs (HRM: stopped after 2 of 3)
    # weights_only loading works and the model is usable.
    blob = torch.load(os.path.join(result.checkpoint, WEIGHTS), weights_only=True)
    assert "state_dict" in blob
    _net, normalizer, meta = load_checkpoint(result.checkpoint)
    assert meta["model"] == model and meta["train_config"]["epochs"] == cfg.epochs
    assert meta["extra"]["app_fingerprint"] == plpm_spec().fingerprint()  # its data's app
    assert set(normalizer.mean) >= {"x_num"}
    if model == "lrtg":
        with open(os.path.join(result.checkpoint, "steps.csv")) as f:
            steps = f.read().splitlines()
        header = steps[0].split(",")
        assert {"lambda/se", "lambda/rel", "losses/se", "losses/rel"} <= set(header)
        lam = [float(r.split(",")[header.index("lambda/se")]) for r in steps[1:]]
        assert all(0 <= v <= cfg.lambda_max for v in lam)


# heavy: ~40 s (two HRM fits); cached batches run in every supervised fit in CI, the best-epoch
# export in test_patience_stops_before_the_budget_and_says_why
@pytest.mark.heavy
def test_cached_batches_replay_the_streamed_epoch_and_the_best_epoch_is_exported(fitted):
    """The cache replays the first epoch's batches in order (the same weights as streaming every
    epoch), and the exported checkpoint is the epoch with the best validation metric."""
    out = {True: fitted("hrm", **STOP)[1], False: fitted("hrm", cache_batches=False, **STOP)[1]}
    w_cached = torch.load(os.path.join(out[True].checkpoint, WEIGHTS), weights_only=True)
    w_stream = torch.load(os.path.join(out[False].checkpoint, WEIGHTS), weights_only=True)
    for k, v in w_cached["state_dict"].items():
        torch.testing.assert_close(v, w_stream["state_dict"][k])
    _, _, meta = load_checkpoint(out[True].checkpoint)
    history = out[True].history  # every epoch's report
    values = [h["val/mae_dur_min"] for h in history]
    assert meta["extra"]["epoch"] == history[int(np.argmin(values))]["epoch"]


def test_patience_stops_before_the_budget_and_says_why(fitted):
    """patience=1 with an unreachable min_delta: epoch 0 is the best, epoch 1 does not improve
    by it, so 2 of the 3 epochs run; the export is the lower-metric epoch of the two, and the
    result says why it stopped."""
    _, res = fitted("hrm", **STOP)
    assert [h["epoch"] for h in res.history] == [0, 1]
    assert res.history[-1]["stopped_early"] == 1.0
    assert res.stop.startswith("val/mae_dur_min did not improve by 100000000000% for 1 epoch(s)")
    # epochs in the reason count from 1, as in the run log: epoch 1 is the report's epoch 0
    assert re.search(r"; best [0-9.]+ at epoch 1$", res.stop)
    _, _, meta = load_checkpoint(res.checkpoint)
    values = [h["val/mae_dur_min"] for h in res.history]
    assert meta["extra"]["epoch"] == int(np.argmin(values))
    assert fitted("lrtg")[1].stop == "budget: 2 epoch(s)"


def test_unknown_training_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown HRMTrainConfig key"):
        train_config("hrm", {"eps_se": 1.0})


def test_sweep_file_is_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": "hrm", "param_space": {"eps_se": {"grid": [1]}}}))
    with pytest.raises(ValueError, match="param_space: unknown hrm training key"):
        SweepConfig.load(str(bad))
    bad.write_text(yaml.safe_dump({"model": "hrm", "param_space": {"focal_gamma": [1, 2]}}))
    with pytest.raises(ValueError, match=r"param_space\.focal_gamma: expected one of"):
        SweepConfig.load(str(bad))
    bad.write_text(yaml.safe_dump({"model": "hrm", "shceduler": {}}))
    with pytest.raises(ValueError, match="unknown key"):
        SweepConfig.load(str(bad))


def test_shipped_sweeps_load():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "tune_configs")
    for name in ("lrtg_lagrangian.yaml", "hrm_focal.yaml"):
        sweep = SweepConfig.load(os.path.join(root, name))
        assert sweep.param_space


# run_sweep's Tune path in CI (~55 s); the RLlib trials under Tune: the heavy CQL alpha sweep
def test_small_sweep_runs_two_trials(data_dir, tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "model": "hrm",
                "base": {
                    "epochs": 2,
                    "batch_size": 128,
                    "data": data_dir,
                    "out": str(tmp_path),
                    "cpus_per_worker": 0.5,
                },
                "param_space": {"focal_gamma": {"grid": [0.0, 2.0]}},
                "scheduler": {"type": "asha", "grace_period": 1},
            }
        )
    )
    summary = run_sweep(SweepConfig.load(str(cfg)))
    assert summary["trials"] == 2 and summary["errors"] == 0
    assert len(summary["table"]) == 2
    with open(os.path.join(summary["dir"], "best_config.yaml")) as f:
        best = yaml.safe_load(f)
    assert best["train"]["focal_gamma"] in (0.0, 2.0)
    assert os.path.exists(os.path.join(summary["dir"], "results.csv"))
