"""Training limits: each training stage on the platform vs a plain PyTorch loop, and where the
platform's extra time goes.

For every training stage — L-RTG, HRM, KLAN-ISP and KLAN-AM on Ray Train (``glan_ray.train``),
discrete CQL and the Decision Transformer on RLlib's new API stack (``glan_ray.rllib``) — one run
times, alternately (plain, platform, plain, platform, ...; ``--repeats`` pairs):

- **platform**: the stage's own path. Supervised: ``glan_ray.train.trainer.fit`` (a TorchTrainer
  over the ``prepare``d, materialised Ray Datasets, the worker loop of ``train/loop.py``: Ray Data
  iteration with the feature collate, the step, per-epoch validation, checkpoint and report).
  Its worker loop is wrapped to stamp each ``ray.train.report`` (the end of an epoch); updates/s
  is taken from the first report to the last, so the first epoch (worker start, Ray Data
  iterator start-up) is the warm-up. RL: ``bench/rl_throughput.ours`` (``algo.train()`` calls
  after one warm-up call, which builds the learner, runs the pre-learner on Ray Data and
  materialises its output).
- **plain**: the same ``nn.Module`` (``glan_ray.models``), the same batches, the same loss and
  optimizer in a bare loop in the driver. Supervised: the batches are the same datasets through
  the same ``FeatureCollate``, built once before timing; each epoch is the same steps
  (``Task.loss``, ``make_optimizer``'s AdamW, the loop's clip at 5, ``Task.after_step``) and the
  same validation (``Task.metrics``); no checkpoint, report or step history. Warm-up: the first
  epoch, as for the platform. RL: the pre-learner's own output (``prelearner_class`` of the same
  ``AlgorithmConfig``, on the same Arrow chunks of ``prelearner_batch_rows``) cut into batches of
  ``train_batch_size_per_learner`` in order; the loss from the project's pure functions
  (``double_dqn_target``, ``conservative_term``, ``DynamicAlpha``; the DT module's own trimming
  and ``dt_loss`` with ``propensity_weights``), torch's Adam at the config's lr, the config's
  ``grad_clip``, CQL's target copy every ``target_network_update_freq`` rows. Warm-up: the
  first ``--plain-warmup`` updates (default ``--updates``, as many as the platform's warm-up
  call, so both time the same batches: a DT batch's cost follows its bucket's day length).
  ``--torch-threads`` sets the driver's and the Ray Train worker's torch threads (default: as
  the platform runs today: Ray gives the worker 1 thread per CPU it reserves). The DT trains
  on the naive ``reward`` column (as ``rl_throughput`` does: no HRM labels needed; the cost per
  update is the same).

``overhead_pct = 100 * (plain_updates_per_s / platform_updates_per_s - 1)``: the platform's
extra time per update, in % of the plain loop's (the issue's target: <= 20). Reported on the
median rates, and per (plain, platform) pair.

Then one more platform run per stage under ``cProfile`` (``--no-profile`` skips it), over one
timed epoch or ``train()`` call after the warm-up (supervised: the worker's training thread from
the first report on, 2 epochs; RL: the driver, where the learner runs with ``num_learners=0``).
``profile_buckets.bucket_profile`` puts each function's own time in a bucket by its file: model,
loss and optimizer (torch); Ray Data (with the learner's waits on its prefetch threads); features
and pre-learner; RLlib learner and algorithm bookkeeping; RLlib metrics; Ray Train checkpoint and
report; the train loop's own bookkeeping; Ray core. Builtins, the standard library, numpy,
pyarrow and Ray's core API take their caller's bucket; each bucket lists its top functions.
Meanwhile a ``psutil`` sampler records the CPU seconds of every process of this Ray instance by
group (driver, train worker, Ray Data actors, raylet, ...) and the machine's busy cores: process
contention. cProfile slows the profiled thread, so the profile gives shares and where the time
goes, not rates.

Options: ``--data DIR`` (an existing run's data, e.g. ``runs/demo/data``, labelled or not) or a
simulated population (``--users``, ``--days``, with RCT days for KLAN-ISP); ``--stages``;
``--repeats``; ``--smoke`` (tiny sizes, results to /tmp). Sizes default to the demo preset's
(4 epochs of batch 512; 300 updates per ``train()``, CQL batch 256, DT batch 64 at the default
architecture). Prints a table and writes ``bench/results/training_limits.json``. Timings are only
meaningful on an otherwise idle machine: the JSON records the load average and the machine's
busy cores during every run.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from profile_buckets import CpuSampler, profile_summary  # noqa: E402

SUPERVISED = ("lrtg", "hrm", "isp", "am")
RL = ("cql", "dt")
STAGES = SUPERVISED + RL


def overhead_pct(plain_rate: float, platform_rate: float) -> float:
    """100 * (plain / platform - 1): the platform's extra time per update in % of the plain
    loop's time per update (0: as fast; 100: twice the time; negative: the platform is faster)."""
    if plain_rate <= 0 or platform_rate <= 0:
        return float("nan")
    return 100.0 * (plain_rate / platform_rate - 1.0)


# --- supervised stages (Ray Train) -------------------------------------------------------------


def _instrumented_loop(config: dict, out: str, profile: bool, threads: int | None) -> None:
    """``train_loop_per_worker`` with each ``ray.train.report`` stamped (and, with ``profile``,
    this thread under cProfile from the first report on); stamps written to ``out``.
    ``threads``: torch threads of the worker (None: what Ray gives it)."""
    import ray.train

    from glan_ray.train.loop import train_loop_per_worker

    if threads:
        torch.set_num_threads(threads)
    prof, marks, real = cProfile.Profile() if profile else None, [], ray.train.report

    def report(metrics: dict, *a: Any, **kw: Any) -> None:
        marks.append((time.time(), int(metrics["step"])))
        if prof is not None and len(marks) == 1:
            prof.enable()
        real(metrics, *a, **kw)

    ray.train.report = report  # loop.py calls ray.train.report through the module
    try:
        train_loop_per_worker(config)
    finally:
        ray.train.report = real
        if prof is not None:
            prof.disable()
            prof.dump_stats(out + ".prof")
        with open(out, "w") as f:
            json.dump({"marks": marks, "torch_threads": torch.get_num_threads()}, f)


def supervised_platform(
    name: str, cfg: Any, data: Any, out: str, profile: bool, threads: int | None
) -> dict:
    """One ``trainer.fit`` with the instrumented worker loop; rate over epochs 2..E."""
    import glan_ray.train.trainer as trainer

    real = trainer.train_loop_per_worker

    def loop(config: dict) -> None:
        _instrumented_loop(config, out, profile, threads)

    trainer.train_loop_per_worker = loop
    t0 = time.time()
    try:
        trainer.fit(name, cfg, run_name=os.path.basename(out), export=False, data=data)
    finally:
        trainer.train_loop_per_worker = real
    with open(out) as f:
        rec = json.load(f)
    (t1, s1), (t2, s2) = rec["marks"][0], rec["marks"][-1]
    return {"updates": s2 - s1, "wall_s": t2 - t1, "updates_per_s": (s2 - s1) / (t2 - t1),
            "warmup_s": t1 - t0, "total_s": time.time() - t0, "window": (t1, t2),
            "torch_threads": rec["torch_threads"]}  # fmt: skip


def supervised_batches(name: str, cfg: Any, data: Any) -> tuple[list, list]:
    """The training and validation batches the worker loop sees, collated once in the driver."""
    from glan_ray.train.loop import FeatureCollate

    collate = FeatureCollate(name, data.normalizer, getattr(cfg, "theta", None))

    def batches(ds: Any, size: int) -> list[dict[str, torch.Tensor]]:
        return [collate(b) for b in ds.iter_batches(batch_size=size, batch_format="pyarrow")]

    return batches(data.train, cfg.batch_size), batches(data.val, max(cfg.batch_size, 1024))


def supervised_plain(name: str, cfg: Any, data: Any, train: list, val: list) -> dict:
    """The worker loop's work without the platform: epochs of steps plus validation."""
    from glan_ray.models.registry import build_model, model_config
    from glan_ray.train.loop import make_optimizer
    from glan_ray.train.objectives import TASKS

    torch.manual_seed(cfg.seed)
    model = build_model(name, model_config(name, data.dims, cfg.model))
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    task = TASKS[name](cfg, data.extra)
    t0, marks, step = time.time(), [], 0
    for _ in range(cfg.epochs):
        model.train()
        for b in train:
            loss, logs = task.loss(model, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # as train/loop.py
            opt.step()
            task.after_step({"losses/total": loss.item(), **logs})  # L-RTG's dual ascent
            step += 1
        model.eval()
        task.metrics(model, val)
        marks.append((time.time(), step))
    (t1, s1), (t2, s2) = marks[0], marks[-1]
    return {"updates": s2 - s1, "wall_s": t2 - t1, "updates_per_s": (s2 - s1) / (t2 - t1),
            "warmup_s": t1 - t0, "window": (t1, t2),
            "torch_threads": torch.get_num_threads()}  # fmt: skip


# --- RL stages (RLlib) -------------------------------------------------------------------------


def rl_config(algo: str, data: str, out: str, args: argparse.Namespace) -> Any:
    """The ``RLTrainConfig`` that ``rl_throughput.ours`` builds from the same ``args``."""
    from glan_ray.rllib.launch import RLTrainConfig

    if algo == "cql":
        flat = {"batch_size": args.cql_batch, "hidden": [args.hidden, args.hidden]}
    else:
        flat = {"batch_size": args.dt_batch, "reward_column": "reward",
                "context_len": args.context_len, "embed_dim": args.embed_dim,
                "n_layers": args.n_layers, "n_heads": args.n_heads,
                "bucket_by_length": True}  # fmt: skip
    return RLTrainConfig.from_flat(
        algo, {"data": data, "out": out, "updates_per_iteration": args.updates, **flat}
    )


def rl_batches(algo: str, ac: Any, data: str) -> list[dict[str, torch.Tensor]]:
    """The pre-learner's output on the whole dataset, in train batches, in order."""
    from rl_throughput import _read

    from glan_ray.rllib.launch import DATASET

    table = _read(data, DATASET[algo], None)
    pre = ac.prelearner_class(config=ac, spaces=(ac.observation_space, ac.action_space))
    rows, bs = ac.prelearner_batch_rows, ac.train_batch_size_per_learner
    chunks = [pre(table.slice(i, rows)) for i in range(0, table.num_rows, rows)]
    cat = {k.split("/", 1)[1]: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    n = len(next(iter(cat.values())))
    return [{k: torch.from_numpy(v[i : i + bs]) for k, v in cat.items()} for i in range(0, n, bs)]


def _cql_step(ac: Any, alpha: Any) -> tuple[nn.Module, Any]:
    from glan_ray.models.cql import QNetConfig, QNetwork, conservative_term, double_dqn_target

    hidden = ac.model_config.get("hidden", QNetConfig.hidden)
    qnet = QNetwork(QNetConfig(obs_dim=int(ac.observation_space.shape[0]),
                               n_actions=int(ac.action_space.n), hidden=tuple(hidden)))  # fmt: skip
    target = copy.deepcopy(qnet).requires_grad_(False)
    every = -(-ac.target_network_update_freq // ac.train_batch_size_per_learner)

    def loss(b: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        # DiscreteCQLTorchLearner.compute_loss_for_module, from the same pure functions
        if i and i % every == 0:
            target.load_state_dict(qnet.state_dict())  # tau = 1: a copy
        q = qnet(b["obs"])  # (B, A)
        with torch.no_grad():
            q_next, q_next_t = qnet(b["new_obs"]), target(b["new_obs"])
        y = double_dqn_target(q_next, q_next_t, b["rewards"].float(), b["terminateds"], ac.gamma)
        a = b["actions"].long()
        td = F.mse_loss(q.gather(1, a.unsqueeze(1)).squeeze(1), y)
        return td + (alpha(b["hour"], b["entries_today"]) * conservative_term(q, a)).mean()

    return qnet, loss


def _dt_step(ac: Any, _alpha: None) -> tuple[nn.Module, Any]:
    from glan_ray.models.dt import DecisionTransformer, dt_loss, propensity_weights
    from glan_ray.rllib.dt.torch.dt_torch_rl_module import DTTorchRLModule, dt_config

    model = DecisionTransformer(dt_config(ac.model_config, ac.observation_space))
    module = SimpleNamespace(dt=model)  # DTTorchRLModule._logits reads only ``self.dt``

    def loss(b: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        logits = DTTorchRLModule._logits(module, b)  # (B, n, A): all-padding positions dropped
        n = logits.size(1)
        w = propensity_weights(b["propensity"][:, :n], ac.max_weight)
        return dt_loss(logits, b["actions"][:, :n], b["mask"][:, :n],
                       w if ac.propensity_weighting else None)  # fmt: skip

    return model, loss


def rl_plain(algo: str, ac: Any, alpha: Any, batches: list, updates: int, warmup: int) -> dict:
    """Adam at the config's lr on the same batches, cycling; timed after ``warmup`` updates.
    ``alpha``: CQL's ``DynamicAlpha`` (``ac.dynamic_alpha()``, measured once on the data)."""
    torch.manual_seed(ac.seed or 0)
    model, loss_fn = (_cql_step if algo == "cql" else _dt_step)(ac, alpha)
    opt = torch.optim.Adam(model.parameters(), lr=ac.lr)
    t0 = t1 = time.time()
    for i in range(warmup + updates):
        if i == warmup:
            t1 = time.time()
        loss = loss_fn(batches[i % len(batches)], i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if ac.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), ac.grad_clip)
        opt.step()
    t2 = time.time()
    return {"updates": updates, "wall_s": t2 - t1, "updates_per_s": updates / (t2 - t1),
            "warmup_s": t1 - t0, "window": (t1, t2),
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def rl_profiled(cfg: Any, iterations: int, prof_path: str) -> dict:
    """The platform path as ``ours`` runs it, the timed ``train()`` calls under cProfile."""
    from glan_ray.rllib.launch import algorithm_config

    rl = algorithm_config(cfg).build_algo()
    prof = cProfile.Profile()
    try:
        rl.train()  # warm-up
        t1 = time.time()
        prof.enable()
        for _ in range(iterations):
            rl.train()
        prof.disable()
        t2 = time.time()
    finally:
        rl.stop()
    prof.dump_stats(prof_path)
    return {"updates": iterations * cfg.updates_per_iteration, "window": (t1, t2)}


# --- driver ------------------------------------------------------------------------------------


def _timed(fn: Any, sampler: CpuSampler | None, *a: Any) -> dict:
    """``fn(*a)`` with the load average and the machine's busy cores over its timed window."""
    t0, load0 = time.time(), os.getloadavg()[0]
    res = fn(*a)
    t1, t2 = res.pop("window", (t0, time.time()))
    res["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    if sampler is not None:
        res["machine_busy_cores"] = sampler.between(t1, t2)["machine_busy_cores"]
    return res


def _summarise(plain: list[dict], platform: list[dict]) -> dict:
    p = statistics.median(r["updates_per_s"] for r in plain)
    q = statistics.median(r["updates_per_s"] for r in platform)
    pairs = [
        overhead_pct(a["updates_per_s"], b["updates_per_s"])
        for a, b in zip(plain, platform, strict=True)
    ]
    return {"plain_updates_per_s": p, "platform_updates_per_s": q,
            "overhead_pct": overhead_pct(p, q), "overhead_pct_pairs": pairs,
            "plain": plain, "platform": platform}  # fmt: skip


def run_supervised(name: str, args: argparse.Namespace, data: str, work: str, sampler) -> dict:
    from glan_ray.train.config import train_config
    from glan_ray.train.trainer import prepare

    cfg = train_config(name, {"data": data, "out": os.path.join(work, "models"),
                              "epochs": args.epochs, "batch_size": args.batch_size,
                              "max_rows": args.max_rows})  # fmt: skip
    prepared = prepare(name, cfg)
    train, val = supervised_batches(name, cfg, prepared)
    plain, plat = [], []
    for r in range(args.repeats):
        plain.append(_timed(supervised_plain, sampler, name, cfg, prepared, train, val))
        out, threads = os.path.join(work, f"limits_{name}_{r}"), args.torch_threads
        plat.append(_timed(supervised_platform, sampler, name, cfg, prepared, out, False, threads))
        print(f"{name} pair {r}: plain {plain[-1]['updates_per_s']:.1f}, platform "
              f"{plat[-1]['updates_per_s']:.1f} updates/s", flush=True)  # fmt: skip
    row = {"kind": "Ray Train", "batch_size": cfg.batch_size, "epochs": cfg.epochs,
           "train_batches_per_epoch": len(train), **_summarise(plain, plat)}  # fmt: skip
    if args.profile:
        out, two = os.path.join(work, f"limits_{name}_profile"), replace(cfg, epochs=2)
        res = supervised_platform(name, two, prepared, out, True, args.torch_threads)
        row["profile"] = profile_summary(out + ".prof", res["updates"], "train loop bookkeeping")
        if sampler is not None:
            row["profile"]["processes"] = sampler.between(*res["window"])
    return row


def run_rl(algo: str, args: argparse.Namespace, data: str, work: str, sampler) -> dict:
    from rl_throughput import ours

    from glan_ray.rllib.launch import algorithm_config

    out = os.path.join(work, "rl")
    cfg = rl_config(algo, data, out, args)
    ac = algorithm_config(cfg)
    batches = rl_batches(algo, ac, data)
    alpha = ac.dynamic_alpha() if algo == "cql" else None
    n = args.iterations * args.updates
    plain, plat = [], []
    for r in range(args.repeats):
        plain.append(_timed(rl_plain, sampler, algo, ac, alpha, batches, n, args.plain_warmup))
        plat.append(_timed(ours, sampler, algo, data, out, args))
        plat[-1]["torch_threads"] = torch.get_num_threads()  # the learner runs in the driver
        print(f"{algo} pair {r}: plain {plain[-1]['updates_per_s']:.1f}, platform "
              f"{plat[-1]['updates_per_s']:.1f} updates/s", flush=True)  # fmt: skip
    row = {"kind": "RLlib", "batch_size": ac.train_batch_size_per_learner,
           "updates_per_train_call": args.updates, "timed_train_calls": args.iterations,
           "batches_in_data": len(batches), **_summarise(plain, plat)}  # fmt: skip
    if args.profile:
        prof = os.path.join(work, f"limits_{algo}.prof")
        res = rl_profiled(cfg, 1, prof)
        row["profile"] = profile_summary(prof, res["updates"], "other")
        if sampler is not None:
            row["profile"]["processes"] = sampler.between(*res["window"])
    return row


def print_table(stages: dict[str, dict]) -> None:
    print(f"\n{'stage':<6}{'batch':>6}{'plain/s':>10}{'platform/s':>12}{'overhead %':>12}"
          f"{'pairs %':>16}{'warm-up s':>11}{'threads':>9}")  # fmt: skip
    for name, r in stages.items():
        pairs = ", ".join(f"{p:.0f}" for p in r["overhead_pct_pairs"])
        warm = statistics.median(x["warmup_s"] for x in r["platform"])
        threads = f"{r['plain'][0]['torch_threads']}/{r['platform'][0]['torch_threads']}"
        print(f"{name:<6}{r['batch_size']:>6}{r['plain_updates_per_s']:>10.1f}"
              f"{r['platform_updates_per_s']:>12.1f}{r['overhead_pct']:>12.0f}{pairs:>16}"
              f"{warm:>11.1f}{threads:>9}")  # fmt: skip
    print("\nwhere the platform's time goes (profiled thread: share, ms per update)")
    for name, r in stages.items():
        if "profile" not in r:
            continue
        top = list(r["profile"]["buckets"].items())[:5]
        print(f"{name:<6}" + "; ".join(f"{b} {v['share']:.0%} {v['ms_per_update']:.1f}"
                                        for b, v in top))  # fmt: skip
        for b, v in top[:3]:
            print(f"{'':<6}{b}: {', '.join(v['top'][:2])}")
        procs = r["profile"].get("processes", {})
        if procs:
            top = list(procs["cores_by_process"].items())[:4]
            cores = ", ".join(f"{k} {v:.2f}" for k, v in top)
            print(f"{'':<6}cores: {cores}; machine busy {procs['machine_busy_cores']:.2f}, "
                  f"outside this run {procs['outside_this_run_cores']:.2f}")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="existing run data dir (default: simulate --users x --days)")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    ap.add_argument("--repeats", type=int, default=2, help="(plain, platform) pairs per stage")
    ap.add_argument("--epochs", type=int, default=4, help="supervised epochs (the first: warm-up)")
    ap.add_argument("--batch-size", type=int, default=512, help="supervised rows per step")
    ap.add_argument("--max-rows", type=int, help="cap on supervised training rows")
    ap.add_argument("--iterations", type=int, default=3, help="timed RLlib train() calls")
    ap.add_argument("--updates", type=int, default=300, help="updates per train() call")
    ap.add_argument("--plain-warmup", type=int,
                    help="untimed plain RL updates (default --updates: as the platform's "
                    "warm-up call, so both time the same batches)")  # fmt: skip
    ap.add_argument("--cql-batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dt-batch", type=int, default=64)
    ap.add_argument("--context-len", type=int, default=20)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--n-heads", type=int, default=2)
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--torch-threads", type=int,
                    help="torch threads of the driver (plain loops, RLlib's local learner) and "
                    "of the Ray Train worker; default: as the platform runs today")  # fmt: skip
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; results to /tmp")
    ap.add_argument("--results", help="default bench/results/training_limits.json")
    args = ap.parse_args(argv)
    if args.smoke:
        args.users, args.days, args.epochs, args.repeats = 300, 4, 2, 1
        args.max_rows, args.iterations, args.updates = 2000, 1, 10
    if args.plain_warmup is None:
        args.plain_warmup = args.updates
    args.results = args.results or (
        "/tmp/training_limits_smoke.json"
        if args.smoke
        else os.path.join(HERE, "results", "training_limits.json")
    )
    unknown = sorted(set(args.stages.split(",")) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    return args


def main() -> None:
    args = parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.runtime import init_ray
    from glan_ray.sim.config import SimConfig

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    started, t_start = datetime.now(timezone.utc).isoformat(), time.time()
    work = tempfile.mkdtemp(prefix="glan_limits_")
    init_ray(num_cpus=args.num_cpus)
    data = args.data
    if not data:
        data = os.path.join(work, "data")
        generate(SimConfig(seed=3), GenerateOptions(users=args.users, days=args.days, rct=True),
                 data)  # fmt: skip
    try:
        sampler: CpuSampler | None = CpuSampler()
        sampler.start()
    except ImportError:
        print("psutil missing (pip install -e .[bench]): no process figures", file=sys.stderr)
        sampler = None
    stages: dict[str, dict] = {}
    try:
        for name in [s for s in STAGES if s in args.stages.split(",")]:
            run = run_supervised if name in SUPERVISED else run_rl
            stages[name] = run(name, args, data, work, sampler)
    finally:
        if sampler is not None:
            sampler.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(stages)
    results = {
        "command": " ".join(["python", *sys.argv]),
        "started": started,
        "wall_s": round(time.time() - t_start, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_threads_driver": torch.get_num_threads(),
        },
        "definition": "overhead_pct = 100 * (plain_updates_per_s / platform_updates_per_s - 1)",
        "warmup": "supervised: the first epoch of each run; RL: platform the first train() call "
        "(learner build, Ray Data pre-learner, materialisation), plain --plain-warmup updates",
        "what_else_ran": "for the runner to note",
        "config": {**vars(args), "data": data if args.data else None},
        "stages": stages,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=1, default=float)
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    main()
