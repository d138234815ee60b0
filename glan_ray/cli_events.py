"""The raw-event commands of ``glan-ray``: ``sim-events`` (a simulated run's datasets written as
raw page-visit events, for the round trip) and ``gen-events`` (a synthetic app of any spec,
e.g. the 4-page ``glan_ray/apps/fourpage.yaml``). ``glan-ray ingest`` reads what they write
(docs/ingest.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from importlib import resources

logger = logging.getLogger("glan_ray")


def packaged_spec(name: str) -> str:
    """The path of a spec shipped in ``glan_ray/apps`` (``plpm`` or ``fourpage``)."""
    return str(resources.files("glan_ray.apps").joinpath(f"{name}.yaml"))


def add_sim_events(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim-events",
        help="write a simulated run's sessions as raw page-visit events",
        description="Read the sessions (and rct) datasets of a simulated run (the --out of "
        "glan-ray simulate, or a pipeline run's data/) and write one event row per page visit, "
        "as glan-ray ingest reads "
        "them: OUT/events/*.parquet, the profile per user as OUT/users.parquet (ingest "
        "--users), the sessions the export delayed as OUT/shifts.parquet and a summary as "
        "OUT/export.json. The simulator's sessions take no time, so a session starting less "
        "than --gap-s after the user's previous session ended is delayed to start exactly "
        "--gap-s after it (its hour moves); ingest the events with a spec whose session_gap_s "
        "is --gap-s (docs/ingest.md, 'Round trip').",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True,
                   help="the simulated datasets (glan-ray simulate's --out)")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (local or s3:// / gs://)")
    p.add_argument("--spec", default=packaged_spec("plpm"),
                   help="app spec giving the page names (the simulator's: plpm.yaml)")  # fmt: skip
    p.add_argument("--gap-s", type=float, default=None,
                   help="least seconds between a user's sessions (default: the spec's "
                   "session_gap_s)")  # fmt: skip
    p.add_argument("--epoch-day", type=int, default=None,
                   help="UTC day (days since 1970-01-01) of simulated day 0 (default: the "
                   "Monday 2026-01-05 moved to the run's start_weekday)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing events")
    p.set_defaults(func=run_sim_events)


def run_sim_events(args: argparse.Namespace) -> int:
    from glan_ray import storage
    from glan_ray.apps import load_spec
    from glan_ray.data.sim_events import export_run
    from glan_ray.sim.events import EventExport, epoch_day

    spec = load_spec(args.spec)
    day0 = args.epoch_day
    if day0 is None:
        manifest = storage.join(args.data, "manifest.json")
        cfg = storage.read_json(manifest).get("sim_config", {}) if storage.exists(manifest) else {}
        day0 = epoch_day(int(cfg.get("start_weekday", 0)))
    opts = EventExport(pages=spec.pages, epoch_day=day0,
                       gap_s=spec.session_gap_s if args.gap_s is None else args.gap_s)  # fmt: skip
    summary = export_run(args.data, args.out, opts, overwrite=args.overwrite)
    print(json.dumps(dataclasses.asdict(summary), indent=1))
    return 0


def add_gen_events(sub: argparse._SubParsersAction) -> None:
    from glan_ray.sim.app_generator import AppWorld

    d = AppWorld()
    p = sub.add_parser(
        "gen-events",
        help="write raw page-visit events of a synthetic app of any spec",
        description="Play a synthetic world of --users users for --days days in the app of "
        "--spec (its pages, profile fields, context inputs, drop-off threshold, session gap) "
        "and write one event row per page visit: OUT/events/*.parquet (one file per day), "
        "OUT/users.parquet (the profile, ingest --users) and OUT/generate.json. A logging "
        "policy with recorded propensities picks the landing pages, a --rct-share of user-days "
        "is randomised (treatment), and the landing page moves each user's dwell, drop-off and "
        "return (docs/ingest.md, 'A synthetic app'). Seeded: the same seed, the same events.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--spec", default=packaged_spec("fourpage"), help="the app spec (YAML)")
    p.add_argument("--out", required=True, help="output directory (local or s3:// / gs://)")
    p.add_argument("--users", type=int, default=d.users, help="number of users")
    p.add_argument("--days", type=int, default=d.days, help="number of days")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every draw")
    p.add_argument("--rct-share", type=float, default=d.rct_share,
                   help="share of user-days randomised")  # fmt: skip
    p.add_argument("--explore", type=float, default=d.explore,
                   help="the logging policy's uniform share")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing events")
    p.set_defaults(func=run_gen_events)


def run_gen_events(args: argparse.Namespace) -> int:
    from glan_ray.apps import load_spec
    from glan_ray.sim.app_generator import AppWorld, write_events

    spec = load_spec(args.spec)
    world = AppWorld(users=args.users, days=args.days, seed=args.seed, rct_share=args.rct_share,
                     explore=args.explore)  # fmt: skip
    summary = write_events(spec, world, args.out, overwrite=args.overwrite)
    logger.info("%d events of %d sessions under %s", summary.visits, summary.sessions, args.out)
    print(json.dumps(dataclasses.asdict(summary), indent=1))
    return 0


__all__ = ["add_gen_events", "add_sim_events", "packaged_spec"]
