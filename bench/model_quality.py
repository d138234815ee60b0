"""Quality of the supervised models on held-out simulated users (issue: Ray Train and Tune).

1. Simulates a training population (with RCT days for KLAN-ISP) and trains L-RTG, HRM, KLAN-ISP
   and KLAN-AM with Ray Train, exactly as ``glan-ray train`` does.
2. Simulates a disjoint held-out population in-process and measures:
   - L-RTG: MAE / MAPE of the day's usage time vs the 7-day-average baseline ("w/o L-RTG"),
     and whether the constraints (L_se <= eps_se, L_rel <= eps_rel) hold on held-out data.
   - HRM: drop-off AUC, per-session duration MAE, and the Spearman correlation of
     r_hat = (1 - p_sw) * sum_j T_hat_j with the simulator's true session value, next to the
     naive session duration's.
   - KLAN-ISP: Qini coefficient per page against control, and AUUC against the true uplift that
     the simulator knows (counterfactual replay).
   - KLAN-AM: AUC of the static-preference label on the assigned page's tower.
Prints a table and writes bench/results/model_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch

from glan_ray.data.features import SPECS, as_columns
from glan_ray.data.generate import GenerateOptions, generate
from glan_ray.data.tables import day_tables
from glan_ray.eval.metrics import auc, auuc, qini_coefficient, spearman
from glan_ray.models.checkpoint import load_checkpoint
from glan_ray.models.hrm import hrm_reward
from glan_ray.models.klan_isp import uplift
from glan_ray.models.lrtg import lrtg_losses
from glan_ray.runtime import init_ray
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.train.config import train_config
from glan_ray.train.trainer import fit


def heldout_tables(cfg: SimConfig, first_user: int, users: int, days: int) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, first_user, users, days, LoggingPolicy(cfg), rct=True):
        for name, t in day_tables(log, rct=True).items():
            parts.setdefault(name, []).append(t)
    return {k: pa.concat_tables(v) for k, v in parts.items()}


@torch.no_grad()
def predict(path: str, table: pa.Table) -> tuple[dict, dict]:
    model, normalizer, meta = load_checkpoint(path)
    cols = as_columns(table)
    feats = normalizer(SPECS[meta["model"]].build(cols))
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.items()}
    if meta["model"] == "lrtg":
        out = model(t["x_cat"], t["x_num"], t["seq"], t["seq_dt"])
    elif meta["model"] == "hrm":
        out = model(t["x_cat"], t["x_num"], t["page"])
    else:
        out = model(t["x_cat"], t["x_num"])
    return {k: v.numpy() for k, v in out.items()}, {**meta, "cols": cols}


def eval_lrtg(path: str, daily: pa.Table) -> dict:
    daily = daily.filter(daily.column("is_active"))
    out, meta = predict(path, daily)
    y = daily.column("y_wt").to_numpy() / 3600
    base = daily.column("usage_7d").to_numpy() / 3600
    se = daily.column("y_se").to_numpy().astype(float)
    a, b = meta["extra"]["rel_a"], meta["extra"]["rel_b"]
    tc = meta["train_config"]
    f32 = {"dtype": torch.float32}
    losses = lrtg_losses({k: torch.tensor(v, **f32) for k, v in out.items()},
                         torch.tensor(y, **f32), torch.tensor(se, **f32), a, b)  # fmt: skip
    l_se, l_rel = float(losses["se"]), float(losses["rel"])
    floor = 1 / 60  # MAPE over days with at least a minute of usage
    ok = y >= floor
    return {
        "rows": len(y),
        "mae_s": float(np.mean(np.abs(out["wt"] - y)) * 3600),
        "mae_s_7day_avg": float(np.mean(np.abs(base - y)) * 3600),
        "mape": float(np.mean(np.abs(out["wt"] - y)[ok] / y[ok])),
        "mape_7day_avg": float(np.mean(np.abs(base - y)[ok] / y[ok])),
        "l_se": l_se,
        "eps_se": tc["eps_se"],
        "se_constraint_holds": l_se <= tc["eps_se"],
        "l_rel": l_rel,
        "eps_rel": tc["eps_rel"],
        "rel_constraint_holds": l_rel <= tc["eps_rel"],
    }


def eval_hrm(path: str, sessions: pa.Table) -> dict:
    out, _ = predict(path, sessions)
    dur = np.stack(sessions.column("dur").to_numpy(zero_copy_only=False)) / 60
    y_sw = sessions.column("y_sw").to_numpy()
    value = sessions.column("value_true").to_numpy()
    naive = sessions.column("usage_time").to_numpy()
    r_hat = hrm_reward(torch.from_numpy(out["dur"]), torch.from_numpy(out["p_sw"])).numpy()
    return {
        "rows": len(y_sw),
        "auc_dropoff": auc(y_sw, out["p_sw"]),
        "mae_total_dur_min": float(np.mean(np.abs(out["dur"].sum(1) - dur.sum(1)))),
        "spearman_rhat_vs_true_value": spearman(r_hat, value),
        "spearman_naive_duration_vs_true_value": spearman(naive, value),
    }


def eval_isp(path: str, rct: pa.Table) -> dict:
    out, _ = predict(path, rct)
    tau = uplift({k: torch.from_numpy(v) for k, v in out.items()}).numpy()  # (B, 3)
    t = rct.column("treatment").to_numpy().astype(int)
    y = rct.column("response").to_numpy()
    cf = np.stack(rct.column("response_cf").to_numpy(zero_copy_only=False))
    res = {}
    for k, page in enumerate(("featured", "explore", "following")):
        sel = (t == 0) | (t == k + 1)
        res[page] = {
            "qini": qini_coefficient(tau[sel, k], t[sel] == k + 1, y[sel]),
            "qini_true_uplift_ranking": qini_coefficient(
                (cf[:, k + 1] - cf[:, 0])[sel], t[sel] == k + 1, y[sel]
            ),
            "auuc_vs_true_uplift": auuc(tau[:, k], cf[:, k + 1] - cf[:, 0]),
        }
    return res


def eval_am(path: str, sessions: pa.Table, theta: float) -> dict:
    out, _meta = predict(path, sessions)
    page = sessions.column("action").to_numpy().astype(int)
    w = out["w"][np.arange(len(page)), page]
    sw = sessions.column("n_switches").to_numpy()
    minutes = np.maximum(sessions.column("usage_time").to_numpy() / 60, 1e-3)
    label = (sw / minutes < theta).astype(float)
    return {"auc_static": auc(label, w), "label_rate": float(label.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--heldout-users", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--results", default="bench/results/model_quality.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = args.workdir or tempfile.mkdtemp(prefix="glan_quality_")
    init_ray(num_cpus=2)
    cfg = SimConfig(seed=1)
    t0 = time.perf_counter()
    generate(
        cfg,
        GenerateOptions(users=args.users, days=args.days, rct=True, overwrite=True),
        f"{work}/data",
    )
    timings = {"simulate_s": time.perf_counter() - t0}
    ckpt = {}
    for model in ("lrtg", "hrm", "isp", "am"):
        t0 = time.perf_counter()
        tc = train_config(
            model,
            {
                "data": f"{work}/data",
                "out": f"{work}/models",
                "epochs": args.epochs,
                "batch_size": 512,
                "lr": 2e-3,
            },
        )
        ckpt[model] = fit(model, tc).checkpoint
        timings[f"train_{model}_s"] = time.perf_counter() - t0
        print(f"trained {model} in {timings[f'train_{model}_s']:.0f}s", flush=True)
    # Held-out users: a disjoint id range, so profiles and days are new.
    test = heldout_tables(cfg, 10_000_000, args.heldout_users, args.days)
    results = {
        "train_population": {"users": args.users, "days": args.days},
        "heldout_population": {"users": args.heldout_users, "days": args.days},
        "lrtg": eval_lrtg(ckpt["lrtg"], test["daily"]),
        "hrm": eval_hrm(ckpt["hrm"], test["sessions"]),
        "isp": eval_isp(ckpt["isp"], test["rct"]),
        "am": eval_am(ckpt["am"], test["sessions"], 0.5),
        "timings_s": timings,
    }
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(json.dumps({k: v for k, v in results.items()}, indent=2, default=float))


if __name__ == "__main__":
    main()
