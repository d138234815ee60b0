"""Benchmark of dataset generation (``glan_ray.data.generate``): throughput and memory by size.

Each size (in user-days, ``users = round(size / days)``) runs in a fresh subprocess with its own
local Ray. The child times ``generate`` (Ray start-up is reported apart) while a thread samples,
every 0.2 s, the memory of the driver plus every process of its Ray instance (descendants of the
driver, and any process whose command line names this Ray session's directory). The parent prints
a table and writes ``bench/results/simulate.json``. Run: ``python bench/simulate.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover
    sys.exit("bench/simulate.py needs psutil: pip install -e .[bench]")

MIB = 2**20
TARGET_SESSIONS_PER_MIN = 1_000_000


class MemorySampler(threading.Thread):
    """Peak memory of the driver and its Ray processes, sampled every ``interval`` seconds."""

    def __init__(self, session_dir: str | None, interval: float = 0.2, state: Any = None) -> None:
        super().__init__(daemon=True)
        self.session_dir, self.interval, self.state = session_dir, interval, state
        self.stop_event = threading.Event()
        self.peak: dict[str, float] = {}
        self.peak_breakdown: dict[str, float] = {}  # process name -> USS MiB at the peak
        self.last_breakdown: dict[str, float] = {}
        self.samples, self.busy_s, self.t0 = 0, 0.0, time.perf_counter()
        self.timeline: list[list[float]] = []  # [seconds, total USS MiB, object store MiB]

    def processes(self) -> list[psutil.Process]:
        me = psutil.Process()
        procs = {p.pid: p for p in [me, *me.children(recursive=True)]}
        if self.session_dir:
            for p in psutil.process_iter(["cmdline"]):
                if p.pid not in procs and self.session_dir in " ".join(p.info["cmdline"] or []):
                    procs[p.pid] = p
        return list(procs.values())

    def sample(self) -> dict[str, float]:
        s = {"uss": 0.0, "pss": 0.0, "rss": 0.0, "nprocs": 0.0}
        self.last_breakdown = {}
        for p in self.processes():
            try:
                m = p.memory_full_info()
                cmd = p.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            name = cmd[0] if cmd and cmd[0].startswith("ray::") else p.name()
            name = "driver" if p.pid == os.getpid() else name
            uss = getattr(m, "uss", m.rss) / MIB
            self.last_breakdown[name] = self.last_breakdown.get(name, 0.0) + uss
            s["uss"] += getattr(m, "uss", m.rss)
            s["pss"] += getattr(m, "pss", m.rss)
            s["rss"] += m.rss
            s["nprocs"] += 1
        s["driver_rss"] = psutil.Process().memory_info().rss
        s["store"] = s["spilled"] = 0.0
        if self.state is not None:  # Ray's own object store stats (internal API: best effort)
            from ray._private.internal_api import get_memory_info_reply

            with contextlib.suppress(Exception):
                st = get_memory_info_reply(self.state, timeout_seconds=5).store_stats
                s["store"], s["spilled"] = st.object_store_bytes_used, st.spilled_bytes_total
        return s

    def update(self) -> None:
        t0 = time.thread_time()
        sample = self.sample()
        self.busy_s += time.thread_time() - t0  # CPU time the sampler itself takes
        if sample["uss"] > self.peak.get("uss", 0.0):
            self.peak_breakdown = dict(sorted(self.last_breakdown.items(), key=lambda x: -x[1]))
        for k, v in sample.items():
            self.peak[k] = max(self.peak.get(k, 0.0), v)
        self.samples += 1
        t = time.perf_counter() - self.t0
        self.timeline.append(
            [round(t, 2), round(sample["uss"] / MIB), round(sample["store"] / MIB)]
        )

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.update()


def run_one(size: int, days: int, num_cpus: int, out: str, interval: float) -> dict[str, Any]:
    """Child process: start Ray, generate ``size`` user-days into ``out``, measure."""
    import numpy as np
    import ray

    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.runtime import init_ray
    from glan_ray.sim.config import SimConfig

    users = max(1, round(size / days))
    t0 = time.perf_counter()
    init_ray(num_cpus=num_cpus)
    init_s = time.perf_counter() - t0
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    state = None
    with contextlib.suppress(Exception):
        from ray._private.internal_api import get_state_from_address

        state = get_state_from_address(ray.get_runtime_context().gcs_address)
    sampler = MemorySampler(session_dir, interval, state)
    idle = sampler.sample()
    sampler.t0 = time.perf_counter()
    sampler.start()
    load0, cpu0 = os.getloadavg()[0], psutil.cpu_times()
    t0 = time.perf_counter()
    summary = generate(SimConfig(seed=0), GenerateOptions(users=users, days=days), out)
    wall = time.perf_counter() - t0
    cpu1 = psutil.cpu_times()
    busy = sum(cpu1) - sum(cpu0) - (cpu1.idle - cpu0.idle)
    sampler.stop_event.set()
    sampler.join()
    sampler.update()
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    peak = sampler.peak
    result = {
        "size": size,
        "users": users,
        "days": days,
        "user_days": summary.user_days,
        "sessions": summary.sessions,
        "rows": summary.rows,
        "ray_init_s": init_s,
        "generate_s": wall,
        "sessions_per_s": summary.sessions / wall,
        "sessions_per_min": 60 * summary.sessions / wall,
        "user_days_per_s": summary.user_days / wall,
        "peak_total_uss_mib": peak["uss"] / MIB,
        "peak_total_pss_mib": peak["pss"] / MIB,
        "peak_total_rss_mib": peak["rss"] / MIB,
        "peak_driver_rss_mib": peak["driver_rss"] / MIB,
        "peak_object_store_mib": peak["store"] / MIB,
        "object_store_spilled_mib": peak["spilled"] / MIB,
        "idle_total_uss_mib": idle["uss"] / MIB,
        "max_processes": int(peak["nprocs"]),
        # Whole-machine load while generating: other jobs on the box skew the timings.
        "loadavg_1m_start_end": [load0, os.getloadavg()[0]],
        "machine_cpu_busy_frac": busy / max(sum(cpu1) - sum(cpu0), 1e-9),
        "memory_samples": sampler.samples,
        "sampler_interval_s": interval,
        "sampler_cpu_s": sampler.busy_s,
        "peak_uss_by_process_mib": sampler.peak_breakdown,
        "timeline": sampler.timeline,
        "disk_bytes": disk,
        "summary": summary.to_dict(),
        "versions": {"ray": ray.__version__, "numpy": np.__version__},
    }
    ray.shutdown()
    return result


def fmt_table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'user-days':>10} {'sessions':>11} {'gen s':>8} {'init s':>6} {'sess/s':>9} "
        f"{'sess/min':>11} {'peak USS':>9} {'peak PSS':>9} {'driver':>7} {'store':>6} "
        f"{'disk MiB':>8}  rows"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        rows = " ".join(f"{k}={v:,}" for k, v in r["rows"].items())
        lines.append(
            f"{r['user_days']:>10,} {r['sessions']:>11,} {r['generate_s']:>8.1f} "
            f"{r['ray_init_s']:>6.1f} {r['sessions_per_s']:>9,.0f} {r['sessions_per_min']:>11,.0f} "
            f"{r['peak_total_uss_mib']:>9,.0f} {r['peak_total_pss_mib']:>9,.0f} "
            f"{r['peak_driver_rss_mib']:>7,.0f} {r['peak_object_store_mib']:>6,.0f} "
            f"{r['disk_bytes'] / MIB:>8,.1f}  {rows}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="user-days, comma-separated")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.2, help="memory sampling period (s)")
    ap.add_argument("--out-dir", default=None, help="parent of the scratch output (default /tmp)")
    ap.add_argument("--results", default="bench/results/simulate.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one is not None:  # child: one size, result as JSON to --result-file
        out = os.path.join(args.out_dir or tempfile.gettempdir(), "data")
        res = run_one(args.one, args.days, args.num_cpus, out, args.interval)
        with open(args.result_file, "w") as f:
            json.dump(res, f)
        return 0

    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        scratch = tempfile.mkdtemp(prefix=f"glan-bench-{size}-", dir=args.out_dir)
        res_file = os.path.join(scratch, "result.json")
        cmd = [sys.executable, __file__, "--one", str(size), "--days", str(args.days)]
        cmd += ["--num-cpus", str(args.num_cpus), "--interval", str(args.interval)]
        cmd += ["--out-dir", scratch, "--result-file", res_file]
        print(f"[bench] {size:,} user-days: running in a fresh process ...", flush=True)
        try:
            subprocess.run(cmd, env=env, check=True)
            with open(res_file) as f:
                r = json.load(f)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        results.append(r)
        print(
            f"[bench] {size:,} user-days: {r['sessions']:,} sessions in {r['generate_s']:.1f} s "
            f"({r['sessions_per_min']:,.0f}/min), peak {r['peak_total_uss_mib']:,.0f} MiB",
            flush=True,
        )

    print("\n" + fmt_table(results))
    big, small = results[-1], results[0]
    ratio = big["peak_total_uss_mib"] / small["peak_total_uss_mib"]
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "machine": {
            "nproc": os.cpu_count(),
            "total_memory_gib": psutil.virtual_memory().total / 2**30,
            "platform": platform.platform(),
            "python": platform.python_version(),
            **big["versions"],
        },
        "num_cpus": args.num_cpus,
        "days": args.days,
        "target_sessions_per_min": TARGET_SESSIONS_PER_MIN,
        "target_met": {
            str(r["size"]): r["sessions_per_min"] >= TARGET_SESSIONS_PER_MIN for r in results
        },
        "memory_ratio_largest_vs_smallest": ratio,
        # the smallest sizes do not fill the wave pipeline: compare the two largest as well
        "memory_ratio_largest_vs_previous": big["peak_total_uss_mib"]
        / results[max(len(results) - 2, 0)]["peak_total_uss_mib"],
        "memory_flat": ratio < 1.5,
        "results": results,
    }
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(report, f, indent=2)
    met = big["sessions_per_min"] >= TARGET_SESSIONS_PER_MIN
    print(
        f"\ntarget {TARGET_SESSIONS_PER_MIN:,} sessions/min at {big['user_days']:,} user-days: "
        f"{'met' if met else 'NOT met'}; peak memory largest/smallest size: {ratio:.2f} "
        f"({'flat' if ratio < 1.5 else 'grows'}); results in {args.results}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
