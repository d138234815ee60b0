"""The ingress replica killed mid-load (issue 31 item 2), through a shipped set-up: ``plain``
(``serve run serve/config.yaml``: Serve's Python proxy) or ``run.sh`` (``sh serve/run.sh``:
HAProxy with its request replays). 16 client threads play 100 users x (day start, 8 x entry +
session end) with same-id retries of every 5xx and lost connection; once 500 requests are in,
the ``Ingress`` replica's process is killed (SIGKILL, found in this run's own process tree, so
no other Ray on the machine is touched; Serve restarts the replica).
Reported: 5xx answers with and without ``Retry-After``, lost connections, and whether every
user's state holds exactly its 8 sessions (nothing lost, nothing applied twice). Loopback only;
the config is copied with a free port and HAProxy gets private ports and files, so it runs next
to other work. Results are appended to ``--results``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from serve_probe import END, FEATURES, write_models  # noqa: E402


def _ingress_pids(root: int) -> list[int]:
    """Processes under ``root`` whose command line names an ``Ingress`` replica."""
    parent, cmd = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd[int(pid)] = f.read().decode(errors="replace")
        except OSError:
            continue
        parent[int(pid)] = int(raw[raw.rindex(")") + 2 :].split()[1])
    out = []
    for pid, line in cmd.items():
        p = pid
        while p in parent and p != root:
            p = parent[p]
        if p == root and "ServeReplica" in line and "Ingress" in line:
            out.append(pid)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Retries a 5xx or a lost connection with the same body until it gets an answer < 500."""

    def __init__(self, url: str) -> None:
        self.url, self.lock = url, threading.Lock()
        self.sent = self.with_retry_after = self.lost = 0
        self.without: list[str] = []
        self.lost_why: list[str] = []

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for _ in range(200):
            try:
                r = requests.post(self.url + path, json=body, timeout=60)
            except requests.RequestException as e:
                with self.lock:
                    self.sent, self.lost = self.sent + 1, self.lost + 1
                    self.lost_why.append(f"{type(e).__name__}: {str(e)[-80:]}")
                time.sleep(0.2)
                continue
            with self.lock:
                self.sent += 1
                if r.status_code >= 500 and "Retry-After" in r.headers:
                    self.with_retry_after += 1
                elif r.status_code >= 500:
                    kind = r.headers.get("content-type", "")
                    self.without.append(f"{r.status_code} {kind} {r.text[:40]!r}")
            if r.status_code < 500:
                if r.status_code != 200:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
                return r.json()
            time.sleep(0.2)
        raise RuntimeError(f"{path} kept failing")

    def user(self, u: int, sessions: int) -> None:
        self.post(f"/users/{u}/day", {"event_id": "d", "day": 1, "features": FEATURES})
        for t in range(sessions):
            body = {"event_id": f"e{t}", "day": 1, "hour": 9.0, "live_count": 1}
            self.post(f"/users/{u}/entry", body)
            self.post(f"/users/{u}/session_end", {"event_id": f"s{t}", "day": 1, **END})


def run(setup: str, users: int = 100, sessions: int = 8, threads: int = 16) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="serve_kill_")
    write_models(os.path.join(work, "runs", "demo", "models"))
    with open(os.path.join(REPO, "serve", "config.yaml")) as f:
        config = yaml.safe_load(f)
    port = _free_port()
    config["http_options"]["port"] = port
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    env = {**os.environ, "GLAN_RAY_SERVE_CONFIG": path}
    env.update({f"RAY_SERVE_HAPROXY_{k}": os.path.join(work, v) for k, v in (
        ("CONFIG_FILE_LOC", "haproxy.cfg"), ("SOCKET_PATH", "admin.sock"),
        ("SERVER_STATE_BASE", ""), ("SERVER_STATE_FILE", "server-state"),
        ("METRICS_SOCKET_PATH", "metrics.sock"))})  # fmt: skip
    env.update(RAY_SERVE_HAPROXY_STATS_PORT=str(_free_port()),
               RAY_SERVE_HAPROXY_METRICS_PORT=str(_free_port()))  # fmt: skip
    cmd = ["sh", os.path.join(REPO, "serve", "run.sh")] if setup == "run.sh" else [
        os.path.join(os.path.dirname(sys.executable), "serve"), "run", path]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() - t0 > 300:
                raise TimeoutError("the app did not become ready in 300 s")
            time.sleep(0.5)
        time.sleep(3)  # HAProxy's health checks of the replica
        client = Client(url)
        with ThreadPoolExecutor(threads) as pool:
            futs = [pool.submit(client.user, u, sessions) for u in range(users)]
            while client.sent < 500:
                time.sleep(0.05)
            killed = _ingress_pids(proc.pid)
            if not killed:
                raise RuntimeError("no Ingress replica process found under serve run")
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            for f in futs:
                f.result()
        restarted = [p for p in _ingress_pids(proc.pid) if p not in killed]
        states = [requests.get(f"{url}/users/{u}/state", timeout=60).json() for u in range(users)]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return {"setup": setup, "requests": client.sent, "5xx_with_retry_after":
            client.with_retry_after, "5xx_without_retry_after": len(client.without),
            "lost_connections": client.lost, "examples": client.without[:3],
            "lost_examples": client.lost_why[:3],
            "killed_pids": killed, "restarted_pids": restarted,
            "every_user_has_its_sessions_once": all(
                s["sessions"] == sessions and not s["open_entry"] for s in states),
            "loadavg_1m": os.getloadavg()[0],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default="plain,run.sh")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--results", default=os.path.join(HERE, "results", "serve_kill.json"))
    args = ap.parse_args()
    rows = []
    if os.path.exists(args.results):
        with open(args.results) as f:
            rows = json.load(f)
    for setup in args.setups.split(","):
        row = run(setup, args.users, args.sessions)
        print(json.dumps(row), flush=True)
        rows.append(row)
        with open(args.results, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
