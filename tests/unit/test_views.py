"""How alarms look on the dashboard: the 30-minute mark, masking by role, urgency order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch import lifecycle
from dispatch.models import Alarm, Customer, Site
from dispatch.views import MASK, alarm_view, masked, revealed, urgency_key

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
THIRTY = timedelta(minutes=30)
_ids = iter(range(1, 1000))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def customer(*, protected: bool = False) -> Customer:
    c = Customer(code="K-1001", name="Astrid Lindqvist", protected_identity=protected)
    c.sites = [Site(code="K-1001-1", kind="main", address="Tibblevägen 12", postal_code="196 30",
                    city="Kungsängen", area_code="kungsangen", door_name="Lindqvist")]
    return c


def alarm(received: float = 0, *, team: bool = True, called_out: float | None = None,
          on_site: float | None = None, completed: float | None = None, priority: int = 0,
          who: Customer | None = None) -> Alarm:
    """An alarm received at `received` minutes after T0, moved through the given steps."""
    a = Alarm(id=next(_ids), cid="100001", priority=priority, reminder_count=0, repeat_count=0,
              unknown_device=who is None and not team,
              route_reason="day_provider" if team else "no_team" if who else "unknown_device",
              team_code="solrosen-kungsangen" if team else None, call_order=[])
    if who is not None:
        a.customer, a.site = who, who.sites[0]
    lifecycle.receive(a, at(received), "device:100001")
    if called_out is not None:
        lifecycle.call_out(a, at(called_out), "system")
    if on_site is not None:
        lifecycle.check_in(a, at(on_site), "100001")
    if completed is not None:
        lifecycle.check_out(a, at(completed), "100001")
    return a


def view(a: Alarm, **kwargs: Any) -> dict[str, Any]:
    return alarm_view(a, THIRTY, **kwargs)


def in_urgency_order(*alarms: Alarm) -> list[int]:
    return [v["id"] for v in sorted((view(a) for a in alarms), key=urgency_key)]


# -- the 30-minute mark ----------------------------------------------------------------


def test_deadline_is_30_minutes_after_the_call_out() -> None:
    v = view(alarm(0, called_out=2))

    assert v["deadline_at"] == at(32).isoformat()


def test_deadline_is_kept_after_accept_while_nobody_is_on_site() -> None:
    a = alarm(0, called_out=2)
    lifecycle.accept(a, "Maria Holm", at(5), "operator-1")

    assert view(a)["deadline_at"] == at(32).isoformat()


def test_deadline_of_an_alarm_nobody_was_called_for_counts_from_its_arrival() -> None:
    v = view(alarm(0, team=False))

    assert v["deadline_at"] == at(30).isoformat()


def test_no_deadline_once_staff_are_on_site() -> None:
    v = view(alarm(0, called_out=2, on_site=20))

    assert v["deadline_at"] is None


def test_no_deadline_once_completed() -> None:
    v = view(alarm(0, called_out=2, on_site=20, completed=35))

    assert v["deadline_at"] is None


def test_answer_and_arrival_times_are_measured_from_the_call_out() -> None:
    a = alarm(0, called_out=2)
    lifecycle.accept(a, "Maria Holm", at(5), "operator-1")
    lifecycle.check_in(a, at(20), "100001")

    v = view(a)

    assert v["answer_seconds"] == 180
    assert v["arrival_seconds"] == 18 * 60


def test_view_with_log_shows_the_audit_trail() -> None:
    v = view(alarm(0, called_out=2), with_log=True)

    assert [(e["action"], e["from_state"], e["to_state"], e["actor"]) for e in v["log"]] == [
        ("receive", None, "received", "device:100001"),
        ("call_out", "received", "called_out", "system"),
    ]


# -- protected identity ----------------------------------------------------------------


def test_nobody_sees_name_or_address_of_a_protected_customer() -> None:
    v = masked(view(alarm(0, called_out=1, who=customer(protected=True))))

    assert v["customer"]["name"] == MASK
    assert v["site"]["address"] == MASK
    assert v["site"]["postal_code"] is None
    assert v["site"]["door_name"] is None
    assert "Lindqvist" not in repr(v)
    assert "Tibblevägen" not in repr(v)


def test_masking_keeps_what_the_operator_needs_to_act() -> None:
    v = masked(view(alarm(0, called_out=1, who=customer(protected=True))))

    assert v["customer"]["code"] == "K-1001"
    assert v["customer"]["protected_identity"] is True
    assert v["site"]["area"] == "kungsangen"
    assert v["team"]["code"] == "solrosen-kungsangen"


def test_reveal_shows_only_the_protected_fields_in_clear() -> None:
    v = revealed(view(alarm(0, called_out=1, who=customer(protected=True))))

    assert v == {"customer": {"code": "K-1001", "name": "Astrid Lindqvist"},
                 "site": {"code": v["site"]["code"], "address": "Tibblevägen 12",
                          "postal_code": v["site"]["postal_code"], "door_name": "Lindqvist"}}


def test_operator_sees_name_and_address_of_an_unprotected_customer() -> None:
    v = masked(view(alarm(0, called_out=1, who=customer())))

    assert v["customer"]["name"] == "Astrid Lindqvist"
    assert v["site"]["address"] == "Tibblevägen 12"


def test_masking_does_not_change_the_unmasked_view() -> None:
    original = view(alarm(0, called_out=1, who=customer(protected=True)))

    masked(original)

    assert original["customer"]["name"] == "Astrid Lindqvist"
    assert original["site"]["address"] == "Tibblevägen 12"


def test_a_site_now_of_a_protected_customer_is_masked_on_an_earlier_owners_alarm() -> None:
    earlier = customer()
    a = alarm(0, called_out=1, who=earlier)
    a.site.customer = customer(protected=True)  # the site moved to a protected customer

    v = masked(view(a))

    assert v["customer"]["name"] == "Astrid Lindqvist"  # the alarm's own customer
    assert (v["site"]["address"], v["site"]["postal_code"], v["site"]["door_name"]) == (
        MASK, None, None)


def test_unknown_device_alarm_has_nobody_to_mask() -> None:
    v = masked(view(alarm(0, team=False)))

    assert v["customer"] is None
    assert v["site"] is None


# -- urgency ---------------------------------------------------------------------------


def test_alarm_nobody_was_called_for_comes_before_one_with_a_nearer_deadline() -> None:
    overdue = alarm(0, called_out=0)
    unrouted = alarm(10, team=False)

    assert in_urgency_order(overdue, unrouted) == [unrouted.id, overdue.id]


def test_registered_alarm_without_a_team_comes_before_one_with_a_team() -> None:
    overdue = alarm(0, called_out=0)
    no_team = alarm(10, team=False, who=customer())

    assert in_urgency_order(overdue, no_team) == [no_team.id, overdue.id]


def test_alarm_nobody_was_called_for_that_waited_longest_comes_first() -> None:
    waiting = alarm(0, team=False)
    newer = alarm(10, team=False)

    assert in_urgency_order(newer, waiting) == [waiting.id, newer.id]


def test_nearest_deadline_comes_first_among_alarms_awaiting_check_in() -> None:
    late = alarm(0, called_out=10)
    early = alarm(1, called_out=2)

    assert in_urgency_order(late, early) == [early.id, late.id]


def test_alarm_with_staff_on_site_comes_after_every_alarm_awaiting_check_in() -> None:
    on_site = alarm(0, called_out=1, on_site=5)
    awaiting = alarm(20, called_out=21)

    assert in_urgency_order(on_site, awaiting) == [awaiting.id, on_site.id]


def test_completed_alarm_comes_last() -> None:
    done = alarm(0, called_out=1, on_site=5, completed=10)
    on_site = alarm(2, called_out=3, on_site=8)
    awaiting = alarm(20, called_out=21)
    unrouted = alarm(25, team=False)

    assert in_urgency_order(done, on_site, awaiting, unrouted) == [
        unrouted.id, awaiting.id, on_site.id, done.id,
    ]


def test_higher_priority_comes_first_at_the_same_deadline() -> None:
    urgent = alarm(0, called_out=1, priority=9)
    newer = alarm(0, called_out=1, priority=0)

    assert in_urgency_order(newer, urgent) == [urgent.id, newer.id]
