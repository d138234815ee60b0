"""The DT's training budget chosen by its own held-out loss (no A/B is read).

Splits the users of a run's ``trajectories`` by the supervised models' user hash
(``val_fraction`` 0.1), trains the RLlib DT on the training users exactly as the pipeline does
(same config, ``updates_per_iteration`` updates per ``train()``) and, after every iteration,
scores the held-out users' windows: the inverse-propensity-weighted cross-entropy the DT
minimises, the plain cross-entropy, and both against ln 3 (a uniform guess over the pages).

    python bench/dt_budget.py --data runs/demo/data --iterations 8
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray
import torch

from glan_ray.data.split import is_val_user
from glan_ray.data.windows import cut_windows, deterministic_days
from glan_ray.models.dt import dt_loss, propensity_weights
from glan_ray.rllib.dt.torch.dt_torch_rl_module import dt_config
from glan_ray.rllib.launch import RLTrainConfig, algorithm_config
from glan_ray.schema import N_PAGES

HERE = os.path.dirname(os.path.abspath(__file__))
logger = logging.getLogger("dt_budget")


@torch.no_grad()
def held_out(dt: torch.nn.Module, w: dict[str, np.ndarray], max_weight: float) -> dict[str, float]:
    """IPW and plain cross-entropy, and accuracy, of ``dt`` on the windows ``w``."""
    dt.eval()
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    logits = dt(t["rtg"], t["obs"], t["actions"], t["timesteps"])  # (W, K, A)
    weight = propensity_weights(t["propensity"], max_weight)
    hit = ((logits.argmax(-1) == t["actions"]).float() * t["mask"]).sum() / t["mask"].sum()
    dt.train()
    return {
        "val_ipw_ce": float(dt_loss(logits, t["actions"], t["mask"], weight)),
        "val_ce": float(dt_loss(logits, t["actions"], t["mask"])),
        "val_accuracy": float(hit),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/demo/data", help="run data directory")
    ap.add_argument("--iterations", type=int, default=8, help="train() calls")
    ap.add_argument("--updates", type=int, default=300, help="updates per train()")
    ap.add_argument("--reward-column", default="reward_hrm", help="reward_hrm or reward")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra DT keys (JSON values), e.g. --set lr=1e-3")  # fmt: skip
    ap.add_argument("--results", default=os.path.join(HERE, "results", "dt_budget.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    table = pads.dataset(os.path.join(args.data, "trajectories"), format="parquet").to_table()
    val = is_val_user(table.column("user_id"), 0.1)
    tmp = tempfile.mkdtemp(prefix="dt_budget_")
    os.makedirs(os.path.join(tmp, "trajectories"))
    pq.write_table(table.filter(pa.array(~val)), os.path.join(tmp, "trajectories", "part.parquet"))
    held = table.filter(pa.array(val))
    held = held.filter(pa.array(~deterministic_days(held)))
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = RLTrainConfig.from_flat("dt", {"data": tmp, "out": os.path.join(tmp, "models"),
                                         "iterations": args.iterations,
                                         "updates_per_iteration": args.updates,
                                         "reward_column": args.reward_column, **extra})  # fmt: skip
    ac = algorithm_config(cfg)
    k = dt_config(ac.model_config, ac.observation_space).context_len
    w = cut_windows(held, k, args.reward_column)
    logger.info("%d training user-days, %d held-out windows", (~val).sum(), len(w["mask"]))

    ray.init(include_dashboard=False, log_to_driver=False)
    algo = ac.build_algo()
    dt = algo.get_module().dt
    rows = [{"updates": 0, "seconds": 0.0, **held_out(dt, w, ac.max_weight)}]
    t0 = time.perf_counter()
    for i in range(1, args.iterations + 1):
        train = algo.train()["learners"]["default_policy"]
        rows.append({"updates": i * args.updates, "seconds": round(time.perf_counter() - t0, 1),
                     "train_loss": float(train["total_loss"]),
                     **held_out(algo.get_module().dt, w, ac.max_weight)})  # fmt: skip
        logger.info("%s", rows[-1])
    algo.stop()
    out = {"data": args.data, "reward_column": args.reward_column, "set": extra,
           "ln_n_pages": math.log(N_PAGES), "held_out_windows": len(w["mask"]),
           "curve": rows}  # fmt: skip
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(out, f, indent=1)
    for r in rows:
        print(
            f"{r['updates']:>5} updates  held-out IPW CE {r['val_ipw_ce']:.4f}  "
            f"CE {r['val_ce']:.4f}  acc {r['val_accuracy']:.3f}  (ln 3 = {math.log(3):.4f})"
        )


if __name__ == "__main__":
    main()
