"""The durable event log: every decoded device message, stored once per idempotency key.

The gateway appends; dispatch consumes rows whose `processed_at` is empty (an inbox), so
an event that was answered to its device is never lost even if dispatch is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, Table, Text, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from devices.events import DeviceEvent, EventKind
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
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    process_error: Mapped[str | None] = mapped_column(Text)

    def to_event(self) -> DeviceEvent:
        return DeviceEvent(
            kind=EventKind(self.kind),
            protocol=self.protocol,
            cid=self.cid,
            ref=self.ref,
            device_type=self.device_type,
            device_id=self.device_id,
            component=self.component,
            status_code=self.status_code,
            priority=self.priority,
            location_code=self.location_code,
            staff_id=self.staff_id,
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
    item_keys = [item.event.idempotency_key for item in items]  # a digest each: once
    keys = set(item_keys)
    known: dict[str, int] = dict(
        session.execute(
            select(DeviceEventRow.idempotency_key, DeviceEventRow.id).where(
                DeviceEventRow.idempotency_key.in_(keys)
            )
        ).all()
    )
    fresh: dict[str, dict[str, object]] = {}
    for key, item in zip(item_keys, items, strict=True):
        if key not in known and key not in fresh:
            fresh[key] = _row_values(item, key)
    if fresh:
        # Core, not the ORM's bulk path: this runs for every event, the ORM's extra work buys
        # nothing here.
        table = DeviceEventRow.__table__
        assert isinstance(table, Table)
        inserted = session.execute(
            insert(table).returning(table.c.idempotency_key, table.c.id),
            list(fresh.values()),
        )
        new_ids: dict[str, int] = {key: row_id for key, row_id in inserted.all()}
    else:
        new_ids = {}
    _touch_links(session, items)
    results: list[Stored] = []
    seen_in_batch: set[str] = set()
    for key in item_keys:
        if key in known:
            results.append(Stored(known[key], duplicate=True))
        else:
            results.append(Stored(new_ids[key], duplicate=key in seen_in_batch))
            seen_in_batch.add(key)
    return results


def _row_values(item: Incoming, key: str) -> dict[str, object]:
    e = item.event
    return {
        "idempotency_key": key,
        "protocol": e.protocol,
        "cid": e.cid,
        "ref": e.ref,
        "kind": e.kind.value,
        "device_type": e.device_type,
        "device_id": e.device_id,
        "component": e.component,
        "status_code": e.status_code,
        "priority": e.priority,
        "location_code": e.location_code,
        "staff_id": e.staff_id,
        "payload": item.payload.decode("utf-8", errors="replace"),
        "received_at": item.received_at,
    }


def _touch_links(session: Session, items: Sequence[Incoming]) -> None:
    latest: dict[str, Incoming] = {}
    for item in items:
        latest[item.event.cid] = item
    rows = [
        {"cid": cid, "last_seen_at": it.received_at, "last_kind": it.event.kind.value}
        for cid, it in latest.items()
    ]
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(DeviceLink)
    stmt = stmt.on_conflict_do_update(
        index_elements=[DeviceLink.cid],
        set_={"last_seen_at": stmt.excluded.last_seen_at, "last_kind": stmt.excluded.last_kind},
    )
    session.execute(stmt, rows)
