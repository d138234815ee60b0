"""Ingest throughput and memory: ``glan_ray.ingest.ingest`` (``glan-ray ingest``) on 1M and 10M
raw events of the synthetic 4-page app.

Per size, in a fresh process with its own local Ray (``--num-cpus``, 2 by default):

1. the events are generated first, in a process of their own (``sim.app_generator``,
   ``--spec`` default ``glan_ray/apps/fourpage.yaml``; users sized from a one-day pilot so that
   ``--days`` days give about the size; neither timed nor in the memory of the ingest's
   process);
2. ``ingest`` runs on them (with the users table) while a thread samples memory every
   ``--interval`` seconds (``MemorySampler`` of ``bench/simulate.py``): the driver's RSS, the
   sum of RSS over Ray's worker processes (``ray::`` tasks and idle workers), and the total
   USS/PSS/RSS over the driver and every process of its Ray;
3. reported: events, seconds, events/s and events/min (target: ≥ 1,000,000 events/min on 2
   CPUs), rows per dataset, and the peaks.

``--one-file`` writes each size's events as one Parquet file (row groups of 1,048,576 events)
instead of one file per day: the ingest's pieces then split a single file by row groups.
``--csv`` writes them as CSV (read with Ray Data's ``read_csv``, a task per file).

Writes ``bench/results/ingest_throughput.json`` (``--results``) and prints a table, with the
ratio of peak memory at the largest vs the smallest size (``memory_flat``: at most
``FLAT_RATIO``, 1.2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulate import MIB, MemorySampler, psutil  # bench/simulate.py

TARGET_EVENTS_PER_MIN = 1_000_000
FLAT_RATIO = 1.2
"""Peak total USS at the largest size over the smallest that counts as flat."""


class WorkerSampler(MemorySampler):
    """``MemorySampler`` plus the summed RSS of Ray's worker processes (``workers_rss``)."""

    def sample(self) -> dict[str, float]:
        s = super().sample()
        rss = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied,
                                     psutil.ZombieProcess):  # fmt: skip
                cmd = " ".join(p.cmdline())
                if cmd.startswith("ray::") or "default_worker.py" in cmd:
                    rss += p.memory_info().rss
        s["workers_rss"] = rss
        return s


def make_events(spec_path: str, size: int, days: int, seed: int, out: str, one_file: bool = False,
                csv: bool = False) -> dict[str, Any]:  # fmt: skip
    """Generate about ``size`` events over ``days`` days under ``out``; the generator's figures.
    ``one_file``: the days' files rewritten as one Parquet file (pyarrow's default row groups of
    1,048,576 rows), the layout of a log exported whole."""
    from glan_ray.apps import load_spec
    from glan_ray.sim.app_generator import AppWorld, generate_events, write_events

    spec = load_spec(spec_path)
    pilot_users = 5000
    pilot = next(generate_events(spec, AppWorld(users=pilot_users, days=1, seed=seed)))[1]
    per_user_day = max(pilot.visits / pilot_users, 1e-3)
    users = max(1, math.ceil(size / days / per_user_day))
    t0 = time.perf_counter()
    summary = write_events(spec, AppWorld(users=users, days=days, seed=seed), out)
    gen = {"users": users, "days": days, "events": summary.visits, "sessions": summary.sessions,
           "generate_s": time.perf_counter() - t0, "layout": "one file per day"}  # fmt: skip
    if one_file:
        import pyarrow.parquet as pq

        events = os.path.join(out, "events")
        table = pq.read_table(events)
        shutil.rmtree(events)
        os.makedirs(events)
        pq.write_table(table, os.path.join(events, "events.parquet"))
        meta = pq.read_metadata(os.path.join(events, "events.parquet"))
        gen["layout"] = f"one file, {meta.num_row_groups} row groups"
    if csv:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        events = os.path.join(out, "events")
        for name in sorted(os.listdir(events)):
            path = os.path.join(events, name)
            pacsv.write_csv(pq.read_table(path), path[: -len(".parquet")] + ".csv")
            os.remove(path)
        gen["layout"] += ", CSV"
    return gen


def run_one(args: argparse.Namespace, size: int, scratch: str) -> dict[str, Any]:
    """Child process: start Ray, ingest the events ``--generate`` wrote with the sampler
    running, measure."""
    import ray

    from glan_ray.apps import load_spec
    from glan_ray.ingest import ingest
    from glan_ray.runtime import init_ray

    gen_dir, out = os.path.join(scratch, "gen"), os.path.join(scratch, "ingested")
    with open(os.path.join(scratch, "generated.json")) as f:
        gen = json.load(f)
    t0 = time.perf_counter()
    init_ray(num_cpus=args.num_cpus)
    init_s = time.perf_counter() - t0
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    sampler = WorkerSampler(session_dir, args.interval)
    idle = sampler.sample()
    sampler.t0 = time.perf_counter()
    sampler.start()
    load0 = os.getloadavg()[0]
    res = ingest(load_spec(args.spec), os.path.join(gen_dir, "events"), out,
                 users=os.path.join(gen_dir, "users.parquet"))  # fmt: skip
    wall = res.seconds
    sampler.stop_event.set()
    sampler.join()
    sampler.update()
    peak = sampler.peak
    result = {
        "size": size, **gen, "ray_init_s": init_s, "ingest_s": wall,
        "events_per_s": res.events / wall, "events_per_min": 60 * res.events / wall,
        "rows": res.rows, "ingest_users": res.users, "bad_events": len(res.bad),
        "peak_driver_rss_mib": peak["driver_rss"] / MIB,
        "peak_workers_rss_mib": peak["workers_rss"] / MIB,
        "peak_total_uss_mib": peak["uss"] / MIB, "peak_total_pss_mib": peak["pss"] / MIB,
        "peak_total_rss_mib": peak["rss"] / MIB, "idle_total_uss_mib": idle["uss"] / MIB,
        "idle_workers_rss_mib": idle["workers_rss"] / MIB,
        "max_processes": int(peak["nprocs"]), "peak_uss_by_process_mib": sampler.peak_breakdown,
        "loadavg_1m_start_end": [load0, os.getloadavg()[0]], "memory_samples": sampler.samples,
        "sampler_interval_s": args.interval, "timeline": sampler.timeline,
        "versions": {"ray": ray.__version__},
    }  # fmt: skip
    ray.shutdown()
    return result


def fmt_table(results: list[dict[str, Any]]) -> str:
    head = (f"{'events':>11} {'ingest s':>9} {'events/s':>10} {'events/min':>12} "
            f"{'driver RSS':>11} {'workers RSS':>12} {'total USS':>10}")  # fmt: skip
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r['events']:>11,} {r['ingest_s']:>9.1f} {r['events_per_s']:>10,.0f} "
                    f"{r['events_per_min']:>12,.0f} {r['peak_driver_rss_mib']:>8,.0f} MiB "
                    f"{r['peak_workers_rss_mib']:>8,.0f} MiB "
                    f"{r['peak_total_uss_mib']:>6,.0f} MiB")  # fmt: skip
    return "\n".join(rows)


def main() -> int:
    from glan_ray.cli_events import packaged_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000],
                    help="sizes in events (about; the generator sizes its users)")  # fmt: skip
    ap.add_argument("--spec", default=packaged_spec("fourpage"), help="the app spec (YAML)")
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--one-file", action="store_true",
                    help="the events as one Parquet file instead of one per day")  # fmt: skip
    ap.add_argument("--csv", action="store_true", help="the events as CSV files")
    ap.add_argument("--interval", type=float, default=0.5, help="memory sampling period (s)")
    ap.add_argument("--out-dir", default=None, help="parent of the scratch directories")
    ap.add_argument("--results", default="bench/results/ingest_throughput.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.generate is not None:  # child: the events of one size, under --scratch
        gen = make_events(args.spec, args.generate, args.days, args.seed,
                          os.path.join(args.scratch, "gen"), args.one_file, args.csv)  # fmt: skip
        with open(os.path.join(args.scratch, "generated.json"), "w") as f:
            json.dump(gen, f)
        return 0
    if args.one is not None:  # child: one size, result as JSON to --result-file
        res = run_one(args, args.one, args.scratch)
        with open(args.result_file, "w") as f:
            json.dump(res, f)
        return 0

    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    results = []
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
    for size in args.events:
        scratch = tempfile.mkdtemp(prefix=f"glan-ingest-{size}-", dir=args.out_dir)
        res_file = os.path.join(scratch, "result.json")
        common = ["--scratch", scratch, "--spec", args.spec, "--days", str(args.days),
                  "--seed", str(args.seed), *(["--one-file"] if args.one_file else []),
                  *(["--csv"] if args.csv else [])]  # fmt: skip
        cmd = [sys.executable, __file__, "--one", str(size), *common, "--result-file", res_file,
               "--num-cpus", str(args.num_cpus), "--interval", str(args.interval)]  # fmt: skip
        print(f"[bench] {size:,} events: generating, then ingesting in a fresh process ...",
              flush=True)  # fmt: skip
        try:
            subprocess.run([sys.executable, __file__, "--generate", str(size), *common], env=env,
                           check=True)  # fmt: skip
            subprocess.run(cmd, env=env, check=True)
            with open(res_file) as f:
                r = json.load(f)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        results.append(r)
        print(f"[bench] {r['events']:,} events in {r['ingest_s']:.1f} s "
              f"({r['events_per_min']:,.0f}/min), driver {r['peak_driver_rss_mib']:,.0f} MiB, "
              f"workers {r['peak_workers_rss_mib']:,.0f} MiB", flush=True)  # fmt: skip

    print("\n" + fmt_table(results))
    big, small = results[-1], results[0]
    ratio = big["peak_total_uss_mib"] / small["peak_total_uss_mib"]
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "total_memory_gib": psutil.virtual_memory().total / 2**30,
                    "python": platform.python_version(), **big["versions"]},
        "num_cpus": args.num_cpus, "spec": args.spec, "days": args.days,
        "target_events_per_min": TARGET_EVENTS_PER_MIN,
        "target_met": {str(r["events"]): r["events_per_min"] >= TARGET_EVENTS_PER_MIN
                       for r in results},
        "memory_ratio_largest_vs_smallest": ratio, "memory_flat": ratio <= FLAT_RATIO,
        "workers_rss_ratio_largest_vs_smallest": big["peak_workers_rss_mib"]
        / max(small["peak_workers_rss_mib"], 1e-9),
        "results": results,
    }  # fmt: skip
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(report, f, indent=2)
    met = big["events_per_min"] >= TARGET_EVENTS_PER_MIN
    print(f"\ntarget {TARGET_EVENTS_PER_MIN:,} events/min at {big['events']:,} events: "
          f"{'met' if met else 'NOT met'}; peak memory largest/smallest: {ratio:.2f} "
          f"({'flat' if ratio <= FLAT_RATIO else 'grows'}); results in {args.results}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
