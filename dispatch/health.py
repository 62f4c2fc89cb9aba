"""Device health as the alarm manager reads it: one status per device, faults, incidents.

Read-only queries and the JSON shapes of the health API and dashboard. A device's
status is its worst open fault, in this order: `quiet` (a link fault: it cannot call for
help), `mains_lost`, `fault` (battery failed, tampered), `battery_low`; with none open it
is `never_heard` if it has never spoken to us, else `ok`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.inbox import DeviceLink, GatewayLink
from dispatch.models import Device, Incident, Site, TechnicalAlarm, TechnicalKind
from dispatch.supervision import SupervisionRule

Status = Literal["quiet", "mains_lost", "fault", "battery_low", "never_heard", "ok"]
STATUSES: tuple[str, ...] = get_args(Status)  # the worst first
_STATUS_OF_KIND = {
    TechnicalKind.LINK_FAULT.value: "quiet",
    TechnicalKind.MAINS_LOST.value: "mains_lost",
    TechnicalKind.BATTERY_FAULT.value: "fault",
    TechnicalKind.TAMPER.value: "fault",
    TechnicalKind.BATTERY_LOW.value: "battery_low",
}
_RANK = {status: i for i, status in enumerate(STATUSES)}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def technical_view(alarm: TechnicalAlarm, *, with_log: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": alarm.id, "cid": alarm.cid, "kind": alarm.kind, "state": alarm.state,
        "source": alarm.source, "area": alarm.area_code,
        "opened_at": _iso(alarm.opened_at), "cleared_at": _iso(alarm.cleared_at),
        "cleared_by": alarm.cleared_by, "clear_note": alarm.clear_note,
        "quiet_since": _iso(alarm.quiet_since), "incident_id": alarm.incident_id,
        "version": alarm.version,
    }
    if with_log:
        view["log"] = [{"action": e.action, "at": _iso(e.at), "actor": e.actor,
                        "note": e.note} for e in alarm.log]
    return view


def incident_view(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id, "kind": incident.kind, "area": incident.area_code,
        "count": incident.count, "peak": incident.peak, "state": incident.state,
        "opened_at": _iso(incident.opened_at), "closed_at": _iso(incident.closed_at),
        "version": incident.version,
    }


def _in_open_incident() -> Any:
    return TechnicalAlarm.incident_id.in_(select(Incident.id).where(Incident.state == "open"))


def technical_alarms(session: Session, *, open_only: bool, limit: int,
                     before_id: int | None = None,
                     outside_incidents: bool = False) -> list[TechnicalAlarm]:
    """Open ones (all of them, oldest first), or every one newest first, paged by id.

    `outside_incidents` leaves out the open ones gathered into an open incident: in a
    power cut the incident stands for thousands of them.
    """
    q = select(TechnicalAlarm)
    if open_only:
        q = q.where(TechnicalAlarm.state == "open")
        if outside_incidents:
            q = q.where(TechnicalAlarm.incident_id.is_(None) | ~_in_open_incident())
        return list(session.execute(q.order_by(TechnicalAlarm.opened_at, TechnicalAlarm.id))
                    .scalars())
    if before_id is not None:
        q = q.where(TechnicalAlarm.id < before_id)
    return list(session.execute(q.order_by(TechnicalAlarm.id.desc()).limit(limit)).scalars())


def technical_alarm(session: Session, technical_id: int) -> TechnicalAlarm | None:
    return session.execute(select(TechnicalAlarm).where(TechnicalAlarm.id == technical_id)
                           .options(selectinload(TechnicalAlarm.log))).scalar_one_or_none()


def incidents(session: Session, *, open_only: bool, limit: int = 200) -> list[Incident]:
    """Open incidents first, then the most recently opened."""
    q = select(Incident)
    if open_only:
        q = q.where(Incident.state == "open")
    return list(session.execute(
        q.order_by((Incident.state == "open").desc(), Incident.opened_at.desc(),
                   Incident.id.desc()).limit(limit)).scalars())


def device_health(session: Session, now: datetime, rule: SupervisionRule,
                  statuses: set[str] | None = None,
                  outside_incidents: bool = False) -> list[dict[str, Any]]:
    """One row per registered device, the worst first; quiet ones by how long overdue.

    `outside_incidents` leaves out devices whose every open fault is part of an open
    incident, which stands for them.
    """
    faults: dict[str, list[TechnicalAlarm]] = {}
    grouped: set[str] = set()
    for alarm in session.execute(select(TechnicalAlarm).where(
            TechnicalAlarm.state == "open")).scalars():
        faults.setdefault(alarm.cid, []).append(alarm)
    if outside_incidents:
        in_incident = set(session.execute(select(TechnicalAlarm.id).where(
            TechnicalAlarm.state == "open", _in_open_incident())).scalars())
        grouped = {cid for cid, held in faults.items()
                   if all(a.id in in_incident for a in held)}
    rows: list[dict[str, Any]] = []
    for device, area, last_seen in session.execute(
            select(Device, Site.area_code, DeviceLink.last_seen_at)
            .outerjoin(Site, Site.id == Device.site_id)
            .outerjoin(DeviceLink, DeviceLink.cid == Device.cid)):
        if device.cid in grouped:
            continue
        open_faults = faults.get(device.cid, [])
        kinds = sorted({_STATUS_OF_KIND.get(a.kind, "fault") for a in open_faults},
                       key=_RANK.__getitem__)
        status = kinds[0] if kinds else ("never_heard" if last_seen is None else "ok")
        if statuses is not None and status not in statuses:
            continue
        silence = rule.allowed_silence(device.model, device.supervision_interval_s,
                                       device.supervision_tolerance_s)
        overdue = None
        if status == "quiet" and last_seen is not None:
            overdue = max(int((now - (last_seen + silence)).total_seconds()), 0)
        rows.append({
            "cid": device.cid, "kind": device.kind, "model": device.model, "area": area,
            "status": status, "last_seen_at": _iso(last_seen),
            "expected_interval_s": int(rule.limits(device.model,
                                                   device.supervision_interval_s,
                                                   device.supervision_tolerance_s)[0]
                                       .total_seconds()),
            "overdue_s": overdue,
            "faults": [{"id": a.id, "kind": a.kind, "opened_at": _iso(a.opened_at),
                        "incident_id": a.incident_id} for a in open_faults],
        })
    rows.sort(key=lambda r: (_RANK[r["status"]], -(r["overdue_s"] or 0), r["cid"]))
    return rows


def links(session: Session) -> list[dict[str, Any]]:
    return [{"name": link.name, "kind": link.kind, "state": link.state,
             "since": _iso(link.since), "updated_at": _iso(link.updated_at),
             "_updated": link.updated_at}
            for link in session.execute(select(GatewayLink).order_by(GatewayLink.name)).scalars()]
