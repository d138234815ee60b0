"""The serving guards without Serve: strict bounded bodies, per-request isolation in a batch, the
streamed body limit, the API key, and the SQLite store (durable, compare-and-set, 503 when locked,
recovering by itself)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys

import pytest
from pydantic import ValidationError

from glan_ray.serving import http
from glan_ray.serving.batching import NonFiniteOutput, per_item
from glan_ray.serving.bodies import DayFeatures, Entry, SessionEnd, StartDay
from glan_ray.serving.state import SQLiteStore, StoreUnavailable
from tests.serving.conftest import END, ENTRY, FEATURES

# -- bodies ------------------------------------------------------------------------------------


def _fails(model, body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    assert any(field in ".".join(map(str, err["loc"])) for err in e.value.errors()), e.value


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), 1e308, -1.0])
def test_day_features_are_finite_and_bounded(bad):
    _fails(DayFeatures, {**FEATURES, "usage_7d": bad}, "usage_7d")
    _fails(DayFeatures, {**FEATURES, "seq_usage": [bad] + [1.0] * 29}, "seq_usage")
    _fails(DayFeatures, {**FEATURES, "page_dur_7d": [1.0, bad, 1.0]}, "page_dur_7d")


def test_bodies_are_strict():
    ok = {"event_id": "e", "day": 3, **ENTRY}
    assert Entry.model_validate(ok).hour == 9.0
    assert Entry.model_validate({**ok, "hour": 9}).hour == 9.0  # an int is a number
    _fails(Entry, {**ok, "hour": True}, "hour")  # no true -> 1
    _fails(Entry, {**ok, "hour": "9"}, "hour")
    assert Entry.model_validate({**ok, "day": 3.0}).day == 3  # integral, as JSON Schema says
    _fails(Entry, {**ok, "day": 3.5}, "day")
    _fails(Entry, {**ok, "day": "3"}, "day")
    _fails(Entry, {**ok, "extra": 1}, "extra")
    _fails(Entry, {**ok, "event_id": "has space"}, "event_id")
    _fails(Entry, {**ok, "live_count": float("inf")}, "live_count")
    _fails(Entry, {**ok, "live_count": 1.5}, "live_count")
    _fails(Entry, {**ok, "obs": [0.1] * 28}, "obs")  # the server builds the observation
    _fails(DayFeatures, {**FEATURES, "age": True}, "age")
    end = {"event_id": "s", "day": 3, **END}
    _fails(SessionEnd, {**end, "video_views": [10**30, 0, 0]}, "video_views")
    _fails(SessionEnd, {**end, "usage_time": 1e309}, "usage_time")
    _fails(SessionEnd, {**end, "exit_page": "home"}, "exit_page")
    _fails(SessionEnd, {**end, "page_durations_s": [1.0, 2.0]}, "page_durations_s")
    _fails(StartDay, {"event_id": "d", "day": -1, "features": FEATURES}, "day")


# -- per-request isolation ---------------------------------------------------------------------


def test_one_bad_item_fails_alone_in_a_batch():
    def double(xs: list[float]) -> list[float]:
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return [2.0 * x if x != 7 else float("inf") for x in xs]

    out = per_item(double, [1.0, -1.0, 7.0, 3.0])
    assert out[0] == 2.0 and out[3] == 6.0
    assert isinstance(out[1], ValueError) and isinstance(out[2], NonFiniteOutput)
    assert per_item(double, [1.0, 2.0]) == [2.0, 4.0]


def test_hrm_batch_isolates_an_overflowing_session(random_models):
    """The issue's 500: a session end with an overflowing ``video_views`` failed its whole batch.
    Past validation it cannot reach the model, but the model call still isolates it."""
    from glan_ray.serving.deployments import HRMModel

    hrm = HRMModel.func_or_class({"path": f"{random_models}/hrm"})
    good = {"features": {**FEATURES, "weekday": 0}, "obs": [0.1] * 28, "hour": 9.0, "t": 0,
            "action": 0, "video_views": [1, 0, 0], "n_switches": 0, "usage_time": 30.0}  # fmt: skip
    bad = {**good, "video_views": [10**30, 0, 0]}
    alone = hrm.rewards([good])[0]
    out = per_item(hrm.rewards, [good, bad, good])
    assert out[0] == pytest.approx(alone) and out[2] == pytest.approx(alone)
    assert isinstance(out[1], Exception)


# -- ASGI guards, called directly ----------------------------------------------------------------


async def _echo(scope, receive, send) -> None:
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _call(app, chunks: list[bytes], headers: list[tuple[bytes, bytes]], path: str = "/x"):
    sent: list[dict] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(msg: dict) -> None:
        sent.append(msg)

    class State:
        api_key = "s3cret"

    class App:
        state = State()

    scope = {"type": "http", "path": path, "headers": headers, "app": App()}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:]), len(pending)


def test_body_limit_counts_streamed_chunks_before_the_app_reads_them():
    limit = http.BodyLimit(_echo, limit=1000)
    assert _call(limit, [b"a" * 400, b"b" * 400], [])[:2] == (200, b"800")
    status, body, unread = _call(limit, [b"a" * 600] * 50, [])  # chunked, no content-length
    assert status == 413 and b"over 1000 bytes" in body and unread > 40  # stopped reading early
    status, _, unread = _call(limit, [b"a" * 10], [(b"content-length", b"5000000")])
    assert status == 413 and unread == 1  # refused by its declared length, nothing read
    assert _call(limit, [b"a"], [(b"content-length", b"-1")])[0] == 413


def test_api_key_guards_every_route_but_the_probes():
    guard = http.ApiKey(_echo)
    assert _call(guard, [b""], [])[0] == 401
    assert _call(guard, [b""], [(b"authorization", b"Bearer nope")])[0] == 401
    assert _call(guard, [b""], [(b"authorization", b"Bearer s3cret")])[0] == 200
    assert _call(guard, [b""], [], path="/healthz")[0] == 200
    assert _call(guard, [b""], [], path="/readyz")[0] == 200


def test_build_app_refuses_a_public_host_without_a_key(monkeypatch, random_models):
    from glan_ray.serving import app

    monkeypatch.setattr(app, "_serve_http_host", lambda: "0.0.0.0")
    monkeypatch.delenv("GLAN_RAY_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GLAN_RAY_API_KEY"):
        app.build_app({"models": random_models})
    monkeypatch.setenv("GLAN_RAY_API_KEY", "k")
    app.build_app({"models": random_models})  # with a key it builds


# -- the SQLite store --------------------------------------------------------------------------

_READ_BACK = """
import asyncio, sys
from glan_ray.serving.state import SQLiteStore
print(asyncio.run(SQLiteStore(sys.argv[1]).get(7)))
"""


def test_sqlite_store_is_durable_across_processes(tmp_path):
    path = str(tmp_path / "state.sqlite3")

    async def write() -> None:
        store = SQLiteStore(path)
        assert await store.put(7, {"day": 3, "rewards": [1.5]}, 0)
        assert not await store.put(7, {"day": 9}, 0)  # stale version
        await store.ping()

    asyncio.run(write())
    out = subprocess.run(
        [sys.executable, "-c", _READ_BACK, path], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str((1, {"day": 3, "rewards": [1.5]}))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_store_refuses_non_finite_documents(tmp_path):
    async def run() -> None:
        store = SQLiteStore(str(tmp_path / "s.sqlite3"), busy_timeout_ms=100)
        bad, good = store.put(1, {"r": float("nan")}, 0), store.put(2, {"r": 1.0}, 0)
        res = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(res[0], ValueError) and res[1] is True  # coalesced, isolated

    asyncio.run(run())


def test_state_documents_round_trip_exactly():
    """The stored JSON (pydantic-core's encoder) reads back as the same document: every float
    to the bit, the events in their order; words like NaN inside strings are no error, bare
    non-finite numbers are."""
    import random
    import struct

    from glan_ray.serving.state import _dumps

    rng = random.Random(0)
    floats = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(5000)]
    floats = [x for x in floats if x == x and abs(x) != float("inf")]
    floats += [0.1, -0.0, 5e-324, 1e16, 1e-7, 1.7976931348623157e308, 2.0**53 + 2]
    events = {f"entry:e{i}": ["ab12", {"probs": [0.25, 0.5, 0.25]}] for i in range(600)}
    obs = [floats[i : i + 28] for i in range(0, 280, 28)]
    doc = {"day": 3, "r1": 1234.5, "obs": obs, "rewards": floats, "open": None,
           "ids": [2**53 - 1, 2**63 + 5], "events": events}  # fmt: skip
    doc["events"]["entry:NaN-Infinity"] = ["cd34", {"policy": "glan"}]
    back = json.loads(_dumps(doc))
    assert back == doc and list(back["events"]) == list(doc["events"])
    assert [struct.pack("d", x) for x in back["rewards"]] == [struct.pack("d", x) for x in floats]
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            _dumps({**doc, "r1": bad})


def test_doc_encoder_reuses_kept_events_and_writes_the_whole_document():
    """``DocEncoder`` (the events a user's previous write already encoded are reused) gives the
    JSON of the whole document at every write: events added one by one and evicted from the
    front (as the ingress does), a document read back from JSON (new objects), an entry
    replaced or reordered, another user in between, two versions of one user in a batch, a
    budget that keeps nothing, and a non-finite number in a new or a kept event."""
    import random

    from glan_ray.serving.state import DocEncoder

    rng = random.Random(1)
    enc, tiny = DocEncoder(), DocEncoder(max_bytes=1)

    def check(user: int, doc: dict) -> None:
        for e in (enc, tiny):
            back = json.loads(e(user, doc))
            assert back == doc and list(back["events"]) == list(doc["events"])

    docs = {u: {"day": 0, "obs": [], "events": {}} for u in range(3)}
    for step in range(400):
        u = rng.randrange(3)
        old = docs[u]
        events = {**old["events"], f"e:{step}": [f"{step:04x}", {"probs": [rng.random()] * 3}]}
        while len(events) > 20:  # a window dropping its oldest, as the ingress's day window
            del events[next(iter(events))]
        doc = {**old, "obs": [*old["obs"], rng.random()][-8:], "events": events}
        if step % 37 == 0:  # a fresh read: equal, but new objects
            doc = json.loads(json.dumps(doc))
        if step % 53 == 0 and len(events) > 2:  # an entry replaced by another object
            k = list(events)[1]
            doc["events"] = {**events, k: [events[k][0], {"probs": [0.5]}]}
        if step % 71 == 0:  # another order
            doc["events"] = dict(reversed(list(doc["events"].items())))
        check(u, doc)
        docs[u] = doc
        if step % 29 == 0:  # a rival version of the same user, encoded right after
            check(u, {**old, "events": {**old["events"], "rival": ["x", {"n": step}]}})
    assert enc.size <= enc.max_bytes and not tiny.last
    doc = docs[0]
    bad = {**doc, "events": {**doc["events"], "nan": ["y", {"r": float("nan")}]}}
    with pytest.raises(ValueError):
        enc(0, bad)
    with pytest.raises(ValueError):  # the kept (bad) event is checked again
        enc(0, {**bad, "events": {**bad["events"], "next": ["z", {}]}})
    check(0, {"day": 1, "events": {"day:1": ["d", {"Infinity": "NaN"}]}})  # words, no numbers


def test_sqlite_store_locked_is_unavailable_then_recovers(tmp_path):
    path = str(tmp_path / "s.sqlite3")

    async def run() -> None:
        store = SQLiteStore(path, busy_timeout_ms=100)
        assert await store.put(1, {"n": 1}, 0)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable):
            await store.put(1, {"n": 2}, 1)
        with pytest.raises(StoreUnavailable):
            await store.ping()
        other.execute("ROLLBACK")
        await store.ping()
        assert await store.put(1, {"n": 2}, 1)
        assert await store.get(1) == (2, {"n": 2})

    asyncio.run(run())


def test_validation_problem_never_echoes_large_input():
    from fastapi.exceptions import RequestValidationError

    errors = [
        {"loc": ("body", "obs"), "msg": "bad", "type": "list_type", "input": "x" * 8_000_000},
        {"loc": ("body", "hour"), "msg": "finite", "type": "finite_number", "input": float("nan")},
        {"loc": ("body", "day"), "msg": "int", "type": "int_type", "input": 3.5},
    ]
    resp = asyncio.run(http.validation_problem(None, RequestValidationError(errors)))
    body = json.loads(resp.body)  # serialisable: the NaN is not echoed
    assert resp.status_code == 422 and len(resp.body) < 1000
    assert [("input" in p) for p in body["detail"]] == [False, False, True]


def test_serving_imports_no_training_code():
    """Inference loads exports only (``glan_ray.models.checkpoint``): no Train/Tune/RLlib/Data
    and nothing of ``glan_ray.train``."""
    code = (
        "import sys, glan_ray.serving.app;"
        "print(sorted(m for m in sys.modules if m.startswith(('ray.train', 'ray.tune', "
        "'ray.rllib', 'ray.data', 'glan_ray.train.', 'glan_ray.rllib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
