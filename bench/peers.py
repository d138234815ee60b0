"""Peer arms: d3rlpy's DiscreteCQL and DiscreteDecisionTransformer in the same A/B as ours.

1. The run's transitions (``RUN/data``) -> ``WORK/peers.npz`` (``bench/rl_throughput.py``'s
   ``export_npz``: user-days as episodes, rewards in minutes).
2. ``bench/peers_d3rlpy.py`` in d3rlpy's private venv (``bench/d3rlpy_env.sh``) trains both
   on it, with our CQL's and DT's sizes and budgets (2,400 updates each at the demo preset),
   and exports them as ``torch.export`` programs.
3. Each program gets its ``glan_ray.policy.external.ExternalSpec`` (``save_external``): the
   CQL is greedy on its Q-values; the DT is fed as d3rlpy's ``StatefulTransformerWrapper`` feeds
   it, with R̂₁ = ``target_gain`` × the user's 7-day mean usage, as our ``dt`` arm (the DT
   without L-RTG and HRM: the same data, reward and conditioning, another implementation).
   The window our loader builds is checked against d3rlpy's own wrapper (same actions).
4. The A/B of the run's preset (same users, seeds, burn-in, A/A and headline window as the
   pipeline's) with ``d3rlpy_cql`` and ``d3rlpy_dt`` as external arms beside ours: usage, DAU,
   PDR vs logging, the head-to-heads ``d3rlpy_cql`` vs ``klan_iit`` and ``d3rlpy_dt`` vs ``dt``,
   and personalization uplift captured -> ``bench/results/peers.json``.

    python bench/peers.py --run runs/demo --work runs/peers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PEERS = ("d3rlpy_cql", "d3rlpy_dt")
OURS = ("klan_iit", "cql_static", "dt", "glan", "klan")
METRICS = ("usage_time", "dau", "lt", "pdr", "effective_entries")


def log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def train_peers(npz: str, out: str, args: argparse.Namespace, *extra: str) -> dict:
    """Run ``peers_d3rlpy.py`` in d3rlpy's venv; its last stdout line (JSON)."""
    env = subprocess.run(
        ["bash", os.path.join(HERE, "d3rlpy_env.sh")], check=True, capture_output=True, text=True
    )
    py = env.stdout.strip().splitlines()[-1]
    cmd = [
        py,
        os.path.join(HERE, "peers_d3rlpy.py"),
        "--data",
        npz,
        "--out",
        out,
        "--cql-steps",
        str(args.cql_steps),
        "--dt-steps",
        str(args.dt_steps),
        *extra,
    ]
    log(" ".join(cmd))
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def dt_parity(module, spec, path: str) -> dict:
    """Our window (``dt_window``) + the exported DT vs d3rlpy's wrapper, step by step."""
    import torch

    from glan_ray.policy.external import dt_window

    z = np.load(path)
    agree = total = 0
    counts = np.bincount(z["action"], minlength=3).tolist()
    for e in np.unique(z["episode"]):
        idx = np.flatnonzero(z["episode"] == e)
        obs, rew, act = z["obs"][idx], z["reward"][idx], z["action"][idx]
        for t in range(len(idx)):
            w = dt_window(
                spec,
                z["target"][idx[:1]],
                obs[None, :t],
                act[None, :t],
                rew[None, :t],
                np.array([t]),
                obs[None, t],
            )
            with torch.no_grad():
                logits = module(
                    *(torch.from_numpy(w[k]) for k in ("obs", "actions", "rtg", "timesteps", "pad"))
                )
            agree += int(logits[0, -1].argmax()) == int(act[t])
            total += 1
    return {
        "steps": total,
        "same_action": agree,
        "agreement": agree / max(total, 1),
        "d3rlpy_actions": counts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--run", default="runs/demo", help="a pipeline run (its data/ and models/)")
    ap.add_argument("--work", default="runs/peers", help="where the peers' files go")
    ap.add_argument("--preset", help="A/B size (default: the run's pipeline.json preset)")
    ap.add_argument("--cql-steps", type=int, help="default: the preset's CQL updates")
    ap.add_argument("--dt-steps", type=int, help="default: the preset's DT updates")
    ap.add_argument("--retrain", action="store_true", help="train the peers again")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "peers.json"))
    ap.add_argument("--address", help="Ray address (default: a local Ray)")
    args = ap.parse_args()

    from rl_throughput import export_npz

    from glan_ray import storage
    from glan_ray.eval.ab import ABConfig, run_ab
    from glan_ray.pipeline import PRESETS
    from glan_ray.policy.external import ExternalSpec, read_external, save_external
    from glan_ray.policy.registry import CONSTANT_ARMS
    from glan_ray.runtime import init_ray

    with open(os.path.join(args.run, "pipeline.json")) as f:
        preset_name = args.preset or json.load(f)["config"]["preset"]
    p = PRESETS[preset_name]
    args.cql_steps = args.cql_steps or p.cql_iterations * p.updates_per_iteration
    args.dt_steps = args.dt_steps or p.dt_iterations * p.updates_per_iteration
    os.makedirs(args.work, exist_ok=True)
    raw = os.path.join(args.work, "d3rlpy")
    npz = os.path.join(args.work, "peers.npz")
    t0 = time.perf_counter()
    if args.retrain or not os.path.exists(os.path.join(raw, "dt_parity.npz")):
        log(f"data: {export_npz(storage.join(args.run, 'data'), npz)}")
        training = train_peers(npz, raw, args)
        with open(os.path.join(args.work, "training.json"), "w") as f:
            json.dump(training, f, indent=1)
    with open(os.path.join(args.work, "training.json")) as f:
        training = json.load(f)
    if not os.path.exists(os.path.join(raw, "dt_parity_untrained.npz")):
        if not os.path.exists(npz):
            export_npz(storage.join(args.run, "data"), npz)
        done = train_peers(npz, raw, args, "--untrained-parity-only")
        training["dt_untrained"] = done["dt_untrained"]
        with open(os.path.join(args.work, "training.json"), "w") as f:
            json.dump(training, f, indent=1)
    train_s = time.perf_counter() - t0

    import torch

    source = f"d3rlpy {training['d3rlpy_version']}"
    with open(os.path.join(args.run, "models", "dt_naive", "config.json")) as f:
        dt_extra = json.load(f).get("extra", {})  # our dt arm's export: its target_gain
    specs = {
        "d3rlpy_cql": ExternalSpec(kind="q", source=f"{source} DiscreteCQL"),
        "d3rlpy_dt": ExternalSpec(
            kind="dt",
            source=f"{source} DiscreteDecisionTransformer",
            context_len=training["dt"]["config"]["context_len"],
            max_timestep=training["dt"]["max_timestep"],
            return_scale=1.0 / 3600.0,
            target_gain=float(dt_extra.get("target_gain", 2.0)),
        ),
    }
    external = {}
    for arm, spec in specs.items():
        path = os.path.join(args.work, f"{arm}.pt2")
        save_external(torch.export.load(os.path.join(raw, f"{arm.split('_')[1]}.pt2")), spec, path)
        external[arm] = os.path.abspath(path)
    module, spec = read_external(external["d3rlpy_dt"])
    untrained = torch.export.load(os.path.join(raw, "dt_untrained.pt2")).module()
    parity = {
        "trained": dt_parity(module, spec, os.path.join(raw, "dt_parity.npz")),
        "untrained": dt_parity(untrained, spec, os.path.join(raw, "dt_parity_untrained.npz")),
    }
    log(f"DT window parity with d3rlpy's StatefulTransformerWrapper: {parity}")

    cfg = ABConfig(
        arms=("logging", *CONSTANT_ARMS, *OURS, *PEERS, "oracle"),
        control="logging",
        users=p.ab_users,
        ab_days=p.ab_days,
        aa_days=p.ab_aa_days,
        burn_in_days=p.ab_burn_in_days,
        seeds=tuple(p.ab_seeds),
        models=storage.join(args.run, "models"),
        external=external,
    )
    init_ray(args.address)
    t1 = time.perf_counter()
    result = run_ab(cfg)
    ab_s = time.perf_counter() - t1
    summary = result.summary()
    vs = summary["vs_control"]
    out = {
        "preset": preset_name,
        "run": args.run,
        "peers": {a: s.source for a, s in specs.items()},
        "training": training,
        "dt_parity": parity,
        "protocol": summary["protocol"],
        "vs_logging": {a: {m: vs[a][m] for m in METRICS} for a in cfg.arms},
        "head_to_head": {
            "d3rlpy_cql vs klan_iit": {
                m: result.comparisons("klan_iit")["d3rlpy_cql"][m] for m in METRICS
            },
            "d3rlpy_dt vs dt": {m: result.comparisons("dt")["d3rlpy_dt"][m] for m in METRICS},
        },
        "assign_ratio": {
            a: {
                pg: result.value(a, f"assign_ratio_{pg}")
                for pg in ("featured", "explore", "following")
            }
            for a in cfg.arms
        },
        "personalization_uplift_captured_usage_time": summary[
            "personalization_uplift_captured_usage_time"
        ],
        "uplift_captured_usage_time": summary["uplift_captured_usage_time"],
        "latency_ms": summary["latency_ms"],
        "wall_s": {"train_peers": round(train_s, 1), "ab": round(ab_s, 1)},
    }
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(out, f, indent=1, default=float)
    log(f"wrote {args.results}")
    rows = [f"{'arm':<18}{'usage %':>9}{'95% CI':>18}{'PDR %':>9}{'DAU %':>8}{'pers.':>7}"]
    pers = out["personalization_uplift_captured_usage_time"]
    for a in cfg.arms:
        u, d = vs[a]["usage_time"], vs[a]
        rows.append(
            f"{a:<18}{u['rel_pct']:>+9.2f}   [{u['ci_low_pct']:+6.2f},{u['ci_high_pct']:+6.2f}]"
            f"{d['pdr']['rel_pct']:>+9.1f}{d['dau']['rel_pct']:>+8.2f}"
            f"{pers.get(a, float('nan')):>7.2f}"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
