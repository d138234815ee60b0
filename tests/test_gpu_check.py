"""The GPU flags on a machine without a GPU (issue 28 item 5): each one fails at once with an
error naming the flag and the cluster's resources on a local Ray (``runtime.require_gpus``; they
used to pend forever or die on RLlib's assertion), warns on a cluster that may still add GPU
nodes, and ``bench/gpu_check.sh --smoke`` runs every path on the CPU with its GPU figures null."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess

import pytest

from glan_ray import runtime
from glan_ray.runtime import GPUUnavailableError, cluster_gpus, require_gpus

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def no_gpu(ray_session):
    """The session's local Ray, which must have no GPU for these tests to mean anything."""
    if cluster_gpus() > 0:
        pytest.skip("this machine has a GPU: the GPU flags are honoured, not refused")
    return ray_session


@pytest.fixture
def inputs(tmp_path) -> pathlib.Path:
    """Just enough on disk for each entry point to reach its GPU check: empty RL datasets (the
    DT's check reads no file without a propensity column) and a DT export's weights and
    metadata files."""
    for name in ("transitions", "trajectories"):
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "models" / "dt").mkdir(parents=True)
    (tmp_path / "models" / "dt" / "model.pt").write_bytes(b"")
    # its metadata without an app (an export from before issue 30 reads as PLPM): build_app
    # checks each export's app before any replica starts
    (tmp_path / "models" / "dt" / "config.json").write_text('{"model": "dt"}')
    return tmp_path


def _names_flag_and_resources(e: pytest.ExceptionInfo, flag: str) -> None:
    msg = str(e.value)
    assert flag in msg and "local Ray" in msg and "wait forever" in msg
    assert f"Drop {flag} to run on CPU" in msg
    assert "CPU 2" in msg and "has 0" in msg  # the cluster's resources, as Ray counts them


def test_ray_train_use_gpu_is_refused_before_any_work(no_gpu, inputs):
    from glan_ray.train.config import train_config
    from glan_ray.train.trainer import fit

    cfg = train_config("hrm", {"data": str(inputs / "none"), "out": str(inputs), "use_gpu": True,
                               "num_workers": 2})  # fmt: skip
    with pytest.raises(GPUUnavailableError) as e:  # before reading the (missing) data
        fit("hrm", cfg)
    _names_flag_and_resources(e, "--use-gpu / use_gpu")
    assert "asks for 2 GPUs (one per Ray Train worker)" in str(e.value)


@pytest.mark.parametrize("algo", ["cql", "dt"])
def test_rllib_learner_use_gpu_is_refused_not_an_assertion(no_gpu, inputs, algo):
    from glan_ray.rllib.launch import RLTrainConfig, algorithm_config

    flat = {"data": str(inputs / "data"), "out": str(inputs), "use_gpu": True}
    with pytest.raises(GPUUnavailableError) as e:
        algorithm_config(RLTrainConfig.from_flat(algo, flat))
    _names_flag_and_resources(e, "--use-gpu / use_gpu")
    assert "num_gpus_per_learner=1" in str(e.value)


@pytest.mark.parametrize("model", ["cql", "hrm"])
def test_tune_sweep_of_gpu_trials_is_refused_not_pending(no_gpu, inputs, model):
    from glan_ray.train.tune import SweepConfig, run_sweep

    base = {"data": str(inputs / "data"), "out": str(inputs), "use_gpu": True}
    sweep = SweepConfig(model=model, name="gpu", base=base, scheduler={"type": "fifo"})
    with pytest.raises(GPUUnavailableError) as e:
        run_sweep(sweep)
    _names_flag_and_resources(e, "base.use_gpu")
    assert "per trial of sweep 'gpu'" in str(e.value)


def test_serve_dt_replica_num_gpus_is_refused_when_the_app_is_built(no_gpu, inputs):
    from glan_ray.serving.app import build_app

    args = {"models": str(inputs / "models"), "num_gpus": 0.5, "min_replicas": 2}
    with pytest.raises(GPUUnavailableError) as e:
        build_app(args)
    _names_flag_and_resources(e, "app arg num_gpus")
    assert "asks for 1 GPU (0.5 per DT replica)" in str(e.value)
    build_app({**args, "num_gpus": 0})  # the CPU app still builds


def test_cli_use_gpu_is_a_one_line_error(no_gpu, inputs, capsys):
    from glan_ray.cli import main

    argv = ["train", "cql", "--data", str(inputs / "data"), "--out", str(inputs), "--use-gpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glan-ray train: error: --use-gpu / use_gpu asks for 1 GPU")
    assert "\n" not in err


def test_pipeline_use_gpu_is_refused_before_the_first_stage(no_gpu, tmp_path):
    from glan_ray.pipeline import PipelineConfig, run_pipeline

    run = tmp_path / "run"
    with pytest.raises(GPUUnavailableError, match="--use-gpu asks for 1 GPU"):
        run_pipeline(PipelineConfig(run=str(run), preset="tiny", use_gpu=True))
    assert not run.exists()  # nothing simulated, nothing written


def test_a_cluster_that_may_add_gpu_nodes_only_warns(no_gpu, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_local_ray", lambda: False)  # as under an address
    with caplog.at_level(logging.WARNING, logger="glan_ray.runtime"):
        require_gpus("--use-gpu", 1)
    assert "--use-gpu asks for 1 GPU" in caplog.text and "until GPU nodes join" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "_autoscaler_max_gpus", lambda: 8.0)
    with caplog.at_level(logging.WARNING, logger="glan_ray.runtime"):
        require_gpus("--use-gpu", 2)
    assert "waiting for the autoscaler to add GPU nodes (up to 8 GPUs)" in caplog.text
    # an autoscaler whose node types hold too few GPUs can never satisfy the request
    monkeypatch.setattr(runtime, "_autoscaler_max_gpus", lambda: 1.0)
    with pytest.raises(GPUUnavailableError, match="its autoscaler offers at most 1"):
        require_gpus("--use-gpu", 2)


def test_no_request_or_enough_gpus_passes(no_gpu, monkeypatch):
    require_gpus("--use-gpu", 0)
    assert runtime._local_ray()  # the session's Ray was started by this process
    monkeypatch.setattr(runtime, "cluster_gpus", lambda: 1.0)
    require_gpus("--use-gpu", 1)


@pytest.mark.slow
@pytest.mark.heavy  # ~2 min on 2 cores (its own Ray, every path once); the checks above are in CI
def test_gpu_check_smoke_runs_every_path_on_cpu(no_gpu, tmp_path):
    results = tmp_path / "gpu_check.json"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = ["bash", str(REPO / "bench" / "gpu_check.sh"), "--smoke", "--num-cpus", "2",
           "--results", str(results)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(results.read_text())
    assert out["gpu"] is None and out["device"]["why_not"].startswith("no device")
    assert set(out["paths"]) == {"ray_train", "rllib_cql", "rllib_dt", "tune", "serve"}
    for name, row in out["paths"].items():
        assert row["cpu_status"] == "ran" and row["gpu"] is None, name
        assert row["gpu_status"].startswith("no device"), name
        assert row["gpu_flag_without_device"].startswith("refused: "), name
    assert all(out["paths"][n]["cpu"]["updates_per_s"] > 0 for n in ("rllib_cql", "rllib_dt"))
    assert out["paths"]["ray_train"]["cpu"]["updates_per_s"] > 0
    assert out["paths"]["tune"]["cpu"]["errors"] == 0
    serve = out["paths"]["serve"]["cpu"]
    assert serve["errors"] == 0 and serve["requests"] == out["config"]["sizes"]["entries"]
    assert "GPU flag without a device: refused" in proc.stdout
