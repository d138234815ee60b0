"""The deployment loop through Serve, end to end: the incumbent (KLAN by default) served by a
local Serve app exploring with epsilon=0.1, simulated users over HTTP (``glan-ray traffic``), its
decision log turned into datasets (``glan-ray logs-to-datasets --flush``), HRM labels
(``glan-ray label-hrm``), and GLAN's DT and KLAN's CQL retrained on them (``glan-ray train``),
as generation 1 of ``glan-ray pipeline --incumbent`` does in-process. Prints and writes the
row counts, the propensities, the DT's importance-weight effective sample size and the
trainings' metrics to ``bench/results/serve_loop.json``. Loopback only.

    python bench/serve_loop.py --models runs/after/models --users 300 --days 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="runs/after/models", help="generation 0's exports")
    ap.add_argument("--policy", default="klan", choices=("klan", "glan"), help="the incumbent")
    ap.add_argument("--users", type=int, default=300, help="simulated users")
    ap.add_argument("--days", type=int, default=3, help="days served by the app")
    ap.add_argument("--burn-in-days", type=int, default=7, help="days under logging first")
    ap.add_argument("--updates", type=int, default=100, help="updates of each retraining")
    ap.add_argument("--work", default="/tmp/glan_serve_loop", help="scratch directory")
    ap.add_argument("--results", default="bench/results/serve_loop.json")
    args = ap.parse_args()

    import ray
    from ray import serve
    from traffic_log import serve_and_play  # bench/, the script's own folder

    from glan_ray.cli import main as cli
    from glan_ray.data.read import read_dataset

    store, traffic_s = serve_and_play(args.models, args.policy, "epsilon=0.1", args.users,
                                      args.days, args.burn_in_days, args.work, 8124)  # fmt: skip
    serve.shutdown()
    data = f"{args.work}/data"
    assert cli(["logs-to-datasets", f"{args.work}/log", "--out", data, "--flush", store]) == 0
    counts = {n: read_dataset(data, n).count() for n in ("daily", "sessions", "transitions",
                                                         "trajectories")}  # fmt: skip
    prop = read_dataset(data, "sessions").to_pandas()["propensity"].to_numpy()
    w = 1.0 / prop
    ess = float(w.sum() ** 2 / (w**2).sum())
    ray.shutdown()
    t1 = time.time()
    assert cli(["label-hrm", "--data", data, "--hrm", f"{args.models}/hrm"]) == 0
    out = f"{args.work}/models"
    metrics = {}
    for algo in ("dt", "cql"):
        assert (
            cli(
                [
                    "--log-level",
                    "WARNING",
                    "train",
                    algo,
                    "--data",
                    data,
                    "--out",
                    out,
                    "--iterations",
                    "1",
                    "--updates-per-iteration",
                    str(args.updates),
                ]
            )
            == 0
        )
        with open(f"{out}/{algo}/config.json") as f:
            metrics[algo] = {
                "exported": os.path.exists(f"{out}/{algo}/model.pt"),
                "train_config_keys": len(json.load(f)["train_config"]),
            }
    res = {
        "config": vars(args),
        "traffic_wall_s": traffic_s,
        "retrain_wall_s": time.time() - t1,
        "rows": counts,
        "propensity_levels": {str(v): int(c) for v, c in
                              zip(*np.unique(np.round(prop, 4), return_counts=True), strict=True)},
        "ipw_effective_sample_size": ess,
        "ess_share": ess / len(prop),
        "retrained": metrics,
    }  # fmt: skip
    print(json.dumps(res, indent=2))
    with open(args.results, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
