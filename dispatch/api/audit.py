"""The audit log over the API: searched and exported (CSV) by an admin or alarm manager;
and `note`, which the other routes use to record a view or an action."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.api.deps import AppState, StateDep, client_address
from dispatch.api.roles import allow
from dispatch.signin import Principal

router = APIRouter(prefix="/api", tags=["audit"])
Reviewer = Annotated[Principal, allow("admin", "alarm_manager")]
MAX_PAGE = 1000


async def note(state: AppState, actor: audit.Actor, action: str, *,
               subject: tuple[str, str | int] | None = None, request: Request | None = None,
               address: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
    """Record one entry in a transaction of its own (a view; a change records its entry
    in the change's own transaction instead)."""
    now = state.clock.now()
    where = address or (client_address(request) if request is not None else None)
    await state.db.write(lambda s: audit.record(s, actor, action, now, subject=subject,
                                                address=where, detail=detail))


@router.get("/audit", response_model=None)
async def search_audit(
    request: Request, state: StateDep, user: Reviewer,
    actor: str | None = None, action: str | None = None,
    subject_type: str | None = None, subject_id: str | None = None,
    since: Annotated[datetime | None, Query(alias="from", description="ISO 8601")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | Response:
    """Newest first, `limit` at a time (`next_cursor` fetches older ones); with
    `format=csv`, every matching entry as one CSV file for the municipality's review."""
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "from and to need a UTC offset, e.g. 2026-11-30T00:00:00+01:00")
    query = audit.AuditQuery(actor=actor, action=action, subject_type=subject_type,
                             subject_id=subject_id, since=since, until=until, before_id=cursor,
                             limit=None if format == "csv" else limit + 1)
    filters = {k: v for k, v in (("actor", actor), ("action", action),
                                 ("subject_type", subject_type), ("subject_id", subject_id),
                                 ("from", since and since.isoformat()),
                                 ("to", until and until.isoformat())) if v is not None}
    await note(state, user, "audit.export" if format == "csv" else "audit.search",
               request=request, detail=filters)
    if format == "csv":
        def chunks() -> Iterator[str]:  # iterated on a worker thread by Starlette
            with state.db.sessions() as s:
                yield from audit.csv_chunks(s, query)

        return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="trygg-audit.csv"'})

    def load(s: Session) -> tuple[list[dict[str, Any]], int | None]:
        rows = audit.search(s, query)
        more = len(rows) > limit
        rows = rows[:limit]
        return [audit.entry_view(e) for e in rows], (rows[-1].id if more else None)

    entries, next_cursor = await state.db.read(load)
    return {"entries": entries, "next_cursor": next_cursor}
