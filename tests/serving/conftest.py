"""Serving fixtures: one Serve instance (in the shared Ray) for every serving test module, a real
redis-server, and the request bodies of a plain user-day."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def serve_http(ray_session) -> str:
    """Serve's HTTP proxy on a free loopback port; apps are added by the tests.

    Package-scoped: Serve and its apps go away after the last serving test, so their replicas
    do not hold the shared Ray's CPUs while later tests (A/B shards, Ray Data) need them.
    """
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def app_args(models: str, tmp, **over) -> dict:
    """``build_app`` args of a test app: small replicas, its state in ``tmp``."""
    return {"models": models, "num_cpus": 0.1, "state_store": f"sqlite://{tmp}/state.db", **over}


@pytest.fixture(scope="package")
def state_db(tmp_path_factory) -> str:
    """The SQLite file of the ``server`` app's state."""
    return str(tmp_path_factory.mktemp("state") / "state.sqlite3")


@pytest.fixture(scope="package")
def server(serve_http, random_models, state_db) -> str:
    """The default app (composed deployments, SQLite store in a temporary file) at ``/``."""
    from ray import serve

    from glan_ray.serving.app import build_app

    args = {"models": random_models, "num_cpus": 0.1, "state_store": f"sqlite://{state_db}"}
    serve.run(build_app(args), name="glan", route_prefix="/")
    return serve_http


FEATURES = {
    **dict.fromkeys(("age", "region", "activity", "weekday"), 0),
    **dict.fromkeys(("social_degree", "usage_30d", "sessions_7d", "sessions_30d"), 0.0),
    "usage_7d": 600.0,
    **{
        k: [1.0, 1.0, 1.0]
        for k in ("page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d")
    },
    "seq_sessions": [1.0] * 30,
    "seq_usage": [600.0] * 30,
}
ENTRY = {"hour": 9.0, "live_count": 1}
END = {"page_durations_s": [60.0, 10.0, 0.0], "video_views": [2, 0, 0], "n_switches": 1,
       "usage_time": 77.0, "exit_page": "explore"}  # fmt: skip


def start(base: str, uid: int, day: int = 3, event_id: str = "start", **over) -> requests.Response:
    body = {"event_id": event_id, "day": day, "features": {**FEATURES, **over}}
    return requests.post(f"{base}/users/{uid}/day", json=body, timeout=60)


def entry(base: str, uid: int, event_id: str, day: int = 3, **over) -> requests.Response:
    body = {"event_id": event_id, "day": day, **ENTRY, **over}
    return requests.post(f"{base}/users/{uid}/entry", json=body, timeout=60)


def end(base: str, uid: int, event_id: str, day: int = 3, **over) -> requests.Response:
    body = {"event_id": event_id, "day": day, **END, **over}
    return requests.post(f"{base}/users/{uid}/session_end", json=body, timeout=60)


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on a free port; installed with apt-get when missing (CI does this)."""
    if shutil.which("redis-server") is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], capture_output=True)
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed and apt-get could not install it")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(50):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
