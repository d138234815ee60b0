"""cluster.yaml is a valid cluster-launcher config: it parses, every node type is well formed,
there are GPU workers, and the setup installs this package."""

from __future__ import annotations

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
