"""Per-user intra-day state: the embedded default (an SQLite file in WAL mode) or Redis.

The state of a user is one document (the day's features, R̂₁, every session's obs, hour, page,
reward, the open entry, and the responses of the events already handled, for idempotency) with a
version number. Writes are compare-and-set on that version (``put(user, doc, version)`` succeeds
only if the stored version is still ``version``, and stores ``version + 1``), so an ingress
replica may serve reads from its own cache and still never overwrite a newer state written by
another replica: a stale cache fails its write and the ingress redoes the event on a fresh read.

Replicas hold no state of their own. The embedded store is a file on the node (default
``runs/serve/state.sqlite3`` under the directory ``serve run`` starts in), opened by every
ingress replica of that node: it survives a replica, a Ray and a ``serve run`` restart, and
needs nothing installed, but is one machine's (a cluster uses Redis, which outlives the whole
Ray cluster). Committed writes survive a crash of any process (WAL, ``synchronous=NORMAL``: a
power cut may lose the last commits). A store that cannot answer raises ``StoreUnavailable``
(the ingress answers 503 with ``Retry-After``); the next call tries again from scratch.

The decision log (``glan_ray.data.decision_log``) lives in the same store: ``put`` takes the
event's log row and writes it in the same transaction as the state (SQLite: one ``BEGIN
IMMEDIATE`` transaction, table ``decision_log``; Redis: the compare-and-set script also appends
to the stream ``glan_ray:decision_log``), so a row exists iff its state change was applied, a
replayed event (answered from the state, never written) adds none, and a crash of the ingress
loses none it acknowledged. ``log_read`` / ``log_delete`` are the flush's (``serving.log``):
rows are deleted by their own sequence numbers only after their Parquet file is durable.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic_core import to_json

from glan_ray.serving.http import Unavailable

DEFAULT_PATH = os.path.join("runs", "serve", "state.sqlite3")
Versioned = tuple[int, dict[str, Any]]
"""(version, document); version 0 means "absent" in a compare-and-set."""
LogRow = tuple[str, int, str, str]
"""One decision-log row of an event: (endpoint, day, event id, the record as JSON)."""
StoredLogRow = tuple[int, str, int, int, str, str]
"""A decision-log row as stored: (sequence number, endpoint, user id, day, event id, JSON)."""


class StoreUnavailable(Unavailable):
    """The state store cannot be reached or written now."""


class _Coalescer:
    """Concurrent single-item calls become one call on a list: an item that arrives while a
    call is in flight joins the next one, so nothing waits on a timer and a lone item goes at
    once (``@serve.batch`` with no wait, usable outside a Serve replica too). A failing batch is
    retried item by item, so one bad item fails alone."""

    def __init__(self, fn: Callable[[list[Any]], Awaitable[list[Any]]], max_items: int) -> None:
        self.fn, self.max_items = fn, max_items
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.draining = False

    async def __call__(self, item: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self.pending[: self.max_items]
                del self.pending[: self.max_items]
                await self._run(batch)
        finally:
            self.draining = False

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self.fn([item for item, _ in batch])
        except StoreUnavailable as e:  # the store is down: every caller sees it
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        except Exception as e:
            if len(batch) > 1:
                for one in batch:
                    await self._run([one])
            elif not batch[0][1].done():
                batch[0][1].set_exception(e)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)


class StateStore:
    """Async user id -> versioned document store with compare-and-set writes."""

    kind = ""

    async def get(self, user_id: int) -> Versioned | None:
        raise NotImplementedError

    async def put(
        self, user_id: int, doc: dict[str, Any], version: int, log: LogRow | None = None
    ) -> bool:
        """Store ``doc`` as version ``version + 1`` iff the stored version is ``version``, and
        with it (same transaction) the decision-log row ``log``."""
        raise NotImplementedError

    async def log_read(self, limit: int) -> list[StoredLogRow]:
        """The oldest ``limit`` decision-log rows, in sequence order."""
        raise NotImplementedError

    async def log_delete(self, seqs: list[int]) -> int:
        """Delete the decision-log rows of these sequence numbers; returns how many were."""
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can be read and written now."""
        raise NotImplementedError


def _dumps(doc: dict[str, Any]) -> str:
    """The document as compact JSON; a NaN or an infinity is a ``ValueError`` (none enters a
    state). pydantic-core's encoder (Rust; its floats are the shortest that round-trip, as
    ``repr``'s) is ~6x faster than ``json.dumps`` on a user's document; it writes a non-finite
    number as a bare ``NaN`` / ``Infinity`` token, so only when one of those words appears does
    ``json.dumps`` check the document (a string such as an event id may contain them)."""
    return _checked(to_json(doc), doc)


def _checked(raw: bytes, doc: dict[str, Any]) -> str:
    if b"NaN" in raw or b"Infinity" in raw:
        json.dumps(doc, allow_nan=False)  # raises ValueError on a non-finite number
    return raw.decode()


def _fragments(keys: list[str], values: list[Any]) -> list[bytes]:
    """``"key":value`` of each event, as in the document's JSON."""
    return [to_json({k: v})[1:-1] for k, v in zip(keys, values, strict=True)]


class DocEncoder:
    """``_dumps`` of each user's successive documents, the events kept between writes encoded
    once.

    A user's ``events`` (event key -> its entry, insertion-ordered) only gains entries at its
    end and loses its oldest, and an entry is never changed once written: the ingress copies the
    dict and adds one. So when a document's events start with a run of the very entry objects
    (``is``) under the same keys, in the same order, as the user's previous document, their
    encodings are reused and only the rest is encoded. Anything else (another order, a replaced
    entry, the first write after a read) is encoded in full; the JSON is always that of the
    whole document (``events`` written last). Kept for the most recently written users, up to
    ``max_bytes`` of encoded events."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes, self.size = max_bytes, 0
        # user -> (event keys, entry objects, their encodings or None: not split yet, bytes)
        self.last: OrderedDict[int, tuple[list[str], list[Any], list[bytes] | None, int]]
        self.last = OrderedDict()

    def __call__(self, user_id: int, doc: dict[str, Any]) -> str:
        events = doc.get("events")
        prev = self.last.pop(user_id, None)
        if prev is not None:
            self.size -= prev[3]
        if type(events) is not dict or not events:
            return _dumps(doc)
        keys, values = list(events), list(events.values())
        shared = self._shared(prev, keys, values)
        if shared is None:  # nothing to reuse: one call encodes it all (split on the next write)
            raw = to_json(doc)
            self._keep(user_id, (keys, values, None, len(raw)))
            return _checked(raw, doc)
        n = len(shared)
        frags = shared + _fragments(keys[n:], values[n:])
        head = to_json({k: v for k, v in doc.items() if k != "events"})
        body = b",".join(frags)
        raw = b"".join((head[:-1], b"," if len(head) > 2 else b"", b'"events":{', body, b"}}"))
        self._keep(user_id, (keys, values, frags, len(body)))
        return _checked(raw, doc)

    @staticmethod
    def _shared(prev: Any, keys: list[str], values: list[Any]) -> list[bytes] | None:
        """The encodings of the leading events that ``prev`` holds as the same objects."""
        if prev is None:
            return None
        pkeys, pvalues, pfrags, _ = prev
        try:
            start = pkeys.index(keys[0])
        except ValueError:
            return None
        n = min(len(pkeys) - start, len(keys))
        same = keys[:n] == pkeys[start : start + n] and all(
            map(operator.is_, values[:n], pvalues[start : start + n])
        )
        if not same:
            return None
        if pfrags is None:  # the previous write was encoded whole: split it now
            return _fragments(keys[:n], values[:n])
        return pfrags[start : start + n]

    def _keep(self, user_id: int, kept: tuple[list[str], list[Any], Any, int]) -> None:
        self.last[user_id] = kept
        self.size += kept[3]
        while self.size > self.max_bytes and self.last:
            self.size -= self.last.popitem(last=False)[1][3]


class SQLiteStore(StateStore):
    """One SQLite file in WAL mode, table ``users(id, v, doc JSON)``; every call runs on this
    store's own thread (SQLite blocks), writes of concurrent requests in one transaction."""

    kind = "sqlite"

    def __init__(self, path: str = DEFAULT_PATH, busy_timeout_ms: int = 2000) -> None:
        self.path, self.busy_timeout_ms = os.path.abspath(path), busy_timeout_ms
        self.conn: sqlite3.Connection | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="glan-ray-sqlite")
        self.encode = DocEncoder()
        self._put = _Coalescer(self._put_many, max_items=64)

    def _connect(self) -> sqlite3.Connection:
        if self.conn is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, v INTEGER NOT NULL,"
                " doc TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS decision_log (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " endpoint TEXT NOT NULL, user_id INTEGER NOT NULL, day INTEGER NOT NULL,"
                " event_id TEXT NOT NULL, record TEXT NOT NULL)"
            )
            self.conn = conn
        return self.conn

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def call() -> Any:
            try:
                return fn(self._connect())
            except sqlite3.Error as e:  # reopen on the next call: the file may be back
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                raise StoreUnavailable(f"sqlite {self.path}: {e}") from e

        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    async def get(self, user_id: int) -> Versioned | None:
        def read(conn: sqlite3.Connection) -> Versioned | None:
            row = conn.execute("SELECT v, doc FROM users WHERE id = ?", (user_id,)).fetchone()
            return None if row is None else (row[0], json.loads(row[1]))

        return await self._run(read)

    def _write(
        self, conn: sqlite3.Connection, items: list[tuple[int, str, int, LogRow | None]]
    ) -> list[bool]:
        done = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for user_id, raw, version, log in items:
                if version == 0:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO users (id, v, doc) VALUES (?, 1, ?)", (user_id, raw)
                    )
                else:
                    cur = conn.execute(
                        "UPDATE users SET v = v + 1, doc = ? WHERE id = ? AND v = ?",
                        (raw, user_id, version),
                    )
                done.append(cur.rowcount == 1)
                if log is not None and cur.rowcount == 1:  # the log row iff the state is written
                    conn.execute(
                        "INSERT INTO decision_log (endpoint, user_id, day, event_id, record)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (log[0], user_id, log[1], log[2], log[3]),
                    )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return done

    async def _put_many(
        self, items: list[tuple[int, dict[str, Any], int, LogRow | None]]
    ) -> list[bool]:
        rows = [(u, self.encode(u, doc), v, log) for u, doc, v, log in items]  # bad docs first
        return await self._run(lambda conn: self._write(conn, rows))

    async def put(
        self, user_id: int, doc: dict[str, Any], version: int, log: LogRow | None = None
    ) -> bool:
        return await self._put((user_id, doc, version, log))

    async def log_read(self, limit: int) -> list[StoredLogRow]:
        def read(conn: sqlite3.Connection) -> list[StoredLogRow]:
            return conn.execute(
                "SELECT seq, endpoint, user_id, day, event_id, record FROM decision_log"
                " ORDER BY seq LIMIT ?",
                (int(limit),),
            ).fetchall()

        return await self._run(read)

    async def log_delete(self, seqs: list[int]) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            n = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(seqs), 500):
                    part = [int(x) for x in seqs[i : i + 500]]
                    marks = ",".join("?" * len(part))
                    n += conn.execute(f"DELETE FROM decision_log WHERE seq IN ({marks})",
                                      part).rowcount  # fmt: skip
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return n

        return await self._run(delete)

    async def ping(self) -> None:
        def check(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")  # takes the write lock: the file is writable
            conn.execute("ROLLBACK")

        await self._run(check)


# KEYS[1] = user key, KEYS[2] = the decision-log stream; ARGV = expected version, document,
# TTL (s), and for the log row (or nothing): user id, endpoint, day, event id, record JSON.
# Atomic in Redis: the log entry is appended iff the state is written.
_CAS = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 'doc', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if ARGV[4] then
  redis.call('XADD', KEYS[2], '*', 'u', ARGV[4], 'e', ARGV[5], 'd', ARGV[6], 'i', ARGV[7],
             'r', ARGV[8])
end
return 1
"""
LOG_STREAM = "glan_ray:decision_log"


def _stream_seq(entry_id: bytes | str) -> int:
    """A Redis stream id ``<ms>-<n>`` as one increasing integer."""
    ms, _, n = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return (int(ms) << 20) | int(n)


def _stream_id(seq: int) -> str:
    return f"{seq >> 20}-{seq & ((1 << 20) - 1)}"


class RedisStore(StateStore):
    """Redis (``redis://host:port/db``); hash ``glan_ray:user:<id>`` = {v: version, doc: JSON}.

    The compare-and-set is a server-side Lua script, so it is atomic across replicas. A user's
    document lives ``ttl_s`` after its last write (the event ids kept for replays with it).
    """

    kind = "redis"

    def __init__(self, url: str, ttl_s: int = 30 * 86400) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import ConnectionError, TimeoutError
        except ImportError as e:  # pragma: no cover
            raise ImportError("the Redis store needs the 'redis' package: pip install redis") from e
        self.client = aioredis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        self.cas = self.client.register_script(_CAS)
        self.ttl_s = ttl_s
        self.encode = DocEncoder()
        self.down = (ConnectionError, TimeoutError, OSError)

    @staticmethod
    def _key(user_id: int) -> str:
        return f"glan_ray:user:{user_id}"

    async def _guard(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except self.down as e:
            raise StoreUnavailable(f"redis: {e}") from e

    async def get(self, user_id: int) -> Versioned | None:
        version, raw = await self._guard(self.client.hmget(self._key(user_id), ["v", "doc"]))
        return None if raw is None else (int(version), json.loads(raw))

    async def put(
        self, user_id: int, doc: dict[str, Any], version: int, log: LogRow | None = None
    ) -> bool:
        keys = [self._key(user_id), LOG_STREAM]
        argv: list[Any] = [version, self.encode(user_id, doc), self.ttl_s]
        if log is not None:
            argv += [user_id, *log]
        return bool(await self._guard(self.cas(keys=keys, args=argv)))

    async def log_read(self, limit: int) -> list[StoredLogRow]:
        got = await self._guard(self.client.xrange(LOG_STREAM, "-", "+", count=int(limit)))
        out = []
        for entry_id, f in got:
            out.append((_stream_seq(entry_id), f[b"e"].decode(), int(f[b"u"]), int(f[b"d"]),
                        f[b"i"].decode(), f[b"r"].decode()))  # fmt: skip
        return out

    async def log_delete(self, seqs: list[int]) -> int:
        n = 0
        for i in range(0, len(seqs), 500):
            ids = [_stream_id(s) for s in seqs[i : i + 500]]
            n += int(await self._guard(self.client.xdel(LOG_STREAM, *ids)))
        return n

    async def ping(self) -> None:
        await self._guard(self.client.ping())


def make_store(url: str | None) -> StateStore:
    """``None``/``embedded`` -> SQLite at ``DEFAULT_PATH``; ``sqlite:///abs/path`` -> that file;
    ``redis://...`` -> RedisStore."""
    if not url or url == "embedded":
        return SQLiteStore()
    if url.startswith("sqlite://"):
        return SQLiteStore(url.removeprefix("sqlite://"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(
        f"state_store: expected 'embedded', sqlite:///path or a redis:// URL, got {url!r}"
    )
