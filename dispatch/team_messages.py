"""Messages to responder teams and coordinators, queued in the outbox with the change.

Written in the same transaction as the decision to send them and published after the
commit by the dispatcher's outbox loop (`services.pending_outbox`), so a crash between
the two re-sends rather than loses. Ids and codes only, plus the name of the responder
being called (the team's own staff): who lives at the site stays in the team's records.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.models import Alarm, OutboxMessage


def queue(session: Session, root: str, subtopic: str, alarm: Alarm, now: datetime,
          kind: str, **extra: Any) -> None:
    """Queue `kind` about `alarm` for `{root}/{subtopic}`."""
    # The message id lets a team app drop a message it already has (one published again
    # after a crash).
    message_id = str(uuid.uuid4())
    payload: dict[str, Any] = {
        "message_id": message_id,
        "kind": kind, "alarm_id": alarm.id, "cid": alarm.cid, "state": alarm.state,
        "team": alarm.team_code, "at": now.isoformat(),
        "called_out_at": alarm.called_out_at.isoformat() if alarm.called_out_at else None,
        "reminders": alarm.reminder_count,
        **extra,
    }
    session.add(OutboxMessage(topic=f"{root}/{subtopic}", message_id=message_id,
                              payload=json.dumps(payload), created_at=now))
