"""The durable event log: every decoded device message, stored once per idempotency key.

The gateway appends; dispatch consumes rows whose `processed_at` is empty (an inbox), so
an event that was answered to its device is never lost even if dispatch is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from sqlalchemy import (
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from devices.events import DeviceEvent
from trygg.db import Base, UTCDateTime


class DeviceEventRow(Base):
    __tablename__ = "device_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    protocol: Mapped[str] = mapped_column(String(16))
    cid: Mapped[str] = mapped_column(String(32), index=True)
    ref: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    device_type: Mapped[str | None] = mapped_column(String(8))
    device_id: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str | None] = mapped_column(String(16))
    status_code: Mapped[str | None] = mapped_column(String(8))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    location_code: Mapped[str | None] = mapped_column(String(8))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    process_error: Mapped[str | None] = mapped_column(Text)

    # The inbox: unprocessed events in order. A partial index on id keeps "the next 100"
    # a short range scan however long the backlog, where an index on processed_at made
    # every look read and sort the whole backlog (dispatch fell behind a flood for good).
    __table_args__ = (
        Index("ix_device_events_inbox", "id",
              sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
    )


class DeviceLink(Base):
    """When each device was last heard from: the basis of noticing a device gone quiet."""

    __tablename__ = "device_links"
    cid: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_kind: Mapped[str] = mapped_column(String(32))


@dataclass(frozen=True, slots=True)
class Incoming:
    event: DeviceEvent
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: int
    duplicate: bool


def append_events(session: Session, items: Sequence[Incoming]) -> list[Stored]:
    """Store each new event once; a resend (same key) gets the id of the first copy."""
    if not items:
        return []
    # Core statements built once, on the session's connection: this runs for every batch
    # of device messages, and building and ORM-executing statements cost more than SQLite.
    conn = session.connection()
    item_keys = [item.event.idempotency_key for item in items]  # a digest each: once
    known: dict[str, int] = {
        key: row_id for key, row_id in conn.execute(_KNOWN, {"keys": list(set(item_keys))})}
    fresh: dict[str, dict[str, object]] = {}
    for key, item in zip(item_keys, items, strict=True):
        if key not in known and key not in fresh:
            fresh[key] = _row_values(item, key)
    new_ids: dict[str, int] = (
        {key: row_id for key, row_id in conn.execute(_INSERT, list(fresh.values()))}
        if fresh else {})
    _touch_links(conn, items)
    results: list[Stored] = []
    seen_in_batch: set[str] = set()
    for key in item_keys:
        if key in known:
            results.append(Stored(known[key], duplicate=True))
        else:
            results.append(Stored(new_ids[key], duplicate=key in seen_in_batch))
            seen_in_batch.add(key)
    return results


_EVENTS = DeviceEventRow.__table__
_LINKS = DeviceLink.__table__
assert isinstance(_EVENTS, Table) and isinstance(_LINKS, Table)
_KNOWN = select(_EVENTS.c.idempotency_key, _EVENTS.c.id).where(
    _EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_INSERT = insert(_EVENTS).returning(_EVENTS.c.idempotency_key, _EVENTS.c.id)


def _link_upsert(dialect: ModuleType) -> Any:
    stmt = dialect.insert(_LINKS)
    return stmt.on_conflict_do_update(
        index_elements=[_LINKS.c.cid],
        set_={"last_seen_at": stmt.excluded.last_seen_at, "last_kind": stmt.excluded.last_kind},
    )


_UPSERT_LINK = {"sqlite": _link_upsert(sqlite), "postgresql": _link_upsert(postgresql)}


def _clip(value: str | None, column: str) -> str | None:
    """Cut a free device field to its column: an odd unit's long component or location
    must neither be refused (it may be an alarm) nor fail the whole batch of other units'
    alarms on a database that enforces lengths (PostgreSQL does, SQLite does not)."""
    if value is None:
        return None
    length = _EVENTS.c[column].type.length  # type: ignore[attr-defined]
    return value[:length]


def _row_values(item: Incoming, key: str) -> dict[str, object]:
    e = item.event
    return {
        "idempotency_key": key,
        "protocol": e.protocol,
        "cid": e.cid,
        "ref": e.ref,
        "kind": e.kind.value,
        "device_type": _clip(e.device_type, "device_type"),
        "device_id": _clip(e.device_id, "device_id"),
        "component": _clip(e.component, "component"),
        "status_code": _clip(e.status_code, "status_code"),
        "priority": e.priority,
        "location_code": _clip(e.location_code, "location_code"),
        "staff_id": _clip(e.staff_id, "staff_id"),
        "payload": item.payload.decode("utf-8", errors="replace"),
        "received_at": item.received_at,
    }


def _touch_links(conn: Connection, items: Sequence[Incoming]) -> None:
    latest: dict[str, Incoming] = {}
    for item in items:
        latest[item.event.cid] = item
    rows = [
        {"cid": cid, "last_seen_at": it.received_at, "last_kind": it.event.kind.value}
        for cid, it in latest.items()
    ]
    conn.execute(_UPSERT_LINK[conn.dialect.name], rows)
