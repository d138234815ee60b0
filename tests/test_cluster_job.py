"""A real two-node local Ray cluster (head + one worker node, ``ray.cluster_utils.Cluster``) runs a
pipeline stage submitted through the Ray job SDK; the job succeeds and writes its outputs.

The cluster lives in a subprocess so it never touches the test session's own Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, time
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = sys.argv[1]
    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    # own ports for the dashboard and each node's agent: another Ray (the test session's) may
    # hold the defaults on this machine
    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": port, "dashboard_agent_listen_port": free_port(),
        "metrics_export_port": free_port()})
    cluster.add_node(num_cpus=2, dashboard_agent_listen_port=free_port(),
                     metrics_export_port=free_port())
    cluster.wait_for_nodes()
    try:
        client = JobSubmissionClient(f"http://127.0.0.1:{port}")
        # the head's job agent may come up a little after the dashboard: retry while it says so
        for attempt in range(90):
            try:
                job = client.submit_job(
                    entrypoint=f"glan-ray simulate --users 200 --days 2 --out {out} "
                    "--shard-users 100",
                    runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}},
                )
                break
            except RuntimeError as e:
                if "No available agent" not in str(e) or attempt == 89:
                    raise
                time.sleep(1)
        for _ in range(240):
            status = client.get_job_status(job)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(1)
        logs = client.get_job_logs(job)
        import ray
        ray.init(address=cluster.address)
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        ray.shutdown()
        print(json.dumps({"status": str(status), "nodes": nodes, "logs": logs[-2000:]}))
    finally:
        cluster.shutdown()
    """
)


def test_a_stage_runs_as_a_ray_job_on_a_two_node_cluster(tmp_path):
    out = str(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, out], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["nodes"] == 2
    assert report["status"].endswith("SUCCEEDED"), report["logs"]
    assert "written to" in report["logs"]
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest
    for name in ("daily", "sessions", "trajectories", "transitions"):
        assert os.listdir(os.path.join(out, name))
