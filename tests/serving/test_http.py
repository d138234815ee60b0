"""The issue's cases over HTTP, against the running app: non-finite and overflowing numbers, one
bad request among concurrent good ones, days and event ids, the streamed body limit, a state
store that is down (503 + Retry-After, then recovery), a redeploy keeping state, the API key."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.serving.conftest import END, ENTRY, FEATURES, end, entry, start

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}


def _raw(url: str, text: str) -> requests.Response:
    return requests.post(url, data=text, headers=JSON, timeout=60)


def test_non_finite_and_overflowing_numbers_are_422_and_poison_nothing(server):
    assert start(server, 100).status_code == 200
    for bad in ("Infinity", "-Infinity", "NaN", "1e309", "1e308"):
        body = json.dumps({"event_id": "e", "day": 3, **ENTRY})
        r = _raw(f"{server}/users/100/entry", body.replace('"hour": 9.0', f'"hour": {bad}'))
        assert r.status_code == 422 and "hour" in r.text, (bad, r.text)
        r.json()  # the answer is valid JSON (no NaN echoed)
        r = _raw(
            f"{server}/users/100/entry", body.replace('"live_count": 1', f'"live_count": {bad}')
        )
        assert r.status_code == 422 and "live_count" in r.text, (bad, r.text)
        durations = json.dumps({"event_id": "s", "day": 3, **END}).replace("60.0", bad)
        r = _raw(f"{server}/users/100/session_end", durations)
        assert r.status_code == 422 and "page_durations_s" in r.text, (bad, r.text)
        feats = json.dumps({**FEATURES, "usage_7d": 1.0}).replace("1.0", bad, 1)
        r = _raw(f"{server}/users/101/day", f'{{"event_id": "d", "day": 0, "features": {feats}}}')
        assert r.status_code == 422, (bad, r.text)
        r = _raw(
            f"{server}/users/100/session_end",
            json.dumps({"event_id": "s", "day": 3, **END}).replace("77.0", bad),
        )
        assert r.status_code == 422 and "usage_time" in r.text, (bad, r.text)
    r = _raw(
        f"{server}/users/100/entry", '{"event_id": "e", "day": 3, "hour": 1' + "0" * 5000 + "}"
    )
    assert 400 <= r.status_code < 500
    r = entry(server, 100, "ok")  # the user's day is intact
    assert r.status_code == 200 and r.json()["session_idx"] == 0
    assert all(p == p for p in r.json()["probs"])


def test_strict_types_and_a_422_that_does_not_echo_large_input(server):
    for over in ({"hour": True}, {"hour": "9"}, {"day": 3.5}, {"day": True}, {"day": "3"}):
        r = entry(server, 102, "x", **over)
        assert r.status_code == 422 and next(iter(over)) in r.text, (over, r.text)
    r = requests.post(f"{server}/users/102/entry", json={"event_id": 5, "day": 3, "live_count": 1,
                                                         "hour": 9.0}, timeout=60)  # fmt: skip
    assert r.status_code == 422 and "event_id" in r.text
    big = "z" * 60_000  # under the body limit, invalid
    r = entry(server, 102, big)
    assert r.status_code == 422 and "event_id" in r.text and len(r.content) < 2000
    r = requests.post(f"{server}/users/102/entry", json={"hour": [big[:2000]] * 28}, timeout=60)
    assert r.status_code == 422 and len(r.content) < 8000 and big[:2000] not in r.text


def test_one_bad_request_among_concurrent_good_ones_fails_alone(server):
    users = list(range(200, 232))
    with ThreadPoolExecutor(16) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda u: start(server, u), users))
        assert all(r.status_code == 200 for r in pool.map(lambda u: entry(server, u, "e"), users))

        def finish(u: int) -> requests.Response:
            views = [10**30, 0, 0] if u % 4 == 0 else [1, 0, 0]  # the overflow
            return end(server, u, "s", video_views=views)

        got = list(pool.map(finish, users))
    for u, r in zip(users, got, strict=True):
        assert r.status_code == (422 if u % 4 == 0 else 200), (u, r.text)
    for u in users[::4]:  # the bad ones can still end their session properly
        assert end(server, u, "s2").status_code == 200


def test_days_only_move_forward_and_event_ids_replay(server):
    uid = 300
    first = start(server, uid, day=3, event_id="d3")
    assert first.status_code == 200
    assert start(server, uid, day=3, event_id="d3").json() == first.json()  # replay
    r = start(server, uid, day=3, event_id="d3-again")
    assert r.status_code == 409 and "already started" in r.text
    assert start(server, uid, day=2, event_id="d2").status_code == 409
    r = start(server, uid, day=3, event_id="d3", usage_7d=1.0)  # same id, another body
    assert r.status_code == 409 and "another body" in r.text
    assert entry(server, uid, "e", day=2).status_code == 409  # yesterday's entry
    assert entry(server, uid, "e", day=4).status_code == 409  # a day not started
    e = entry(server, uid, "x")  # ids are per endpoint: "x" on entry and on session end
    s = end(server, uid, "x")
    assert e.status_code == s.status_code == 200 and s.json()["sessions"] == 1
    assert entry(server, uid, "x", hour=10.0).status_code == 409  # reused with another body
    # a new day; yesterday's events replay as no-ops with their first answers
    assert start(server, uid, day=4, event_id="d4").status_code == 200
    assert entry(server, uid, "x").json() == e.json()
    assert end(server, uid, "x").json() == s.json()
    assert start(server, uid, day=3, event_id="d3").json() == first.json()
    st = requests.get(f"{server}/users/{uid}/state", timeout=60).json()
    assert st["day"] == 4 and st["sessions"] == 0 and not st["open_entry"]


def test_client_errors_are_never_500(server):
    cases = [
        ("post", "/users/1/entry", "[]"),
        ("post", "/users/1/entry", "null"),
        ("post", "/users/1/entry", '"x"'),
        ("post", "/users/1/day", '{"event_id": "d", "day": 1e400, "features": {}}'),
        ("post", "/users/-1/entry", "{}"),
        ("post", f"/users/{2**64}/entry", "{}"),
        ("get", "/users/99999999/state", None),
        ("post", "/users/1/session_end", '{"event_id": "' + "é" * 10 + '"}'),
    ]
    for method, path, body in cases:
        r = requests.request(method, f"{server}{path}", data=body, headers=JSON, timeout=60)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        r.json()


def _chunks(total: int, piece: bytes = b" " * 65536):
    for _ in range(total // len(piece)):
        yield piece
    yield json.dumps({"event_id": "c", "day": 3, **ENTRY}).encode()


def test_the_body_limit_holds_for_chunked_uploads(server):
    assert start(server, 400).status_code == 200
    r = requests.post(f"{server}/users/400/entry", data=_chunks(4_000_000), headers=JSON)
    assert r.status_code == 413 and "over" in r.json()["detail"]
    r = requests.post(f"{server}/users/400/entry", data=_chunks(0), headers=JSON)  # chunked, small
    assert r.status_code == 200, r.text
    r = requests.post(f"{server}/users/400/entry", data=" " * 70_000, headers=JSON)
    assert r.status_code == 413


def test_a_locked_store_is_503_with_retry_after_and_recovers(server, state_db):
    db = requests.get(f"{server}/healthz", timeout=60).json()
    assert db["status"] == "ok" and db["state_store"] == "sqlite"
    assert requests.get(f"{server}/readyz", timeout=60).status_code == 200
    assert start(server, 5500).status_code == 200
    other = sqlite3.connect(state_db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the file's write lock
    try:
        r = entry(server, 5500, "e")
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
        r = requests.get(f"{server}/readyz", timeout=60)
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert requests.get(f"{server}/healthz", timeout=60).status_code == 200  # alive
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert requests.get(f"{server}/readyz", timeout=60).status_code == 200
    r = entry(server, 5500, "e")  # the client's retry of the same event
    assert r.status_code == 200 and r.json()["session_idx"] == 0


# heavy: ~55 s (a second Serve deploy); the SQLite store's round trip is in CI
# (test_app.py::test_state_store_writes_are_compare_and_set)
@pytest.mark.heavy
def test_state_survives_a_redeploy_on_the_sqlite_file(serve_http, random_models, tmp_path):
    from ray import serve

    from glan_ray.serving.app import build_app

    args = {"models": random_models, "num_cpus": 0.1, "state_store": f"sqlite://{tmp_path}/s.db"}
    serve.run(build_app(args), name="glan_file", route_prefix="/file")
    base = f"{serve_http}/file"
    assert start(base, 7).status_code == 200 and entry(base, 7, "e").status_code == 200
    assert end(base, 7, "s").status_code == 200
    before = requests.get(f"{base}/users/7/state", timeout=60).json()
    serve.delete("glan_file")  # every replica gone
    serve.run(build_app(args), name="glan_file", route_prefix="/file")
    assert requests.get(f"{base}/users/7/state", timeout=60).json() == before
    assert entry(base, 7, "e2").json()["session_idx"] == 1
    serve.delete("glan_file")


def test_an_api_key_guards_the_user_routes(serve_http, random_models, monkeypatch, tmp_path):
    from ray import serve

    from glan_ray.serving.app import build_app

    monkeypatch.setenv("GLAN_RAY_API_KEY", "t0ken")
    args = {"models": random_models, "num_cpus": 0.1, "state_store": f"sqlite://{tmp_path}/k.db"}
    serve.run(build_app(args), name="glan_key", route_prefix="/key")
    base = f"{serve_http}/key"
    assert start(base, 1).status_code == 401
    assert requests.get(f"{base}/healthz", timeout=60).status_code == 200
    auth = {"authorization": "Bearer t0ken"}
    body = {"event_id": "d", "day": 0, "features": FEATURES}
    r = requests.post(f"{base}/users/1/day", json=body, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    serve.delete("glan_key")
