"""Operations routes without a token: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from dispatch.api.deps import OpsStateDep
from dispatch.api.roles import public

# Probes and the metrics scrape come from the host's own tooling, without a user.
router = APIRouter(tags=["operations"], dependencies=[public()])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (says nothing about its dependencies)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: OpsStateDep, response: Response) -> dict[str, Any]:
    """Ready to take alarms: the database answers and every device link is connected."""
    checks: dict[str, bool] = {}
    try:
        await state.db.read(lambda s: s.execute(text("SELECT 1")).scalar_one())
        checks["database"] = True
    except Exception:
        checks["database"] = False
    for name, check in state.readiness.items():
        checks[name] = bool(check())
    ready = all(checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": ready, "checks": checks}


@router.get("/metrics")
async def metrics() -> Response:
    # Off the event loop: the alarm counts are database queries, and under `trygg run`
    # this loop also carries the embedded broker.
    body = await asyncio.to_thread(generate_latest)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
