"""Lock routes: have the digital lock at an open alarm's site opened remotely."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from dispatch import locks
from dispatch.api.alarms import visible_to
from dispatch.api.deps import StateDep, client_address, known_id
from dispatch.api.roles import allow
from dispatch.models import Alarm
from dispatch.services import AlarmNotFound
from dispatch.signin import Principal

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/alarms", tags=["alarms"])
# The alarm centre, and the responders of the alarm's own team (`visible_to`).
Opener = Annotated[Principal, allow("operator", "responder")]


class OpenLockIn(BaseModel):
    cid: str | None = Field(default=None, pattern=r"^[0-9]{1,32}$",
                            description="which lock, when the site has more than one")


@router.post("/{alarm_id}/open-lock", status_code=status.HTTP_202_ACCEPTED)
async def open_lock(alarm_id: int, request: Request, state: StateDep, user: Opener,
                    body: OpenLockIn | None = None) -> dict[str, Any]:
    """Send the lock at the alarm's site an unlock command, while the alarm is open.

    Accepted, not done: the command goes out through the outbox, and the lock's own
    report of the opening appears on the alarm's trail. The request is in the audit log
    (`lock.open`) and on the trail (`lock_open_requested`). 409 when the alarm is not
    open or its site has no lock; a responder of another team gets 404.
    """
    known_id(alarm_id, "alarm")
    now, address = state.clock.now(), client_address(request)
    cid = body.cid if body else None

    def request_opening(s: Session) -> locks.LockOpening:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None or not visible_to(alarm, user):
            raise AlarmNotFound(alarm_id)
        return locks.open_remotely(s, alarm, user, now, topic_root=state.rules.topic_root,
                                   address=address, cid=cid)

    try:
        opening = await state.db.write(request_opening)
    except AlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except locks.CannotOpenLock as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    # Ids and the role only: who it was is in the audit log.
    log.info("lock_open_requested", alarm_id=alarm_id, cid=opening.cid, ref=opening.ref,
             role=user.role)
    await state.dispatcher.changed([alarm_id])  # the trail to the dashboards, and the outbox
    return {"alarm_id": alarm_id, "lock": opening.cid, "ref": opening.ref,
            "requested_at": opening.requested_at.isoformat(),
            "expires_at": opening.expires_at.isoformat()}
