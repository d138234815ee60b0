"""The HTTP routes of one Serve app: a FastAPI app whose request bodies are its spec's.

``make_api(handlers, bodies)`` builds, in each ingress replica (``Ingress``'s
``__serve_build_asgi_app__``), the FastAPI app that parses, validates and documents the requests
of the app spec the models were trained on (``app_bodies.bodies_for``) and hands each to the
ingress's handler of the same name. The guards (``http``) and the docs (``docs``) are the same
for every app; ``/docs`` and ``/openapi.json`` show the spec's fields, units, bounds and pages.

No ``from __future__ import annotations`` here: FastAPI reads each route's body model from its
signature, and the models are made at run time (local names a string annotation cannot name).
"""

from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from glan_ray.serving import docs, http
from glan_ray.serving.app_bodies import Bodies
from glan_ray.serving.bodies import (
    Health,
    Problem,
    Ready,
    SessionEndResponse,
    StartDayResponse,
    UserId,
    UserState,
)

Doc = dict[str, Any]


class Handlers(Protocol):
    """What the routes call: the ingress replica (``ingress.Ingress``)."""

    async def health(self) -> Doc: ...

    async def ready(self) -> Doc: ...

    async def start_day(self, body: Any, user_id: int) -> Doc: ...

    async def entry(self, body: Any, user_id: int) -> Doc: ...

    async def session_end(self, body: Any, user_id: int) -> Doc: ...

    async def user_state(self, user_id: int) -> Doc: ...


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem}


# keyed int | str, as FastAPI's `responses` parameter is typed (a dict's key type is invariant)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("the body is not parseable (e.g. a number literal of thousands of digits)"),
    401: _problem("an API key is configured and the request lacks it"),
    413: _problem(f"the body is over {http.MAX_BODY_BYTES} bytes"),
    422: _problem("invalid body or path: each invalid field, its location and why"),
    503: _problem("the state store or a model is unavailable; retry after Retry-After seconds"),
}
USER_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: _problem("unknown user: start the day first"),
    409: _problem("the event does not fit the user's day (see the detail)"),
}


def make_api(handlers: Handlers, bodies: Bodies, api_key: str | None = None) -> FastAPI:
    """The FastAPI app of ``bodies``' spec, its routes calling ``handlers``; ``api_key``: the
    bearer key every user route requires (None: open)."""
    api = FastAPI(
        title="glan-ray",
        description="Personalized landing pages: GLAN's L-RTG -> DT -> HRM loop (or KLAN). "
        "Every POST carries an event_id: retrying with the same id and body is always safe.",
        version="2",
        docs_url=None,  # docs.install serves /docs from local files
        redoc_url=None,
    )
    api.state.api_key = api_key
    api.add_middleware(http.ApiKey)
    api.add_middleware(http.BodyLimit)  # outermost: nothing reads a body over the limit
    # the decorator form: add_exception_handler's type wants handlers of any Exception
    api.exception_handler(RequestValidationError)(http.validation_problem)
    api.exception_handler(http.Unavailable)(http.unavailable)
    docs.install(api)
    StartDay, Entry, SessionEnd = bodies.start_day, bodies.entry, bodies.session_end
    EntryResponse: type[BaseModel] = bodies.entry_response

    @api.get("/healthz", operation_id="health", response_model=Health)
    async def health() -> Doc:
        """Liveness: this replica answers (it does not touch the store; see /readyz)."""
        return await handlers.health()

    @api.get("/readyz", operation_id="ready", response_model=Ready, responses={503: ERRORS[503]})
    async def ready() -> Doc:
        """Readiness: the state store answers (503 with Retry-After while it does not)."""
        return await handlers.ready()

    @api.post(
        "/users/{user_id}/day",
        operation_id="start_day",
        response_model=StartDayResponse,
        responses={k: v for k, v in USER_ERRORS.items() if k != 404},
    )
    async def start_day(body: StartDay, user_id: UserId) -> Doc:  # type: ignore[valid-type]
        """Start the user's day: R̂₁ from L-RTG. Days only move forward."""
        return await handlers.start_day(body, user_id)

    @api.post(
        "/users/{user_id}/entry",
        operation_id="entry",
        response_model=EntryResponse,
        responses=USER_ERRORS,
    )
    async def entry(body: Entry, user_id: UserId) -> Doc:  # type: ignore[valid-type]
        """An app entry: the landing page to show."""
        return await handlers.entry(body, user_id)

    @api.post(
        "/users/{user_id}/session_end",
        operation_id="session_end",
        response_model=SessionEndResponse,
        responses=USER_ERRORS,
    )
    async def session_end(body: SessionEnd, user_id: UserId) -> Doc:  # type: ignore[valid-type]
        """The open entry's session ended: its reward r̂ and the next return-to-go."""
        return await handlers.session_end(body, user_id)

    @api.get(
        "/users/{user_id}/state",
        operation_id="user_state",
        response_model=UserState,
        responses={k: USER_ERRORS[k] for k in (401, 404, 422, 503)},
    )
    async def user_state(user_id: UserId) -> Doc:
        """The user's day so far."""
        return await handlers.user_state(user_id)

    return api
