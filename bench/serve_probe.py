"""The stranger's probe (issue 31 item 7): the shipped ``serve/config.yaml`` started the way a
newcomer starts it, then 200 users x 11 requests (day start, 5 x entry + session end) at
concurrency 32 through port 8000, measured from outside (loopback only).

``serve run <repo>/serve/config.yaml`` (or ``sh <repo>/serve/run.sh``: ``--run-sh``) runs in
a scratch directory holding small random model exports under ``runs/demo/models`` (the
config's path; the models' size barely matters next to
Serve's plumbing on 2 cores), with ``--env KEY=VALUE`` added to its environment (none: the
plain default). ``--repo`` picks the code and config (a ``git worktree`` of an older commit
measures the "before": its directory goes first on ``PYTHONPATH``). The client is one asyncio +
aiohttp process with keep-alive connections, on the same machine. Reported: requests/s over all
requests, p50 / p99 latency, non-200 answers, the 1-minute load average before and after, and
what else was using the CPU (``ps``) when the run started. Results are appended to ``--results``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from serve_load import FEATURES  # noqa: E402  (the same day-start body as the load test)

REPO = os.path.dirname(HERE)
END = {"page_durations_s": [50.0, 0.0, 0.0], "video_views": [1, 0, 0], "n_switches": 0,
       "usage_time": 60.0, "exit_page": "featured"}  # fmt: skip


def write_models(out: str) -> None:
    """Small random exports of the models ``serve/config.yaml`` loads (as the tests' fixture)."""
    import pyarrow as pa
    import torch

    from glan_ray.data.features import SPECS, Normalizer, as_columns, feature_dims
    from glan_ray.data.tables import day_tables
    from glan_ray.models.checkpoint import save_checkpoint
    from glan_ray.models.cql import QNetConfig, QNetwork
    from glan_ray.models.dt import DecisionTransformer, DTConfig
    from glan_ray.models.registry import build_model, model_config
    from glan_ray.sim.baselines import LoggingPolicy
    from glan_ray.sim.config import SimConfig
    from glan_ray.sim.engine import simulate

    cfg = SimConfig(seed=3, block_size=100)
    tables: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, 0, 100, 2, LoggingPolicy(cfg), rct=True):
        for name, t in day_tables(log, rct=True).items():
            tables.setdefault(name, []).append(t)
    torch.manual_seed(0)
    for name in ("lrtg", "hrm", "isp", "am"):
        cols = as_columns(pa.concat_tables(tables[SPECS[name].dataset]).slice(0, 200))
        mc = model_config(name, feature_dims(name, cols), {})
        norm = Normalizer.fit([SPECS[name].build(cols)], SPECS[name].normalized)
        save_checkpoint(os.path.join(out, name), name, build_model(name, mc), mc, {}, norm)
    q = QNetwork(QNetConfig())
    save_checkpoint(os.path.join(out, "cql"), "cql", q, dataclasses.asdict(q.cfg), {}, None)
    dt = DecisionTransformer(DTConfig())
    save_checkpoint(os.path.join(out, "dt"), "dt", dt, dataclasses.asdict(dt.cfg), {}, None,
                    {"rtg_scale": 3600.0})  # fmt: skip


async def probe(url: str, users: int, first: int, sessions: int, conc: int) -> dict[str, Any]:
    """Each of ``conc`` workers plays whole users: day start, then ``sessions`` x (entry, end)."""
    import aiohttp

    lat: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(first, first + users))

    async def call(s: aiohttp.ClientSession, path: str, body: dict) -> None:
        t0 = time.perf_counter()
        async with s.post(f"{url}{path}", json=body) as r:
            await r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
        lat.append(time.perf_counter() - t0)

    async def worker(s: aiohttp.ClientSession) -> None:
        for u in queue:
            await call(s, f"/users/{u}/day", {"event_id": "d0", "day": 0, "features": FEATURES})
            for t in range(sessions):
                body = {"event_id": f"e{t}", "day": 0, "hour": 12.0, "live_count": 1}
                await call(s, f"/users/{u}/entry", body)
                await call(s, f"/users/{u}/session_end", {"event_id": f"s{t}", "day": 0, **END})

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(conc)))
        wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1e3
    return {"requests": len(lat), "wall_s": wall, "req_per_s": len(lat) / wall,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}  # fmt: skip


def _ready(url: str, limit_s: float) -> float:
    import requests

    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url}/readyz not 200 after {limit_s:.0f} s")


def _others() -> list[str]:
    out = subprocess.run(["ps", "aux", "--sort=-%cpu"], capture_output=True, text=True).stdout
    return out.splitlines()[1:8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=REPO, help="code + serve/config.yaml to run")
    ap.add_argument("--label", required=True, help="name of this run in the results")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for serve run")
    ap.add_argument("--run-sh", action="store_true", help="start it with sh serve/run.sh")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=5, help="entry + end pairs per user")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup-users", type=int, default=32)
    ap.add_argument("--results", default=os.path.join(HERE, "results", "serve_probe.json"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="serve_probe_")
    write_models(os.path.join(work, "runs", "demo", "models"))
    env = {**os.environ, "PYTHONPATH": os.path.abspath(args.repo)}
    env.update(dict(kv.split("=", 1) for kv in args.env))
    config = os.path.join(os.path.abspath(args.repo), "serve", "config.yaml")
    serve_bin = os.path.join(os.path.dirname(sys.executable), "serve")
    load0, others = os.getloadavg()[0], _others()
    cmd = [serve_bin, "run", config]
    if args.run_sh:
        cmd = ["sh", os.path.join(os.path.dirname(config), "run.sh")]
        env["PATH"] = os.path.dirname(serve_bin) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = "http://127.0.0.1:8000"
    try:
        ready_s = _ready(url, 300)
        asyncio.run(probe(url, args.warmup_users, 10**6, args.sessions, args.concurrency))
        res = asyncio.run(probe(url, args.users, 0, args.sessions, args.concurrency))
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # serve run shuts Serve and its Ray down
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    row = {"label": args.label, "command": " ".join(cmd[-2:]), "env": args.env,
           "repo": args.repo, "ready_s": ready_s,
           "users": args.users, "requests_per_user": 1 + 2 * args.sessions,
           "concurrency": args.concurrency, **res, "loadavg_1m_before": load0,
           "loadavg_1m_after": os.getloadavg()[0], "ps_at_start": others,
           "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    print(json.dumps(row))
    rows = []
    if os.path.exists(args.results):
        with open(args.results) as f:
            rows = json.load(f)
    rows.append(row)
    with open(args.results, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
