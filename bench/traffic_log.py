"""A traffic run end to end: the demo's exported models served by a local Serve app exploring
with epsilon=0.1, simulated users over HTTP (``glan-ray traffic``), the decision log flushed and
turned into datasets (``glan-ray logs-to-datasets --flush``), read back with ``read_dataset``
(validated). Prints and writes row counts, propensities and the traffic figures to
``bench/results/traffic_log.json``. Loopback only; the app's state lives under ``--work``.

    python bench/traffic_log.py --models runs/demo/models --users 200 --days 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np


def serve_and_play(
    models: str,
    policy: str,
    exploration: str,
    users: int,
    days: int,
    burn_in_days: int,
    work: str,
    port: int,
    sim_log: bool = False,
) -> tuple[str, float]:
    """A fresh ``work`` directory, a local Ray and the Serve app (its state in ``work``), then
    ``glan-ray traffic`` against it; returns (the state store's URL, traffic wall seconds). The
    app is left running (``serve.shutdown()`` ends it)."""
    import ray
    from ray import serve

    from glan_ray.cli import main as cli
    from glan_ray.serving.app import build_app

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    store = f"sqlite://{work}/state.sqlite3"
    app = {"models": models, "policy": policy, "exploration": exploration,
           "state_store": store, "num_cpus": 0.1}  # fmt: skip
    serve.run(build_app(app), name="glan", route_prefix="/")
    t0 = time.time()
    argv = ["--log-level", "WARNING", "traffic", "--url", f"http://127.0.0.1:{port}",
            "--users", str(users), "--days", str(days), "--burn-in-days", str(burn_in_days)]
    if sim_log:
        argv += ["--sim-log", f"{work}/sim_log"]
    assert cli(argv) == 0, "traffic failed"  # fmt: skip
    return store, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="runs/demo/models", help="exported models directory")
    ap.add_argument("--users", type=int, default=200, help="simulated users")
    ap.add_argument("--days", type=int, default=2, help="days played through the app")
    ap.add_argument("--burn-in-days", type=int, default=7, help="days under logging first")
    ap.add_argument("--exploration", default="epsilon=0.1", help="the app's exploration")
    ap.add_argument("--work", default="/tmp/glan_traffic_log", help="scratch directory")
    ap.add_argument("--results", default="bench/results/traffic_log.json")
    args = ap.parse_args()

    from glan_ray.cli import main as cli
    from glan_ray.data.read import read_dataset

    store, wall = serve_and_play(args.models, "glan", args.exploration, args.users, args.days,
                                 args.burn_in_days, args.work, 8123, sim_log=True)  # fmt: skip
    out = f"{args.work}/datasets"
    assert cli(["logs-to-datasets", f"{args.work}/log", "--out", out, "--flush", store]) == 0
    assert cli(["logs-to-datasets", f"{args.work}/sim_log", "--out", f"{args.work}/sim_ds"]) == 0
    counts = {n: read_dataset(out, n).count() for n in ("daily", "sessions", "transitions",
                                                        "trajectories")}  # fmt: skip
    sessions = read_dataset(out, "sessions").to_pandas()
    prop = sessions["propensity"].to_numpy()
    levels, n_at = np.unique(np.round(prop, 4), return_counts=True)
    with open(f"{out}/manifest.json") as f:
        manifest = json.load(f)
    with open(f"{args.work}/sim_ds/manifest.json") as f:
        sim_manifest = json.load(f)
    res = {
        "config": vars(args),
        "traffic_wall_s": wall,
        "rows_in_datasets": counts,
        "log_summary": manifest["summary"],
        "log_rows": manifest["log_rows"],
        "duplicates": manifest["duplicates"],
        "sim_log_summary": sim_manifest["summary"],
        "propensity_levels": {str(v): int(c) for v, c in zip(levels, n_at, strict=True)},
        "page_shares": {str(k): float(v) for k, v in
                        sessions["action"].value_counts(normalize=True).sort_index().items()},
        "policy_entries_explored": float((prop < 0.5).mean()),
    }  # fmt: skip
    print(json.dumps(res, indent=2))
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(res, f, indent=2)
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
