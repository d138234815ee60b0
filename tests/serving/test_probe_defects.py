"""What a stranger's probe found (issue 31), over real HTTP: a late replay past 512 events is
answered, not applied again; malformed JSON is the documented 400; a user id in the path has
one spelling; the OpenAPI document names Serve's 500, the 413 of every route and a plain user id
example; the traffic client retries Serve's 500 and honours Retry-After, same body and id."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests

from glan_ray.serving.traffic import ServeClient, TrafficConfig
from tests.serving.conftest import END, ENTRY, FEATURES

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}


def test_a_late_replay_past_512_events_is_answered_and_never_applied_again(server, state_db):
    """260 sessions (521 events) in a day and an entry open, then session 0's end again: its
    first answer, no session 261, no second log row; a day later too; two days later a 409,
    still nothing."""
    uid, base, http = 3100, f"{server}/users/3100", requests.Session()
    day = {"event_id": "d3", "day": 3, "features": FEATURES}
    assert http.post(f"{base}/day", json=day, timeout=60).status_code == 200
    first = None
    for t in range(260):
        assert http.post(f"{base}/entry", json={"event_id": f"e{t}", "day": 3, **ENTRY},
                         timeout=60).status_code == 200  # fmt: skip
        r = http.post(f"{base}/session_end", json={"event_id": f"s{t}", "day": 3, **END},
                      timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        first = first or r.json()
    # an entry is open, so a forgotten id would be applied as its session's end (the issue)
    assert http.post(f"{base}/entry", json={"event_id": "e260", "day": 3, **ENTRY},
                     timeout=60).status_code == 200  # fmt: skip
    replay = {"event_id": "s0", "day": 3, **END}
    r = http.post(f"{base}/session_end", json=replay, timeout=60)
    assert r.status_code == 200 and r.json() == first
    st = http.get(f"{base}/state", timeout=60).json()
    assert st["sessions"] == 260 and st["open_entry"], st

    def rows() -> int:
        with sqlite3.connect(state_db) as db:
            return db.execute(
                "SELECT COUNT(*) FROM decision_log WHERE user_id = ? AND endpoint = 'end' "
                "AND event_id = 's0'",
                (uid,),
            ).fetchone()[0]

    assert rows() == 1
    assert http.post(f"{base}/day", json={**day, "event_id": "d4", "day": 4}, timeout=60).ok
    assert http.post(f"{base}/session_end", json=replay, timeout=60).json() == first  # window
    assert http.post(f"{base}/day", json={**day, "event_id": "d5", "day": 5}, timeout=60).ok
    r = http.post(f"{base}/session_end", json=replay, timeout=60)  # past the window
    assert r.status_code == 409 and "never applied" in r.text, r.text
    assert http.get(f"{base}/state", timeout=60).json()["sessions"] == 0 and rows() == 1


@pytest.mark.parametrize(
    "text",
    ['{"event_id": "e", "day": 3, "hour": 9.0', '{"event_id": "e", "day": 3}xyz', "{,}", "nul"],
)
def test_malformed_json_is_400(server, text):
    r = requests.post(f"{server}/users/1/entry", data=text, headers=JSON, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid"
    r = requests.post(f"{server}/users/1/entry", json={"event_id": "e", "day": "3"}, timeout=60)
    assert r.status_code == 422  # valid JSON, invalid body: still 422


@pytest.mark.parametrize(
    "spelling", ["1_000", "+5", "1.0", "%207200002", "07200002", "7200002%20", "0x10", "1e3"]
)
def test_a_user_id_in_the_path_has_one_spelling(server, spelling):
    r = requests.get(f"{server}/users/{spelling}/state", timeout=60)
    assert r.status_code == 422, (spelling, r.status_code, r.text)
    assert r.json()["detail"][0]["loc"] == ["path", "user_id"]
    r = requests.post(f"{server}/users/{spelling}/entry", json={"event_id": "e", "day": 3,
                                                               **ENTRY}, timeout=60)  # fmt: skip
    assert r.status_code == 422 and "user_id" in r.text


def test_plain_user_ids_still_work(server):
    # plain ids are ids: known (200) or not (404), never a 422; other tests of this server
    # (the schemathesis run among them) may have created users 0 and 2^53 - 1
    for plain in ("0", "9007199254740991"):
        r = requests.get(f"{server}/users/{plain}/state", timeout=60)
        assert r.status_code in (200, 404), (plain, r.status_code, r.text)
    unknown = random.Random().randrange(10**12, 2**53)  # a user no test has touched
    assert requests.get(f"{server}/users/{unknown}/state", timeout=60).status_code == 404
    assert requests.get(f"{server}/users/9007199254740992/state", timeout=60).status_code == 422


def test_openapi_documents_serves_500_every_413_and_a_user_id_example(server):
    doc = requests.get(f"{server}/openapi.json", timeout=60).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert {"413", "500"} <= set(op["responses"]), (method, path)
            assert "text/plain" in op["responses"]["500"]["content"]
            assert "same event id" in op["responses"]["500"]["description"]
            for p in op.get("parameters", []):
                if p["name"] == "user_id":
                    assert p["example"] == 42 and p["schema"]["examples"] == [42], p
    assert '"example": {}' not in json.dumps(doc)


class _Flaky(BaseHTTPRequestHandler):
    """Serve's plain 500, then the app's 503 + Retry-After: 1, then 200; records every body."""

    answers: ClassVar = [(500, "text/plain", b"Internal Server Error", {}),
               (503, "application/json", b'{"detail": "x"}', {"Retry-After": "1"})]  # fmt: skip
    seen: ClassVar[list[tuple[float, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.seen.append((time.monotonic(), body))
        status, kind, raw, extra = (self.answers[len(self.seen) - 1] if len(self.seen) <= 2
                                    else (200, "application/json", b'{"ok": 1}', {}))  # fmt: skip
        self.send_response(status)
        for k, v in {"content-type": kind, "content-length": str(len(raw)), **extra}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


def test_the_traffic_client_retries_serves_500_and_honours_retry_after():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = ServeClient(TrafficConfig(url=f"http://127.0.0.1:{httpd.server_port}"))
        assert client.post("/users/1/entry", {"event_id": "e", "day": 3}) == {"ok": 1}
        client.close()
    finally:
        httpd.shutdown()
    times, bodies = zip(*_Flaky.seen, strict=True)
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same event, three times
    assert times[2] - times[1] >= 0.95  # waited for Retry-After: 1
    s = client.stats.summary()
    assert (s["retried"], s["retried_serve_500"], s["retried_after_retry_after"]) == (2, 1, 1)


@pytest.mark.heavy  # ~90 s: its own Ray and HAProxy started by serve/run.sh
def test_a_killed_ingress_through_run_sh_gives_no_bare_5xx_and_applies_nothing_twice():
    """``sh serve/run.sh`` (HAProxy replays a request whose replica died before answering):
    the ingress replica killed mid-load, clients retrying with the same ids see no 5xx without
    Retry-After, and every user has its sessions exactly once. (A request whose replica died
    while its answer was being sent cannot be replayed by any proxy: the client sees the
    connection close mid-answer, a lost connection, and retries it like the others.)"""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / "serve_kill.py"
    spec = importlib.util.spec_from_file_location("serve_kill", path)
    kill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kill)
    got = kill.run("run.sh", users=60, sessions=6)
    assert got["5xx_without_retry_after"] == 0, got
    assert got["every_user_has_its_sessions_once"], got
