"""GPU check (issue 28 item 5): every GPU path of the platform, on the GPU and on the CPU, on tiny
data, in one run (``bench/gpu_check.sh`` wraps it).

Paths, each run with its GPU flag off (CPU) and, when a GPU is usable, on (GPU):

- ``ray_train``: a Ray Train worker (``TrainConfig.use_gpu``, ``glan-ray train MODEL --use-gpu``;
  default HRM): updates/s of its last epoch (rows/s over the batch size, in the training loop);
- ``rllib_cql``, ``rllib_dt``: the RLlib learners (``RLTrainConfig.use_gpu``:
  ``num_gpus_per_learner=1``; the demo's network sizes): updates/s over the ``train()`` calls
  after the first (``fit_rl``);
- ``tune``: a CQL sweep whose trials each take ``{"cpu": 1, "gpu": 1}`` (``base.use_gpu``):
  trials finished, errors, wall time;
- ``serve``: the app with the DT replica on ``num_gpus`` (small random exports, the demo's
  sizes, from ``serve_probe.write_models``), ``--entries`` app entries (each followed by its
  session end) at ``--concurrency`` through Serve's proxy, driven by ``serve_load``'s client:
  p50 / p99 of the entry endpoint, entries/s, errors; with a GPU, also which Ray processes hold
  a CUDA context (``nvidia-smi``): whether the DT replica's model really runs on the GPU.

A GPU is usable when torch sees CUDA and Ray registers a GPU. Without one, every path runs on the
CPU only, its ``gpu`` is null with ``gpu_status`` saying why ("no device", or "torch is a CPU
build" on a GPU machine with the +cpu wheel), and each GPU flag is tried once to record how it
degrades (``gpu_flag_without_device``: refused at once with ``GPUUnavailableError``, see
``glan_ray.runtime.require_gpus``). Results go to ``--results`` after every path; the exit code
is 1 when a path failed. Budget: ≤ 8 minutes on one GPU; ``--smoke`` is a tiny version of every
path (~1 minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import serve_load  # noqa: E402  (the load client of bench/serve_load.py)
from serve_probe import write_models  # noqa: E402  (the random exports serve_probe serves)

SIZES = {  # (full, smoke)
    "users": (400, 100),
    "days": (4, 2),
    "epochs": (2, 1),
    "cql_updates": (100, 5),
    "dt_updates": (20, 3),
    "iterations": (3, 2),
    "trials": (2, 1),
    "entries": (1000, 60),
    "warmup_entries": (100, 20),
}


def detect() -> dict[str, Any]:
    """What the GPU paths can use: torch's CUDA and Ray's registered GPUs (Ray is up)."""
    import torch

    from glan_ray.runtime import cluster_gpus

    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cuda_devices": torch.cuda.device_count() if cuda else 0,
        "name": torch.cuda.get_device_name(0) if cuda else None,
        "ray_gpus": cluster_gpus(),
        "nvidia_smi": shutil.which("nvidia-smi") is not None,
    }
    if cuda and info["ray_gpus"] >= 1:
        why = None
    elif cuda:
        why = "no device usable: Ray registers no GPU"
    elif info["nvidia_smi"] and torch.version.cuda is None:
        why = f"no device usable: torch {torch.__version__} is a CPU build"
    else:
        why = "no device"
    info["gpu"], info["why_not"] = (info["name"] if why is None else None), why
    return info


def gpu_processes() -> list[str]:
    """Command lines (Ray's process titles) of the processes holding a CUDA context."""
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout  # fmt: skip
    names = []
    for pid in out.split():
        try:
            with open(f"/proc/{pid.strip()}/cmdline", "rb") as f:
                names.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
        except OSError:
            continue
    return names


# -- the paths: each runs once per device and returns its figures -----------------------------


def ray_train(gpu: bool, ctx: argparse.Namespace) -> dict[str, Any]:
    from glan_ray.train.config import train_config
    from glan_ray.train.trainer import fit

    cfg = train_config(ctx.train_model, {
        "data": ctx.data, "out": os.path.join(ctx.work, "models_" + ("gpu" if gpu else "cpu")),
        "storage_path": os.path.join(ctx.work, "ray_results"), "epochs": ctx.sizes["epochs"],
        "batch_size": 256, "val_fraction": 0.2, "use_gpu": gpu,
    })  # fmt: skip
    t0 = time.perf_counter()
    result = fit(ctx.train_model, cfg)
    rows_per_s = float(result.metrics["rows_per_s"])
    return {"model": ctx.train_model, "updates_per_s": rows_per_s / cfg.batch_size,
            "rows_per_s": rows_per_s, "steps": int(result.metrics["step"]),
            "wall_s": time.perf_counter() - t0}  # fmt: skip


def _rl_config(algo: str, gpu: bool, ctx: argparse.Namespace) -> Any:
    from glan_ray.rllib.launch import RLTrainConfig

    flat: dict[str, Any] = {
        "data": ctx.data, "out": os.path.join(ctx.work, "models_" + ("gpu" if gpu else "cpu")),
        "iterations": ctx.sizes["iterations"], "use_gpu": gpu,
        "updates_per_iteration": ctx.sizes[f"{algo}_updates"],
    }  # fmt: skip
    flat["batch_size"] = 256 if algo == "cql" else 64  # the demo's
    if algo == "dt":  # trained on the logged reward: no HRM labels needed for a speed check
        flat["reward_column"] = "reward"
    return RLTrainConfig.from_flat(algo, flat)


def rllib(algo: str) -> Callable[[bool, argparse.Namespace], dict[str, Any]]:
    def run(gpu: bool, ctx: argparse.Namespace) -> dict[str, Any]:
        from glan_ray.rllib.launch import fit_rl

        cfg = _rl_config(algo, gpu, ctx)
        t0 = time.perf_counter()
        res = fit_rl(cfg)
        return {"updates_per_s": res.updates_per_s, "batch_size": cfg.batch_size,
                "updates": cfg.iterations * cfg.updates_per_iteration,
                "wall_s": time.perf_counter() - t0}  # fmt: skip

    return run


def _sweep(gpu: bool, ctx: argparse.Namespace) -> Any:
    from glan_ray.train.tune import SweepConfig

    alphas = [0.5, 2.0][: ctx.sizes["trials"]]
    return SweepConfig(
        model="cql",
        name="gpu_check_" + ("gpu" if gpu else "cpu"),
        base={
            "data": ctx.data,
            "out": ctx.work,
            "iterations": ctx.sizes["iterations"],
            "updates_per_iteration": ctx.sizes["cql_updates"],
            "use_gpu": gpu,
        },
        param_space={"alpha0": {"grid": alphas}},
        scheduler={"type": "fifo"},
    )


def tune_sweep(gpu: bool, ctx: argparse.Namespace) -> dict[str, Any]:
    from glan_ray.train.tune import run_sweep

    t0 = time.perf_counter()
    summary = run_sweep(_sweep(gpu, ctx))
    return {"trials": summary["trials"], "errors": summary["errors"],
            "best_td_loss": summary["best_value"], "wall_s": time.perf_counter() - t0}  # fmt: skip


def _app_args(gpu: bool, ctx: argparse.Namespace) -> dict[str, Any]:
    state = os.path.join(ctx.work, f"state_{'gpu' if gpu else 'cpu'}.sqlite3")
    return {"models": ctx.serve_models, "num_gpus": 1 if gpu else 0, "min_replicas": 1,
            "max_replicas": 1, "state_store": f"sqlite://{state}"}  # fmt: skip


def serve_entries(gpu: bool, ctx: argparse.Namespace) -> dict[str, Any]:
    from ray import serve

    from glan_ray.serving.app import build_app

    port = serve_load._free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        t0 = time.perf_counter()
        serve.run(build_app(_app_args(gpu, ctx)), name="gpu_check", route_prefix="/")
        up_s = time.perf_counter() - t0
        url = f"http://127.0.0.1:{port}"
        load = serve_load._parse(["--users", "64", "--sessions-per-day", "8",
                                  "--level-limit", str(ctx.level_limit)])  # fmt: skip
        serve_load.run_client(url, "loop", ctx.concurrency, ctx.sizes["warmup_entries"], load)
        res = serve_load.run_client(url, "loop", ctx.concurrency, ctx.sizes["entries"], load)
        cuda = gpu_processes() if gpu else []
    finally:
        serve.shutdown()
    keep = ("requests", "errors", "p50_ms", "p99_ms", "entry_req_per_s", "completed", "error")
    out = {k: res[k] for k in keep if k in res}
    out.update(concurrency=ctx.concurrency, deploy_s=up_s)
    if gpu:
        out["cuda_processes"] = cuda
        out["dt_replica_on_gpu"] = any("DTModel" in c for c in cuda)
    return out


PATHS: dict[str, Callable[[bool, argparse.Namespace], dict[str, Any]]] = {
    "ray_train": ray_train,
    "rllib_cql": rllib("cql"),
    "rllib_dt": rllib("dt"),
    "tune": tune_sweep,
    "serve": serve_entries,
}
FLAGS = {
    "ray_train": "--use-gpu (TrainConfig.use_gpu: ScalingConfig(use_gpu=True))",
    "rllib_cql": "--use-gpu (RLTrainConfig.use_gpu: num_gpus_per_learner=1)",
    "rllib_dt": "--use-gpu (RLTrainConfig.use_gpu: num_gpus_per_learner=1)",
    "tune": 'base.use_gpu (each trial {"cpu": 1, "gpu": 1})',
    "serve": "app arg num_gpus (the DT replica's ray_actor_options)",
}


def flag_without_device(path: str, ctx: argparse.Namespace) -> str:
    """Pass the path's GPU flag on this GPU-less local Ray: how it degrades (cheap: the check runs
    before any work)."""
    from glan_ray.rllib.launch import algorithm_config
    from glan_ray.runtime import GPUUnavailableError
    from glan_ray.serving.app import build_app
    from glan_ray.train.tune import run_sweep

    tries: dict[str, Callable[[], Any]] = {
        "ray_train": lambda: ray_train(True, ctx),
        "rllib_cql": lambda: algorithm_config(_rl_config("cql", True, ctx)),
        "rllib_dt": lambda: algorithm_config(_rl_config("dt", True, ctx)),
        "tune": lambda: run_sweep(_sweep(True, ctx)),
        "serve": lambda: build_app(_app_args(True, ctx)),
    }
    try:
        tries[path]()
    except GPUUnavailableError as e:
        return f"refused: {e}"
    return "accepted without a GPU (unexpected)"


# -- driver -----------------------------------------------------------------------------------


def run_path(name: str, ctx: argparse.Namespace, device: dict[str, Any]) -> dict[str, Any]:
    """One path on the CPU, then on the GPU when one is usable (else how its flag degrades)."""
    row: dict[str, Any] = {"flag": FLAGS[name]}
    for gpu in (False, True):
        key = "gpu" if gpu else "cpu"
        if gpu and device["gpu"] is None:
            row["gpu"], row["gpu_status"] = None, device["why_not"]
            if ctx.local:  # on a cluster the flag may rightly wait for GPU nodes: not tried
                row["gpu_flag_without_device"] = flag_without_device(name, ctx)
            continue
        if time.monotonic() > ctx.deadline:
            row[key], row[f"{key}_status"] = None, f"skipped: past --time-limit {ctx.time_limit} s"
            continue
        try:
            row[key], row[f"{key}_status"] = PATHS[name](gpu, ctx), "ran"
        except Exception as e:  # recorded; the exit code says a path failed
            row[key], row[f"{key}_status"] = None, f"failed: {type(e).__name__}: {e}"[:2000]
    speed = "p50_ms" if name == "serve" else "updates_per_s"
    if row.get("gpu") and row.get("cpu") and speed in row["cpu"]:
        row[f"gpu_over_cpu_{speed}"] = row["gpu"][speed] / row["cpu"][speed]
    return row


def _figure(res: dict[str, Any] | None, status: str) -> str:
    if res is None:
        return status if len(status) < 24 else status.split(":")[0]
    if "updates_per_s" in res:
        return f"{res['updates_per_s']:.1f} updates/s"
    if "p50_ms" in res:
        return f"p50 {res['p50_ms']:.1f} ms, {res.get('entry_req_per_s', 0):.0f} entries/s"
    return f"{res['trials']} trials, {res['errors']} errors, {res['wall_s']:.0f} s"


def print_table(out: dict[str, Any]) -> None:
    print(f"\ndevice: {out['device']['gpu'] or out['device']['why_not']}")
    print(f"{'path':<10} {'CPU':<36} GPU")
    for name, row in out["paths"].items():
        cpu = _figure(row.get("cpu"), row.get("cpu_status", ""))
        gpu = _figure(row.get("gpu"), row.get("gpu_status", ""))
        print(f"{name:<10} {cpu:<36} {gpu}")
        if "gpu_flag_without_device" in row:  # the whole message is in the JSON
            said = row["gpu_flag_without_device"].split(" but ")[0]
            print(f"{'':<10} its GPU flag without a device: {said} ... (GPUUnavailableError)")


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny budgets for every path (tests)")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset")
    ap.add_argument("--train-model", default="hrm", choices=["lrtg", "hrm", "isp", "am"])
    ap.add_argument("--concurrency", type=int, default=8, help="Serve client workers")
    ap.add_argument("--entries", type=int, help="Serve app entries (default 1000; smoke 60)")
    ap.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--address", help="a Ray cluster instead of a local Ray")
    ap.add_argument("--work", help="scratch directory (default: a new temporary one, removed)")
    ap.add_argument("--time-limit", type=float, default=450.0,
                    help="no path starts after this many seconds (8-minute budget)")  # fmt: skip
    ap.add_argument("--level-limit", type=float, default=150.0, help="one Serve load level (s)")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "gpu_check.json"))
    args = ap.parse_args(argv)
    unknown = set(args.paths.split(",")) - set(PATHS)
    if unknown:
        ap.error(f"--paths: unknown {sorted(unknown)}; valid: {list(PATHS)}")
    args.sizes = {k: v[1] if args.smoke else v[0] for k, v in SIZES.items()}
    if args.entries:
        args.sizes["entries"] = args.entries
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t_start = time.monotonic()
    args.deadline = t_start + args.time_limit
    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.runtime import init_ray
    from glan_ray.sim.config import SimConfig

    init_ray(args.address, num_cpus=args.num_cpus)
    args.local = not (args.address or os.environ.get("RAY_ADDRESS"))
    device = detect()
    keep = bool(args.work)
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    args.data = os.path.join(args.work, "data")
    users, days = args.sizes["users"], args.sizes["days"]
    generate(SimConfig(seed=5, block_size=100), GenerateOptions(users=users, days=days), args.data)
    args.serve_models = os.path.join(args.work, "serve_models")
    write_models(args.serve_models)
    setup_s = time.monotonic() - t_start
    out: dict[str, Any] = {
        "gpu": device["gpu"], "device": device, "smoke": args.smoke,
        "config": {"sizes": args.sizes, "train_model": args.train_model,
                   "concurrency": args.concurrency, "data": f"{users} users x {days} days"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "loadavg_1m_start": os.getloadavg()[0]},
        "setup_s": setup_s, "paths": {},
    }  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    for name in args.paths.split(","):
        print(f"[gpu_check] {name} ...", flush=True)
        out["paths"][name] = run_path(name, args, device)
        out["wall_s"] = time.monotonic() - t_start
        out["machine"]["loadavg_1m_end"] = os.getloadavg()[0]  # other work skews the figures
        with open(args.results, "w") as f:
            json.dump(out, f, indent=1, default=float)
    print_table(out)
    print(f"\nwall {out['wall_s']:.0f} s; results in {args.results}")
    if not keep:
        shutil.rmtree(args.work, ignore_errors=True)
    failed = [
        n
        for n, r in out["paths"].items()
        if "failed" in f"{r.get('cpu_status')}{r.get('gpu_status')}"
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
