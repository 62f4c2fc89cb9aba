"""How an alarm looks from outside: the API's and dashboard's JSON, masked by role.

Customers with protected identity (skyddade personuppgifter) show no name, address or
door name to anyone, admins included: an operator handling an open alarm of theirs sees
them only through the audited reveal (`POST /api/alarms/{id}/reveal`, `revealed`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dispatch.escalation import calling
from dispatch.lifecycle import needs_visit_reason, visit_seconds
from dispatch.models import AWAITING_CHECK_IN, Alarm, AlarmState

MASK = "Skyddad identitet"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def deadline_of(alarm: Alarm, reminder_after: timedelta) -> datetime | None:
    """The 30-minute mark the dashboard counts down to, while nobody is on site."""
    if alarm.state not in AWAITING_CHECK_IN:
        return None
    return (alarm.called_out_at or alarm.received_at) + reminder_after


def attention(alarm: Alarm) -> list[str]:
    """What the operator must act on now: nobody answered the call order, or a red flag
    (still nobody on site an hour after the call-out)."""
    if alarm.state not in AWAITING_CHECK_IN:
        return []
    flags = []
    if alarm.red_flag_at is not None:
        flags.append("red_flag")
    if alarm.no_answer_at is not None and alarm.state == AlarmState.CALLED_OUT:
        flags.append("no_answer")
    return flags


def alarm_view(alarm: Alarm, reminder_after: timedelta, *,
               with_log: bool = False) -> dict[str, Any]:
    site, customer = alarm.site, alarm.customer
    view: dict[str, Any] = {
        "id": alarm.id,
        "cid": alarm.cid,
        "state": alarm.state,
        "priority": alarm.priority,
        "unknown_device": alarm.unknown_device,
        "route_reason": alarm.route_reason,
        "shift": alarm.shift,
        "team": None if alarm.team_code is None else {
            "code": alarm.team_code, "name": alarm.team_name, "phone": alarm.team_phone,
        },
        "call_order": alarm.call_order,
        "customer": None if customer is None else {
            "code": customer.code, "name": customer.name,
            "protected_identity": customer.protected_identity,
        },
        "site": None if site is None else {
            "code": site.code, "kind": site.kind, "address": site.address,
            "postal_code": site.postal_code, "city": site.city, "area": site.area_code,
            "door_name": site.door_name,
            # The site's owner now: a site moved to a protected customer masks its
            # address on the earlier owner's alarms too.
            "protected": site.customer.protected_identity,
        },
        "received_at": _iso(alarm.received_at),
        "called_out_at": _iso(alarm.called_out_at),
        "accepted_at": _iso(alarm.accepted_at),
        "accepted_by": alarm.accepted_by,
        "on_site_at": _iso(alarm.on_site_at),
        "completed_at": _iso(alarm.completed_at),
        "closed_at": _iso(alarm.closed_at),
        "closed_by": alarm.closed_by,
        "closed_via": alarm.closed_via,
        "close_reason": alarm.close_reason,
        "reminded_at": _iso(alarm.reminded_at),
        "reminder_count": alarm.reminder_count,
        "repeat_count": alarm.repeat_count,
        "version": alarm.version,
        "deadline_at": _iso(deadline_of(alarm, reminder_after)),
        "answer_seconds": _seconds(alarm.called_out_at, alarm.accepted_at),
        "arrival_seconds": _seconds(alarm.called_out_at, alarm.on_site_at),
        "visit_seconds": visit_seconds(alarm),
        "provider": alarm.provider_code,
        "also_teams": alarm.also_teams or [],
        # The call chain: whom it calls now, and when it ran out.
        "calling": calling(alarm),
        "no_answer_at": _iso(alarm.no_answer_at),
        "coordinator_at": _iso(alarm.coordinator_at),
        "red_flag_at": _iso(alarm.red_flag_at),
        "on_way_at": _iso(alarm.on_way_at),
        "handed_over_at": _iso(alarm.handed_over_at),
        # unit | responder | phone | false_alarm: how presence (or none) was confirmed.
        "kvittering": alarm.kvittering,
        "visit_reason": alarm.visit_reason,
        "needs_visit_reason": needs_visit_reason(alarm),
        "attention": attention(alarm),
    }
    if with_log:
        view["log"] = [
            {"action": e.action, "from_state": e.from_state, "to_state": e.to_state,
             "at": _iso(e.at), "actor": e.actor, "note": e.note}
            for e in alarm.log
        ]
    return view


def masked(view: dict[str, Any]) -> dict[str, Any]:
    """The view as everyone sees it: a protected identity's name, address and door name
    masked, whatever the role."""
    customer, site = view.get("customer"), view.get("site")
    protected = bool(customer and customer["protected_identity"])
    if not protected and not (site and site.get("protected")):
        return view
    out = dict(view)
    if customer and protected:
        out["customer"] = {**customer, "name": MASK}
    if site:
        out["site"] = {**site, "address": MASK, "postal_code": None, "door_name": None}
    return out


def revealed(view: dict[str, Any]) -> dict[str, Any]:
    """Only what a reveal shows: the protected fields in clear, nothing else."""
    customer, site = view.get("customer") or {}, view.get("site") or {}
    return {"customer": {"code": customer.get("code"), "name": customer.get("name")},
            "site": {"code": site.get("code"), "address": site.get("address"),
                     "postal_code": site.get("postal_code"), "door_name": site.get("door_name")}}


def urgency_key(view: dict[str, Any]) -> tuple[int, int, str, int, int]:
    """Most urgent first: nobody responding yet, then the nearest 30-minute mark.

    Alarms nobody was called for are ordered among themselves by their mark too, so the
    one that has waited longest is not pushed down by every newer one.
    """
    state = view["state"]
    open_rank = 0 if state in AWAITING_CHECK_IN else 1 if state == AlarmState.ON_SITE else 2
    # Nobody to call, or nobody answered / a red flag: the operator must act first.
    no_team = 0 if (view["team"] is None or view.get("attention")) and open_rank == 0 else 1
    deadline = view["deadline_at"] or view["received_at"]
    return (open_rank, no_team, deadline, -view["priority"], -view["id"])
