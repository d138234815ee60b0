"""The ``glan-ray`` command line. Each stage is a sub-command with its own ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from glan_ray import cli_events, cli_logs, cli_sweep

logger = logging.getLogger("glan_ray")


def _load_mapping(path: str) -> dict:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a mapping of SimConfig fields, got {type(data).__name__}"
        )
    return data


WORLD_HELP = ("default, or premise, where GLAN's premises hold, or a scaled world such as "
              "premise:strength=0.5,stochasticity=2 (docs/simulator.md)")  # fmt: skip


def _add_world(p: argparse.ArgumentParser) -> None:
    from glan_ray.sim.worlds import parse_world

    p.add_argument(
        "--world",
        default="default",
        type=parse_world,
        help=f"simulated world: {WORLD_HELP}; --sim-config overrides apply on top of it",
    )


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from glan_ray.sim.baselines import SIM_POLICIES

    p = sub.add_parser(
        "simulate",
        help="simulate users and write the five datasets as Parquet",
        description="Run the PLPM simulator on Ray and write the daily, sessions, trajectories, "
        "transitions (and with --rct, rct) datasets as Parquet under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--users", type=int, required=True, help="number of users")
    p.add_argument("--days", type=int, required=True, help="number of consecutive days")
    p.add_argument("--out", required=True, help="output directory or URI (s3://, gs://)")
    p.add_argument(
        "--rct",
        action="store_true",
        help="RCT mode: random page treatment per user-day, control arm, rct dataset",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed (same seed, same Parquet)")
    p.add_argument(
        "--policy",
        default="logging",
        choices=sorted(SIM_POLICIES),
        help="policy that logs the data",
    )
    p.add_argument(
        "--incumbent",
        metavar="ARM",
        help="log the data with this learned arm (policy.registry.ARMS, e.g. klan) built from "
        "--models, exploring as --explore says, instead of --policy",
    )
    p.add_argument("--models", help="exported models of the --incumbent arm")
    p.add_argument(
        "--explore",
        default=None,
        help="exploration of the --incumbent: greedy, epsilon=E or softmax[=T] "
        "(default: policy.explore.DEPLOY_DEFAULT, epsilon=0.1)",
    )
    p.add_argument(
        "--burn-in-days",
        type=int,
        default=0,
        help="days the users first live under the logging policy, not written: with the --seed, "
        "--users and --burn-in-rct of an earlier run of that many days, its users continuing",
    )
    p.add_argument("--burn-in-rct", action="store_true", help="the burn-in runs in RCT mode")
    p.add_argument("--sim-config", metavar="YAML", help="YAML file of SimConfig fields to override")
    _add_world(p)
    p.add_argument("--shard-users", type=int, help="users per simulator actor (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace datasets already in --out")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.runtime import init_ray
    from glan_ray.sim.config import SimConfig
    from glan_ray.sim.worlds import world_overrides

    overrides = _load_mapping(args.sim_config) if args.sim_config else {}
    cfg = SimConfig.from_dict({**world_overrides(args.world), **overrides, "seed": args.seed})
    factory, policy = None, args.policy
    if args.incumbent:
        from glan_ray.policy.registry import incumbent_factory

        factory, policy = incumbent_factory(args.incumbent, args.models, cfg, args.explore)
    elif args.models or args.explore:
        raise ValueError("--models and --explore need --incumbent ARM")
    opts = GenerateOptions(
        users=args.users,
        days=args.days,
        rct=args.rct,
        policy=policy,
        shard_users=args.shard_users,
        overwrite=args.overwrite,
        burn_in_days=args.burn_in_days,
        burn_in_rct=args.burn_in_rct,
    )
    init_ray(args.address, args.num_cpus)
    with tqdm(total=args.users * args.days, unit="user-day", desc="simulate", disable=None) as bar:
        summary = generate(cfg, opts, args.out, progress=bar.update, policy_factory=factory)
    print(summary.format())
    print(f"\nwritten to {args.out}")
    return 0


def _parse_sets(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train L-RTG, HRM, KLAN-ISP, KLAN-AM (Ray Train) or CQL, DT (RLlib)",
        description="Train a supervised model (lrtg, hrm, isp, am) with a Ray Train "
        "TorchTrainer, or an RL policy (cql: KLAN-IIT discrete CQL with dynamic alpha; dt: "
        "GLAN's Decision Transformer) offline with RLlib. The model is exported to "
        "OUT/<model>/ (weights + configs + normalisation); RL runs also keep the RLlib "
        "checkpoint in OUT/<model>/rllib/. Model-specific fields (e.g. eps_se, focal_gamma, "
        "alpha0, reward_column, context_len) go through --set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model", choices=["lrtg", "hrm", "isp", "am", "cql", "dt"], help="model to train"
    )
    p.add_argument("--data", required=True, help="run directory with the datasets")
    p.add_argument("--out", required=True, help="where checkpoints go")
    p.add_argument("--config", metavar="YAML", help="YAML file of training config fields")
    p.add_argument("--epochs", type=int, help="passes over the training data (lrtg/hrm/isp/am)")
    p.add_argument("--iterations", type=int, help="algo.train() calls (cql/dt)")
    p.add_argument(
        "--updates-per-iteration", type=int, help="gradient updates per iteration (cql/dt)"
    )
    p.add_argument(
        "--patience",
        type=int,
        help="stop before the budget (--epochs / --iterations) when the held-out criterion "
        "has not moved for this many epochs (validation metric) or iterations (CQL: greedy "
        "pages on held-out users settled; DT: held-out loss); default: the full budget",
    )
    p.add_argument("--batch-size", type=int, help="rows per step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--num-workers", type=int, help="Ray Train workers / RLlib remote learners")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker / learner")
    p.add_argument(
        "--history",
        action="store_true",
        help="cql only: states are obs + the history features (schema.HIST_FEATURES), from "
        "DATA/transitions_hist (written first from sessions and transitions); exported to "
        "OUT/cql_hist, the klan_iit_hist arm",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any training config field, e.g. --set eps_se=2.0 (repeatable)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    if args.history and args.model != "cql":
        raise ValueError("--history applies to cql only (the klan_iit_hist arm's CQL)")
    if args.model in ("cql", "dt"):
        return _run_train_rl(args)
    if args.iterations or args.updates_per_iteration:
        raise ValueError("--iterations/--updates-per-iteration apply to cql and dt only")
    from glan_ray.runtime import init_ray
    from glan_ray.train.config import train_config
    from glan_ray.train.trainer import fit

    fields = _load_mapping(args.config) if args.config else {}
    flags = {
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_workers": args.num_workers,
        "use_gpu": args.use_gpu or None,
    }
    fields.update({k: v for k, v in flags.items() if v is not None})
    fields.update(_parse_sets(args.set))
    fields.update(data=args.data, out=args.out)
    cfg = train_config(args.model, fields)
    init_ray(args.address)
    result = fit(args.model, cfg)
    print(f"{args.model}: checkpoint {result.checkpoint} ({result.stop})")
    for k, v in sorted(result.metrics.items()):
        if k.startswith("val/"):
            print(f"  {k:<20} {v:.4g}")
    return 0


def _run_train_rl(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glan_ray.rllib.launch import RLTrainConfig, fit_rl
    from glan_ray.runtime import init_ray

    if args.epochs:
        raise ValueError("--epochs applies to lrtg/hrm/isp/am; use --iterations for cql and dt")
    fields = _load_mapping(args.config) if args.config else {}
    flags = {
        "iterations": args.iterations,
        "updates_per_iteration": args.updates_per_iteration,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_learners": args.num_workers,
        "use_gpu": args.use_gpu or None,
        "history": args.history or None,
    }
    fields.update({k: v for k, v in flags.items() if v is not None})
    fields.update(_parse_sets(args.set))
    fields.update(data=args.data, out=args.out)
    cfg = RLTrainConfig.from_flat(args.model, fields)
    cfg.check_input()  # before starting Ray
    init_ray(args.address)
    with tqdm(total=cfg.iterations, unit="iter", desc=f"train {args.model}", disable=None) as bar:

        def on_iteration(i: int, metrics: dict[str, float]) -> None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()})
            bar.update(1)

        result = fit_rl(cfg, on_iteration)
    print(f"{args.model}: exported {result.export}; RLlib checkpoint {result.checkpoint}")
    print(f"  {result.stop}")
    for k, v in sorted(result.metrics.items()):
        print(f"  {k:<20} {v:.4g}")
    print(f"  {'updates/s':<20} {result.updates_per_s:.1f}")
    return 0


def _done_of_total(bar: Any) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that drives a tqdm bar."""

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return progress


def _add_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label-hrm",
        help="fill the trajectories' reward_hrm with HRM's session reward",
        description="Run a trained HRM over the sessions dataset and write each session's "
        "reward r = (1 - p_sw) * sum_j T_j (seconds) into the trajectories' reward_hrm column, "
        "part by part as Ray tasks (files are replaced atomically; rerunning is safe). "
        "The DT trains on it with --set reward_column=reward_hrm (the default).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="run directory with the datasets")
    p.add_argument("--hrm", required=True, help="exported HRM checkpoint directory")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_label)


def _run_label(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glan_ray.label import label_hrm
    from glan_ray.runtime import init_ray

    init_ray(args.address)
    with tqdm(unit="part", desc="label-hrm", disable=None) as bar:
        n = label_hrm(args.data, args.hrm, _done_of_total(bar))
    print(f"labelled {n} sessions with HRM rewards in {args.data}/trajectories")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from glan_ray.eval.ab import ABConfig
    from glan_ray.pipeline import PRESETS
    from glan_ray.policy.registry import ALIASES, ARMS

    d = ABConfig()
    p = sub.add_parser(
        "evaluate",
        help="run the simulated A/B test of every arm and write the report",
        description="The papers' protocol: existing users burned in under the control "
        "(--burn-in-days), an A/A phase where every bucket runs the control (--aa-days), then "
        "the A/B (--ab-days); headline = the last 7 A/B days. Every arm runs the same users "
        "with common random numbers (--buckets shared; one Ray task per arm, seed and shard) "
        "or its own users (--buckets disjoint); each is compared with the control (relative "
        "%, 95% CI, p-value), and RUN/ab/ab.json, RUN/report.md (with the papers' tables), "
        "RUN/ab_metrics.csv and PNG plots (growth curves included) are written. Learned arms "
        "load RUN/models/ (or --models).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", required=True, help="run directory or URI (report goes here)")
    p.add_argument("--models", help="exported models directory (default RUN/models)")
    p.add_argument("--arms", nargs="+", default=[a for a in ARMS if a not in ALIASES],
                   choices=list(ARMS), metavar="ARM",
                   help=f"arms to run; one of: {', '.join(ARMS)} (default: all but the aliases "
                   f"{', '.join(ALIASES)})")  # fmt: skip
    p.add_argument("--control", default=d.control, metavar="ARM",
                   help="control arm, built-in or a --variant (klan: GLAN's tables; logging: "
                   "KLAN's)")  # fmt: skip
    p.add_argument("--users", type=int, default=d.users, help="users per arm")
    p.add_argument("--ab-days", "--days", dest="ab_days", type=int, default=d.ab_days,
                   help="days of the A/B phase")  # fmt: skip
    p.add_argument("--aa-days", type=int, default=d.aa_days, help="days of the A/A phase")
    p.add_argument(
        "--burn-in-days",
        type=int,
        default=d.burn_in_days,
        help="days the users live under the burn-in arm first (0: new users)",
    )
    p.add_argument(
        "--burn-in-arm",
        metavar="ARM",
        help="policy of the burn-in, built-in or a --variant (default: the control)",
    )
    p.add_argument(
        "--buckets",
        choices=("shared", "disjoint"),
        default=d.buckets,
        help="shared: every arm the same users (paired); disjoint: its own users",
    )
    p.add_argument("--no-cuped", dest="cuped", action="store_false",
                   help="disjoint buckets: compare raw, without the A/A-phase CUPED adjustment")
    p.add_argument(
        "--headline-days",
        type=int,
        default=d.headline_days,
        help="headline metrics over the last this many A/B days",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help="simulator seeds")
    p.add_argument("--shard-users", type=int, default=d.shard_users, help="users per Ray task")
    p.add_argument("--sim-config", metavar="YAML", help="SimConfig overrides for the test")
    _add_world(p)
    p.add_argument(
        "--arm-option",
        action="append",
        default=[],
        metavar="ARM.KEY=VALUE",
        help="an arm's builder option, e.g. glan.target_gain=1.5 (repeatable)",
    )
    p.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an extra arm NAME played from a torch.export policy file (glan_ray.policy.external, "
        "e.g. bench/peers.py's d3rlpy policies); repeatable",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARM[@MODELS]",
        help="an extra arm NAME that is built-in ARM with the models of MODELS (default: "
        "--models), e.g. incumbent=klan@runs/demo/models; its options by --arm-option "
        "NAME.KEY=VALUE (e.g. NAME.explore=epsilon=0.1); repeatable",
    )
    p.add_argument("--refresh-every", type=int, default=0, metavar="DAYS",
                   help="refresh during the A/B: every DAYS A/B days the --refresh-arms "
                   "retrain on their own logs so far (KLAN's CQL, GLAN's DT) into "
                   "RUN/refresh/; 0: off")  # fmt: skip
    p.add_argument("--refresh-arms", nargs="+", default=[], metavar="ARM",
                   help="arms that refresh (let a GLAN arm explore: --arm-option "
                   "ARM.explore=epsilon=0.1)")  # fmt: skip
    p.add_argument("--refresh-preset", choices=list(PRESETS),
                   default="demo",
                   help="each refresh retrains with this pipeline preset's budget (its CQL "
                   "and DT iterations x updates per iteration), the budget the served models "
                   "had")  # fmt: skip
    p.add_argument("--refresh-updates", type=int, default=None,
                   help="gradient updates per iteration of each refresh's retraining "
                   "(default: --refresh-preset's)")  # fmt: skip
    p.add_argument("--refresh-base-data", metavar="DIR",
                   help="train each refresh on these datasets (the models' own training "
                   "data, e.g. RUN/data) and the A/B logs; else the logs alone")  # fmt: skip
    p.add_argument("--refresh-warm-start", action="store_true",
                   help="start each retraining from the served model's weights")  # fmt: skip
    p.add_argument("--refresh-control", action="store_true",
                   help="retrain on --refresh-base-data alone (no A/B logs): the retraining "
                   "noise a refresh's figure includes")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="rewrite the report from ab.json")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_evaluate)


def _variant_arms(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["inc=klan@runs/demo/models"]`` -> ``{"inc": {"arm": "klan", "models": "runs/..."}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        arm, _, models = rest.partition("@")
        if not (sep and name and arm):
            raise ValueError(f"--variant: expected NAME=ARM[@MODELS], got {item!r}")
        if name in out:
            raise ValueError(f"--variant: arm {name!r} given twice")
        out[name] = {"arm": arm, **({"models": models} if models else {})}
    return out


def _external_arms(items: list[str]) -> dict[str, str]:
    """``["peer=/p/q.pt2"]`` -> ``{"peer": "/p/q.pt2"}``; each file must exist."""
    import os

    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise ValueError(f"--external: expected NAME=PATH, got {item!r}")
        if name in out:
            raise ValueError(f"--external: arm {name!r} given twice")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--external {name}: no policy file at {path}")
        out[name] = os.path.abspath(path)
    return out


def _arm_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["glan.target_gain=1.5"]`` -> ``{"glan": {"target_gain": 1.5}}`` (values as YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        arm, dot, name = key.partition(".")
        if not (sep and dot and arm and name):
            raise ValueError(f"--arm-option: expected ARM.KEY=VALUE, got {item!r}")
        out.setdefault(arm, {})[name] = yaml.safe_load(value)
    return out


def _run_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glan_ray import storage
    from glan_ray.eval.ab import ABConfig, run_ab
    from glan_ray.eval.publish import publish_evaluation
    from glan_ray.runtime import init_ray

    result = None
    if not args.report_only:
        refresh, refresh_dir = None, None
        if args.refresh_arms:
            from glan_ray.pipeline import PRESETS
            from glan_ray.train.refresh import RefreshTrainer

            refresh_dir = storage.join(args.run, "refresh")
            budget = PRESETS[args.refresh_preset]
            updates = budget.updates_per_iteration if args.refresh_updates is None \
                else args.refresh_updates  # fmt: skip
            refresh = RefreshTrainer(refresh_dir, cql_iterations=budget.cql_iterations,
                                     dt_iterations=budget.dt_iterations,
                                     updates_per_iteration=updates,
                                     patience=budget.patience,
                                     base_data=args.refresh_base_data,
                                     with_logs=not args.refresh_control,
                                     warm_start=args.refresh_warm_start)  # fmt: skip
        external = _external_arms(args.external)
        variants = _variant_arms(args.variant)
        extra = (*external, *variants)
        cfg = ABConfig(
            arms=(*args.arms, *(a for a in extra if a not in args.arms)),
            external=external,
            variants=variants,
            control=args.control,
            users=args.users,
            ab_days=args.ab_days,
            aa_days=args.aa_days,
            burn_in_days=args.burn_in_days,
            burn_in_arm=args.burn_in_arm,
            buckets=args.buckets,
            headline_days=args.headline_days,
            cuped=args.cuped,
            seeds=tuple(args.seeds),
            shard_users=args.shard_users,
            models=args.models or storage.join(args.run, "models"),
            sim=_load_mapping(args.sim_config) if args.sim_config else {},
            world=args.world,
            options=_arm_options(args.arm_option),
            refresh_every=args.refresh_every,
            refresh_arms=tuple(args.refresh_arms),
        )
        init_ray(args.address)
        with tqdm(unit="task", desc="A/B", disable=None) as bar:
            result = run_ab(cfg, _done_of_total(bar), refresh, refresh_dir)
    path, markdown = publish_evaluation(args.run, result)
    print(markdown.split("\n## Page")[0])
    print(f"report: {path}")
    return 0


def _add_pipeline(sub: argparse._SubParsersAction) -> None:
    from glan_ray.pipeline import ALL_STAGES, APP_STAGES, GEN1_STAGES, PRESETS, STAGES

    p = sub.add_parser(
        "pipeline",
        help="run everything: simulate, train all models, A/B with ablations, report",
        description="simulate -> train L-RTG, HRM, KLAN-ISP, KLAN-AM (Ray Train) -> label "
        "trajectories with HRM -> train CQL, DT, DT on naive reward (RLlib) -> simulated A/B "
        "of every arm -> report.md, all under --out. Finished stages are skipped on a rerun, "
        "so a killed run resumes where it stopped. Stages: " + ", ".join(STAGES) + "; with "
        "--incumbent ARM, generation 1 after them: " + ", ".join(GEN1_STAGES) + ". On your "
        "app's raw events (--events PATH --spec app.yaml): " + ", ".join(APP_STAGES) + ": "
        "the events are ingested instead of simulated and the policies are evaluated on the "
        "logged sessions (off-policy) instead of a simulated A/B (docs/ingest.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default="demo", choices=list(PRESETS), help="run size")
    p.add_argument("--out", help="run directory or URI (s3://B/run; default runs/<preset>)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--from", dest="first_stage", choices=ALL_STAGES,
                   help="rerun from this stage")  # fmt: skip
    p.add_argument("--use-gpu", action="store_true", help="GPUs for trainers and learners")
    p.add_argument("--parallel", type=int,
                   help="stages run at once, each in a Ray task as soon as its inputs are done "
                   "(1: one after another in this process; default: the preset's, 2 for demo, "
                   "1 for the others)")  # fmt: skip
    p.add_argument("--incumbent", metavar="ARM",
                   help="then generation 1: this learned arm of generation 0 (e.g. klan) "
                   "serves the training users with exploration, the models retrain on its "
                   "log, and the A/B uses it as control (gen1/report.md)")  # fmt: skip
    p.add_argument("--incumbent-explore", default="epsilon=0.1",
                   help="exploration of the incumbent while it collects generation 1's data: "
                   "greedy, epsilon=E or softmax[=T]")  # fmt: skip
    _add_world(p)
    p.add_argument("--events", metavar="PATH",
                   help="your app's raw page-visit events (Parquet or CSV, local, s3:// or "
                   "gs://): ingest them instead of simulating (needs --spec)")  # fmt: skip
    p.add_argument("--spec", metavar="APP_YAML", help="the app spec of --events")
    p.add_argument("--users", metavar="PATH",
                   help="with --events: a table of the users' profile fields by user_id")
    p.add_argument("--serve", action="store_true",
                   help="then serve the trained models over HTTP until Ctrl-C")  # fmt: skip
    p.add_argument("--serve-host", default="127.0.0.1", help="HTTP host of --serve")
    p.add_argument("--serve-port", type=int, default=8000, help="HTTP port of --serve")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_pipeline)


def _run_pipeline(args: argparse.Namespace) -> int:
    from glan_ray.pipeline import PipelineConfig, eta_s, run_pipeline
    from glan_ray.runtime import init_ray

    cfg = PipelineConfig(
        run=args.out or f"runs/{args.preset}",
        preset=args.preset,
        seed=args.seed,
        first_stage=args.first_stage,
        use_gpu=args.use_gpu,
        parallel=args.parallel,
        incumbent=args.incumbent,
        incumbent_explore=args.incumbent_explore,
        world=args.world,
        events=args.events,
        spec=args.spec,
        users=args.users,
    )
    stages = cfg.stages
    init_ray(args.address)
    t0 = __import__("time").perf_counter()

    ran: dict[str, float] = {}
    skipped: set[str] = set()

    def on_stage(stage: str, status: str, rec: dict) -> None:
        i = stages.index(stage) + 1
        if status == "start":
            print(f"[{i}/{len(stages)}] {stage} ...", flush=True)
        elif status == "done":
            ran[stage] = rec["wall_s"]
            rest = [s for s in stages if s not in ran and s not in skipped]
            left = eta_s(ran, rest, cfg.parallel or 1)  # PipelineConfig sets the preset's
            eta = f"; about {left / 60:.0f} min left" if left is not None and rest else ""
            print(f"[{i}/{len(stages)}] {stage} done in {rec['wall_s']:.0f}s{eta}", flush=True)
        else:
            skipped.add(stage)
            print(f"[{i}/{len(stages)}] {stage} already done, skipped", flush=True)

    records = run_pipeline(cfg, on_stage)
    total = __import__("time").perf_counter() - t0
    print(f"\n{'stage':<20} {'status':<16} {'wall s':>8} {'peak MiB':>9}")
    for r in records:
        print(f"{r['stage']:<20} {r['status']:<16} {r['wall_s']:>8.1f} {r['peak_mib']:>9.0f}")
    gen1 = f", generation 1: {cfg.path('gen1', 'report.md')}" if cfg.incumbent else ""
    print(f"\ntotal {total:.0f}s; report: {cfg.path('report.md')}{gen1}")
    if args.serve:
        from glan_ray.pipeline import serve_models

        url = serve_models(cfg, args.serve_host, args.serve_port)
        print(f"serving the GLAN loop at {url} (OpenAPI docs at {url}/docs); Ctrl-C stops")
        try:
            while True:
                __import__("time").sleep(3600)
        except KeyboardInterrupt:
            from ray import serve

            serve.shutdown()
    return 0


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="run a Ray Tune sweep from a YAML file in tune_configs/",
        description="Sweep a model's training config with Ray Tune (ASHA + a search "
        "algorithm); writes results.csv/.md and best_config.yaml to the experiment directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("config", help="sweep YAML (see tune_configs/)")
    p.add_argument("--data", help="override base.data")
    p.add_argument("--out", help="override base.out")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a base training field (repeatable)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_tune)


def _run_tune(args: argparse.Namespace) -> int:
    from glan_ray.runtime import init_ray
    from glan_ray.train.tune import SweepConfig, run_sweep

    overrides = {k: v for k, v in {"data": args.data, "out": args.out}.items() if v}
    overrides.update(_parse_sets(args.set))
    sweep = SweepConfig.load(args.config, overrides)
    init_ray(args.address)
    summary = run_sweep(sweep)
    print(summary["table"].to_string(index=False))
    print(
        f"\nbest {summary['metric']} = {summary['best_value']:.4g}; "
        f"results and best_config.yaml in {summary['dir']}"
    )
    return 0


def _add_diagnose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="measure GLAN's premises on a log or a simulated world",
        description="Premise diagnostics (docs/evaluation.md): how much the day's earlier "
        "sessions predict the next one beyond the observation (history information), when a "
        "page's effect on usage arrives (delay profile), and whether the page explains the "
        "return beyond the state (return consistency). --data reads any sessions dataset in "
        "the schema; --world simulates a world's logging policy and also measures the hidden "
        "state's share, counterfactual page flips and the calibration targets. Writes "
        "diagnosis.json, diagnosis.md and PNGs under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a run or data directory (or URI) holding a sessions dataset")
    from glan_ray.sim.worlds import parse_world

    src.add_argument("--world", type=parse_world,
                     help=f"a simulated world to diagnose: {WORLD_HELP}")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="world seed / the split's seed")
    p.add_argument(
        "--users", type=int, default=8000, help="--world: users simulated (history, delay)"
    )
    p.add_argument("--days", type=int, default=10, help="--world: days (3 burn-in days dropped)")
    p.add_argument(
        "--max-user-days",
        type=int,
        default=20_000,
        help="--data: diagnose a random sample of whole users of about this many user-days",
    )
    p.add_argument(
        "--consistency-users",
        type=int,
        default=20_000,
        help="--world: users simulated for the return consistency (its figure is small)",
    )
    p.add_argument("--splits", type=int, default=3, help="splits averaged for consistency")
    p.add_argument("--address", help="Ray cluster address (--data; default: local Ray)")
    p.set_defaults(func=_run_diagnose)


def _run_diagnose(args: argparse.Namespace) -> int:
    from glan_ray.diagnose.report import diagnose_data, diagnose_world, markdown, write

    for name in ("users", "days", "max_user_days", "splits", "consistency_users"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.days < 4 and args.world:
        raise ValueError(f"--days must be >= 4 (3 burn-in days are dropped); got {args.days}")
    if args.world:
        d = diagnose_world(args.world, seed=args.seed, users=args.users, days=args.days,
                           consistency_splits=args.splits,
                           consistency_users=args.consistency_users)  # fmt: skip
    else:
        from glan_ray.runtime import init_ray

        init_ray(args.address)
        d = diagnose_data(args.data, max_user_days=args.max_user_days, seed=args.seed,
                          consistency_splits=args.splits)  # fmt: skip
    path = write(d, args.out)
    print(markdown(d, []).split("\n## History")[0])
    print(f"report: {path}")
    return 0


def _add_app_spec(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app-spec",
        help="check an app specification (app.yaml) and summarise it",
        description="Read an app specification (docs/apps.md: the pages, the profile, "
        "statistics and context features, the session gap, the drop-off threshold, the "
        "reward), check it and print its pages, its features per group, the observation's "
        "size and the spec's fingerprint. An invalid file exits with status 2 and an error "
        "naming the field. glan_ray/apps/plpm.yaml is the simulator's own app.",
    )
    p.add_argument("file", metavar="FILE", help="the app specification (YAML)")
    p.set_defaults(func=_run_app_spec)


def _run_app_spec(args: argparse.Namespace) -> int:
    from glan_ray.apps import load_spec

    print(load_spec(args.file).summary())
    return 0


BAD_EVENTS_EXIT = 3
"""``glan-ray ingest``'s exit status when bad events refuse the input (2: a usage error)."""


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="turn an app's raw page-visit events into its datasets (Ray Data)",
        description="Read raw page-visit events (Parquet or CSV, a file or directory, local, "
        "s3:// or gs://; one row per visit: user_id, ts, page, dwell_s, optional views, "
        "landing, propensity, treatment, profile fields and context inputs; docs/ingest.md), "
        "check every event, sessionize each user's visits with the spec's session gap and "
        "write the daily, sessions, transitions, trajectories (and rct when events carry a "
        "treatment) datasets under --out, sized by the app spec, with manifest.json. Bad "
        "events refuse the whole input with a report naming each column, issue and row "
        "count (exit status 3) unless --quarantine sets them aside.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--spec", required=True, help="the app specification (YAML, docs/apps.md)")
    p.add_argument("--events", required=True, help="events file or directory (or URI)")
    p.add_argument("--out", required=True, help="output run directory (or URI)")
    p.add_argument("--users", help="table of the spec's profile fields keyed by user_id")
    p.add_argument(
        "--quarantine",
        metavar="PATH",
        help="write bad events (with a 'reason' column) to this directory as Parquet and "
        "ingest the rest; default: refuse the input",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--format", choices=["parquet", "csv"], help="default: from the file names")
    p.add_argument("--partitions", type=int, help="parts to write (default: 1 per 250k events)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glan_ray import storage
    from glan_ray.apps import load_spec
    from glan_ray.ingest import BadEventsError, ingest
    from glan_ray.runtime import init_ray

    spec = load_spec(args.spec)
    for path in (args.events, args.users):
        if path is not None and not storage.exists(path):  # before Ray starts
            raise FileNotFoundError(f"no such file or directory: {path}")
    init_ray(args.address)
    try:
        with tqdm(unit="event", desc="ingest", disable=None) as bar:
            res = ingest(spec, args.events, args.out, users=args.users,
                         quarantine=args.quarantine, overwrite=args.overwrite, fmt=args.format,
                         partitions=args.partitions, progress=_done_of_total(bar))  # fmt: skip
    except BadEventsError as e:
        print(f"glan-ray ingest: bad events: {e}", file=sys.stderr)
        return BAD_EVENTS_EXIT
    print(f"ingested {res.ingested} of {res.events} events of {res.users} users "
          f"(days {res.days[0]}..{res.days[1]}) in {res.seconds:.1f} s "
          f"({res.events_per_s:,.0f} events/s) into {res.out}")  # fmt: skip
    for name, n in res.rows.items():
        print(f"  {name:<13}{n:>10} rows")
    if res.quarantined:
        print(f"quarantined {res.quarantined} events in {args.quarantine}:")
        for prob in res.bad:
            print(f"  {prob}")
    for d in res.defaults:
        print(f"default: {d}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glan-ray",
        description="Personalized landing-page modeling on Ray: simulate, train, evaluate, serve.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level of the library")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate(sub)
    _add_train(sub)
    _add_label(sub)
    _add_tune(sub)
    _add_evaluate(sub)
    _add_diagnose(sub)
    _add_pipeline(sub)
    _add_app_spec(sub)
    _add_ingest(sub)
    cli_logs.add_traffic(sub)
    cli_logs.add_logs_to_datasets(sub)
    cli_sweep.add_sweep_worlds(sub)
    cli_events.add_sim_events(sub)
    cli_events.add_gen_events(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        # Client mistakes get a one-line error and exit code 2, not a traceback.
        print(f"glan-ray {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
