"""The ``glan-ray`` command line. Each stage is a sub-command with its own ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from glan_ray.sim.policies import SIM_POLICIES

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
    p.add_argument("--sim-config", metavar="YAML", help="YAML file of SimConfig fields to override")
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

    overrides = _load_mapping(args.sim_config) if args.sim_config else {}
    cfg = SimConfig.from_dict({**overrides, "seed": args.seed})
    opts = GenerateOptions(
        users=args.users,
        days=args.days,
        rct=args.rct,
        policy=args.policy,
        shard_users=args.shard_users,
        overwrite=args.overwrite,
    )
    init_ray(args.address, args.num_cpus)
    with tqdm(total=args.users * args.days, unit="user-day", desc="simulate", disable=None) as bar:
        summary = generate(cfg, opts, args.out, progress=bar.update)
    print(summary.format())
    print(f"\nwritten to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glan-ray",
        description="Personalized landing-page modeling on Ray: simulate, train, evaluate, serve.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level of the library")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate(sub)
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
