"""The HTTP edge: request bodies limited before they are read, security headers, offline /docs.

Alarm centres run on closed networks, and the dashboard holds personal data, so every
response says the page may load nothing but its own origin, may not be framed, sniffed or
cached (`/` and `/api/`), and the API docs come from files shipped in the package. Both
middlewares are pure ASGI, wrapped around the whole app (outside Starlette's error
handler, so even a 500 carries the headers): nothing here buffers a body.

BodyTooLarge    a request body passed the limit while it was being received (internal:
                the edge answers it with 413, it never leaves this module)
"""

from __future__ import annotations

import html
import json

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import TryggError
from dispatch.api.roles import public

log = structlog.get_logger(__name__)

REFUSED = Counter("trygg_http_refused_total",
                  "Requests refused at the HTTP edge before the app answered, by reason",
                  ["reason"])

# Only the origin, no inline script or style: what the dashboard and /docs need.
CONTENT_SECURITY_POLICY = ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'; object-src 'none'")
# Swagger UI's stylesheet draws its icons as data: images; its page alone may show them.
DOCS_CONTENT_SECURITY_POLICY = f"{CONTENT_SECURITY_POLICY}; img-src 'self' data:"
SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
# The dashboard shell and everything under /api/ hold or lead to personal data.
NO_STORE_PREFIXES = ("/api/",)
NO_STORE_PATHS = frozenset({"/", "/m/"})  # the dashboard and the phone page
DOCS_PATH = "/docs"
SWAGGER_UI = "/static/vendor/swagger-ui"


def path_for_logs(path: str) -> str:
    """The first two levels of a path (`/api/users`): the rest may be a user's or a
    customer's name or code, which logs never carry."""
    return "/" + "/".join(path.strip("/").split("/")[:2])


class BodyTooLarge(TryggError):
    """A request body passed the limit while it was being received."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body passed the limit of {limit} bytes")
        self.limit = limit


def harden(app: FastAPI, *, max_body_bytes: int, docs: bool = True) -> None:
    """Limit request bodies, set the security headers on every response, serve /docs.

    `docs=False` leaves /docs out (a gateway-only process has no dashboard files to
    serve it from); FastAPI's own /docs loads its assets from a CDN, so turn it off.
    """
    build = app.build_middleware_stack

    def build_hardened() -> ASGIApp:
        return SecurityHeaders(LimitRequestBody(build(), max_body_bytes))

    # Outside ServerErrorMiddleware: add_middleware() would put us inside it.
    app.build_middleware_stack = build_hardened  # type: ignore[method-assign]
    if docs:
        _serve_docs(app)


class LimitRequestBody:
    """Refuse (413) a request body larger than `max_bytes` without ever holding it.

    A declared Content-Length over the limit is answered before the app runs, so no
    byte of the body is read; a body of unknown length is counted as it arrives and
    refused the moment it passes the limit, whatever the app was about to answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send, declared=declared)
            return
        received = 0
        passed = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, passed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    passed = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if passed and not started:
                return  # whatever the app makes of BodyTooLarge, the answer is our 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise  # too late for a 413: let the server drop the connection
        if passed and not started:
            await self._refuse(scope, send, received=received)

    async def _refuse(self, scope: Scope, send: Send, **size: int) -> None:
        REFUSED.labels(reason="body_too_large").inc()
        log.warning("request_body_too_large", method=scope["method"],
                    path=path_for_logs(scope["path"]),
                    limit=self.max_bytes, **size)
        body = json.dumps({"detail": f"The request body is larger than the limit of "
                                     f"{self.max_bytes} bytes."}).encode()
        # Connection: close, so the server stops reading the rest of the body.
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class SecurityHeaders:
    """Set the security headers on every response; `no-store` where personal data is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours = headers_for(scope["path"])
        names = {name.encode() for name in ours}
        extra = [(name.encode(), value.encode()) for name, value in ours.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def headers_for(path: str) -> dict[str, str]:
    """The security headers of a response to `path`, by lower-case name."""
    csp = DOCS_CONTENT_SECURITY_POLICY if path == DOCS_PATH else CONTENT_SECURITY_POLICY
    headers = {"content-security-policy": csp, **SECURITY_HEADERS}
    if path in NO_STORE_PATHS or path.startswith(NO_STORE_PREFIXES):
        headers["cache-control"] = "no-store"
    return headers


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI from the package's own copy, started by a script file (the CSP allows
    no inline script): /docs works on a network with no way out."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=[public()])
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(_docs_page(app.title, request.scope.get("root_path", "") + openapi_url))


def _docs_page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{html.escape(title)} API</title>
  <link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <script src="{SWAGGER_UI}/swagger-ui-bundle.js" defer></script>
  <script src="/static/docs.js" defer></script>
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{html.escape(openapi_url)}"></div>
</body>
</html>
"""
