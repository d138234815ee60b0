"""The HTTP front: a FastAPI app whose handlers call the model deployments through handles.

Client mistakes are 4xx with a message that names the field or the state problem: 422 for a
malformed body (Pydantic names the field), 413 for an oversized one, 404 for an unknown user,
409 for an out-of-order event (an entry while a session is open, a session end without an
entry). A repeated ``event_id`` returns the first response and changes nothing.

Hot path: every event is one read-modify-write of the user's document. Reads come from this
replica's cache of the versions it last wrote or read; the write goes through to the store as a
compare-and-set on that version (``state.StateStore``), so a cache made stale by another replica
(or a restart) only costs a failed write and a redo on a fresh read. Any answer other than a
successful write (a 4xx, a repeated event) is re-checked on a fresh read before it is given.
Concurrent requests share one call per hop: the DT decisions, HRM rewards and store writes of
all requests in flight are coalesced with ``@serve.batch`` (no wait: a request that arrives
while a call is in flight joins the next one), so a batch of 32 entries costs one DT call.
"""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp, Receive, Scope, Send

from glan_ray.schema import PAGES
from glan_ray.serving.models import DTModel, HRMModel
from glan_ray.serving.schemas import (
    Entry,
    EntryResponse,
    SessionEnd,
    SessionEndResponse,
    StartDay,
    StartDayResponse,
    UserState,
)
from glan_ray.serving.state import Versioned, make_store

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CACHE_USERS = 100_000
"""Users whose state an ingress replica keeps in memory (least recently used evicted)."""
MAX_TRIES = 4
"""Compare-and-set attempts of one event before answering 409 (concurrent writers)."""

Doc = dict[str, Any]
Step = Callable[[Doc | None], Awaitable[tuple[Doc, Doc | None]]]
"""One event on the current state: (response, new state), new state None for a repeat."""


class _BodyLimit:
    """413 for a body over ``MAX_BODY_BYTES`` by its content-length, before it is read. A plain
    ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
            if size and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
                detail = f"request body over {MAX_BODY_BYTES} bytes (content-length {size})"
                await JSONResponse({"detail": detail}, 413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


api = FastAPI(
    title="glan-ray",
    description="Personalized landing pages: GLAN's L-RTG -> DT -> HRM loop (or KLAN).",
    version="1",
)
api.add_middleware(_BodyLimit)


def _rtg(state: Doc) -> float:
    return state["r1"] - sum(state["rewards"])


def _unknown(user_id: int) -> HTTPException:
    return HTTPException(
        404, f"unknown user {user_id}: start the day first (POST /users/{user_id}/day)"
    )


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
@serve.ingress(api)
class Ingress:
    """``dt`` / ``hrm`` are the model deployments' handles, or None when the models are
    colocated (``build_app(colocate_models=True)``): then ``user_config`` names their
    checkpoints (``dt``, ``hrm``) and this replica runs them in-process."""

    def __init__(
        self,
        lrtg: DeploymentHandle,
        dt: DeploymentHandle | None,
        hrm: DeploymentHandle | None,
        klan: DeploymentHandle | None = None,
        state_store: str | None = None,
        user_config: dict[str, Any] | None = None,
    ) -> None:
        self.lrtg, self.dt, self.hrm, self.klan = lrtg, dt, hrm, klan
        self.store = make_store(state_store)
        self.store_kind = state_store or "embedded"
        self.cache: OrderedDict[int, Versioned] = OrderedDict()
        self.policy = "glan"
        self.local_dt: Any = None  # DTModel's class, in this replica (colocated models)
        self.local_hrm: Any = None
        if user_config:
            self.reconfigure(user_config)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        policy = user_config.get("policy", "glan")
        if policy not in ("glan", "klan"):
            raise ValueError(f"policy must be glan or klan, got {policy!r}")
        if self.dt is None:  # colocated: (re)load a checkpoint only when its path changes
            if self.local_dt is None or self.local_dt.loaded() != user_config.get("dt"):
                self.local_dt = DTModel.func_or_class({"path": user_config.get("dt")})
            if self.local_hrm is None or self.local_hrm.loaded() != user_config.get("hrm"):
                self.local_hrm = HRMModel.func_or_class({"path": user_config.get("hrm")})
        self.policy = policy

    # -- state: cached reads, compare-and-set writes ------------------------------------------

    async def _load(self, user_id: int, fresh: bool) -> Versioned | None:
        if not fresh and user_id in self.cache:
            self.cache.move_to_end(user_id)
            return self.cache[user_id]
        got = await self.store.get(user_id)
        self._remember(user_id, got)
        return got

    def _remember(self, user_id: int, got: Versioned | None) -> None:
        if got is None:
            self.cache.pop(user_id, None)
            return
        self.cache[user_id] = got
        self.cache.move_to_end(user_id)
        if len(self.cache) > CACHE_USERS:
            self.cache.popitem(last=False)

    async def _update(self, user_id: int, step: Step) -> Doc:
        """Apply one event with optimistic concurrency; see the module docstring."""
        fresh = False
        for _ in range(MAX_TRIES):
            got = await self._load(user_id, fresh)
            version, state = got if got else (0, None)
            try:
                resp, new = await step(state)
            except HTTPException:
                if fresh:
                    raise
                fresh = True
                continue
            if new is None:  # a repeated event: its first answer
                if fresh:
                    return resp
            elif await self.store.put(user_id, new, version):
                self._remember(user_id, (version + 1, new))
                return resp
            fresh = True
        raise HTTPException(409, f"user {user_id} is being updated concurrently; retry the event")

    # -- coalesced model calls ----------------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _decide(self, reqs: list[Doc]) -> list[list[float]]:
        if self.dt is None:
            return self.local_dt.probs(reqs)
        return await self.dt.decide.remote(reqs)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _reward(self, reqs: list[Doc]) -> list[float]:
        if self.hrm is None:
            return self.local_hrm.rewards(reqs)
        return await self.hrm.reward.remote(reqs)

    async def _target_gain(self) -> float:
        if self.dt is None:
            return await self.local_dt.target_gain()
        return await self.dt.target_gain.remote()

    # -- endpoints ----------------------------------------------------------------------------

    @api.get("/healthz")
    async def health(self) -> dict[str, Any]:
        replica = serve.get_replica_context().replica_id.unique_id
        return {"status": "ok", "policy": self.policy, "state_store": self.store_kind,
                "replica": replica}  # fmt: skip

    @api.post("/users/{user_id}/day", response_model=StartDayResponse)
    async def start_day(self, user_id: int, body: StartDay) -> Doc:
        async def step(old: Doc | None) -> tuple[Doc, Doc | None]:
            if old and old["day"] == body.day and body.event_id in old["events"]:
                return old["events"][body.event_id], None
            feats = body.features.model_dump()
            (r1, source), gain = await asyncio.gather(
                self.lrtg.r1.remote(feats), self._target_gain()
            )
            r1 *= gain
            resp = {"user_id": user_id, "day": body.day, "r1_s": r1, "source": source}
            state = {
                **{"day": body.day, "features": feats, "r1": r1, "open": None},
                **{"rewards": [], "obs": [], "hours": [], "actions": []},
                "events": {body.event_id: resp},
            }
            return resp, state

        return await self._update(user_id, step)

    @api.post("/users/{user_id}/entry", response_model=EntryResponse)
    async def entry(self, user_id: int, body: Entry) -> Doc:
        async def step(state: Doc | None) -> tuple[Doc, Doc | None]:
            if state is None:
                raise _unknown(user_id)
            if body.event_id in state["events"]:
                return state["events"][body.event_id], None
            if state["open"] is not None:
                raise HTTPException(
                    409, "the previous entry's session has not ended (POST .../session_end first)"
                )
            t = len(state["actions"])
            req = {"r1": state["r1"], "rewards": state["rewards"], "obs": state["obs"],
                   "actions": state["actions"], "obs_now": body.obs, "hour": body.hour, "t": t,
                   "features": state["features"]}  # fmt: skip
            if self.policy == "klan":
                if self.klan is None:
                    raise HTTPException(503, "policy klan is selected but no KLAN deployment")
                probs = await self.klan.decide.remote(req)
            else:
                probs = await self._decide(req)
            page = max(range(len(probs)), key=probs.__getitem__)
            resp = {"page": PAGES[page], "page_index": page, "probs": probs, "rtg_s": _rtg(state),
                    "session_idx": t, "policy": self.policy}  # fmt: skip
            opened = {"obs": body.obs, "hour": body.hour, "action": page}
            events = {**state["events"], body.event_id: resp}
            return resp, {**state, "open": opened, "events": events}

        return await self._update(user_id, step)

    @api.post("/users/{user_id}/session_end", response_model=SessionEndResponse)
    async def session_end(self, user_id: int, body: SessionEnd) -> Doc:
        async def step(state: Doc | None) -> tuple[Doc, Doc | None]:
            if state is None:
                raise _unknown(user_id)
            if body.event_id in state["events"]:
                return state["events"][body.event_id], None
            entry = state["open"]
            if entry is None:
                raise HTTPException(
                    409, "session end without a matching entry (POST .../entry first)"
                )
            t = len(state["actions"])
            reward = await self._reward(
                {"features": state["features"], "obs": entry["obs"], "hour": entry["hour"],
                 "t": t, "action": entry["action"], "video_views": body.video_views,
                 "n_switches": body.n_switches, "usage_time": body.usage_time}
            )  # fmt: skip
            new = {**state, "open": None, "obs": [*state["obs"], entry["obs"]],
                   "hours": [*state["hours"], entry["hour"]],
                   "actions": [*state["actions"], entry["action"]],
                   "rewards": [*state["rewards"], reward]}  # fmt: skip
            resp = {"reward_s": reward, "rtg_s": _rtg(new), "sessions": t + 1}
            new["events"] = {**state["events"], body.event_id: resp}
            return resp, new

        return await self._update(user_id, step)

    @api.get("/users/{user_id}/state", response_model=UserState)
    async def user_state(self, user_id: int) -> Doc:
        got = await self._load(user_id, fresh=True)  # authoritative: another replica may write
        if got is None:
            raise _unknown(user_id)
        s = got[1]
        return {"user_id": user_id, "day": s["day"], "r1_s": s["r1"], "rtg_s": _rtg(s),
                "sessions": len(s["actions"]), "actions": s["actions"],
                "rewards_s": s["rewards"], "open_entry": s["open"] is not None}  # fmt: skip
