"""Load test of the Serve app's app-entry endpoint (loopback only, bounded), next to an in-process
call of the same models (the limit).

Starts the app from ``--models`` on a local Ray, opens ``--users`` user-days, then sends
``--requests`` entry/session-end pairs per concurrency level (1, 8, 32) from a thread pool and
reports p50/p99 latency and requests/s of the entry endpoint, and the error count. The in-process
baseline times ``window_logits`` of the same DT on the same inputs. Targets on 2 cores: p50 ≤ 10
ms, p99 ≤ 30 ms, ≥ 300 req/s, zero errors for 10k requests at concurrency 32. Writes
``bench/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES = {
    **{k: 0 for k in ("age", "region", "activity", "weekday")},
    **{k: 1.0 for k in ("social_degree", "sessions_7d", "sessions_30d")},
    "usage_7d": 900.0,
    "usage_30d": 900.0,
    **{
        k: [1.0, 1.0, 1.0]
        for k in ("page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d")
    },
    "seq_sessions": [4.0] * 30,
    "seq_usage": [900.0] * 30,
}


def _percentiles(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def run_level(url: str, concurrency: int, n_requests: int, users: int) -> dict:
    """Each worker owns users; one request = an entry then its session end (state stays valid)."""
    lat, errors, lock = [], 0, threading.Lock()
    obs = [0.1] * 28
    counter = iter(range(n_requests))

    def worker(wid: int) -> None:
        nonlocal errors
        s = requests.Session()
        mine = [u for u in range(users) if u % concurrency == wid] or [wid % users]
        i = 0
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            uid = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            r = s.post(
                f"{url}/users/{uid}/entry", json={"event_id": f"e{k}", "obs": obs, "hour": 12}
            )
            dt = time.perf_counter() - t0
            r2 = s.post(
                f"{url}/users/{uid}/session_end",
                json={
                    "event_id": f"s{k}",
                    "video_views": [1, 0, 0],
                    "n_switches": 0,
                    "usage_time": 60.0,
                },
            )
            with lock:
                lat.append(dt)
                errors += (r.status_code != 200) + (r2.status_code != 200)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "errors": errors,
        "entry_req_per_s": n_requests / wall,
        **_percentiles(lat),
    }


def in_process(models: str, n: int = 500) -> dict:
    import torch

    from glan_ray.policy.glan import window_logits
    from glan_ray.train.checkpoint import load_checkpoint

    net, _, _ = load_checkpoint(os.path.join(models, "dt"))
    torch.set_num_threads(1)
    lat = []
    for t in range(n):
        k = t % 8
        t0 = time.perf_counter()
        window_logits(
            net,
            np.array([900.0]),
            np.full((1, k), 60.0),
            np.zeros((1, k, 28), np.float32),
            np.zeros((1, k), np.int64),
            np.array([k]),
            np.full((1, 28), 0.1, np.float32),
            3600.0,
        )
        lat.append(time.perf_counter() - t0)
    return _percentiles(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/demo/models")
    ap.add_argument("--requests", type=int, default=2000, help="per concurrency level")
    ap.add_argument("--big", type=int, default=10_000, help="requests of the concurrency-32 run")
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--results", default=os.path.join(HERE, "results", "serve_load.json"))
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray import serve

    from glan_ray.runtime import init_ray
    from glan_ray.serving.app import build_app

    init_ray(num_cpus=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"models": args.models}), name="glan", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    for u in range(args.users):
        r = requests.post(
            f"{url}/users/{u}/day", json={"event_id": "d", "day": 0, "features": FEATURES}
        )
        r.raise_for_status()
    out = {"in_process_dt": in_process(args.models), "levels": []}
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    for c in (1, 8, 32):
        n = args.big if c == 32 else args.requests
        res = run_level(url, c, n, args.users)
        print(json.dumps(res), flush=True)
        out["levels"].append(res)
        with open(args.results, "w") as f:  # after every level, so a stopped run keeps its figures
            json.dump(out, f, indent=1)
    serve.shutdown()
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
