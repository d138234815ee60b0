"""What GLAN's Decision Transformer learns from which logs: DT variants on held-out users.

The pipeline's DT (``glan_ray/rllib/dt``) leaves out the RCT treatment days (one page all day:
they teach "copy the previous page") and weights the cross-entropy by inverse logging
propensities. This bench trains the same ``DecisionTransformer`` in plain PyTorch on a finished
run's trajectories under data variants, several training seeds each, and plays every model as the
GLAN arm (L-RTG → DT → HRM, ``target_gain``) on held-out users beside KLAN, the last-exit
heuristic and the oracle, all paired with the logging policy (common random numbers):

- ``logging_days``: the pipeline's recipe (non-deterministic days, IPW-weighted CE);
- ``rct_first_step``: + the first session of every RCT treatment day (its page was drawn at
  random for the day, so that one step is unbiased), weight ``1 / (1/3)``, later steps masked;
- ``plus_uniform``: + ``--uniform-users`` × ``--days`` user-days logged by a uniformly random
  policy (propensity 1/3 every session), simulated here and labelled with the run's HRM.

It also reports how far each DT's π(a | s, R̂) is from uniform on the logging days' windows (mean
top probability): a return-conditioned policy can only pick well where the day's return depends on
the pages more than on everything else. Writes ``bench/results/dt_data.json``.

    python bench/dt_data.py --run runs/demo --seeds 0,1 --updates 3000
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import ray
import torch

from glan_ray import storage
from glan_ray.data.generate import GenerateOptions, generate
from glan_ray.data.windows import cut_windows, deterministic_days
from glan_ray.eval.ab import run_shard
from glan_ray.eval.stats import compare
from glan_ray.label import label_hrm
from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.dt import DecisionTransformer, DTConfig, dt_loss, propensity_weights
from glan_ray.schema import PAGES
from glan_ray.sim.config import SimConfig

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("logging_days", "rct_first_step", "plus_uniform")
KEYS = ("rtg", "obs", "actions", "timesteps", "mask")
RTG_SCALE = 3600.0  # the pipeline's DT default (seconds per unit of R̂)


def windows(table: pa.Table, first_step_only: bool, max_weight: float) -> dict[str, np.ndarray]:
    """Training windows of ``table`` with their loss weights ``w`` (W, K)."""
    w = cut_windows(table, DTConfig().context_len, "reward_hrm", RTG_SCALE)
    if first_step_only:  # deterministic days: only the randomised first page counts
        w["w"] = w["mask"] * (w["timesteps"] == 0) * 3.0
    else:
        ipw = propensity_weights(torch.from_numpy(w["propensity"]), max_weight).numpy()
        w["w"] = w["mask"] * ipw
    w["w"] = w["w"].astype(np.float32)
    return w


def train(
    w: dict[str, np.ndarray], updates: int, seed: int, batch: int = 64
) -> DecisionTransformer:
    """Plain-PyTorch DT training: AdamW lr 3e-4, length-bucketed batches, grad-norm clip 1."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    net = DecisionTransformer(DTConfig())
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-4)
    lengths = w["mask"].sum(1)
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    step, net = 0, net.train()
    while step < updates:
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            n = int(lengths[idx].max())
            t = {k: torch.from_numpy(w[k][idx, :n]) for k in (*KEYS, "w")}
            if float(t["w"].sum()) == 0.0:
                continue
            logits = net(t["rtg"], t["obs"], t["actions"], t["timesteps"])  # (B, n, A)
            loss = dt_loss(logits, t["actions"], t["mask"], t["w"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            if step >= updates:
                break
    return net.eval()


@torch.no_grad()
def flatness(net: DecisionTransformer, w: dict[str, np.ndarray], gain: float) -> dict[str, float]:
    """Mean top probability and page shares of π(· | s, gain·R̂) over the windows' steps."""
    t = {k: torch.from_numpy(w[k][:2000]) for k in KEYS}
    p = net(t["rtg"] * gain, t["obs"], t["actions"], t["timesteps"]).softmax(-1)  # (B, K, A)
    m = t["mask"] > 0
    top = p.max(-1).values[m]
    shares = np.bincount(p.argmax(-1)[m].numpy(), minlength=len(PAGES)) / int(m.sum())
    out = {"mean_top_prob": float(top.mean())}
    out.update({page: float(s) for page, s in zip(PAGES, shares, strict=True)})
    return out


@ray.remote(num_cpus=1)
def train_variant(run: str, extra: str | None, variant: str, seed: int, updates: int,
                  max_weight: float, out: str) -> dict:  # fmt: skip
    table = pads.dataset(os.path.join(run, "data", "trajectories"), format="parquet").to_table()
    det = deterministic_days(table)
    parts = [windows(table.filter(pa.array(~det)), False, max_weight)]
    if variant == "rct_first_step":
        parts.append(windows(table.filter(pa.array(det)), True, max_weight))
    if variant == "plus_uniform":
        uni = pads.dataset(extra, format="parquet").to_table().select(table.column_names)
        parts.append(windows(uni.cast(table.schema), False, max_weight))
    w = {k: np.concatenate([p[k] for p in parts]) for k in (*KEYS, "w")}
    t0 = time.time()
    net = train(w, updates, seed)
    models = os.path.join(out, f"{variant}_{seed}")
    os.makedirs(models, exist_ok=True)
    for name in ("lrtg", "hrm", "isp", "am", "cql", "dt_naive"):
        src = os.path.join(os.path.abspath(run), "models", name)
        if os.path.exists(src) and not os.path.exists(os.path.join(models, name)):
            os.symlink(src, os.path.join(models, name))
    save_checkpoint(os.path.join(models, "dt"), "dt", net, dataclasses.asdict(net.cfg),
                    {"reward_column": "reward_hrm", "rtg_scale": RTG_SCALE}, normalizer=None,
                    extra={"rtg_scale": RTG_SCALE})  # fmt: skip
    logging_windows = {k: v[: len(parts[0]["mask"])] for k, v in w.items()}
    return {"variant": variant, "seed": seed, "models": models, "train_s": time.time() - t0,
            "windows": len(w["mask"]), "weighted_steps": float(w["w"].sum()),
            "flat_gain_1": flatness(net, logging_windows, 1.0),
            "flat_gain_2": flatness(net, logging_windows, 2.0)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="finished pipeline run (data + models)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    ap.add_argument("--seeds", default="0,1", help="DT training seeds per variant")
    ap.add_argument("--updates", type=int, default=3000, help="gradient updates per DT")
    ap.add_argument("--max-weight", type=float, default=50.0, help="IPW cap (the DT default)")
    ap.add_argument("--uniform-users", type=int, default=1000, help="users logged uniformly")
    ap.add_argument("--days", type=int, default=14, help="days of the uniform logs")
    ap.add_argument("--gain", type=float, default=2.0, help="GLAN target_gain in the test")
    ap.add_argument("--users", type=int, default=1000, help="held-out test users")
    ap.add_argument("--test-days", type=int, default=5, help="days simulated per test user")
    ap.add_argument("--seed", type=int, default=5, help="simulator seed of the test")
    ap.add_argument("--first-user", type=int, default=60_000_000, help="first test user id")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "dt_data.json"))
    args = ap.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    ray.init(include_dashboard=False, log_to_driver=False)
    work = tempfile.mkdtemp(prefix="dt_data_")
    extra = None
    if "plus_uniform" in variants:
        extra = os.path.join(work, "uniform")
        opts = GenerateOptions(users=args.uniform_users, days=args.days, policy="uniform")
        generate(SimConfig(seed=7), opts, extra)
        label_hrm(extra, os.path.join(args.run, "models", "hrm"))
        extra = os.path.join(extra, "trajectories")
        print(f"uniform logs: {args.uniform_users} users x {args.days} days, HRM-labelled")
    seeds = [int(s) for s in args.seeds.split(",")]
    refs = [train_variant.remote(args.run, extra, v, s, args.updates, args.max_weight, work)
            for v in variants for s in seeds]  # fmt: skip
    trained = ray.get(refs)
    task = ray.remote(num_cpus=1)(run_shard)
    common = ({}, args.seed, args.first_user, args.users, args.test_days)
    models = os.path.join(args.run, "models")
    base_ref = task.remote("logging", models, *common)
    ref_arms = {a: task.remote(a, models, *common) for a in ("klan", "last_exit", "oracle")}
    glan = [task.remote("glan", t["models"], *common, {"target_gain": args.gain}) for t in trained]
    base = ray.get(base_ref)["units"]

    def vs_logging(u: dict) -> dict:
        usage = compare(u["usage"], base["usage"], u["days"], base["days"], paired=True)
        dau = compare(u["active_days"], base["active_days"], u["days"], base["days"], paired=True)
        shares = {p: float(u[f"assign_{p}"].sum() / max(u["sessions"].sum(), 1)) for p in PAGES}
        return {"usage_rel_pct": usage.rel_pct, "usage_ci": [usage.ci_low_pct, usage.ci_high_pct],
                "dau_rel_pct": dau.rel_pct, "assign": shares}  # fmt: skip

    refs_out = {a: vs_logging(ray.get(r)["units"]) for a, r in ref_arms.items()}
    rows = []
    for t, r in zip(trained, glan, strict=True):
        row = {**{k: v for k, v in t.items() if k != "models"}, **vs_logging(ray.get(r)["units"])}
        rows.append(row)
        shares = " ".join(f"{p[:3]} {s:.2f}" for p, s in row["assign"].items())
        print(f"{t['variant']:15s} seed {t['seed']}  GLAN usage {row['usage_rel_pct']:+6.2f}% "
              f"DAU {row['dau_rel_pct']:+5.2f}%  top-prob {t['flat_gain_2']['mean_top_prob']:.3f}"
              f"  assign {shares}")  # fmt: skip
    for a, r in refs_out.items():
        print(f"{a:15s}         usage {r['usage_rel_pct']:+6.2f}% DAU {r['dau_rel_pct']:+5.2f}%")
    summary = {
        v: float(np.mean([r["usage_rel_pct"] for r in rows if r["variant"] == v])) for v in variants
    }
    out = {"config": vars(args), "rows": rows, "reference_arms": refs_out,
           "mean_usage_rel_pct": summary}  # fmt: skip
    storage.write_json(args.results, out, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
