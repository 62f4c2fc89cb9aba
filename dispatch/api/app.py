"""Build the FastAPI application: API routers, operations routes and the dashboard."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError

from dispatch.api import (
    alarms,
    audit,
    health,
    locks,
    mobile,
    ops,
    orders,
    registry,
    reports,
    session,
    stream,
    users,
)
from dispatch.api.deps import AppState, OpsState
from dispatch.api.edge import harden, path_for_logs
from dispatch.api.roles import declare_roles, public

log = structlog.get_logger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def create_app(state: AppState) -> FastAPI:
    # FastAPI's own /docs and /redoc load their assets from a CDN: harden() serves /docs.
    app = FastAPI(title="Trygg", version="0.1.0",
                  description="Alarm dispatch for municipal social-care alarms",
                  docs_url=None, redoc_url=None)
    app.state.trygg = state
    for module in (ops, session, users, alarms, locks, health, registry, orders, audit,
                   reports, mobile, stream):
        app.include_router(module.router)
    # The dashboard ships with the package: alarm centres run on closed networks.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # The page shell holds no data (the API it calls says who may see what).
    @app.get("/", include_in_schema=False, dependencies=[public()])
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")  # Cache-Control: no-store, see edge

    app.add_exception_handler(DataError, _value_does_not_fit)
    harden(app, max_body_bytes=state.settings.max_request_bytes)
    declare_roles(app)
    return app


async def _value_does_not_fit(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot store (too long for its column, a NUL character) is the
    caller's mistake, said as such: not a 500, and nothing half-stored (the transaction
    rolled back)."""
    log.warning("request_value_refused_by_database", path=path_for_logs(request.url.path),
                error=type(getattr(exc, "orig", exc)).__name__)
    return JSONResponse({"detail": "a value does not fit: too long for its field, or it "
                                   "holds a character that cannot be stored (such as NUL)"},
                        status_code=422)


def create_ops_app(state: OpsState) -> FastAPI:
    """Only /healthz, /readyz and /metrics: what a gateway-only process serves."""
    app = FastAPI(title="Trygg gateway", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.trygg = state
    app.include_router(ops.router)
    harden(app, max_body_bytes=state.settings.max_request_bytes, docs=False)
    declare_roles(app)
    return app
