"""Orders over the API on the injected clock: deadlines in working days, steps that move
only forward, the registry following the orders, and the filters of the board."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from core.clock import FakeClock
from core.db import Database
from dispatch import orders
from dispatch.models import Alarm, Customer, Device
from dispatch.users import add_user
from tests.integration.test_access import make_app
from tests.integration.test_outbox import press

SE = ZoneInfo("Europe/Stockholm")
FRIDAY_16_05 = datetime(2026, 11, 27, 16, 5, tzinfo=SE)
MONDAY_17 = "2026-11-30T17:00:00+01:00"


def se(*args: int) -> datetime:
    return datetime(*args, tzinfo=SE)  # type: ignore[misc]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(se(2026, 11, 30, 9, 0))


@pytest.fixture
async def tfh(db: Database, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    token = db.transaction(lambda s: add_user(s, "Tove TFH", "tfh", clock.now()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(db, clock)),
                                 base_url="http://trygg",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def order(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/orders", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def step(client: httpx.AsyncClient, order_id: int, name: str,
               **details: Any) -> httpx.Response:
    return await client.post(f"/api/orders/{order_id}/steps/{name}", json=details)


def due(body: dict[str, Any]) -> dict[str, str | None]:
    return {s["step"]: s["due"] for s in body["steps"]}


async def test_an_install_order_from_friday_16_05_is_confirmed_by_monday_17(
        tfh: httpx.AsyncClient) -> None:
    body = await order(tfh, kind="install", customer="K-1008",
                       received_at=FRIDAY_16_05.isoformat())

    assert (body["kind"], body["customer"], body["site"], body["state"]) == (
        "install", "K-1008", "K-1008-1", "open")
    assert [(s["step"], s["owner"]) for s in body["steps"]] == [
        ("provider_confirms", "day_provider"), ("night_confirms", "night_organisation"),
        ("keys_collected", "day_provider"), ("ready_for_install", "day_provider"),
        ("registered_with_centre", "tfh"), ("installed", "tfh"),
        ("delivery_started", "day_provider")]
    assert due(body) == {
        "provider_confirms": MONDAY_17, "night_confirms": MONDAY_17,
        "keys_collected": "2026-11-28T16:05:00+01:00",  # 24 hours, weekend or not
        "ready_for_install": None, "registered_with_centre": None,
        "installed": None,  # counts from ready_for_install
        "delivery_started": None}
    assert [(e["action"], e["actor"]) for e in body["timeline"]] == [("created", "Tove TFH")]
    assert all(s["done_at"] is None and s["done_by"] is None for s in body["steps"])


async def test_an_order_received_before_16_on_a_working_day_is_due_the_same_day(
        tfh: httpx.AsyncClient) -> None:
    body = await order(tfh, kind="removal", customer="K-1008",
                       received_at=se(2026, 11, 27, 15, 59).isoformat())

    assert due(body)["contact_agreed"] == "2026-11-27T17:00:00+01:00"


async def test_in_christmas_week_a_late_order_waits_for_the_working_day_after_the_holidays(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    clock.set(se(2026, 12, 23, 16, 10))
    body = await order(tfh, kind="install", customer="K-1008",
                       received_at=se(2026, 12, 23, 16, 5).isoformat())
    for name, details in (("provider_confirms", {}), ("night_confirms", {}),
                          ("keys_collected", {"key_numbers": ["D-17", "N-17"],
                                              "night_key": "N-17"})):
        assert (await step(tfh, body["id"], name, **details)).status_code == 200
    clock.set(se(2026, 12, 30, 10, 0))  # ready the day before nyårsafton
    ready = (await step(tfh, body["id"], "ready_for_install")).json()

    # 24, 25, 26 (julafton, juldagen, annandag) and the weekend are not working days;
    # after the 30th: nyårsafton, nyårsdagen and the weekend are not, trettondagen
    # (6 January) is not either: 4, 5, 7 January.
    assert due(body)["provider_confirms"] == "2026-12-28T17:00:00+01:00"
    assert due(ready)["installed"] == "2027-01-07T17:00:00+01:00"


async def test_an_order_arrived_by_post_may_be_registered_later_but_not_ahead(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    default = await order(tfh, kind="removal", customer="K-1001")
    ahead = await tfh.post("/api/orders", json={
        "kind": "removal", "customer": "K-1001", "received_at": se(2026, 12, 1, 9).isoformat()})
    naive = await tfh.post("/api/orders", json={
        "kind": "removal", "customer": "K-1001", "received_at": "2026-11-27T16:05:00"})

    assert default["received_at"] == "2026-11-30T09:00:00+01:00"
    assert ahead.status_code == 422 and "future" in ahead.json()["detail"]
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]


async def test_steps_move_only_forward_and_each_is_on_the_timeline(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    body = await order(tfh, kind="install", customer="K-1008")
    early = await step(tfh, body["id"], "keys_collected", key_numbers=["A-1", "A-2"],
                       night_key="A-2")
    confirmed = await step(tfh, body["id"], "provider_confirms")
    again = await step(tfh, body["id"], "provider_confirms")
    no_keys = await step(tfh, body["id"], "keys_collected")
    unknown = await step(tfh, body["id"], "coffee_served")

    assert early.status_code == 409 and "waits for provider_confirms" in early.json()["detail"]
    assert confirmed.status_code == 200
    done = next(s for s in confirmed.json()["steps"] if s["step"] == "provider_confirms")
    assert (done["done_at"], done["done_by"]) == ("2026-11-30T09:00:00+01:00", "Tove TFH")
    assert again.status_code == 409 and "only forward" in again.json()["detail"]
    assert no_keys.status_code == 422 and "key_numbers" in no_keys.json()["detail"]
    assert unknown.status_code == 422
    assert [(e["action"], e["step"]) for e in confirmed.json()["timeline"]] == [
        ("created", None), ("step_done", "provider_confirms")]


async def test_an_install_puts_the_unit_in_the_registry_and_ends_done(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    body = await order(tfh, kind="install", customer="K-1007")
    for name, details in (("provider_confirms", {}), ("night_confirms", {}),
                          ("keys_collected", {"key_numbers": ["D-4", "N-4"],
                                              "night_key": "N-4"}),
                          ("ready_for_install", {})):
        assert (await step(tfh, body["id"], name, **details)).status_code == 200
    not_digits = await step(tfh, body["id"], "registered_with_centre", cid="12ab")
    registered = await step(tfh, body["id"], "registered_with_centre", cid="100777",
                            model="Neo 2")
    installed = await step(tfh, body["id"], "installed")
    last = await step(tfh, body["id"], "delivery_started")
    device = db.transaction(lambda s: s.execute(select(Device.site_id, Device.model).where(
        Device.cid == "100777")).first())

    assert not_digits.status_code == 422
    assert registered.status_code == installed.status_code == 200
    assert device is not None and device.model == "Neo 2"
    assert last.json()["state"] == "done"
    assert last.json()["timeline"][-1]["action"] == "done"


async def test_an_extra_alarm_waits_for_the_install_order_to_be_confirmed(
        tfh: httpx.AsyncClient) -> None:
    install = await order(tfh, kind="install", customer="K-1002")
    before = await tfh.post("/api/orders", json={
        "kind": "extra_alarm", "customer": "K-1002", "site": "K-1002-2"})
    await step(tfh, install["id"], "provider_confirms")
    after = await tfh.post("/api/orders", json={
        "kind": "extra_alarm", "customer": "K-1002", "site": "K-1002-2"})
    main_site = await tfh.post("/api/orders", json={
        "kind": "extra_alarm", "customer": "K-1002", "site": "K-1002-1"})

    assert before.status_code == 409
    assert "install order is not confirmed" in before.json()["detail"]
    assert after.status_code == 201 and after.json()["site"] == "K-1002-2"
    assert main_site.status_code == 422


async def test_a_removal_takes_the_unit_out_of_the_registry_and_returns_keys_on_receipt(
        tfh: httpx.AsyncClient, db: Database) -> None:
    body = await order(tfh, kind="removal", customer="K-1004")
    agreed = await step(tfh, body["id"], "contact_agreed", lock_removed=False,
                        contact="the customer's daughter")
    removed = await step(tfh, body["id"], "unit_removed")
    unchecked = await step(tfh, body["id"], "keys_returned", to="the customer",
                           identity_checked=False, receipt="KV-1")
    returned = await step(tfh, body["id"], "keys_returned", to="the customer",
                          identity_checked=True, receipt="KV-1")
    ended = await step(tfh, body["id"], "delivery_ended")
    left = db.transaction(lambda s: s.get(Device, "100004"))

    lock = next(s for s in agreed.json()["steps"] if s["step"] == "lock_removed")
    assert (lock["applies"], lock["done_by"]) == (False, "Tove TFH")
    assert removed.status_code == 200 and left is None
    assert unchecked.status_code == 422 and "identity" in unchecked.json()["detail"]
    assert returned.status_code == 200
    assert ended.json()["state"] == "done"
    assert ("not_applicable", "lock_removed") in [
        (e["action"], e["step"]) for e in ended.json()["timeline"]]


async def test_an_order_never_delivered_ends_as_such(tfh: httpx.AsyncClient) -> None:
    body = await order(tfh, kind="install", customer="K-1008")

    ended = await tfh.post(f"/api/orders/{body['id']}/will-not-be-delivered",
                           json={"reason": "the customer moved to a care home"})
    late_step = await step(tfh, body["id"], "provider_confirms")

    assert ended.json()["state"] == "will_not_be_delivered"
    assert late_step.status_code == 409


async def test_a_provider_change_takes_effect_within_5_working_days_across_a_weekend(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    clock.set(se(2026, 11, 27, 16, 0))  # a Friday
    too_late = await tfh.post("/api/orders", json={
        "kind": "provider_change", "customer": "K-1008", "provider": "trygga-hander",
        "effective_date": "2026-12-07"})
    same = await tfh.post("/api/orders", json={
        "kind": "provider_change", "customer": "K-1008", "provider": "solrosen",
        "effective_date": "2026-12-01"})
    body = await order(tfh, kind="provider_change", customer="K-1008",
                       provider="trygga-hander", effective_date="2026-12-04")

    assert too_late.status_code == 422 and "2026-12-04" in too_late.json()["detail"]
    assert same.status_code == 409
    assert body["provider"] == "trygga-hander"
    assert body["details"] == {"effective_date": "2026-12-04", "old_provider": "solrosen"}
    assert due(body) == {"new_provider_confirms": MONDAY_17,
                         "keys_handed_over": "2026-12-04T07:00:00+01:00",
                         "centre_updated": "2026-12-04T07:00:00+01:00"}


async def test_the_board_filters_by_state_kind_owner_and_overdue(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    install = await order(tfh, kind="install", customer="K-1008",
                          received_at=FRIDAY_16_05.isoformat())
    removal = await order(tfh, kind="removal", customer="K-1001")
    await step(tfh, removal["id"], "contact_agreed", lock_removed=True)
    clock.set(se(2026, 11, 30, 17, 1))  # a minute past Monday's confirmation deadline

    def ids(body: httpx.Response) -> list[int]:
        return [o["id"] for o in body.json()["orders"]]

    overdue = await tfh.get("/api/orders", params={"overdue": "true"})
    tfh_open = await tfh.get("/api/orders", params={"owner": "tfh", "kind": "removal"})
    nights = await tfh.get("/api/orders", params={"owner": "night_organisation"})
    done = await tfh.get("/api/orders", params={"state": "done"})

    assert ids(overdue) == [install["id"]]
    overdue_steps = [s["step"] for s in overdue.json()["orders"][0]["steps"] if s["overdue"]]
    assert overdue_steps == ["provider_confirms", "night_confirms", "keys_collected"]
    assert ids(tfh_open) == [removal["id"]]
    assert ids(nights) == [install["id"]]
    assert ids(done) == []


# -- keys and notices ----------------------------------------------------------------------


async def install_to_keys(client: httpx.AsyncClient, customer: str,
                          **key_details: Any) -> dict[str, Any]:
    body = await order(client, kind="install", customer=customer, assessor="Eva Ek")
    for name in ("provider_confirms", "night_confirms"):
        await step(client, body["id"], name)
    collected = await step(client, body["id"], "keys_collected", **key_details)
    assert collected.status_code == 200, collected.text
    result: dict[str, Any] = collected.json()
    return result


async def test_keys_go_to_the_day_provider_and_the_night_patrol_with_their_numbers(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    body = await install_to_keys(tfh, "K-1007", key_numbers=["D-4", "N-4"], night_key="N-4")
    again = await order(tfh, kind="install", customer="K-1007")
    for name in ("provider_confirms", "night_confirms"):
        await step(tfh, again["id"], name)
    twice = await step(tfh, again["id"], "keys_collected", key_numbers=["D-4", "N-5"],
                       night_key="N-5")

    assert [(k["number"], k["holder"], k["holder_code"]) for k in body["keys"]] == [
        ("D-4", "day_provider", "trygga-hander"),
        ("N-4", "night_organisation", "nattpatrull-kungsangen")]
    assert twice.status_code == 409 and "D-4" in twice.json()["detail"]


async def test_the_alarms_details_show_the_key_numbers_a_responder_needs(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    await install_to_keys(tfh, "K-1007", key_numbers=["D-4", "N-4"], night_key="N-4")
    press(db, clock, "100007")
    operator = db.transaction(lambda s: add_user(s, "Olle", "operator", clock.now()))
    alarm_id = db.transaction(lambda s: s.execute(select(Alarm.id)).scalar_one())

    details = (await tfh.get(f"/api/alarms/{alarm_id}",
                             headers={"Authorization": f"Bearer {operator}"})).json()

    assert details["keys"] == [
        {"number": "D-4", "holder": "day_provider", "holder_code": "trygga-hander",
         "returned_at": None},
        {"number": "N-4", "holder": "night_organisation",
         "holder_code": "nattpatrull-kungsangen", "returned_at": None}]


async def test_a_new_provider_gets_the_keys_and_a_removal_returns_them_on_a_receipt(
        tfh: httpx.AsyncClient, clock: FakeClock) -> None:
    await install_to_keys(tfh, "K-1007", key_numbers=["D-4", "N-4"], night_key="N-4")
    change = await order(tfh, kind="provider_change", customer="K-1007",
                         provider="solrosen", effective_date="2026-12-03")
    await step(tfh, change["id"], "new_provider_confirms")
    handed = (await step(tfh, change["id"], "keys_handed_over", key_numbers=["D-4"])).json()
    removal = await order(tfh, kind="removal", customer="K-1007")
    await step(tfh, removal["id"], "contact_agreed", lock_removed=True)
    returned = (await step(tfh, removal["id"], "keys_returned", to="the customer's son",
                           identity_checked=True, receipt="KV-77")).json()

    assert [(k["number"], k["holder_code"]) for k in handed["keys"]] == [
        ("D-4", "solrosen"), ("N-4", "nattpatrull-kungsangen")]
    assert [h["holder_code"] for h in handed["keys"][0]["history"]] == [
        "trygga-hander", "solrosen"]
    back = returned["keys"][0]
    assert all(k["returned_at"] is not None for k in returned["keys"])
    assert back["history"][-1] | {"at": None} == {
        "holder": "customer", "holder_code": None, "at": None, "order_id": removal["id"],
        "receipt": "KV-77", "received_by": "the customer's son"}


async def test_each_order_stores_the_notice_of_the_routine_without_personal_data(
        tfh: httpx.AsyncClient) -> None:
    install = await order(tfh, kind="install", customer="K-1007", assessor="Eva Ek",
                          received_at=FRIDAY_16_05.isoformat())
    removal = await order(tfh, kind="removal", customer="K-1007")
    change = await order(tfh, kind="provider_change", customer="K-1007",
                         provider="solrosen", effective_date="2026-12-03")

    assert install["notices"][0]["recipient"] == "kontaktcenter"
    assert install["notices"][0]["text"] == (
        "Trygghetslarm beviljat 2026-11-27. Kund har fått info om nyckel och digitalt lås. "
        "Kontakta Trygga Händer Omsorg AB för installation. / Eva Ek biståndshandläggare "
        "Kungsängen")
    assert removal["notices"][0]["text"].startswith(
        "Avslut trygghetslarm 2026-11-30. Kontakta Trygga Händer Omsorg AB för avinstallation.")
    assert "från 2026-12-03 kl 07:00" in change["notices"][0]["text"]
    every = " ".join(n["text"] for o in (install, removal, change) for n in o["notices"])
    assert "Birgitta" not in every and "Kyrkvägen" not in every


async def test_routing_follows_a_provider_change_from_07_00_on_its_date(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    clock.set(se(2026, 11, 27, 16, 0))  # Friday: the change may be as late as Friday next
    await order(tfh, kind="provider_change", customer="K-1008", provider="trygga-hander",
                effective_date="2026-12-01")
    ended = await order(tfh, kind="provider_change", customer="K-1008",
                        provider="kommunens-hemtjanst", effective_date="2026-11-30")
    await tfh.post(f"/api/orders/{ended['id']}/will-not-be-delivered",
                   json={"reason": "the customer changed their mind"})

    def provider_at(at: datetime) -> str | None:
        def ask(s: Any) -> str | None:
            customer = s.execute(select(Customer).where(Customer.code == "K-1008")).scalar_one()
            return orders.day_provider_at(s, customer, at)
        return db.transaction(ask)

    assert provider_at(se(2026, 11, 30, 12, 0)) == "solrosen"  # the ended change counts not
    assert provider_at(se(2026, 12, 1, 6, 59, 59)) == "solrosen"
    assert provider_at(se(2026, 12, 1, 7, 0)) == "trygga-hander"


async def test_a_started_provider_change_becomes_the_customers_provider_once(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    clock.set(se(2026, 11, 27, 16, 0))
    change = await order(tfh, kind="provider_change", customer="K-1008",
                         provider="trygga-hander", effective_date="2026-12-01")

    def apply(at: datetime) -> int:
        return db.transaction(lambda s: orders.apply_started_provider_changes(s, at))

    early = apply(se(2026, 12, 1, 6, 59))
    on_time = apply(se(2026, 12, 1, 7, 0))
    again = apply(se(2026, 12, 1, 7, 1))
    customer = (await tfh.get("/api/customers/K-1008")).json()
    timeline = (await tfh.get(f"/api/orders/{change['id']}")).json()["timeline"]

    assert (early, on_time, again) == (0, 1, 0)
    assert customer["day_provider"] == "trygga-hander"
    assert timeline[-1]["action"] == "provider_changed"


async def test_alarms_route_to_the_new_provider_from_07_00_and_running_ones_keep_theirs(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    clock.set(se(2026, 11, 27, 16, 0))
    await order(tfh, kind="provider_change", customer="K-1008", provider="trygga-hander",
                effective_date="2026-12-01")

    def press_at(at: datetime) -> tuple[str | None, str]:
        clock.set(at)
        press(db, clock, "100008")
        alarm = db.transaction(lambda s: s.execute(
            select(Alarm).order_by(Alarm.id.desc())).scalars().first())
        assert alarm is not None
        # Close it, so the next press is a new alarm and not a repeat of this one.
        db.transaction(lambda s: setattr(s.get(Alarm, alarm.id), "state", "closed"))
        return alarm.team_code, alarm.route_reason

    before = press_at(se(2026, 11, 30, 21, 59))  # the day before, still the day shift
    night = press_at(se(2026, 12, 1, 6, 59, 59))  # the night patrol's hour
    after = press_at(se(2026, 12, 1, 7, 0))
    first = db.transaction(lambda s: s.execute(select(Alarm.team_code).order_by(
        Alarm.id)).scalars().first())

    assert before == ("solrosen-bro", "day_provider")
    assert night[1] == "night_patrol"
    assert after == ("trygga-hander", "day_provider")
    assert first == "solrosen-bro"  # an alarm routed before the change keeps its team


async def test_an_extra_site_is_labelled_extra_with_the_name_on_the_door(
        tfh: httpx.AsyncClient) -> None:
    body = await order(tfh, kind="extra_alarm", customer="K-1002", site="K-1002-2")
    main = await order(tfh, kind="removal", customer="K-1006")  # protected identity

    assert body["site_label"].startswith("Extra ")
    assert main["site_label"] == "Skyddad identitet"


async def test_the_keyless_lock_installed_joins_the_registry_as_a_lock(
        tfh: httpx.AsyncClient, db: Database) -> None:
    body = await order(tfh, kind="install", customer="K-1007")
    for name, details in (("provider_confirms", {}), ("night_confirms", {}),
                          ("keys_collected", {"key_numbers": ["D-9", "N-9"],
                                              "night_key": "N-9"}),
                          ("ready_for_install", {}),
                          ("registered_with_centre", {"cid": "100779"})):
        assert (await step(tfh, body["id"], name, **details)).status_code == 200
    await step(tfh, body["id"], "installed", lock_cid="300779")
    kinds = db.transaction(lambda s: {d.cid: d.kind for d in s.execute(select(Device).where(
        Device.cid.in_(["100779", "300779"]))).scalars()})

    assert kinds == {"100779": "base_unit", "300779": "lock"}


async def test_a_private_provider_collects_two_key_sets_and_the_municipal_one(
        tfh: httpx.AsyncClient) -> None:
    private = await order(tfh, kind="install", customer="K-1007")
    municipal = await order(tfh, kind="install", customer="K-1003")
    for body in (private, municipal):
        for name in ("provider_confirms", "night_confirms"):
            await step(tfh, body["id"], name)

    one_set = await step(tfh, private["id"], "keys_collected", key_numbers=["D-1"])
    municipal_one = await step(tfh, municipal["id"], "keys_collected", key_numbers=["K-1"])

    assert one_set.status_code == 422 and "private provider" in one_set.json()["detail"]
    assert municipal_one.status_code == 200


async def test_a_providers_staff_see_their_orders_and_do_their_own_steps_only(
        tfh: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    ours = await order(tfh, kind="install", customer="K-1008")  # Solrosen's
    theirs = await order(tfh, kind="install", customer="K-1007")  # Trygga Händer's

    def staff(name: str, team: str) -> dict[str, str]:
        token = db.transaction(lambda s: add_user(s, name, "responder", clock.now(),
                                                  team=team))
        return {"Authorization": f"Bearer {token}"}

    day, night = staff("Sara", "solrosen-bro"), staff("Nils", "nattpatrull-bro")
    listed = (await tfh.get("/api/orders", headers=day)).json()["orders"]
    hidden = await tfh.get(f"/api/orders/{theirs['id']}", headers=day)
    confirmed = await tfh.post(f"/api/orders/{ours['id']}/steps/provider_confirms",
                               json={}, headers=day)
    not_hers = await tfh.post(f"/api/orders/{ours['id']}/steps/night_confirms",
                              json={}, headers=day)
    night_confirms = await tfh.post(f"/api/orders/{ours['id']}/steps/night_confirms",
                                    json={}, headers=night)
    other_firm = await tfh.post(f"/api/orders/{theirs['id']}/steps/provider_confirms",
                                json={}, headers=day)
    register = await tfh.post("/api/orders", json={"kind": "removal", "customer": "K-1008"},
                              headers=day)

    assert [o["id"] for o in listed] == [ours["id"]]
    assert hidden.status_code == 404
    assert confirmed.status_code == 200 and night_confirms.status_code == 200
    assert not_hers.status_code == 403
    assert other_firm.status_code == 404
    assert register.status_code == 403
