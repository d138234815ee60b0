"""cluster.yaml is a valid cluster-launcher config: it parses, every node type is well formed,
there are GPU workers, and the setup installs this package. The KubeRay manifests under
deploy/k8s/ are well formed too: ray.io/v1 kinds on the pinned Ray, a GPU worker group, the
RayService serving serve/config.yaml's application, and entrypoints the CLI accepts."""

from __future__ import annotations

import pathlib
import shlex

import yaml

from glan_ray.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def test_cluster_yaml_has_gpu_workers_and_installs_the_package():
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    keys = ("cluster_name", "provider", "available_node_types", "head_node_type")
    for key in (*keys, "setup_commands", "max_workers"):
        assert key in cfg, key
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [n for n, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu, "no worker type offers a GPU"
    total_max = 0
    for name, t in types.items():
        assert "node_config" in t, name
        if name != cfg["head_node_type"]:
            assert 0 <= t["min_workers"] <= t["max_workers"], name
            total_max += t["max_workers"]
    assert total_max <= cfg["max_workers"]
    setup = " ".join(cfg["setup_commands"])
    assert "pip install -e ." in setup
    assert "2.60.0" in cfg["docker"]["image"]  # the cluster runs the pinned Ray


def _k8s(name: str) -> dict:
    doc = yaml.safe_load((K8S / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1", name
    return doc


def _check_cluster_spec(spec: dict, where: str) -> None:
    """Head + worker groups on the pinned Ray image; at least one group asks for a GPU."""
    assert spec["rayVersion"] == "2.60.0", where
    pods = [spec["headGroupSpec"]["template"]]
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
        pods.append(group["template"])
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group["groupName"])
    assert gpu_groups, f"{where}: no GPU worker group"
    for pod in pods:
        for c in pod["spec"]["containers"]:
            assert c["image"].startswith("rayproject/ray:2.60.0-py311"), (where, c["image"])


def _glan_ray_args(entrypoint: str):
    argv = shlex.split(entrypoint)
    assert argv[0] == "glan-ray", entrypoint
    return build_parser().parse_args(argv[1:])  # SystemExit on an invalid command


def test_kuberay_cluster_and_job_run_the_pipeline_on_shared_storage():
    cluster = _k8s("raycluster.yaml")
    assert cluster["kind"] == "RayCluster"
    _check_cluster_spec(cluster["spec"], "raycluster.yaml")

    job = _k8s("rayjob.yaml")
    assert job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    args = _glan_ray_args(job["spec"]["entrypoint"])
    assert args.func.__name__ == "_run_pipeline"
    assert args.out.startswith("s3://"), "a multi-node run directory must be shared storage"
    pip = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["pip"]
    assert any(p.startswith("glan-ray") for p in pip)


def test_kuberay_service_serves_the_serve_config_application():
    service = _k8s("rayservice.yaml")
    assert service["kind"] == "RayService"
    _check_cluster_spec(service["spec"]["rayClusterConfig"], "rayservice.yaml")
    served = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    local = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())["applications"]
    assert [a["import_path"] for a in served] == [a["import_path"] for a in local]
    for app, ref in zip(served, local, strict=True):
        assert set(app["args"]) <= set(ref["args"]), "args the builder does not know"
        assert any(p.startswith("glan-ray") for p in app["runtime_env"]["pip"])
