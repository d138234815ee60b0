"""Training throughput of our RLlib learners vs d3rlpy, and DT inference step time.

1. Simulates a population (or takes ``--data``) and exports the same transitions / user-day
   episodes as an npz for d3rlpy.
2. Side by side, in one run, with the same data, batch size and network size:
   - discrete CQL: ours (``glan_ray.rllib.cql``, RLlib new stack, data through Ray Data and our
     pre-learner) vs d3rlpy ``DiscreteCQL`` (MLP 28-256-256-3, batch 256);
   - Decision Transformer: ours (``glan_ray.rllib.dt``) vs d3rlpy ``DiscreteDecisionTransformer``
     (K = 20 sessions, d = 128, 3 layers, 1 head, batch 64 windows).
   For the DT, ours is also timed with ``bucket_by_length=False`` (i.i.d. batches, each padded
   to its longest day), to separate the length bucketing from the rest of the pipeline.
   Ours is timed over whole ``algo.train()`` calls after a warm-up call (which starts Ray Data
   and materialises the pre-learned data), so data loading, RLlib's learner bookkeeping and
   metrics are all in the figure. d3rlpy is timed on its own ``fit`` loop body (sample a
   mini-batch + ``update``) in its private venv (``bench/d3rlpy_env.sh``; never a project
   dependency). Targets: DT ≥ 1.5× d3rlpy, CQL ≥ 1.0× d3rlpy (updates/s).
3. DT inference: time of one KV-cached step (one app entry, batch 1) at session t = 1, 10, 50,
   100 of a day (target: step 100 ≤ 1.5× step 1), next to a full re-run of the window.

Prints a table and writes ``bench/results/rl_throughput.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from glan_ray.data.generate import GenerateOptions, generate
from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.runtime import init_ray
from glan_ray.schema import OBS_DIM
from glan_ray.sim.config import SimConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def _read(data: str, name: str, columns: list[str]):
    files = sorted(glob.glob(os.path.join(data, name, "*", "*.parquet")))
    return pq.ParquetDataset(files).read(columns=columns)


def export_npz(data: str, path: str) -> dict:
    """Transitions in user-day order (episodes end at done) -> d3rlpy's MDPDataset arrays."""
    t = _read(data, "transitions", ["obs", "action", "reward", "done"])
    obs = np.asarray(pc.list_flatten(t.column("obs")).to_numpy(), np.float32)
    done = t.column("done").to_numpy(zero_copy_only=False).astype(np.float32)
    done[-1] = 1.0
    np.savez(
        path,
        obs=obs.reshape(-1, OBS_DIM),
        actions=t.column("action").to_numpy().astype(np.int64),
        rewards=(t.column("reward").to_numpy() / 60.0).astype(np.float32),
        terminals=done,
    )
    return {"transitions": len(t), "episodes": int(done.sum())}


def ours(algo: str, data: str, out: str, args: argparse.Namespace, bucket: bool = True) -> dict:
    from glan_ray.rllib.launch import RLTrainConfig, algorithm_config

    if algo == "cql":
        flat = {"batch_size": args.cql_batch, "hidden": [args.hidden, args.hidden]}
    else:
        flat = {
            "batch_size": args.dt_batch,
            "reward_column": "reward",
            "context_len": args.context_len,
            "embed_dim": args.embed_dim,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "bucket_by_length": bucket,
        }
    cfg = RLTrainConfig.from_flat(
        algo, {"data": data, "out": out, "updates_per_iteration": args.updates, **flat}
    )
    rl = algorithm_config(cfg).build_algo()
    try:
        t0 = time.perf_counter()
        rl.train()  # warm-up: starts the Ray Data pipeline and materialises the mapped data
        warmup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            rl.train()
        wall = time.perf_counter() - t0
        params = sum(p.numel() for p in rl.get_module().parameters())
    finally:
        rl.stop()
    updates = args.iterations * args.updates
    return {
        "impl": "glan_ray (RLlib)",
        "updates": updates,
        "wall_s": wall,
        "warmup_s": warmup_s,
        "updates_per_s": updates / wall,
        "samples_per_s": updates * cfg.batch_size / wall if cfg.batch_size else None,
        "batch_size": cfg.batch_size,
        "params": params,
    }


def d3rlpy(algo: str, npz: str, args: argparse.Namespace) -> dict:
    py = (
        subprocess.run(
            ["bash", os.path.join(HERE, "d3rlpy_env.sh")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    cmd = [py, os.path.join(HERE, "d3rlpy_anchor.py"), "--data", npz, "--algo", algo]
    cmd += ["--steps", str(args.iterations * args.updates), "--threads", "2"]
    if algo == "cql":
        cmd += ["--batch-size", str(args.cql_batch), "--hidden", str(args.hidden)]
    else:
        cmd += ["--batch-size", str(args.dt_batch), "--context-len", str(args.context_len)]
        cmd += ["--embed-dim", str(args.embed_dim), "--n-layers", str(args.n_layers)]
        cmd += ["--n-heads", str(args.n_heads), "--max-timestep", "64"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"d3rlpy anchor failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["impl"] = f"d3rlpy {out.get('d3rlpy_version', '')}"
    return out


@torch.no_grad()
def dt_inference(args: argparse.Namespace) -> dict:
    """Median seconds of the KV-cached step at session t, batch 1, vs a full window re-run."""
    torch.manual_seed(0)
    cfg = DTConfig(
        context_len=args.context_len,
        embed_dim=args.embed_dim,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
    )
    model = DecisionTransformer(cfg).eval()
    marks, reps, horizon = (1, 10, 50, 100), 30, 100
    times = {t: [] for t in marks}
    full = {t: [] for t in marks}
    obs = torch.randn(horizon, 1, OBS_DIM)
    for _ in range(reps):
        cache, prev = model.new_cache(), None
        for t in range(1, horizon + 1):
            t0 = time.perf_counter()
            logits = model.step(cache, torch.tensor([1.0]), obs[t - 1], prev)
            if t in times:
                times[t].append(time.perf_counter() - t0)
            prev = logits.argmax(-1)
            if t in full:  # the same decision without a cache: re-run the last K sessions
                k = min(t, cfg.context_len)
                t0 = time.perf_counter()
                model(
                    torch.ones(1, k),
                    obs[t - k : t].transpose(0, 1),
                    torch.zeros(1, k, dtype=torch.long),
                    torch.arange(t - k, t).unsqueeze(0),
                )
                full[t].append(time.perf_counter() - t0)
    step_ms = {t: 1e3 * float(np.median(v)) for t, v in times.items()}
    return {
        "step_ms": step_ms,
        "full_rerun_ms": {t: 1e3 * float(np.median(v)) for t, v in full.items()},
        "step100_over_step1": step_ms[100] / step_ms[1],
        "cache_tokens_max": cfg.max_cache_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="existing run data dir (default: simulate --users x --days)")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--iterations", type=int, default=3, help="timed train() calls")
    ap.add_argument("--updates", type=int, default=200, help="updates per train() call")
    ap.add_argument("--cql-batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dt-batch", type=int, default=64)
    ap.add_argument("--context-len", type=int, default=20)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--n-heads", type=int, default=1)
    ap.add_argument("--skip-d3rlpy", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "rl_throughput.json"))
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = tempfile.mkdtemp(prefix="glan_rl_bench_")
    init_ray(num_cpus=2)
    data = args.data
    if not data:
        data = os.path.join(work, "data")
        generate(SimConfig(seed=3), GenerateOptions(users=args.users, days=args.days), data)
    npz = os.path.join(work, "d3rlpy.npz")
    sizes = export_npz(data, npz)
    print(f"data: {sizes}", flush=True)
    results: dict = {"data": sizes, "machine": {"cpus": os.cpu_count(), "python": sys.version}}
    results["machine"]["platform"] = platform.platform()
    results["machine"]["torch"] = torch.__version__
    results["config"] = vars(args)
    for algo in ("cql", "dt"):
        row = {"ours": ours(algo, data, os.path.join(work, "out"), args)}
        print(f"{algo} ours: {row['ours']['updates_per_s']:.1f} updates/s", flush=True)
        if algo == "dt":  # the same learner on i.i.d. batches, every batch at its longest day
            row["ours_no_bucketing"] = ours(algo, data, os.path.join(work, "out"), args, False)
            print(f"dt ours, no bucketing: {row['ours_no_bucketing']['updates_per_s']:.1f}")
        if not args.skip_d3rlpy:
            row["d3rlpy"] = d3rlpy(algo, npz, args)
            base = row["d3rlpy"]["updates_per_s"]
            row["ratio_updates_per_s"] = row["ours"]["updates_per_s"] / base
            if "ours_no_bucketing" in row:
                row["ratio_no_bucketing"] = row["ours_no_bucketing"]["updates_per_s"] / base
            print(
                f"{algo} d3rlpy: {row['d3rlpy']['updates_per_s']:.1f} updates/s "
                f"-> ratio {row['ratio_updates_per_s']:.2f}",
                flush=True,
            )
        results[algo] = row
    results["dt_inference"] = dt_inference(args)
    results["targets"] = {
        "dt_ratio_ge_1.5": results["dt"].get("ratio_updates_per_s", 0) >= 1.5,
        "cql_ratio_ge_1.0": results["cql"].get("ratio_updates_per_s", 0) >= 1.0,
        "dt_step100_le_1.5x_step1": results["dt_inference"]["step100_over_step1"] <= 1.5,
    }
    print(json.dumps({k: results[k] for k in ("cql", "dt", "dt_inference", "targets")}, indent=1))
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2, default=float)


if __name__ == "__main__":
    main()
