"""Per-user intra-day state: the embedded default (a named Ray actor) or Redis.

The state of a user is one document (the day's features, R̂₁, every session's obs, hour, page,
reward, the open entry, and the responses of the events already handled, for idempotency) with a
version number. Writes are compare-and-set on that version (``put(user, doc, version)`` succeeds
only if the stored version is still ``version``, and stores ``version + 1``), so an ingress
replica may serve reads from its own cache and still never overwrite a newer state written by
another replica: a stale cache fails its write and the ingress redoes the event on a fresh read.
Replicas hold no state of their own, so a replica restart or a second replica loses nothing: the
embedded store is a detached named actor that outlives the replicas; Redis outlives the whole
Ray cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import ray

ACTOR_NAME = "glan_ray_user_state_v2"
NAMESPACE = "glan_ray"
Versioned = tuple[int, dict[str, Any]]
"""(version, document); version 0 means "absent" in a compare-and-set."""


@ray.remote(num_cpus=0)
class _StateActor:
    """Versioned documents in memory; one call writes a whole batch of users."""

    def __init__(self) -> None:
        self.data: dict[int, Versioned] = {}

    def get(self, user_id: int) -> Versioned | None:
        return self.data.get(user_id)

    def put_many(self, items: list[tuple[int, dict[str, Any], int]]) -> list[bool]:
        done = []
        for user_id, doc, version in items:
            ok = self.data.get(user_id, (0, None))[0] == version
            if ok:
                self.data[user_id] = (version + 1, doc)
            done.append(ok)
        return done

    def size(self) -> int:
        return len(self.data)


class _Coalescer:
    """Concurrent single-item calls become one call on a list: an item that arrives while a
    call is in flight joins the next one, so nothing waits on a timer and a lone item goes at
    once (``@serve.batch`` with no wait, usable outside a Serve replica too)."""

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
                try:
                    results = await self.fn([item for item, _ in batch])
                except Exception as e:  # every caller of the batch sees the failure
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self.draining = False


class StateStore:
    """Async user id -> versioned document store with compare-and-set writes."""

    async def get(self, user_id: int) -> Versioned | None:
        raise NotImplementedError

    async def put(self, user_id: int, doc: dict[str, Any], version: int) -> bool:
        """Store ``doc`` as version ``version + 1`` iff the stored version is ``version``."""
        raise NotImplementedError


class EmbeddedStore(StateStore):
    """A detached named Ray actor shared by every replica; needs nothing installed.

    The documents travel as Ray objects (no JSON), and the writes of concurrent requests are
    coalesced into one actor call, so the store costs one round trip per batch of writes.
    """

    def __init__(self) -> None:
        self.actor = _StateActor.options(
            name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()
        self._put = _Coalescer(self._put_many, max_items=64)

    async def _put_many(self, items: list[tuple[int, dict[str, Any], int]]) -> list[bool]:
        return await self.actor.put_many.remote(items)

    async def get(self, user_id: int) -> Versioned | None:
        return await self.actor.get.remote(user_id)

    async def put(self, user_id: int, doc: dict[str, Any], version: int) -> bool:
        return await self._put((user_id, doc, version))


# KEYS[1] = user key; ARGV = expected version, document, TTL (s). Atomic in Redis.
_CAS = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 'doc', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class RedisStore(StateStore):
    """Redis (``redis://host:port/db``); hash ``glan_ray:user:<id>`` = {v: version, doc: JSON}.

    The compare-and-set is a server-side Lua script, so it is atomic across replicas.
    """

    def __init__(self, url: str, ttl_s: int = 3 * 86400) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as e:  # pragma: no cover
            raise ImportError("the Redis store needs the 'redis' package: pip install redis") from e
        self.client = aioredis.from_url(url)
        self.cas = self.client.register_script(_CAS)
        self.ttl_s = ttl_s

    @staticmethod
    def _key(user_id: int) -> str:
        return f"glan_ray:user:{user_id}"

    async def get(self, user_id: int) -> Versioned | None:
        version, raw = await self.client.hmget(self._key(user_id), ["v", "doc"])
        return None if raw is None else (int(version), json.loads(raw))

    async def put(self, user_id: int, doc: dict[str, Any], version: int) -> bool:
        keys, argv = [self._key(user_id)], [version, json.dumps(doc), self.ttl_s]
        return bool(await self.cas(keys=keys, args=argv))


def make_store(url: str | None) -> StateStore:
    """``None``/``embedded`` -> EmbeddedStore; ``redis://...`` -> RedisStore."""
    if not url or url == "embedded":
        return EmbeddedStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"state_store: expected 'embedded' or a redis:// URL, got {url!r}")
