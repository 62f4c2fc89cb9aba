"""Build the FastAPI application: API routers, operations routes and the dashboard."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from dispatch.api import alarms, health, ops, registry, session, stream
from dispatch.api.deps import AppState, OpsState

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(title="Trygg", version="0.1.0",
                  description="Alarm dispatch for municipal social-care alarms")
    app.state.trygg = state
    for module in (ops, session, alarms, health, registry, stream):
        app.include_router(module.router)
    # The dashboard ships with the package: alarm centres run on closed networks.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def create_ops_app(state: OpsState) -> FastAPI:
    """Only /healthz, /readyz and /metrics: what a gateway-only process serves."""
    app = FastAPI(title="Trygg gateway", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.trygg = state
    app.include_router(ops.router)
    return app
