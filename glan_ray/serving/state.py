"""Per-user intra-day state: the embedded default (a named Ray actor) or Redis.

The state of a user is one JSON document (the day's features, R̂₁, every session's obs, hour,
page, reward and outcome, the open entry, and the responses of the events already handled, for
idempotency). Replicas hold no user state, so a replica restart or a second replica loses
nothing: the embedded store is a detached named actor that outlives the replicas; Redis outlives
the whole Ray cluster.
"""

from __future__ import annotations

import json
from typing import Any

import ray

ACTOR_NAME = "glan_ray_user_state"
NAMESPACE = "glan_ray"


@ray.remote(num_cpus=0)
class _StateActor:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value

    def size(self) -> int:
        return len(self.data)


class StateStore:
    """Async key -> JSON document store."""

    async def get(self, user_id: int) -> dict[str, Any] | None:
        raise NotImplementedError

    async def put(self, user_id: int, state: dict[str, Any]) -> None:
        raise NotImplementedError


class EmbeddedStore(StateStore):
    """A detached named Ray actor shared by every replica; needs nothing installed."""

    def __init__(self) -> None:
        self.actor = _StateActor.options(
            name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()

    async def get(self, user_id: int) -> dict[str, Any] | None:
        raw = await self.actor.get.remote(str(user_id))
        return None if raw is None else json.loads(raw)

    async def put(self, user_id: int, state: dict[str, Any]) -> None:
        await self.actor.put.remote(str(user_id), json.dumps(state))


class RedisStore(StateStore):
    """Redis (``redis://host:port/db``); keys ``glan_ray:user:<id>``, one JSON string each."""

    def __init__(self, url: str, ttl_s: int = 3 * 86400) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as e:  # pragma: no cover
            raise ImportError("the Redis store needs the 'redis' package: pip install redis") from e
        self.client = aioredis.from_url(url)
        self.ttl_s = ttl_s

    @staticmethod
    def _key(user_id: int) -> str:
        return f"glan_ray:user:{user_id}"

    async def get(self, user_id: int) -> dict[str, Any] | None:
        raw = await self.client.get(self._key(user_id))
        return None if raw is None else json.loads(raw)

    async def put(self, user_id: int, state: dict[str, Any]) -> None:
        await self.client.set(self._key(user_id), json.dumps(state), ex=self.ttl_s)


def make_store(url: str | None) -> StateStore:
    """``None``/``embedded`` -> EmbeddedStore; ``redis://...`` -> RedisStore."""
    if not url or url == "embedded":
        return EmbeddedStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"state_store: expected 'embedded' or a redis:// URL, got {url!r}")
