"""Anchor benchmark: training throughput of d3rlpy's DiscreteCQL / DiscreteDecisionTransformer.

Runs inside the private venv made by ``bench/d3rlpy_env.sh`` (d3rlpy is not a
project dependency); imports only numpy, torch, d3rlpy and the stdlib.

    PY=$(bash bench/d3rlpy_env.sh | tail -1)
    $PY bench/d3rlpy_anchor.py --data data.npz --algo cql --steps 300
    $PY bench/d3rlpy_anchor.py --data data.npz --algo dt  --steps 300

What is timed is exactly the body of d3rlpy's own ``fit`` loop minus its
logging/progress bar:

    cql: batch = dataset.sample_transition_batch(batch_size); algo.update(batch)
    dt:  batch = dataset.sample_trajectory_batch(batch_size, length=context_size)
         algo.update(batch)

``algo.update`` converts the numpy mini-batch to torch (TorchMiniBatch /
TorchTrajectoryMiniBatch.from_batch), runs forward/backward/optimizer step
(and for CQL the periodic target sync; for DT the token-based LR schedule).
Sampling cost (d3rlpy samples one transition/trajectory at a time in Python)
is therefore included, as in ``fit``. The split between sampling and update
is reported too (``sample_frac``).

Progress goes to stderr; the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# d3rlpy configures structlog to print to stdout; keep stdout for the JSON
# result only by pointing sys.stdout at stderr before d3rlpy is imported.
_REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr

import d3rlpy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def log(msg: str) -> None:
    print(f"[d3rlpy_anchor] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Time d3rlpy DiscreteCQL / DiscreteDecisionTransformer gradient "
            "updates (including d3rlpy's own mini-batch sampling) on an npz "
            "dataset. Prints a JSON result as the last stdout line."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        help="npz with obs (N,D) float32, actions (N,) int64, rewards (N,) "
        "float32, terminals (N,) float32 (1.0 on each episode's last step)",
    )
    p.add_argument("--algo", required=True, choices=["cql", "dt"])
    p.add_argument(
        "--batch-size", type=int, default=256, help="transitions (cql) or sequences (dt) per update"
    )
    p.add_argument("--steps", type=int, default=300, help="timed gradient updates")
    p.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--action-size",
        type=int,
        default=3,
        help="number of discrete actions (d3rlpy would otherwise infer max(action)+1)",
    )
    g = p.add_argument_group("cql")
    g.add_argument(
        "--hidden",
        type=int,
        default=256,
        help="two hidden layers of this width (VectorEncoderFactory([h, h]))",
    )
    g.add_argument("--alpha", type=float, default=1.0)
    g.add_argument("--gamma", type=float, default=0.99)
    g.add_argument("--target-update-interval", type=int, default=100)
    g.add_argument(
        "--cql-lr", type=float, default=6.25e-5, help="learning rate (d3rlpy DiscreteCQL default)"
    )
    g = p.add_argument_group("dt")
    g.add_argument("--context-len", type=int, default=20)
    g.add_argument("--embed-dim", type=int, default=128)
    g.add_argument("--n-layers", type=int, default=3)
    g.add_argument("--n-heads", type=int, default=1)
    g.add_argument(
        "--max-timestep",
        type=int,
        default=64,
        help="largest 1-based timestep in the data; d3rlpy sizes its timestep table "
        "max_timestep+2 (a +1 in the builder and another in the encoding)",
    )
    g.add_argument(
        "--position-encoding",
        choices=["global", "simple"],
        default="global",
        help="d3rlpy PositionEncodingType (DiscreteDT default: global)",
    )
    g.add_argument(
        "--dropout", type=float, default=0.1, help="attn/resid/embed dropout (d3rlpy default 0.1)"
    )
    g.add_argument(
        "--dt-optim",
        choices=["gpt_adamw", "adam"],
        default="gpt_adamw",
        help="gpt_adamw: GPTAdamW(betas=(0.9,0.95), wd=0.1, clip_grad_norm=1.0) as in "
        "d3rlpy's discrete DT reproduction; adam: d3rlpy config default (Adam, no clip)",
    )
    g.add_argument("--dt-lr", type=float, default=6e-4, help="learning rate (d3rlpy default)")
    return p.parse_args(argv)


def load_dataset(path: str, action_size: int) -> tuple[d3rlpy.dataset.MDPDataset, dict]:
    z = np.load(path)
    obs = np.ascontiguousarray(z["obs"], dtype=np.float32)
    actions = np.asarray(z["actions"]).astype(np.int64)
    rewards = np.asarray(z["rewards"], dtype=np.float32)
    terminals = np.asarray(z["terminals"], dtype=np.float32)
    n = obs.shape[0]
    assert obs.ndim == 2, f"obs must be (N, D), got {obs.shape}"
    assert actions.shape == (n,) and rewards.shape == (n,) and terminals.shape == (n,), (
        actions.shape,
        rewards.shape,
        terminals.shape,
    )
    assert terminals[-1] == 1.0, "last step must be terminal (every episode ends with terminal=1)"
    assert actions.min() >= 0 and actions.max() < action_size, (actions.min(), actions.max())
    ends = np.flatnonzero(terminals > 0.5)
    lengths = np.diff(np.concatenate([[-1], ends]))
    info = {
        "n_transitions": int(n),
        "n_episodes": len(ends),
        "obs_dim": int(obs.shape[1]),
        "max_episode_len": int(lengths.max()),
        "mean_episode_len": float(lengths.mean()),
    }
    # d3rlpy stores actions as (N, 1) for discrete action spaces.
    dataset = d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=actions.reshape(-1, 1),
        rewards=rewards.reshape(-1, 1),
        terminals=terminals,
        action_space=d3rlpy.ActionSpace.DISCRETE,
        action_size=action_size,
    )
    return dataset, info


def build_cql(args: argparse.Namespace):
    cfg = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=args.batch_size,
        learning_rate=args.cql_lr,
        optim_factory=d3rlpy.optimizers.AdamFactory(),  # d3rlpy default, spelled out
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[args.hidden, args.hidden]),
        q_func_factory=d3rlpy.models.MeanQFunctionFactory(),  # default; Huber TD loss
        gamma=args.gamma,
        n_critics=1,
        target_update_interval=args.target_update_interval,
        alpha=args.alpha,
    )
    return cfg.create(device="cpu:0")


def build_dt(args: argparse.Namespace):
    if args.dt_optim == "gpt_adamw":
        optim = d3rlpy.optimizers.GPTAdamWFactory(
            betas=(0.9, 0.95), weight_decay=0.1, clip_grad_norm=1.0
        )
    else:
        optim = d3rlpy.optimizers.AdamFactory()
    pos = {
        "global": d3rlpy.PositionEncodingType.GLOBAL,
        "simple": d3rlpy.PositionEncodingType.SIMPLE,
    }[args.position_encoding]
    cfg = d3rlpy.algos.DiscreteDecisionTransformerConfig(
        batch_size=args.batch_size,
        context_size=args.context_len,
        max_timestep=args.max_timestep,
        learning_rate=args.dt_lr,
        optim_factory=optim,
        # embed dim == state-encoder output size; one linear layer, no
        # activation (tanh embed_activation is applied by the DT itself), as in
        # d3rlpy's vector-observation DT reproduction.
        encoder_factory=d3rlpy.models.VectorEncoderFactory(
            hidden_units=[args.embed_dim], exclude_last_activation=True
        ),
        num_heads=args.n_heads,
        num_layers=args.n_layers,
        attn_dropout=args.dropout,
        resid_dropout=args.dropout,
        embed_dropout=args.dropout,
        activation_type="gelu",
        embed_activation_type="tanh",
        position_encoding_type=pos,
    )
    return cfg.create(device="cpu:0")


def trainable_modules(algo) -> dict[str, torch.nn.Module]:
    mods = algo.impl.modules
    if hasattr(mods, "q_funcs"):  # CQL: online Q network only (target is a copy)
        return {"q_funcs": mods.q_funcs}
    return {"transformer": mods.transformer}


def count_params(modules: dict[str, torch.nn.Module]) -> int:
    return sum(p.numel() for m in modules.values() for p in m.parameters() if p.requires_grad)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)

    t0 = time.perf_counter()
    dataset, info = load_dataset(args.data, args.action_size)
    log(f"loaded {args.data}: {info} in {time.perf_counter() - t0:.2f}s")
    if args.algo == "dt" and info["max_episode_len"] > args.max_timestep:
        raise SystemExit(
            f"--max-timestep {args.max_timestep} < longest episode {info['max_episode_len']}: "
            "d3rlpy timesteps are 1-based up to the episode length"
        )

    algo = build_cql(args) if args.algo == "cql" else build_dt(args)
    # same build steps as d3rlpy's fit(): (no scalers are configured here)
    obs_shape = dataset.sample_transition().observation_signature.shape[0]
    algo.create_impl(obs_shape, dataset.dataset_info.action_size)
    mods = trainable_modules(algo)
    params = count_params(mods)
    log(f"built {type(algo).__name__} on {algo.impl.device}: {params} trainable params")
    for name, m in mods.items():
        log(f"{name}:\n{m}")

    if args.algo == "cql":

        def sample():
            return dataset.sample_transition_batch(args.batch_size)
    else:

        def sample():
            return dataset.sample_trajectory_batch(args.batch_size, length=args.context_len)

    loss = {}
    for _ in range(args.warmup):
        loss = algo.update(sample())
    log(f"warmup {args.warmup} updates done, loss={loss}")

    sample_s = 0.0
    log_every = max(1, args.steps // 5)
    load_before = os.getloadavg()[0]
    c_start = time.process_time()
    t_start = time.perf_counter()
    for i in range(args.steps):
        ts = time.perf_counter()
        batch = sample()
        sample_s += time.perf_counter() - ts
        loss = algo.update(batch)
        if (i + 1) % log_every == 0:
            el = time.perf_counter() - t_start
            log(f"step {i + 1}/{args.steps} {el:.2f}s ({(i + 1) / el:.1f} upd/s) loss={loss}")
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    load_after = os.getloadavg()[0]

    ups = args.steps / wall
    res: dict = {
        "algo": args.algo,
        "d3rlpy_class": type(algo).__name__,
        "d3rlpy_version": d3rlpy.__version__,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "wall_s": round(wall, 4),
        "updates_per_s": round(ups, 3),
        "sample_frac": round(sample_s / wall, 4),
        # contention check: this is a shared 2-core box; torch's OpenMP threads
        # degrade badly (10-50x) when another process is busy. Trust a run only
        # if the 1-min load average stayed ~<= threads and cpu_s/wall_s is sane.
        "cpu_s": round(cpu, 3),
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "params": params,
        "action_size": args.action_size,
        "data": info,
        "final_loss": {k: float(v) for k, v in loss.items()},
    }
    if args.algo == "cql":
        res["samples_per_s"] = round(ups * args.batch_size, 1)
        res.update(
            hidden=args.hidden,
            alpha=args.alpha,
            gamma=args.gamma,
            target_update_interval=args.target_update_interval,
            lr=args.cql_lr,
        )
    else:
        res["sequences_per_s"] = round(ups * args.batch_size, 1)
        res["samples_per_s"] = res["sequences_per_s"]  # samples = sequences
        res["tokens_per_s"] = round(ups * args.batch_size * args.context_len, 1)
        res.update(
            context_len=args.context_len,
            embed_dim=args.embed_dim,
            n_layers=args.n_layers,
            n_heads=args.n_heads,
            max_timestep=args.max_timestep,
            position_encoding=args.position_encoding,
            dropout=args.dropout,
            dt_optim=args.dt_optim,
            lr=args.dt_lr,
        )
    log(f"result: {res['updates_per_s']} upd/s, {res['samples_per_s']} samples/s")
    print(json.dumps(res), file=_REAL_STDOUT, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
