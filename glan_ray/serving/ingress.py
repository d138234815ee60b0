"""The HTTP front: a FastAPI app whose handlers call the model deployments through handles.

Client mistakes are 4xx with a message that names the field or the state problem: 422 for a
malformed body (Pydantic names the field), 413 for an oversized one, 404 for an unknown user,
409 for an out-of-order event (an entry while a session is open, a session end without an
entry). A repeated ``event_id`` returns the first response and changes nothing.
"""

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from glan_ray.schema import PAGES
from glan_ray.serving.schemas import (
    Entry,
    EntryResponse,
    SessionEnd,
    SessionEndResponse,
    StartDay,
    StartDayResponse,
    UserState,
)
from glan_ray.serving.state import make_store

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
api = FastAPI(
    title="glan-ray",
    description="Personalized landing pages: GLAN's L-RTG -> DT -> HRM loop (or KLAN).",
    version="1",
)


@api.middleware("http")
async def _limit_body(request: Request, call_next: Any) -> Any:
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
        return JSONResponse(
            {"detail": f"request body over {MAX_BODY_BYTES} bytes (content-length {size})"}, 413
        )
    return await call_next(request)


def _rtg(state: dict[str, Any]) -> float:
    return state["r1"] - sum(state["rewards"])


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        lrtg: DeploymentHandle,
        dt: DeploymentHandle,
        hrm: DeploymentHandle,
        klan: DeploymentHandle | None = None,
        state_store: str | None = None,
        user_config: dict[str, Any] | None = None,
    ) -> None:
        self.lrtg, self.dt, self.hrm, self.klan = lrtg, dt, hrm, klan
        self.store = make_store(state_store)
        self.store_kind = state_store or "embedded"
        self.policy = "glan"
        if user_config:
            self.reconfigure(user_config)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        policy = user_config.get("policy", "glan")
        if policy not in ("glan", "klan"):
            raise ValueError(f"policy must be glan or klan, got {policy!r}")
        self.policy = policy

    async def _state(self, user_id: int) -> dict[str, Any]:
        state = await self.store.get(user_id)
        if state is None:
            raise HTTPException(
                404, f"unknown user {user_id}: start the day first (POST /users/{user_id}/day)"
            )
        return state

    @api.get("/healthz")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "policy": self.policy, "state_store": self.store_kind}

    @api.post("/users/{user_id}/day", response_model=StartDayResponse)
    async def start_day(self, user_id: int, body: StartDay) -> dict[str, Any]:
        old = await self.store.get(user_id)
        if old and old["day"] == body.day and body.event_id in old["events"]:
            return old["events"][body.event_id]
        feats = body.features.model_dump()
        r1, source = await self.lrtg.r1.remote(feats)
        resp = {"user_id": user_id, "day": body.day, "r1_s": r1, "source": source}
        state = {
            **{"day": body.day, "features": feats, "r1": r1, "open": None},
            **{"rewards": [], "obs": [], "hours": [], "actions": []},
            "events": {body.event_id: resp},
        }
        await self.store.put(user_id, state)
        return resp

    @api.post("/users/{user_id}/entry", response_model=EntryResponse)
    async def entry(self, user_id: int, body: Entry) -> dict[str, Any]:
        state = await self._state(user_id)
        if body.event_id in state["events"]:
            return state["events"][body.event_id]
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
                raise HTTPException(503, "policy klan is selected but no KLAN deployment exists")
            probs = await self.klan.decide.remote(req)
        else:
            probs = await self.dt.decide.remote(req)
        page = max(range(len(probs)), key=probs.__getitem__)
        resp = {"page": PAGES[page], "page_index": page, "probs": probs, "rtg_s": _rtg(state),
                "session_idx": t, "policy": self.policy}  # fmt: skip
        state["open"] = {"obs": body.obs, "hour": body.hour, "action": page}
        state["events"][body.event_id] = resp
        await self.store.put(user_id, state)
        return resp

    @api.post("/users/{user_id}/session_end", response_model=SessionEndResponse)
    async def session_end(self, user_id: int, body: SessionEnd) -> dict[str, Any]:
        state = await self._state(user_id)
        if body.event_id in state["events"]:
            return state["events"][body.event_id]
        entry = state["open"]
        if entry is None:
            raise HTTPException(409, "session end without a matching entry (POST .../entry first)")
        t = len(state["actions"])
        reward = await self.hrm.reward.remote(
            {
                "features": state["features"],
                "obs": entry["obs"],
                "hour": entry["hour"],
                "t": t,
                "action": entry["action"],
                "video_views": body.video_views,
                "n_switches": body.n_switches,
                "usage_time": body.usage_time,
            }
        )
        for key, value in (("obs", entry["obs"]), ("hours", entry["hour"]),
                           ("actions", entry["action"]), ("rewards", reward)):  # fmt: skip
            state[key].append(value)
        state["open"] = None
        resp = {"reward_s": reward, "rtg_s": _rtg(state), "sessions": t + 1}
        state["events"][body.event_id] = resp
        await self.store.put(user_id, state)
        return resp

    @api.get("/users/{user_id}/state", response_model=UserState)
    async def user_state(self, user_id: int) -> dict[str, Any]:
        s = await self._state(user_id)
        return {"user_id": user_id, "day": s["day"], "r1_s": s["r1"], "rtg_s": _rtg(s),
                "sessions": len(s["actions"]), "actions": s["actions"],
                "rewards_s": s["rewards"], "open_entry": s["open"] is not None}  # fmt: skip
