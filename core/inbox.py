"""The inbox: the one contract between the gateway, which appends, and dispatch, which consumes.

Every decoded device message but a heartbeat is committed here before its device is
answered, so an answered event is never lost even if dispatch is down. A resend is
stored once, but only while it is a resend: the same idempotency key seen within the
resend window (each resend extends it); after that the unit's counter has come round
and it is a new message. Last-seen costs no write on the device's commit: the gateway
keeps it in memory, for heartbeats and events alike, and writes it here in batches, one
row per unit (`touch_links`).

Dispatch consumes rows whose `processed_at` is empty, oldest first, and marks them
conditionally, so two dispatchers can never both apply one event. Retention deletes
processed events after a while and blanks raw frames sooner, in small batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import (
    CursorResult,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime
from devices.events import DeviceEvent, EventKind

# Events of a help call's life, applied before any other waiting event: a press, a
# check-in or check-out, a cancel. Their order among themselves is kept.
URGENT_KINDS = (EventKind.ALARM, EventKind.CHECK_IN, EventKind.CHECK_OUT,
                EventKind.CANCELLED)
URGENT_SQL = "(" + ", ".join(f"'{kind.value}'" for kind in URGENT_KINDS) + ")"


class DeviceEventRow(Base):
    __tablename__ = "device_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Not unique: the same key comes back as a new message once the resend window passed.
    idempotency_key: Mapped[str] = mapped_column(String(120))
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
    # The raw frame, blanked after TRYGG_RAW_FRAME_RETENTION_DAYS (free text may be personal).
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # When this key was last heard (the first copy or its latest resend): the window's start.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    process_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The inbox: unprocessed events in order. A partial index on id keeps "the next
        # 100" a short range scan however long the backlog.
        Index("ix_device_events_inbox", "id",
              sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
        # The help calls among them: taken first, so 20,000 units losing mains in a
        # power cut put no press behind their technical traffic.
        Index("ix_device_events_inbox_urgent", "id",
              sqlite_where=text(f"processed_at IS NULL AND kind IN {URGENT_SQL}"),
              postgresql_where=text(f"processed_at IS NULL AND kind IN {URGENT_SQL}")),
        # "Was this key seen lately?" is a range scan in this index, however long the log.
        Index("ix_device_events_key_seen", "idempotency_key", "last_seen_at"),
    )


class DeviceLink(Base):
    """When each device was last heard from: the basis of noticing a device gone quiet."""

    __tablename__ = "device_links"
    cid: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Indexed: supervision asks "who has not been heard since ..." every few seconds.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_kind: Mapped[str] = mapped_column(String(32))


class GatewayLink(Base):
    """The state of each of the gateway's links to devices (the broker, each serial
    line, the DC-09 listener), as the gateway last wrote it: for the dashboard, which
    may run in another process."""

    __tablename__ = "gateway_links"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "mqtt" | "serial" | "dc09_tcp"
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # in this state since
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MaintenanceMark(Base):
    """How far a background job has got (e.g. the last event whose raw frame was blanked)."""

    __tablename__ = "maintenance_marks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


# -- appending (the gateway) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    event: DeviceEvent
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Stored:
    event_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Seen:
    """A device heard at `at`, for last-seen (heartbeats are only this, never a row)."""

    cid: str
    at: datetime
    kind: str


DEFAULT_RESEND_WINDOW = timedelta(hours=1)


def append_events(session: Session, items: Sequence[Incoming],
                  resend_window: timedelta = DEFAULT_RESEND_WINDOW) -> list[Stored]:
    """Store each new event once; a resend within the window gets the first copy's id.

    A resend moves its key's `last_seen_at` on, so a unit that keeps resending on HOLD
    stays a resend however long it does so.
    """
    if not items:
        return []
    # Core statements built once, on the session's connection: this runs for every batch
    # of device messages, and building and ORM-executing statements cost more than SQLite.
    conn = session.connection()
    item_keys = [item.event.idempotency_key for item in items]  # a digest each: once
    since = min(item.received_at for item in items) - resend_window
    known: dict[str, tuple[int, datetime]] = {}
    for key, row_id, seen in conn.execute(
            _RECENT, {"keys": list(set(item_keys)), "since": since}):
        if key not in known or seen > known[key][1]:
            known[key] = (row_id, seen)
    fresh: dict[str, dict[str, object]] = {}
    resent: dict[int, datetime] = {}
    for key, item in zip(item_keys, items, strict=True):
        hit = known.get(key)
        if hit is not None and hit[1] >= item.received_at - resend_window:
            resent[hit[0]] = max(item.received_at, resent.get(hit[0], item.received_at))
            known[key] = (hit[0], max(hit[1], item.received_at))  # the window moves on
        elif key not in fresh:
            fresh[key] = _row_values(item, key)
    new_ids: dict[str, int] = (
        {key: row_id for key, row_id in conn.execute(_INSERT, list(fresh.values()))}
        if fresh else {})
    if resent:
        # In id order, as dispatch marks rows: two writers locking rows in the same
        # order cannot deadlock on PostgreSQL.
        conn.execute(_EXTEND, [{"row_id": i, "at": at} for i, at in sorted(resent.items())])
    results: list[Stored] = []
    first_in_batch: set[str] = set()
    for key in item_keys:
        if key in new_ids:
            results.append(Stored(new_ids[key], duplicate=key in first_in_batch))
            first_in_batch.add(key)
        else:
            results.append(Stored(known[key][0], duplicate=True))
    return results


_EVENTS = DeviceEventRow.__table__
_LINKS = DeviceLink.__table__
assert isinstance(_EVENTS, Table) and isinstance(_LINKS, Table)
_RECENT = select(_EVENTS.c.idempotency_key, _EVENTS.c.id, _EVENTS.c.last_seen_at).where(
    _EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)),
    _EVENTS.c.last_seen_at >= bindparam("since"))
_INSERT = insert(_EVENTS).returning(_EVENTS.c.idempotency_key, _EVENTS.c.id)
_EXTEND = (update(_EVENTS).where(_EVENTS.c.id == bindparam("row_id"))
           .values(last_seen_at=bindparam("at")))


def _link_upsert(dialect: ModuleType) -> Any:
    stmt = dialect.insert(_LINKS)
    return stmt.on_conflict_do_update(
        index_elements=[_LINKS.c.cid],
        set_={"last_seen_at": stmt.excluded.last_seen_at, "last_kind": stmt.excluded.last_kind},
        where=_LINKS.c.last_seen_at <= stmt.excluded.last_seen_at,
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
        "last_seen_at": item.received_at,
    }


def touch_links(session: Session, seen: Iterable[Seen]) -> int:
    """Write last-seen, one row per unit (the latest of `seen` for each); returns the rows.

    Never moves a unit's last-seen back: a late batch cannot undo a newer one.
    """
    latest: dict[str, Seen] = {}
    for s in seen:
        held = latest.get(s.cid)
        if held is None or s.at >= held.at:
            latest[s.cid] = s
    if not latest:
        return 0
    conn = session.connection()
    conn.execute(_UPSERT_LINK[conn.dialect.name], [
        {"cid": s.cid, "last_seen_at": s.at, "last_kind": s.kind} for s in latest.values()])
    return len(latest)


# -- consuming (dispatch) --------------------------------------------------------------

PENDING_COLUMNS = (DeviceEventRow.id, DeviceEventRow.cid, DeviceEventRow.kind,
                   DeviceEventRow.priority, DeviceEventRow.received_at,
                   DeviceEventRow.status_code)


def has_pending(session: Session) -> bool:
    """A read, through the inbox's partial index: is there anything for dispatch to do?"""
    return session.execute(select(DeviceEventRow.id).where(
        DeviceEventRow.processed_at.is_(None)).limit(1)).first() is not None


def pending_query(limit: int, *, urgent: bool) -> Select:
    """The oldest unprocessed events (only help-call events if `urgent`), through the
    partial index of each."""
    query = select(*PENDING_COLUMNS).where(DeviceEventRow.processed_at.is_(None))
    if urgent:
        query = query.where(text(f"kind IN {URGENT_SQL}"))
    return query.order_by(DeviceEventRow.id).limit(limit)


def pending(session: Session, limit: int) -> Sequence[Any]:
    """Unprocessed events as plain rows of PENDING_COLUMNS: help calls first, then the
    rest, each oldest first."""
    urgent = session.execute(pending_query(limit, urgent=True)).all()
    if len(urgent) == limit:
        return urgent
    rest = session.execute(pending_query(limit, urgent=False)).all()
    taken = {row.id for row in urgent}
    return [*urgent, *[row for row in rest if row.id not in taken]][:limit]


class InboxRaceLost(Exception):
    """Another dispatcher marked some of these events first: roll back, apply nothing."""

    def __init__(self, wanted: int, marked: int) -> None:
        super().__init__(f"marked {marked} of {wanted} events: another dispatcher had them")
        self.wanted = wanted
        self.marked = marked


def mark_processed(session: Session, event_ids: Sequence[int], now: datetime,
                   error: str | None = None) -> None:
    """Mark events processed, only if nobody else has: else raise InboxRaceLost.

    Conditional on `processed_at IS NULL`, so even without the leader lock two
    dispatchers cannot both commit one event: on PostgreSQL the second waits for the
    first's row locks, then finds the rows taken and rolls back all it did.
    """
    if not event_ids:
        return
    values: dict[str, Any] = {"processed_at": now}
    if error is not None:
        values["process_error"] = error[:1000]
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(DeviceEventRow)
        .where(DeviceEventRow.id.in_(event_ids), DeviceEventRow.processed_at.is_(None))
        .values(**values))
    marked = result.rowcount
    if marked != len(event_ids):
        raise InboxRaceLost(len(event_ids), marked)


def note_error(session: Session, event_id: int, error: str) -> None:
    """Keep why an event could not be applied (it is still marked processed with the rest)."""
    session.execute(update(DeviceEventRow).where(DeviceEventRow.id == event_id)
                    .values(process_error=error[:1000]))


def inbox_backlog(session: Session) -> tuple[int, datetime | None]:
    """How many events wait for dispatch, and when the oldest of them arrived."""
    count, oldest = session.execute(
        select(func.count(), func.min(DeviceEventRow.received_at))
        .where(DeviceEventRow.processed_at.is_(None))).one()
    return int(count), oldest


# -- retention -------------------------------------------------------------------------

RETENTION_BATCH = 1000
_BLANKED = "raw_frames_blanked_through"


def _last_id_before(session: Session, cutoff: datetime) -> int | None:
    """The newest event received before `cutoff` (one step down the received_at index)."""
    return session.execute(
        select(DeviceEventRow.id).where(DeviceEventRow.received_at < cutoff)
        .order_by(DeviceEventRow.received_at.desc()).limit(1)).scalar()


def delete_expired(session: Session, cutoff: datetime, limit: int = RETENTION_BATCH) -> int:
    """Delete up to `limit` processed events received before `cutoff`, oldest first.

    Unprocessed ones stay whatever their age: dispatch has not applied them yet. The
    newest event of all stays too: SQLite gives a new row the highest id plus one, so an
    emptied log would hand out ids again (below retention's mark, and already named by
    old alarms).
    """
    through = _last_id_before(session, cutoff)
    newest = session.execute(select(func.max(DeviceEventRow.id))).scalar()
    if through is None or newest is None:
        return 0
    through = min(through, newest - 1)
    ids = session.execute(
        select(DeviceEventRow.id)
        .where(DeviceEventRow.id <= through, DeviceEventRow.processed_at.is_not(None))
        .order_by(DeviceEventRow.id).limit(limit)).scalars().all()
    if ids:
        session.execute(delete(DeviceEventRow).where(DeviceEventRow.id.in_(ids)))
    return len(ids)


def blank_raw_frames(session: Session, cutoff: datetime,
                     limit: int = RETENTION_BATCH) -> tuple[int, int]:
    """Blank the raw frames of the next `limit` event ids received before `cutoff`.

    Works through ids from a kept mark, so every pass reads only what it blanks, not
    the weeks of rows already blank behind it. Returns (frames blanked, ids passed);
    ids passed is 0 once the mark has caught up.
    """
    through = _last_id_before(session, cutoff)
    if through is None:
        return 0, 0
    mark = session.get(MaintenanceMark, _BLANKED)
    start = mark.value if mark else 0
    if start >= through:
        return 0, 0
    end = min(start + limit, through)
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(DeviceEventRow)
        .where(DeviceEventRow.id > start, DeviceEventRow.id <= end,
               DeviceEventRow.payload != "")
        .values(payload=""))
    blanked = result.rowcount
    if mark is None:
        session.add(MaintenanceMark(name=_BLANKED, value=end))
    else:
        mark.value = end
    return int(blanked), end - start


def log_size(session: Session) -> tuple[int, datetime | None]:
    """The event log's rows and its oldest row's arrival, for the retention metrics."""
    count, oldest = session.execute(
        select(func.count(), func.min(DeviceEventRow.received_at))).one()
    return int(count), oldest


# -- is the gateway listening? (for supervision) ---------------------------------------

_ALIVE = "gateway.alive_at"
_LISTENING = "gateway.listening_since"


def _set_mark(session: Session, name: str, value: int) -> None:
    mark = session.get(MaintenanceMark, name)
    if mark is None:
        session.add(MaintenanceMark(name=name, value=value))
    else:
        mark.value = value


def note_gateway(session: Session, *, alive_at: datetime,
                 listening_since: datetime | None) -> None:
    """The gateway says it is running, and since when it has heard devices without a
    break (None: its link to them is down now). Written with every last-seen flush."""
    _set_mark(session, _ALIVE, int(alive_at.timestamp()))
    _set_mark(session, _LISTENING,
              int(listening_since.timestamp()) if listening_since is not None else 0)


@dataclass(frozen=True, slots=True)
class LinkState:
    name: str
    kind: str
    state: str
    since: datetime | None


def note_links(session: Session, links: Iterable[LinkState], at: datetime) -> None:
    """Write the state of the gateway's links (one row each, replaced)."""
    for link in links:
        row = session.get(GatewayLink, link.name)
        if row is None:
            session.add(GatewayLink(name=link.name, kind=link.kind, state=link.state,
                                    since=link.since, updated_at=at))
        else:
            row.kind, row.state, row.since, row.updated_at = (
                link.kind, link.state, link.since, at)


def gateway_hearing(session: Session, now: datetime, stale_after: timedelta) -> datetime | None:
    """Since when the gateway has been hearing devices without a break; None if it is
    not (its link is down, or it has not said it is alive for `stale_after`)."""
    marks = dict(session.execute(select(MaintenanceMark.name, MaintenanceMark.value).where(
        MaintenanceMark.name.in_([_ALIVE, _LISTENING]))).all())
    alive, listening = marks.get(_ALIVE), marks.get(_LISTENING)
    if not alive or not listening:
        return None
    if now - datetime.fromtimestamp(alive, UTC) > stale_after:
        return None
    return datetime.fromtimestamp(listening, UTC)
