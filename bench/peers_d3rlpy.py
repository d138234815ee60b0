"""Train d3rlpy's DiscreteCQL and DiscreteDecisionTransformer for ``bench/peers.py``.

Runs inside the private venv of ``bench/d3rlpy_env.sh`` (d3rlpy is not a project dependency);
imports numpy, torch, d3rlpy and ``bench/d3rlpy_anchor.py`` (its dataset loader and the two
algorithm builders, so the peers are built exactly as the throughput anchor times them).

    PY=$(bash bench/d3rlpy_env.sh | tail -1)
    $PY bench/peers_d3rlpy.py --data peers.npz --out DIR

The npz is ``bench/rl_throughput.py``'s ``export_npz`` (rewards in minutes). Each algorithm is
trained by the body of d3rlpy's own ``fit`` and exported as a ``torch.export`` program with a
dynamic batch dimension (no d3rlpy needed to run it):

- ``DIR/cql.pt2``: ``q(obs (B, D)) -> expected Q (B, A)``;
- ``DIR/dt.pt2``: ``logits(obs (B, K, D), actions (B, K), rtg (B, K, 1), timesteps (B, K),
  pad (B, K)) -> (B, K, A)``, the DT trained on rewards in hours (minutes / 60);
- ``DIR/dt_parity.npz``: d3rlpy's own ``StatefulTransformerWrapper`` (greedy) played over a
  few episodes, so the caller can check that its window gives the same actions;
- ``DIR/dt_untrained.pt2`` + ``DIR/dt_parity_untrained.npz``: the same for a freshly initialised
  DT of the same config (its actions vary with the inputs even where the trained one's do not;
  ``--untrained-parity-only`` writes just these).

The last stdout line is one JSON object: the training figures of both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import d3rlpy
import d3rlpy_anchor as anchor
import numpy as np
import torch


class QScores(torch.nn.Module):
    """d3rlpy DQN-family expected Q of every action: (B, D) -> (B, A)."""

    def __init__(self, algo) -> None:
        super().__init__()
        self.q_funcs = algo.impl.modules.q_funcs
        self.forwarder = algo.impl._q_func_forwarder

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forwarder.compute_expected_q(obs)


class DTLogits(torch.nn.Module):
    """d3rlpy's discrete DT transformer in eval mode; ``pad`` is its attention mask (1 = pad)."""

    def __init__(self, algo) -> None:
        super().__init__()
        self.transformer = algo.impl.modules.transformer

    def forward(self, obs, actions, rtg, timesteps, pad):
        _, logits = self.transformer(obs, actions, rtg, timesteps, pad)
        return logits


def export(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: str) -> None:
    module.eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    torch.export.save(program, path)


def fit(algo, dataset, steps: int, name: str, context: int | None = None) -> dict:
    """The body of d3rlpy's ``fit`` (sample a mini-batch, ``update``) without its file logger:
    transitions for CQL, windows of ``context`` steps for the DT."""
    obs_dim = dataset.sample_transition().observation_signature.shape[0]
    algo.create_impl(obs_dim, dataset.dataset_info.action_size)
    batch = algo.config.batch_size
    t0 = time.perf_counter()
    quarter, losses, curve = max(1, steps // 4), [], []
    for i in range(steps):
        mb = (
            dataset.sample_transition_batch(batch)
            if context is None
            else dataset.sample_trajectory_batch(batch, length=context)
        )
        losses.append(float(algo.update(mb)["loss"]))
        if (i + 1) % quarter == 0 or i + 1 == steps:
            curve.append(round(float(np.mean(losses)), 5))
            losses = []
            anchor.log(
                f"{name}: {i + 1}/{steps} updates, mean loss {curve[-1]} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    return {"updates": steps, "wall_s": round(time.perf_counter() - t0, 2), "loss_curve": curve}


def parity_episodes(algo, dataset, target_of, n: int) -> dict[str, np.ndarray]:
    """d3rlpy's greedy stateful wrapper over ``n`` episodes: its actions step by step."""
    sampler = d3rlpy.algos.GreedyTransformerActionSampler()
    rows: dict[str, list] = {"obs": [], "reward": [], "action": [], "episode": [], "target": []}
    for e, ep in enumerate(dataset.episodes[:n]):
        target = float(target_of(ep))
        wrapper = algo.as_stateful_wrapper(target_return=target, action_sampler=sampler)
        prev = 0.0
        for t in range(ep.transition_count):
            a = int(wrapper.predict(ep.observations[t], prev))
            rows["obs"].append(ep.observations[t])
            rows["reward"].append(float(ep.rewards[t, 0]))
            rows["action"].append(a)
            rows["episode"].append(e)
            rows["target"].append(target)
            prev = float(ep.rewards[t, 0])
    return {k: np.asarray(v) for k, v in rows.items()}


def dt_arguments(args: argparse.Namespace, info: dict) -> argparse.Namespace:
    """Our dt arm's sizes (context 20, embed 128, 3 layers, 2 heads, batch 64, lr 3e-4) with
    d3rlpy's own recipe otherwise (GPT AdamW, no propensity weights, d3rlpy's windows)."""
    max_t = max(64, info["max_episode_len"])
    flags = {
        "--algo": "dt",
        "--batch-size": 64,
        "--context-len": 20,
        "--embed-dim": 128,
        "--n-layers": 3,
        "--n-heads": 2,
        "--max-timestep": max_t,
        "--position-encoding": "simple",
        "--dt-lr": 3e-4,
    }
    return anchor.parse_args(["--data", args.data, *(str(x) for kv in flags.items() for x in kv)])


def hours_dataset(args: argparse.Namespace):
    """The dataset with rewards in hours (minutes / 60), as the DT is trained."""
    z = np.load(args.data)
    hours = dict(z)
    hours["rewards"] = (z["rewards"] / 60.0).astype(np.float32)
    path = os.path.join(args.out, "hours.npz")
    np.savez(path, **hours)
    return anchor.load_dataset(path, 3)[0]


def export_dt(algo, dt_args: argparse.Namespace, obs_dim: int, path: str) -> None:
    k = dt_args.context_len
    example = (
        torch.zeros(2, k, obs_dim),
        torch.zeros(2, k, dtype=torch.int64),
        torch.zeros(2, k, 1),
        torch.ones(2, k, dtype=torch.int64),
        torch.zeros(2, k),
    )
    export(DTLogits(algo), example, path)


def untrained_parity(args: argparse.Namespace, info: dict) -> dict:
    """A freshly initialised DT of the same config, exported, and d3rlpy's wrapper over it with
    targets of 0.5-2.5 h by episode (its actions vary, so the window check is not a constant's)."""
    dt_args = dt_arguments(args, info)
    data = hours_dataset(args)
    fresh = anchor.build_dt(dt_args)
    fresh.create_impl((info["obs_dim"],), 3)
    export_dt(fresh, dt_args, info["obs_dim"], os.path.join(args.out, "dt_untrained.pt2"))
    targets = iter(0.5 + 0.5 * (np.arange(args.parity_episodes) % 5))
    parity = parity_episodes(fresh, data, lambda ep: next(targets), args.parity_episodes)
    np.savez(os.path.join(args.out, "dt_parity_untrained.npz"), **parity)
    return {
        "parity_steps": len(parity["action"]),
        "actions": np.bincount(parity["action"], minlength=3).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data", required=True, help="npz of rl_throughput.export_npz (minutes)")
    p.add_argument("--out", required=True, help="directory for cql.pt2, dt.pt2, dt_parity.npz")
    p.add_argument("--cql-steps", type=int, default=2400, help="DiscreteCQL updates")
    p.add_argument("--dt-steps", type=int, default=2400, help="DiscreteDT updates")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parity-episodes", type=int, default=200)
    p.add_argument(
        "--parity-target-hours",
        type=float,
        default=1.0,
        help="target return of the trained DT's parity episodes (hours)",
    )
    p.add_argument(
        "--untrained-parity-only",
        action="store_true",
        help="only write dt_untrained.pt2 and dt_parity_untrained.npz",
    )
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    out: dict = {"d3rlpy_version": d3rlpy.__version__, "torch_version": torch.__version__}
    dataset, info = anchor.load_dataset(args.data, 3)
    out["data"] = info
    if args.untrained_parity_only:
        out["dt_untrained"] = untrained_parity(args, info)
        print(json.dumps(out), file=anchor._REAL_STDOUT, flush=True)
        return 0

    # CQL: as our klan_iit is trained (batch 256, lr 3e-4, gamma 0.99, rewards in minutes,
    # target copy every 25,600 rows = 100 updates, alpha 1, two hidden layers of 256)
    flags = {
        "--algo": "cql",
        "--batch-size": 256,
        "--cql-lr": 3e-4,
        "--gamma": 0.99,
        "--target-update-interval": 100,
        "--alpha": 1.0,
        "--hidden": 256,
    }
    cql_args = anchor.parse_args(
        ["--data", args.data, *(str(x) for kv in flags.items() for x in kv)]
    )
    cql = anchor.build_cql(cql_args)
    out["cql"] = {
        "config": vars(cql_args) | {"data": None},
        **fit(cql, dataset, args.cql_steps, "d3rlpy_cql"),
    }
    q = QScores(cql)
    x = torch.from_numpy(np.asarray(dataset.episodes[0].observations[:8], dtype=np.float32))
    greedy = cql.predict(x.numpy())
    assert (q(x).argmax(-1).numpy() == greedy).all(), "QScores disagrees with d3rlpy's predict"
    export(q, (torch.zeros(2, info["obs_dim"]),), os.path.join(args.out, "cql.pt2"))

    dt_args = dt_arguments(args, info)
    dt_data = hours_dataset(args)
    dt = anchor.build_dt(dt_args)
    out["dt"] = {
        "config": vars(dt_args) | {"data": None},
        **fit(dt, dt_data, args.dt_steps, "d3rlpy_dt", context=dt_args.context_len),
    }
    out["dt"]["max_timestep"] = dt_args.max_timestep
    export_dt(dt, dt_args, info["obs_dim"], os.path.join(args.out, "dt.pt2"))
    target = args.parity_target_hours
    parity = parity_episodes(dt, dt_data, lambda ep: target, args.parity_episodes)
    np.savez(os.path.join(args.out, "dt_parity.npz"), **parity)
    out["dt"]["parity_steps"] = len(parity["action"])
    out["dt"]["parity_actions"] = np.bincount(parity["action"], minlength=3).tolist()
    out["dt_untrained"] = untrained_parity(args, info)
    print(json.dumps(out), file=anchor._REAL_STDOUT, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
