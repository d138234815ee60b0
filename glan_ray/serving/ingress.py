"""The HTTP front: the ingress replica, whose handlers call the model deployments through handles.

Each replica serves one app spec (the ``app`` it is built with: the spec its models were trained
on): its FastAPI app (``routes.make_api``, made in the replica) parses and documents that spec's
request bodies (``app_bodies.bodies_for``), and the handlers build that spec's observations and
answer in its pages.

Client mistakes are 4xx with a message that names the field or the state problem, never a 500:
422 for a malformed body (strict, finite, bounded: ``app_bodies``), 413 for an oversized one
(streamed or not), 401 without the API key when one is configured, 404 for an unknown user, 409
for an event that does not fit the user's day (an entry while a session is open, a session end
without an entry, a day that is not after the current one, an entry of another day, an event id
reused with another body). 503 with ``Retry-After`` when the state store or a model replica is
down; the client retries the same event.

Events: every request carries an ``event_id`` and names its ``day``; ids are scoped per user,
endpoint and day. Every id of the user's current day is kept, and those of the
``EVENT_WINDOW_DAYS`` days before it: a repeat within that window with the same body returns the
first answer and changes nothing, however late in the window; a repeat with another body is a
409. An event of an older day is a 409 (its day is over) and is never applied, so no event is
ever applied twice. Memory is bounded: a day holds at most ``MAX_SESSIONS`` sessions (2 events
each, plus its start), so a user's document keeps at most ``EVENT_WINDOW_DAYS + 1`` days of
ids. So a client may retry anything.

Hot path: every event is one read-modify-write of the user's document. Reads come from this
replica's cache of the versions it last wrote or read; the write goes through to the store as a
compare-and-set on that version (``state.StateStore``), so a cache made stale by another replica
(or a restart) only costs a failed write and a redo on a fresh read. Any answer other than a
successful write (a 4xx, a repeated event) is re-checked on a fresh read before it is given.
Concurrent requests share one call per hop: the observations and DT decisions, HRM rewards and
store writes of all requests in flight are coalesced with ``@serve.batch`` (no wait: a request
that arrives while a call is in flight joins the next one), so a batch of 32 entries costs one
``build_obs`` and one DT call; a request that fails inside a batch fails alone
(``batching.per_item``).

Exploration (``user_config.exploration``, ``policy.explore``): the DT's π (softmax of its logits)
or KLAN's (its fused scores normalised) becomes the serving distribution, and the page is drawn
from it by inverse CDF of a uniform that is a function of (``user_config.seed``, user, day, the
entry's event id) only, so a retried entry draws the same page even when it is redone.

Decision log (``glan_ray.data.decision_log``): every applied event's record (day start, entry,
session end) is written in the same store transaction as the state (``state.StateStore.put``),
unless ``user_config.decision_log`` is false.
"""

import asyncio
import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data import decision_log as dlog
from glan_ray.policy import glan_step
from glan_ray.policy.explore import Exploration, sample_pages
from glan_ray.serving import features, http
from glan_ray.serving.app_bodies import bodies_for, input_names
from glan_ray.serving.batching import NonFiniteOutput, finite, per_item
from glan_ray.serving.bodies import MAX_SESSIONS_PER_DAY, OPTIONAL_LOG_FIELDS
from glan_ray.serving.deployments import DTModel, HRMModel, app_of
from glan_ray.serving.routes import make_api
from glan_ray.serving.state import LogRow, Versioned, make_store

logger = logging.getLogger(__name__)

CACHE_USERS = 100_000
"""Users whose state an ingress replica keeps in memory (least recently used evicted)."""
MAX_TRIES = 4
"""Compare-and-set attempts of one event before answering 409 (concurrent writers)."""
EVENT_WINDOW_DAYS = 1
"""Days before the user's current day whose event ids are still kept (and answered on a repeat);
an event of an older day is a 409 and never applied."""
MAX_SESSIONS = int(MAX_SESSIONS_PER_DAY)
"""Sessions a user-day may hold (an entry past them is a 409): bounds the ids a day keeps."""
VERSIONS_TTL_S = 10.0
"""How long the model versions the replicas report are reused for the decision log."""
USER_CONFIG = {"policy", "dt", "hrm", "critic", "critic_lambda", "exploration", "seed",
               "decision_log"}  # fmt: skip

Doc = dict[str, Any]
Step = Callable[[Doc | None], Awaitable[tuple[Doc, Doc, dlog.Record | None]]]
"""One new event on the current state: (response, new state, its decision-log record)."""


def entry_uniform(seed: int, user_id: int, day: int, event_id: str) -> float:
    """The uniform in [0, 1) an entry's page is drawn with: a hash of (seed, user, day, event
    id), so a retried entry gets the same page."""
    raw = f"{seed}|{user_id}|{day}|{event_id}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") / 2.0**64


def parse_user_config(
    user_config: dict[str, Any], app: AppSpec | None = None
) -> tuple[str, Exploration, int, bool]:
    """(policy, exploration, seed, decision_log) of an ingress ``user_config`` of the Serve app
    of spec ``app`` (None: the PLPM app); a bad value is a ``ValueError`` naming its field."""
    unknown = sorted(set(user_config) - USER_CONFIG)
    if unknown:
        raise ValueError(f"ingress user_config: unknown field(s) {unknown}; valid: "
                         f"{sorted(USER_CONFIG)}")  # fmt: skip
    policy = user_config.get("policy", "glan")
    if policy not in ("glan", "klan"):
        raise ValueError(f"policy must be glan or klan, got {policy!r}")
    spec = user_config.get("exploration", "greedy")
    if not isinstance(spec, str):
        raise ValueError(f"user_config.exploration must be a string such as 'epsilon=0.1', "
                         f"got {spec!r}")  # fmt: skip
    try:
        exploration = Exploration.parse(spec)
    except ValueError as e:
        raise ValueError(f"user_config.exploration: {e}") from None
    seed = user_config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"user_config.seed must be an integer, got {seed!r}")
    log = user_config.get("decision_log", True)
    if not isinstance(log, bool):
        raise ValueError(f"user_config.decision_log must be true or false, got {log!r}")
    if log and app is not None and app.fingerprint() != plpm_spec().fingerprint():
        raise ValueError(
            f"user_config.decision_log: the decision log records the PLPM app's entries "
            f"(data.decision_log.EntryRecord has its live_count and 3 pages); app {app.name!r} "
            "is served with decision_log false"
        )
    if policy == "klan" and app is not None and app.fingerprint() != plpm_spec().fingerprint():
        raise ValueError(f"policy klan serves the PLPM app only (KlanPolicy); app {app.name!r} "
                         "is served with policy glan")  # fmt: skip
    try:
        glan_step.critic_lambda(user_config.get("critic_lambda"))
    except ValueError as e:
        raise ValueError(f"user_config.{e}") from None
    return policy, exploration, seed, log


def _rtg(state: Doc) -> float:
    """R̂ now: eq. 30 applied to each finished session's reward."""
    return float(glan_step.next_rtg(state["r1"], sum(state["rewards"])))


def _digest(body: Any) -> str:
    """Fingerprint of a request body without its event id (a repeat must match it)."""
    d = body.model_dump(exclude={"event_id"})
    for k in OPTIONAL_LOG_FIELDS:  # absent: the fingerprint of a body sent before they existed
        if k in d and d[k] is None:
            del d[k]
    raw = json.dumps(d, sort_keys=True).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _unknown(user_id: int) -> HTTPException:
    return HTTPException(
        404, f"unknown user {user_id}: start the day first (POST /users/{user_id}/day)"
    )


def _check_day(state: Doc, day: int) -> None:
    if day < state["day"]:
        raise HTTPException(409, _day_over(day, state["day"]))
    if day > state["day"]:
        raise HTTPException(
            409, f"day {day} has not started (current {state['day']}): POST .../day first"
        )


def _check_app(state: Doc, served: str) -> None:
    """409 unless the user's day was started by a Serve app of the spec this one serves (fingerprint
    ``served``; a document written before days recorded it: the PLPM app's)."""
    started = state.get("app") or plpm_spec().fingerprint()
    if started != served:
        raise HTTPException(
            409, f"day {state['day']} was started by a Serve app of another app spec (fingerprint "
            f"{started}; this one serves {served}): start a new day (POST .../day)"
        )  # fmt: skip


def _event_day(key: str) -> int:
    """The day of a kept event's key ``<day>|<endpoint>:<id>``; -1 for a key written before
    ids were scoped by day (``<endpoint>:<id>``: dropped at the next day start)."""
    head, sep, _ = key.partition("|")
    return int(head) if sep and head.isdigit() else -1


def _seen(state: Doc | None, day: int, key: str) -> list[Any] | None:
    """[digest, first answer] of event ``key`` of ``day`` if it was applied and is still kept
    (a document written before ids were scoped by day keeps them under ``key`` alone)."""
    if state is None:
        return None
    events = state["events"]
    return events.get(f"{day}|{key}") or events.get(key)


def _kept_events(old: Doc | None, day: int, key: str, seen: list[Any]) -> dict[str, Any]:
    """The events a user's document keeps after event ``key`` was applied with the user's day
    now ``day``: when the day moves on, those of days before ``day - EVENT_WINDOW_DAYS`` go (and
    any key without a day)."""
    events = old["events"] if old else {}
    if old is not None and old["day"] != day:
        first = day - EVENT_WINDOW_DAYS
        events = {k: v for k, v in events.items() if _event_day(k) >= first}
    return {**events, key: seen}


def _day_over(day: int, current: int) -> str:
    return (
        f"day {day} is over: the user's current day is {current} (event ids are kept for days "
        f"{current - EVENT_WINDOW_DAYS}..{current}; an older day's event is never applied)"
    )


async def _guard(call: Awaitable[Any]) -> Any:
    """A model's answer for one request: unavailable replicas are 503; a per-request failure or
    a non-finite output is this request's 422 (its inputs are out of the model's range)."""
    try:
        out = await call
    except (RayError, RayServeException) as e:
        raise http.Unavailable(f"model replica: {type(e).__name__}") from e
    if isinstance(out, NonFiniteOutput | ValueError | IndexError | OverflowError):
        raise HTTPException(422, f"the model cannot score these inputs: {out}")
    if isinstance(out, Exception):
        raise out
    if not finite(out):
        raise HTTPException(422, "the model's output is not finite for these inputs")
    return out


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """``dt`` / ``hrm`` are the model deployments' handles, or None when the models are
    colocated (``build_app(colocate_models=True)``): then ``user_config`` names their
    checkpoints (``dt``, ``hrm``) and this replica runs them in-process. ``api_key``: bearer
    key every user route requires (None: open; ``build_app`` insists on one beyond loopback).
    ``app``: the app spec served, as plain data (``AppSpec.to_dict``; None: the PLPM app): its
    request bodies, observations and pages; the replica's FastAPI app is made for it
    (``__serve_build_asgi_app__``, ``routes.make_api``)."""

    def __init__(
        self,
        lrtg: DeploymentHandle,
        dt: DeploymentHandle | None,
        hrm: DeploymentHandle | None,
        klan: DeploymentHandle | None = None,
        state_store: str | None = None,
        user_config: dict[str, Any] | None = None,
        api_key: str | None = None,
        app: dict[str, Any] | None = None,
    ) -> None:
        self.lrtg, self.dt, self.hrm, self.klan = lrtg, dt, hrm, klan
        self.spec = app_of({"app": app})
        self.bodies = bodies_for(self.spec)
        self.fingerprint = self.spec.fingerprint()
        self.store = make_store(state_store)
        self.store_kind = self.store.kind
        self.cache: OrderedDict[int, Versioned] = OrderedDict()
        self.policy = "glan"
        self.exploration, self.seed, self.log_on = Exploration(), 0, True
        self.versions: tuple[float, dict[str, str]] = (-1e9, {})
        self.local_dt: Any = None  # DTModel's class, in this replica (colocated models)
        self.local_hrm: Any = None
        self.api_key = api_key or os.environ.get("GLAN_RAY_API_KEY") or None
        if user_config:
            self.reconfigure(user_config)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """This replica's FastAPI app: the routes of its app spec (``routes.make_api``)."""
        return make_api(self, self.bodies, self.api_key)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        policy, exploration, seed, log_on = parse_user_config(user_config, self.spec)
        if self.dt is None:  # colocated: (re)load a model only when its config changes
            dt = {
                "path": user_config.get("dt"),
                "critic": user_config.get("critic"),
                "critic_lambda": glan_step.critic_lambda(user_config.get("critic_lambda")),
                "app": self.spec.to_dict(),
            }
            if self.local_dt is None or self.local_dt.config() != dt:
                # @serve.deployment made it a Deployment; mypy types a decorated class as the class
                self.local_dt = DTModel.func_or_class(dt)  # type: ignore[attr-defined]
            if self.local_hrm is None or self.local_hrm.loaded() != user_config.get("hrm"):
                self.local_hrm = HRMModel.func_or_class(  # type: ignore[attr-defined]
                    {"path": user_config.get("hrm"), "app": self.spec.to_dict()}
                )
        self.policy = policy
        self.exploration, self.seed, self.log_on = exploration, seed, log_on
        self.versions = (-1e9, {})  # ask the replicas again

    async def _models(self) -> dict[str, str]:
        """Model name -> ``path#hash`` of what serves now (``deployments.checkpoint_version``),
        as the replicas report it (reused for ``VERSIONS_TTL_S``)."""
        at, got = self.versions
        if time.monotonic() - at < VERSIONS_TTL_S:
            return got
        calls: dict[str, Awaitable[Any]] = {"lrtg": self.lrtg.version.remote()}
        for name, handle, local in (("dt", self.dt, self.local_dt),
                                    ("hrm", self.hrm, self.local_hrm)):  # fmt: skip
            if handle is not None:
                calls[name] = handle.version.remote()
            elif local is not None:
                calls[name] = local.version()
        if self.klan is not None:
            calls["klan"] = self.klan.version.remote()
        try:
            values = await asyncio.gather(*calls.values())
        except (RayError, RayServeException) as e:
            raise http.Unavailable(f"model replica: {type(e).__name__}") from e
        got = {k: v for k, v in zip(calls, values, strict=True) if v}
        self.versions = (time.monotonic(), got)
        return got

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

    async def _update(self, user_id: int, day: int, key: str, digest: str, step: Step) -> Doc:
        """Apply one event of ``day`` (``key`` = endpoint:event_id) with optimistic
        concurrency; a known event answers its first response; see the module docstring."""
        fresh = False
        for _ in range(MAX_TRIES):
            got = await self._load(user_id, fresh)
            version, state = got if got else (0, None)
            seen = _seen(state, day, key)
            try:
                if seen is not None and seen[0] != digest:
                    raise HTTPException(
                        409, f"event id {key.split(':', 1)[1]!r} was already used with another "
                        f"body on this endpoint on day {day}; use a new event id"
                    )  # fmt: skip
                resp, new, rec = (seen[1], None, None) if seen is not None else await step(state)
            except HTTPException:
                if fresh:
                    raise
                fresh = True
                continue
            if new is None:  # a repeated event: its first answer
                if fresh:
                    return resp
            else:
                new["events"] = _kept_events(state, new["day"], f"{day}|{key}", [digest, resp])
                row: LogRow | None = None
                if rec is not None and self.log_on:
                    row = (rec.endpoint, rec.day, rec.event_id, dlog.to_json(rec))
                if await self.store.put(user_id, new, version, row):
                    self._remember(user_id, (version + 1, new))
                    return resp
            fresh = True
        raise HTTPException(409, f"user {user_id} is being updated concurrently; retry the event")

    # -- coalesced model calls ----------------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _decide(
        self, items: list[tuple[Doc, features.Observe]]
    ) -> list[tuple[list[float], list[float]] | Exception]:
        """Each entry's observation and the DT's page probabilities: (probs, obs). The batch's
        observations are one ``build_obs`` call, its decisions one DT call; an entry that fails
        either gets its own exception (``per_item``), the others their answer."""
        obs = per_item(partial(features.entry_obs_many, self.spec),
                       [observe for _, observe in items])  # fmt: skip
        ok = [i for i, o in enumerate(obs) if not isinstance(o, Exception)]
        out: list[Any] = list(obs)  # the failed observations' exceptions stay
        if not ok:
            return out
        reqs = [items[i][0] for i in ok]
        for i, req in zip(ok, reqs, strict=True):
            req["obs_now"] = obs[i]
        if self.dt is None:
            probs = per_item(self.local_dt.probs, reqs)
        else:
            probs = await self.dt.decide.remote(reqs)
        for i, p in zip(ok, probs, strict=True):
            out[i] = p if isinstance(p, Exception) else (p, obs[i])
        return out

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _reward(self, reqs: list[Doc]) -> list[float | Exception]:
        if self.hrm is None:
            return per_item(self.local_hrm.rewards, reqs)
        return await self.hrm.reward.remote(reqs)

    async def _target_gain(self) -> float:
        if self.dt is None:
            return await self.local_dt.target_gain()
        return await self.dt.target_gain.remote()

    # -- endpoints ----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Liveness: this replica answers (it does not touch the store; see /readyz)."""
        replica = serve.get_replica_context().replica_id.unique_id
        return {"status": "ok", "policy": self.policy, "state_store": self.store_kind,
                "replica": replica}  # fmt: skip

    async def ready(self) -> dict[str, Any]:
        """Readiness: the state store answers (503 with Retry-After while it does not)."""
        await self.store.ping()
        return {"status": "ready", "state_store": self.store_kind}

    async def start_day(self, body: Any, user_id: int) -> Doc:
        """Start the user's day: R̂₁ from L-RTG. Days only move forward."""
        plpm = plpm_spec().fingerprint()  # a document without "app": the PLPM app's

        async def step(old: Doc | None) -> tuple[Doc, Doc, dlog.Record | None]:
            if old is not None and body.day < old["day"]:
                raise HTTPException(409, _day_over(body.day, old["day"]) + "; days only move "
                                    "forward")  # fmt: skip
            if old is not None and body.day == old["day"]:
                raise HTTPException(
                    409, f"day {body.day} already started (under another event id); days only "
                    "move forward"
                )  # fmt: skip
            feats = body.features.model_dump()
            same_app = old if old and (old.get("app") or plpm) == self.fingerprint else None
            (r1, source), gain, models = await asyncio.gather(
                _guard(self.lrtg.r1.remote(feats)), self._target_gain(), self._models()
            )
            r1 = float(glan_step.initial_rtg(r1, gain))
            if not finite(r1):
                raise HTTPException(422, "L-RTG's R̂₁ is not finite for these features")
            resp = {"user_id": user_id, "day": body.day, "r1_s": r1, "source": source}
            state = {
                **{"day": body.day, "features": feats, "r1": r1, "open": None},
                **{"rewards": [], "obs": [], "hours": [], "actions": []},
                **features.day_context(self.spec, body.last_exit_page, same_app),
                "app": self.fingerprint,
            }
            rec = dlog.DayStart(user_id, body.day, body.event_id, feats, state["last_exit"], r1,
                                source, self.policy, models, time.time(),
                                app=self.fingerprint) if self.log_on else None  # fmt: skip
            return resp, state, rec

        return await self._update(user_id, body.day, f"day:{body.event_id}", _digest(body), step)

    async def entry(self, body: Any, user_id: int) -> Doc:
        """An app entry: the landing page to show."""
        inputs = {name: getattr(body, name) for name in input_names(self.spec)}

        async def step(state: Doc | None) -> tuple[Doc, Doc, dlog.Record | None]:
            if state is None:
                raise _unknown(user_id)
            _check_day(state, body.day)
            _check_app(state, self.fingerprint)
            if state["open"] is not None:
                raise HTTPException(
                    409, "the previous entry's session has not ended (POST .../session_end first)"
                )
            t = len(state["actions"])
            if t >= MAX_SESSIONS:
                raise HTTPException(
                    409, f"day {body.day} already has {MAX_SESSIONS} sessions, the most a user-day "
                    "holds"
                )  # fmt: skip
            req = {"r1": state["r1"], "rewards": state["rewards"], "obs": state["obs"],
                   "actions": state["actions"], "hour": body.hour, "t": t,
                   "features": state["features"]}  # fmt: skip
            if self.policy == "klan":
                if self.klan is None:
                    raise http.Unavailable("policy klan is selected but no KLAN deployment")
                obs = features.entry_obs(self.spec, state, body.hour, inputs)
                pi = await _guard(self.klan.decide.remote({**req, "obs_now": obs}))
            else:  # the observation is built with the batch's others (one build_obs)
                pi, obs = await _guard(self._decide((req, (state, body.hour, inputs))))
            models = await self._models()
            try:
                serving = self.exploration.probs(np.asarray([pi], dtype=np.float64),
                                                 self.spec.n_pages)  # fmt: skip
            except ValueError as e:
                raise HTTPException(422, f"the model's page distribution is unusable: {e}") from e
            u = entry_uniform(self.seed, user_id, body.day, body.event_id)
            page = int(sample_pages(serving, np.asarray([u]))[0])
            probs = serving[0].tolist()
            resp = {"page": self.spec.pages[page], "page_index": page, "probs": probs,
                    "propensity": probs[page], "policy_probs": list(pi),
                    "exploration": str(self.exploration), "rtg_s": _rtg(state),
                    "session_idx": t, "policy": self.policy}  # fmt: skip
            opened = {"obs": obs, "hour": body.hour, "action": page, "inputs": inputs,
                      "today_dur": list(state["today_dur"])}  # fmt: skip
            rec = dlog.EntryRecord(
                user_id, body.day, body.event_id, t, body.hour, inputs["live_count"],
                list(state["today_dur"]), obs, page, probs[page], probs=probs, pi=list(pi), u=u,
                rtg=resp["rtg_s"], policy=self.policy, exploration=str(self.exploration),
                models=models, ts=time.time(),
            ) if self.log_on else None  # fmt: skip
            return resp, {**state, "open": opened}, rec

        return await self._update(user_id, body.day, f"entry:{body.event_id}", _digest(body),
                                  step)  # fmt: skip

    async def session_end(self, body: Any, user_id: int) -> Doc:
        """The open entry's session ended: its reward r̂ and the next return-to-go."""
        pages = self.spec.pages

        async def step(state: Doc | None) -> tuple[Doc, Doc, dlog.Record | None]:
            if state is None:
                raise _unknown(user_id)
            _check_day(state, body.day)
            _check_app(state, self.fingerprint)
            entry = state["open"]
            if entry is None:
                raise HTTPException(
                    409, "session end without a matching entry (POST .../entry first)"
                )
            t = len(state["actions"])
            landing = entry["action"]
            conflict = body.page_seq_conflict(pages[landing])
            if conflict:
                raise HTTPException(409, conflict)
            reward = await _guard(self._reward(
                {**entry, "features": state["features"], "t": t, "video_views": body.video_views,
                 "n_switches": body.n_switches, "usage_time": body.usage_time}
            ))  # fmt: skip
            new = {**state, "open": None, "obs": [*state["obs"], entry["obs"]],
                   "hours": [*state["hours"], entry["hour"]],
                   "actions": [*state["actions"], entry["action"]],
                   "rewards": [*state["rewards"], reward],
                   **features.after_session(self.spec, state, entry["action"],
                                            body.page_durations_s, body.exit_page)}  # fmt: skip
            resp = {"reward_s": reward, "rtg_s": _rtg(new), "sessions": t + 1}
            dur = body.page_durations_s
            rec = dlog.SessionEndRecord(
                user_id, body.day, body.event_id, t, landing, list(dur), list(body.video_views),
                body.n_switches, body.usage_time, pages.index(body.exit_page),
                int(dur[landing] < self.spec.dropoff_s),
                page_seq=None if body.page_seq is None else [pages.index(p) for p in body.page_seq],
                watch_time=body.watch_time_s, reward=reward, next_rtg=resp["rtg_s"],
                ts=time.time(),
            ) if self.log_on else None  # fmt: skip
            return resp, new, rec

        return await self._update(user_id, body.day, f"end:{body.event_id}", _digest(body),
                                  step)  # fmt: skip

    async def user_state(self, user_id: int) -> Doc:
        """The user's day so far."""
        got = await self._load(user_id, fresh=True)  # authoritative: another replica may write
        if got is None:
            raise _unknown(user_id)
        s = got[1]
        return {"user_id": user_id, "day": s["day"], "r1_s": s["r1"], "rtg_s": _rtg(s),
                "sessions": len(s["actions"]), "actions": s["actions"],
                "rewards_s": s["rewards"], "open_entry": s["open"] is not None}  # fmt: skip
