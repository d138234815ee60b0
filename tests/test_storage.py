"""glan_ray.storage on local paths and on an S3-compatible server (moto, on a free local port),
and the whole ``tiny`` pipeline with its run directory in that bucket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest
import torch

from glan_ray import storage
from glan_ray.models.checkpoint import load_checkpoint, save_checkpoint
from glan_ray.models.cql import QNetConfig, QNetwork


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with one bucket; AWS_* variables point this process (and any process
    it starts, such as a local Ray) at it. Yields ``(bucket URI, environment)``."""
    server_mod = pytest.importorskip("moto.server", reason="needs moto[server] (test extra)")
    import boto3

    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        storage.CACHE_ENV: str(tmp_path_factory.mktemp("cache")),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="glan")
        yield "s3://glan", env
        storage._bucket_filesystem.cache_clear()  # its clients point at this server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """A fresh run directory: a local path, or a prefix in the moto bucket."""
    if request.param == "local":
        return str(tmp_path / "run")
    bucket, _ = request.getfixturevalue("s3")
    return f"{bucket}/{uuid.uuid4().hex[:8]}"


def test_join_and_is_uri():
    assert storage.join("s3://b/run/", "models", "dt") == "s3://b/run/models/dt"
    assert storage.join("runs/x", "models") == os.path.join("runs/x", "models")
    assert storage.is_uri("gs://b/x") and not storage.is_uri("/tmp/x")


def test_files_round_trip(root):
    marker = storage.join(root, "stages", "simulate.json")
    assert not storage.exists(marker)
    storage.write_json(marker, {"stage": "simulate", "wall_s": 1.5}, indent=1)
    assert storage.exists(marker) and storage.isdir(storage.join(root, "stages"))
    assert storage.read_json(marker) == {"stage": "simulate", "wall_s": 1.5}
    assert storage.read_text(marker) == '{\n "stage": "simulate",\n "wall_s": 1.5\n}'
    storage.write_text(storage.join(root, "stages", "evaluate.json"), "{}")
    assert storage.listdir(storage.join(root, "stages")) == ["evaluate.json", "simulate.json"]
    storage.remove(marker)
    assert storage.listdir(storage.join(root, "stages")) == ["evaluate.json"]
    storage.rmtree(storage.join(root, "stages"))
    assert not storage.exists(storage.join(root, "stages"))
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        storage.read_bytes(storage.join(root, "nothing.json"))


def test_staged_dir_uploads_on_success_only(root, tmp_path):
    with storage.staged_dir(root) as local:
        os.makedirs(os.path.join(local, "ab"))
        with open(os.path.join(local, "ab", "ab.json"), "w") as f:
            f.write('{"arms": 2}')
    assert storage.read_json(storage.join(root, "ab", "ab.json")) == {"arms": 2}
    with storage.staged_dir(root, fetch=["ab/ab.json", "missing.txt"]) as local:
        with open(os.path.join(local, "ab", "ab.json")) as f:
            assert f.read() == '{"arms": 2}'
        assert not os.path.exists(os.path.join(local, "missing.txt"))
    with pytest.raises(RuntimeError), storage.staged_dir(storage.join(root, "failed")) as local:
        open(os.path.join(local, "partial.txt"), "w").close()
        raise RuntimeError("stage failed")
    if storage.is_uri(root):  # a local staged dir is the target itself
        assert not storage.exists(storage.join(root, "failed", "partial.txt"))
    storage.download_dir(root, str(tmp_path / "copy"))
    assert os.path.exists(tmp_path / "copy" / "ab" / "ab.json")


def test_checkpoint_save_and_load_through_a_uri_is_cached(root):
    torch.manual_seed(0)
    q = QNetwork(QNetConfig(hidden=(8,)))
    path = storage.join(root, "models", "cql")
    save_checkpoint(path, "cql", q, {"hidden": [8]}, {}, None)
    assert storage.exists(storage.join(path, "model.pt"))
    assert storage.read_json(storage.join(path, "config.json"))["model"] == "cql"
    model, _, meta = load_checkpoint(path)
    assert meta["model"] == "cql"
    for a, b in zip(model.state_dict().values(), q.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if storage.is_uri(root):
        first = storage.local_copy(path, only=("model.pt",))
        assert first.startswith(storage.cache_root())
        assert storage.local_copy(path, only=("model.pt",)) == first  # cached
        save_checkpoint(path, "cql", QNetwork(QNetConfig(hidden=(4,))), {"hidden": [4]}, {}, None)
        assert storage.local_copy(path, only=("model.pt",)) != first  # changed: fetched again
    with pytest.raises(FileNotFoundError, match=r"model\.pt"):
        load_checkpoint(storage.join(root, "models", "nothing"))


def test_an_unusable_uri_names_the_path():
    with pytest.raises(storage.StorageError, match="nosuchfs://bucket/run"):
        storage.exists("nosuchfs://bucket/run/stages/simulate.json")


@pytest.mark.slow
@pytest.mark.heavy  # a second whole tiny pipeline (~200 s); S3 run dirs: the tests above
def test_tiny_pipeline_with_its_run_directory_in_s3(s3):
    """`glan-ray pipeline --out s3://...` in a fresh process (its local Ray inherits the AWS_*
    variables, as a cluster's nodes would have them): every output lands in the bucket and a
    rerun skips every stage."""
    from glan_ray.pipeline import STAGES, PipelineConfig, run_pipeline, stage_marker
    from glan_ray.policy.registry import ALIASES, ARMS

    bucket, env = s3
    run = f"{bucket}/tiny"
    child_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    child_env.update(env, RAY_AUTH_MODE="disabled")
    res = subprocess.run(
        [sys.executable, "-m", "glan_ray.cli", "pipeline", "--preset", "tiny", "--out", run],
        capture_output=True, text=True, env=child_env, timeout=1200,
    )  # fmt: skip
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])

    cfg = PipelineConfig(run=run, preset="tiny")
    for stage in STAGES:
        assert storage.exists(stage_marker(cfg, stage)), stage
    for name in ("lrtg", "hrm", "isp", "am", "cql", "dt", "dt_naive"):
        assert storage.exists(cfg.path("models", name, "model.pt")), name
    assert storage.exists(cfg.path("data", "manifest.json"))
    assert set(storage.read_json(cfg.path("ab", "ab.json"))["metrics"]) == set(ARMS) - set(ALIASES)
    report = storage.read_text(cfg.path("report.md"))
    assert all(f"| {arm} |" in report for arm in set(ARMS) - set(ALIASES))
    assert storage.read_json(stage_marker(cfg, "label_hrm"))["sessions"] > 0

    again = run_pipeline(cfg)  # every marker is in the bucket: nothing runs, no Ray needed
    assert [r["status"] for r in again] == ["skipped (done)"] * len(STAGES)
