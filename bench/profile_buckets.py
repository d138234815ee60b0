"""Where a training path's time goes: a cProfile of its training thread put in buckets by file
(``bucket_profile``), and the CPU seconds of every process of this Ray instance by process group
(``CpuSampler``). Used by ``training_limits.py``."""

from __future__ import annotations

import os
import pstats
import sysconfig
import threading
import time
from typing import Any

MODEL = "model, loss & optimizer (torch)"
BUCKET_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ray Train: checkpoint & report",
     ("glan_ray/models/checkpoint.py", "/ray/train/", "/ray/tune/")),
    ("RLlib metrics", ("/ray/rllib/utils/metrics/",)),
    ("features & pre-learner",
     ("glan_ray/data/", "prelearner.py", "glan_ray/schema.py", "glan_ray/train/loop.py:__call__")),
    ("Ray Data", ("/ray/data/",)),
    (MODEL, ("glan_ray/rllib/cql/torch/", "glan_ray/rllib/dt/torch/", "glan_ray/models/",
             "glan_ray/nn/", "glan_ray/train/objectives.py", "glan_ray/train/lagrangian.py")),
    ("RLlib learner & algorithm bookkeeping", ("/ray/rllib/", "glan_ray/rllib/")),
    (MODEL, ("/torch/",)),
    ("train loop bookkeeping", ("glan_ray/train/loop.py", "training_limits.py")),
    ("Ray core", ("/ray/",)),
)  # fmt: skip
"""Profile buckets: the first whose substring is in ``<file>:<function>`` wins (so RLlib's and
Ray Train's own ``torch/`` folders are theirs, not the model's)."""
NEUTRAL = ("/numpy/", "/pyarrow/", "/tree/", "<frozen", "<string>", "/ray/_private/",
           "/ray/_raylet", "/ray/actor.py", "/ray/experimental/", "/ray/util/", "/ray/_common/",
           "/ray/cloudpickle/")  # fmt: skip
"""Files whose own time goes to their callers' buckets, as builtins (``~``) and the stdlib do:
Ray's core API (``ray.get`` and the like) counts for whoever calls it (Ray Data, Ray Train)."""
STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/")


def _is_neutral(file: str, stdlib: str = STDLIB) -> bool:
    path = file.replace(os.sep, "/")
    if path == "~" or any(n in path for n in NEUTRAL):
        return True
    return path.startswith(stdlib) and "site-packages" not in path


def bucket_of(key: tuple[str, int, str], stdlib: str = STDLIB) -> str | None:
    """The bucket of a profiled function ``(file, line, name)``; None for a neutral one."""
    file, _, func = key
    if _is_neutral(file, stdlib):
        return None
    where = f"{file.replace(os.sep, '/')}:{func}"
    return next((b for b, pats in BUCKET_RULES if any(p in where for p in pats)), "other")


def attribute(
    stats: dict, root: str = "other", stdlib: str = STDLIB
) -> list[tuple[Any, str, float]]:
    """(function, bucket, seconds of its own time in that bucket) from ``pstats.Stats().stats``
    (``{(file, line, name): (cc, nc, tt, ct, callers)}``, callers ``{key: (.., .., tt, ..)}``).

    A neutral function's own time is split over its callers in proportion to the time it spent
    when called from each, recursively up to the first caller with a bucket. A neutral function
    without callers was called by a frame entered before profiling began: its time goes to
    ``root`` (the loop that enabled the profiler); a cycle of neutral functions to ``other``.
    """
    memo: dict[Any, dict[str, float]] = {}

    def share(key: Any) -> dict[str, float]:
        if key in memo:
            return memo[key]
        b = bucket_of(key, stdlib)
        if b is not None:
            memo[key] = {b: 1.0}
            return memo[key]
        memo[key] = {"other": 1.0}  # what a cycle back to this function sees
        callers = {c: v[2] for c, v in stats.get(key, (0, 0, 0, 0, {}))[4].items() if c != key}
        total = sum(callers.values())
        if not callers:
            memo[key] = {root: 1.0}
        elif total > 0:
            out: dict[str, float] = {}
            for c, t in callers.items():
                for name, f in share(c).items():
                    out[name] = out.get(name, 0.0) + f * t / total
            memo[key] = out
        return memo[key]

    return [(key, name, v[2] * f) for key, v in stats.items() for name, f in share(key).items()]


def bucket_profile(stats: dict, root: str = "other", stdlib: str = STDLIB) -> dict[str, float]:
    """Seconds of own time per bucket (``attribute``), largest first."""
    totals: dict[str, float] = {}
    for _, name, t in attribute(stats, root, stdlib):
        totals[name] = totals.get(name, 0.0) + t
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _short(file: str) -> str:
    path = file.replace(os.sep, "/")
    for mark in ("site-packages/", "/glan-ray/", "/main/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path


def profile_summary(prof_path: str, updates: int, root: str, top: int = 3) -> dict[str, Any]:
    """Per bucket: seconds, share of the profiled thread, ms per update, and its ``top``
    functions by own time (a builtin such as a lock wait is named under its callers' bucket)."""
    stats = pstats.Stats(prof_path).stats
    total = sum(v[2] for v in stats.values()) or 1.0
    parts = attribute(stats, root)
    buckets: dict[str, Any] = {}
    for name, s in bucket_profile(stats, root).items():
        mine = sorted(((t, k) for k, b, t in parts if b == name), key=lambda x: -x[0])[:top]
        buckets[name] = {
            "s": round(s, 3),
            "share": round(s / total, 3),
            "ms_per_update": round(1e3 * s / updates, 3),
            "top": [f"{_short(f)}:{line}({fn}) {t:.3f}s" for t, (f, line, fn) in mine],
        }
    return {"profiled_s": round(total, 3), "updates": updates, "buckets": buckets}


class CpuSampler(threading.Thread):
    """CPU seconds of this process and its descendants (Ray's raylet, GCS, workers and actors),
    by process group, and the machine's busy CPU seconds, every ``interval`` s."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil, self.interval = psutil, interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float, dict[int, tuple[str, float]]]] = []

    @staticmethod
    def _group(p: Any) -> str:
        """driver, ``ray::<actor or task>`` (read each time: a worker renames itself when it
        becomes an actor), or the executable's name (raylet, gcs_server, ...)."""
        if p.pid == os.getpid():
            return "driver (this process)"
        cmd = " ".join(p.cmdline() or [p.name()])
        return cmd.split()[0].split(".")[0] if cmd.startswith("ray::") else p.name()

    def sample(self) -> None:
        ps, procs = self.psutil, {}
        me = ps.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                procs[p.pid] = (self._group(p), t.user + t.system)
            except ps.Error:
                continue
        m = ps.cpu_times()
        busy = sum(m) - m.idle - getattr(m, "iowait", 0.0)
        self.samples.append((time.time(), busy, procs))

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        self.sample()

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """Cores used per process group and by the whole machine from ``t0`` to ``t1``."""
        # from the last sample at or before t0 to the first at or after t1
        times = [s[0] for s in self.samples]
        i = max([k for k, t in enumerate(times) if t <= t0], default=0)
        j = min([k for k, t in enumerate(times) if t >= t1], default=len(times) - 1)
        inside = self.samples[i : max(j, i) + 1]
        first, last = inside[0], inside[-1]
        wall = max(last[0] - first[0], 1e-9)
        seen: dict[int, tuple[str, float]] = {}
        for _, _, procs in inside:  # the last value of each process, also of one that died
            seen.update(procs)
        groups: dict[str, float] = {}
        for pid, (name, cpu) in seen.items():
            start = first[2].get(pid, (name, 0.0))[1]
            groups[name] = groups.get(name, 0.0) + max(cpu - start, 0.0)
        ours = sum(groups.values())
        busy = (last[1] - first[1]) / wall
        return {
            "window_s": round(wall, 2),
            "cores_by_process": {k: round(v / wall, 3) for k, v in
                                 sorted(groups.items(), key=lambda kv: -kv[1]) if v > 0.01},
            "ray_and_driver_cores": round(ours / wall, 3),
            "machine_busy_cores": round(busy, 3),
            "outside_this_run_cores": round(max(busy - ours / wall, 0.0), 3),
        }  # fmt: skip
