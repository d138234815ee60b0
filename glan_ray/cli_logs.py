"""The deployment-loop commands of ``glan-ray``: ``traffic`` (simulated users against a running
Serve app, or the same days in-process) and ``logs-to-datasets`` (a decision log, flushed from
Serve's state store or written by the simulator, into the training datasets)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger("glan_ray")


def add_traffic(sub: argparse._SubParsersAction) -> None:
    from glan_ray.serving.traffic import TrafficConfig

    d = TrafficConfig()
    p = sub.add_parser(
        "traffic",
        help="play simulated users against a running Serve app (loopback only)",
        description="Users [--first-user, +--users) are burned in for --burn-in-days under the "
        "logging heuristic in-process, then play --days days through the app at --url: each "
        "day start, app entry and session end is a request, the page the app answers is the "
        "page the simulator plays. Bounded by --max-rps and --max-seconds; 5xx and lost "
        "connections are retried with the same event id. --in-process ARM plays the same days "
        "with that arm in-process instead (no HTTP), e.g. to compare. --sim-log writes the "
        "simulator's record of the played days as a decision log (glan-ray logs-to-datasets "
        "reads it); the app's own log is in its state store (logs-to-datasets --flush).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--url", default=d.url, help="the app's base URL (its route prefix included)")
    p.add_argument("--users", type=int, default=100, help="number of simulated users")
    p.add_argument("--first-user", type=int, default=0, help="id of the first user")
    p.add_argument("--days", type=int, default=1, help="days played through the app")
    p.add_argument("--burn-in-days", type=int, default=7,
                   help="days played first in-process under the logging heuristic")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="SimConfig seed (the simulated world)")
    from glan_ray.sim.worlds import parse_world

    p.add_argument("--world", default="default", type=parse_world,
                   help="simulated world of the users (docs/simulator.md; e.g. premise or "
                   "premise:strength=0.5)")  # fmt: skip
    p.add_argument("--max-rps", type=float, default=d.max_rps, help="most requests per second")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help="wall-clock budget of the run (s)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight")
    p.add_argument(
        "--in-process",
        metavar="ARM",
        help="play the days with this arm in-process instead of through the app",
    )
    p.add_argument("--models", help="models directory of --in-process ARM")
    p.add_argument(
        "--sim-log",
        metavar="DIR",
        help="write the simulator's record of the played days as a decision log",
    )
    p.set_defaults(func=run_traffic)


def run_traffic(args: argparse.Namespace) -> int:
    from glan_ray.data import decision_log as dlog
    from glan_ray.serving.traffic import (
        ServeClient,
        ServePolicy,
        TrafficConfig,
        TrafficError,
        play,
    )
    from glan_ray.sim.worlds import world_config

    for name in ("users", "days"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.burn_in_days < 0 or args.first_user < 0:
        raise ValueError("--burn-in-days and --first-user must be >= 0")
    cfg = world_config(getattr(args, "world", "default"), seed=args.seed, block_size=args.users)
    client = None
    if args.in_process:
        from glan_ray.policy.registry import make_arm

        policy = make_arm(args.in_process, args.models, cfg)
    else:
        client = ServeClient(TrafficConfig(url=args.url, max_rps=args.max_rps,
                                           max_seconds=args.max_seconds,
                                           concurrency=args.concurrency))  # fmt: skip
        policy = ServePolicy(client)
    records: list[dlog.Record] = []
    sessions = 0
    try:
        for log in play(cfg, policy, args.first_user, args.users, args.days,
                        burn_in_days=args.burn_in_days):  # fmt: skip
            sessions += len(log.sessions.get("row", ()))
            if args.sim_log:
                records.extend(dlog.from_day_log(log, policy.name))
            logger.info("day %d: %d sessions so far", log.day, sessions)
    except TrafficError as e:
        print(f"glan-ray traffic: error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    out = {"users": args.users, "days": args.days, "sessions": sessions,
           "played": args.in_process or args.url}  # fmt: skip
    if client is not None:
        out.update(client.stats.summary())
    if args.sim_log:
        out["sim_log"] = dlog.write_log(args.sim_log, records)
    print(json.dumps(out, indent=2))
    return 0


def add_logs_to_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "logs-to-datasets",
        help="turn a decision log into the sessions/transitions/trajectories/daily datasets",
        description="Read a decision log (a .parquet file or a directory of them: Serve's, "
        "moved out of its state store by --flush, or the simulator's, from glan-ray traffic "
        "--sim-log), keep each event once (by user, endpoint, day and event id), and write "
        "the daily, sessions, transitions and trajectories datasets under --out, validated by "
        "glan_ray.schema. A session still open when the log was taken is counted and left "
        "out, never invented; value_true (only the simulator knows it) is null.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("log", help="decision log: a .parquet file or a directory of them")
    p.add_argument("--out", required=True, help="directory of the datasets")
    p.add_argument("--flush", metavar="STORE",
                   help="first move every log row of this state store (embedded, "
                   "sqlite:///path, redis://host:port/db) into LOG (a directory)")  # fmt: skip
    p.add_argument("--batch", type=int, default=50_000, help="log rows per flushed file")
    p.add_argument("--overwrite", action="store_true", help="replace datasets already in --out")
    p.set_defaults(func=run_logs_to_datasets)


def run_logs_to_datasets(args: argparse.Namespace) -> int:
    from glan_ray.data import decision_log as dlog

    flushed = None
    if args.flush:
        from glan_ray.serving.log import flush

        flushed = flush(args.flush, args.log, args.batch)
        logger.info("flushed %d log rows into %d file(s) under %s", flushed["rows"],
                    len(flushed["files"]), args.log)  # fmt: skip
    read = dlog.read_log(args.log)
    conv = dlog.to_datasets(read.records)
    dlog.write_datasets(conv, args.out, overwrite=args.overwrite, log=args.log,
                        log_files=read.files, log_rows=read.rows,
                        duplicates=read.duplicates)  # fmt: skip
    out = {"log": args.log, "files": read.files, "rows": read.rows,
           "duplicates_dropped": read.duplicates, "out": args.out, **conv.summary}  # fmt: skip
    if flushed is not None:
        out["flushed_rows"] = flushed["rows"]
    print(json.dumps(out, indent=2))
    return 0
