"""The API's own documentation: ``/docs`` (Swagger UI) from files in the ``swagger-ui-bundle-v2``
wheel, served by the app itself (no CDN: the page works offline), and an OpenAPI document that
names the bearer API key and links the endpoints of a user-day (start -> entry -> session end ->
state), which lets a client generator or schemathesis' stateful phase walk a day."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
BEARER = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the API key, when the server has one (GLAN_RAY_API_KEY)",
    }
}


def _user_link(operation: str, description: str, same_day: bool = True) -> dict[str, Any]:
    link = {
        "operationId": operation,
        "parameters": {"user_id": "$request.path.user_id"},
        "description": description,
    }
    if same_day:  # the next event of the same user-day (merged into the generated body)
        link["requestBody"] = {"day": "$request.body#/day"}
    return link


LINKS: dict[str, dict[str, Any]] = {
    "start_day": {
        "Entry": _user_link("entry", "the day's first app entry"),
        "State": _user_link("user_state", "the day so far", same_day=False),
    },
    "entry": {
        "SessionEnd": _user_link("session_end", "the entry's session ends"),
        "State": _user_link("user_state", "the open entry", same_day=False),
    },
    "session_end": {
        "NextEntry": _user_link("entry", "the next app entry"),
        "State": _user_link("user_state", "the day so far", same_day=False),
    },
}
"""Response links per operation id (``operationId`` is the handler's name, set by the app)."""
SERVE_500 = {
    "description": "not this app's answer: Serve's HTTP proxy (or HAProxy) when the ingress "
    "replica died with the request in flight, as plain text without Retry-After. The event may "
    "or may not have been applied: retry it with the same event id and body, which is safe (a "
    "repeat returns the first answer and changes nothing)",
    "content": {"text/plain": {"schema": {"type": "string", "example": "Internal Server Error"}}},
}
USER_ID_EXAMPLE = 42


def _complete(op: dict[str, Any], too_large: dict[str, Any]) -> None:
    """What every operation can answer besides its own codes: 413 (any request's body is
    counted, a GET's too) and Serve's 500; the user id parameter's example."""
    op["responses"].setdefault("413", too_large)
    op["responses"].setdefault("500", SERVE_500)
    for p in op.get("parameters", []):
        if p.get("name") == "user_id":  # a plain integer example (never a stray {})
            p["example"] = USER_ID_EXAMPLE
            p["schema"]["examples"] = [USER_ID_EXAMPLE]


def install(api: FastAPI) -> None:
    """Mount the Swagger UI files and ``/docs``; make ``/openapi.json`` carry auth and links."""
    import swagger_ui_bundle  # the swagger-ui-bundle-v2 wheel

    api.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{api.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = get_openapi(
                title=api.title, version=api.version, description=api.description,
                routes=api.routes,
            )  # fmt: skip
            doc.setdefault("components", {})["securitySchemes"] = BEARER
            too_large = doc["paths"]["/users/{user_id}/entry"]["post"]["responses"]["413"]
            for path in doc["paths"].values():
                for op in path.values():
                    _complete(op, too_large)
                    if any(p.get("name") == "user_id" for p in op.get("parameters", [])):
                        op["security"] = [{"bearer": []}, {}]  # required only with a key
                    links = LINKS.get(op.get("operationId", ""))
                    if links:
                        op["responses"]["200"]["links"] = links
            api.openapi_schema = doc
        return api.openapi_schema

    # FastAPI's documented way to extend the schema replaces the app's openapi method, an
    # assignment mypy refuses on a method
    api.openapi = openapi  # type: ignore[method-assign]
