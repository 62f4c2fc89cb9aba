"""The audit log: who viewed or changed what, and when, for the municipality's review.

One entry per view of a customer's record or an alarm's details, per reveal of a
protected identity, per registry, user and call-order change (what changed, before and
after), per sign-in, failed sign-in and sign-out. It holds ids, codes and actions; a
personal field that changed (a name, an address, a phone number) is recorded as changed,
never with its value. The table is append-only in the database itself (migration 0004).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dispatch.models import AuditEntry

# Fields whose values are personal data: the log says that they changed, not to what.
PERSONAL_FIELDS = frozenset({"name", "personal_number", "address", "postal_code",
                             "door_name", "phone", "call_order"})
CSV_COLUMNS = ("id", "at", "actor", "role", "action", "subject_type", "subject_id",
               "address", "detail")


class Actor(Protocol):
    @property
    def user_id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str | None: ...


@dataclass(frozen=True)
class System:
    """An actor that is not a signed-in user: the command line, or Trygg itself."""

    name: str
    user_id: int | None = None
    role: str | None = None


def record(session: Session, actor: Actor, action: str, at: datetime, *,
           subject: tuple[str, str | int] | None = None, address: str | None = None,
           detail: Mapping[str, Any] | None = None) -> None:
    session.add(AuditEntry(
        at=at, user_id=actor.user_id, actor=actor.name, role=actor.role, action=action,
        subject_type=subject[0] if subject else None,
        subject_id=str(subject[1]) if subject else None,
        address=address, detail=dict(detail) if detail else None))


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
            ) -> dict[str, Any]:
    """What differs between two snapshots of a record, personal values left out.

    A record created has no `before`, one removed no `after`."""
    keys = sorted(set(before or {}) | set(after or {}))
    out: dict[str, Any] = {}
    for key in keys:
        old = (before or {}).get(key)
        new = (after or {}).get(key)
        if before is not None and after is not None and old == new:
            continue
        if key in PERSONAL_FIELDS:
            out[key] = {"changed": True}
        else:
            out[key] = {"before": old, "after": new}
    return out


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # the cursor: entries older than this one
    limit: int | None = 200


def search(session: Session, query: AuditQuery) -> list[AuditEntry]:
    """Newest first, `limit` of them (None: all)."""
    return list(session.execute(_statement(query)).scalars())


def _statement(query: AuditQuery) -> Select[AuditEntry]:
    q = select(AuditEntry)
    for column, value in ((AuditEntry.actor, query.actor), (AuditEntry.action, query.action),
                          (AuditEntry.subject_type, query.subject_type),
                          (AuditEntry.subject_id, query.subject_id)):
        if value is not None:
            q = q.where(column == value)
    if query.since is not None:
        q = q.where(AuditEntry.at >= query.since)
    if query.until is not None:
        q = q.where(AuditEntry.at < query.until)
    if query.before_id is not None:
        q = q.where(AuditEntry.id < query.before_id)
    q = q.order_by(AuditEntry.id.desc())
    if query.limit is not None:
        q = q.limit(query.limit)
    return q


def entry_view(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "user_id": e.user_id,
            "role": e.role, "action": e.action, "subject_type": e.subject_type,
            "subject_id": e.subject_id, "address": e.address, "detail": e.detail}


def csv_chunks(session: Session, query: AuditQuery, rows_per_chunk: int = 500
               ) -> Iterator[str]:
    """The matching entries as CSV, newest first, a chunk at a time: a log of years is
    exported without holding it in memory."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    entries = session.execute(_statement(query).execution_options(
        yield_per=rows_per_chunk)).scalars()
    for n, e in enumerate(entries, 1):
        view = entry_view(e)
        writer.writerow([_cell(view[c] if c != "detail" else
                               (json.dumps(e.detail, sort_keys=True) if e.detail else ""))
                         for c in CSV_COLUMNS])
        if n % rows_per_chunk == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula (CSV injection) is quoted as text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
