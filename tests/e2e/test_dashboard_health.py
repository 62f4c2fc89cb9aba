"""Device health in the dashboard as an operator uses it: headless Chromium, real service.

Mains, battery and presses come from simulated base units over a real Mosquitto, so an
incident banner has travelled device -> MQTT -> gateway -> technical alarms -> incident
-> live stream ("health") -> a reload of the health lists -> browser. The mass-event
threshold is lowered to three units, so a handful of the shipped units make a power cut.
Screenshots land in test-artifacts/ for a human look.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Locator,
    Page,
    Request,
    Route,
    expect,
)

from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, has_class, row, unit
from tests.harness import (
    MONDAY_10_LOCAL,
    ShiftedClock,
    api,
    make_token,
    running_service,
    sqlite_url,
    test_settings,
)
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

BRO = ["100002", "100102", "100004", "100008"]  # the shipped registry's units in Bro
KUNGSANGEN = ["100003", "100006", "100007"]  # and three of Kungsängen's


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(
        broker, sqlite_url(tmp_path_factory.mktemp("dashboard-health")),
        mass_event_units=3,  # three units of one area with one fault make an incident
        last_seen_flush_s=0.2,  # the gateway writes its links' state this often
    )
    async with running_service(settings, clock=ShiftedClock(MONDAY_10_LOCAL)) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Cecilia Operatör")


@pytest.fixture(scope="module")
def token(operator: Account) -> str:
    return operator.token


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def report(link: DeviceLink, cids: list[str], what: str) -> None:
    """Each unit reports `what` (mains_lost, mains_restored, battery_low) and is answered."""
    await asyncio.gather(*(getattr(unit(link, cid), what)() for cid in cids))


async def open_health(page: Page) -> None:
    await page.get_by_role("navigation", name="Views").get_by_role(
        "link", name="Device health").click()
    await expect(page.get_by_role("heading", name="Device health")).to_be_visible()


async def open_queue(page: Page) -> None:
    await page.get_by_role("navigation", name="Views").get_by_role(
        "link", name="Alarm queue").click()
    await expect(page.get_by_role("heading", name="Alarm queue")).to_be_visible()


def banners(page: Page) -> Locator:
    return page.locator("#incident-banners .incident-banner")


def incidents(page: Page) -> Locator:
    return page.locator("#incidents li.incident")


def fault_row(page: Page, cid: str, kind: str) -> Locator:
    return page.locator(f'#faults tr[data-cid="{cid}"][data-kind="{kind}"]')


async def open_technical(service: Service, token: str, cid: str, kind: str) -> dict[str, Any]:
    async with api(service, token) as client:
        body = (await client.get("/api/technical-alarms", params={"scope": "open"})).json()
    [alarm] = [a for a in body["technical_alarms"] if a["cid"] == cid and a["kind"] == kind]
    return alarm


async def technical(service: Service, token: str, technical_id: int) -> dict[str, Any]:
    async with api(service, token) as client:
        return (await client.get(f"/api/technical-alarms/{technical_id}")).json()


async def test_a_power_cut_shows_a_banner_over_the_queue_and_the_incident_on_top_of_health(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await expect(banners(page)).to_have_count(0)

    await report(link, BRO[:3], "mains_lost")
    await expect(banners(page)).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(banners(page)).to_contain_text("Power cut in Bro: 3 units")
    await report(link, BRO[3:], "mains_lost")  # one more unit joins the incident
    await expect(banners(page)).to_contain_text("Power cut in Bro: 4 units",
                                                timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#health-count")).to_have_text("4")
    await page.screenshot(path=artifacts / "health-banner.png")

    await banners(page).get_by_role("link", name="Show in device health").click()
    await expect(page.get_by_role("heading", name="Device health")).to_be_visible()
    await expect(page.get_by_role("heading", name="Alarm queue")).to_be_hidden()
    top = incidents(page).first
    await expect(top).to_contain_text("Power cut in Bro")
    await expect(top).to_contain_text("4 units without mains power")
    await expect(top.locator('[data-role="state"]')).to_have_text("Open")
    await expect(top).to_have_class(has_class("is-open"))
    # The incident stands for its units: one row, not one per unit.
    await expect(page.locator('#faults tr[data-kind="mains_lost"]')).to_have_count(0)
    await page.screenshot(path=artifacts / "health-incident.png", full_page=True)

    await report(link, BRO, "mains_restored")
    await expect(top.locator('[data-role="state"]')).to_have_text("Closed",
                                                                  timeout=UI_TIMEOUT_MS)
    await expect(top).to_have_class(has_class("is-closed"))
    await expect(top).to_contain_text("all units back on mains")
    await expect(page.locator('#faults tr[data-kind="mains_lost"]')).to_have_count(0)
    await open_queue(page)
    await expect(banners(page)).to_have_count(0)
    async with api(service, token) as client:
        listed = (await client.get("/api/incidents", params={"scope": "all"})).json()

    assert [(i["area"], i["state"], i["peak"]) for i in listed["incidents"]] == [
        ("bro", "closed", 4)]


async def test_a_press_from_a_unit_in_the_power_cut_area_is_its_own_row_under_the_banner(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await report(link, KUNGSANGEN, "mains_lost")
    banner = banners(page).filter(has_text="Power cut in Kungsängen")
    await expect(banner).to_contain_text("Power cut in Kungsängen: 3 units",
                                         timeout=UI_TIMEOUT_MS)

    await unit(link, "100007").press()  # one of the units without mains power
    card = row(page, "100007")
    await expect(card).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(card).to_contain_text("Birgitta Olsson")
    await expect(card.locator('[data-role="state"]')).to_have_text("Called out")
    await expect(banner).to_be_visible()
    await page.screenshot(path=artifacts / "health-banner-and-press.png")
    async with api(service, token) as client:
        active = (await client.get("/api/alarms", params={"scope": "active"})).json()["alarms"]
    shown = await page.locator("li.alarm").evaluate_all("rows => rows.map(r => r.dataset.cid)")
    banner_box = await banner.bounding_box()
    card_box = await card.bounding_box()

    assert shown == [a["cid"] for a in active]  # every help call a row, none grouped away
    assert banner_box is not None and card_box is not None
    assert banner_box["y"] + banner_box["height"] <= card_box["y"]  # above the queue
    await report(link, KUNGSANGEN, "mains_restored")
    await expect(banner).to_have_count(0, timeout=UI_TIMEOUT_MS)


async def test_a_battery_low_shows_in_health_and_the_operator_clears_it_with_a_note(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await open_health(page)
    await report(link, ["100001"], "battery_low")
    fault = fault_row(page, "100001", "battery_low")
    await expect(fault).to_contain_text("Battery low", timeout=UI_TIMEOUT_MS)
    await expect(fault).to_contain_text("Kungsängen")
    alarm = await open_technical(service, token, "100001", "battery_low")

    await fault.get_by_role("button", name="Clear").click()
    dialog = page.get_by_role("dialog", name=f"Clear technical alarm {alarm['id']}")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Battery low · unit 100001 · Kungsängen")
    await expect(dialog.get_by_label("Note")).to_be_focused()
    await dialog.get_by_role("button", name="Clear alarm").click()  # no note yet: refused
    await expect(dialog.get_by_role("alert")).to_contain_text("A note is required")
    note = "Battery replaced on a visit today; the unit tested fine."
    await dialog.get_by_label("Note").fill(note)
    await page.screenshot(path=artifacts / "health-clear-dialog.png")
    await dialog.get_by_role("button", name="Clear alarm").click()

    await expect(dialog).to_be_hidden()
    await expect(fault).to_have_count(0)
    await expect(page.locator(".toast")).to_contain_text(f"Technical alarm {alarm['id']} cleared")
    cleared = await technical(service, token, alarm["id"])
    assert (cleared["state"], cleared["clear_note"], cleared["cleared_by"]) == (
        "cleared", note, "Cecilia Operatör")
    assert cleared["log"][-1]["action"] == "cleared_by_hand"


async def test_clearing_an_alarm_someone_cleared_meanwhile_shows_the_servers_refusal(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink) -> None:
    await sign_in(page, operator)
    await open_health(page)
    await report(link, ["100005"], "battery_low")
    fault = fault_row(page, "100005", "battery_low")
    await fault.get_by_role("button", name="Clear").click()
    dialog = page.get_by_role("dialog", name=re.compile("Clear technical alarm"))
    await dialog.get_by_label("Note").fill("Checked on site.")
    alarm = await open_technical(service, token, "100005", "battery_low")
    async with api(service, make_token(service, "Colleague")) as colleague:
        first = await colleague.post(f"/api/technical-alarms/{alarm['id']}/clear",
                                     json={"note": "Done from the other desk."})
    assert first.status_code == 200

    await dialog.get_by_role("button", name="Clear alarm").click()

    await expect(dialog.get_by_role("alert")).to_contain_text("already cleared")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(fault).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert (await technical(service, token, alarm["id"]))["clear_note"] == (
        "Done from the other desk.")


async def test_the_link_strip_shows_the_mqtt_link_connected(
        page: Page, operator: Account, token: str) -> None:
    await sign_in(page, operator)
    await open_health(page)

    mqtt = page.locator('#links li[data-link="mqtt"]')
    await expect(mqtt).to_contain_text("connected", timeout=UI_TIMEOUT_MS)
    await expect(mqtt).to_contain_text("MQTT broker")
    await expect(mqtt).to_have_class(has_class("link-ok"))
    await expect(page.locator("#banner-links")).to_be_hidden()


async def test_a_serial_line_down_or_a_stale_link_stands_out_and_quiet_units_sort_by_overdue(
        page: Page, operator: Account, service: Service, token: str, artifacts: Path) -> None:
    """No serial port or silent unit in a test run: the API's answers are stood in for.
    A link name with markup in it must show as text."""
    hostile = '<img src=x onerror="window.__pwned = 1">'

    async def links(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        at = body["server_time"]
        body["links"] += [
            {"name": "/dev/ttyUSB0", "kind": "serial", "state": "down", "since": at,
             "updated_at": at, "stale": False},
            {"name": hostile, "kind": "dc09_tcp", "state": "listening", "since": at,
             "updated_at": at, "stale": True},
        ]
        await route.fulfill(response=response, body=json.dumps(body))

    async def quiet(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        seen = body["server_time"]
        body["devices"] = [
            {"cid": cid, "kind": "base_unit", "model": "Demo base unit", "area": area,
             "status": "quiet", "last_seen_at": seen, "expected_interval_s": 3600,
             "overdue_s": overdue,
             "faults": [{"id": fid, "kind": "link_fault", "opened_at": seen,
                         "incident_id": None}]}
            for cid, area, overdue, fid in [("100003", "kungsangen", 4320, 9001),
                                            ("100004", "bro", 300, 9002)]]
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route(re.compile(r"/api/links$"), links)
    await page.route(re.compile(r"/api/devices/health\?status=quiet&outside_incidents=true$"),
                     quiet)
    await sign_in(page, operator)

    await expect(page.locator("#banner-links")).to_contain_text(
        "Serial line /dev/ttyUSB0 is down", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#banner-links")).to_contain_text("has not reported it since")
    await open_health(page)
    serial = page.locator('#links li[data-link="/dev/ttyUSB0"]')
    await expect(serial).to_have_class(has_class("link-down"))
    await expect(serial).to_contain_text("down")
    stale = page.locator("#links li", has_text=hostile)
    await expect(stale).to_have_class(has_class("link-down"))
    await expect(stale).to_contain_text("no report since")
    await expect(page.locator('#links li[data-link="mqtt"]')).to_have_class(has_class("link-ok"))
    quiet_rows = page.locator("#quiet tr")
    await expect(quiet_rows).to_have_count(2)
    await expect(quiet_rows.first.locator('[data-role="overdue"]')).to_have_text("1 h 12 min")
    await expect(quiet_rows.nth(1).locator('[data-role="overdue"]')).to_have_text("5 min")
    await page.screenshot(path=artifacts / "health-links-and-quiet.png", full_page=True)

    assert await quiet_rows.evaluate_all("rows => rows.map(r => r.dataset.cid)") == [
        "100003", "100004"]
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#links img").count() == 0
    spans = await page.evaluate("""async () => {
        const m = await import('/static/health.js');
        return [30, 60, 720, 3600, 4320, 93600].map(m.elapsed);
    }""")
    assert spans == ["under 1 min", "1 min", "12 min", "1 h", "1 h 12 min", "1 d 2 h"]


async def test_a_burst_of_health_messages_reloads_the_lists_about_once_a_second(
        page: Page, operator: Account, service: Service, token: str) -> None:
    await sign_in(page, operator)
    await open_health(page)
    await expect(page.locator('#links li[data-link="mqtt"]')).to_be_visible()
    reloads: list[float] = []

    def on_request(request: Request) -> None:
        if "/api/technical-alarms?scope=open" in request.url:
            reloads.append(time.monotonic())

    page.on("request", on_request)
    started = time.monotonic()
    for i in range(150):  # a power cut: many changes, each its own message, over 1.5 s
        service.live.publish({"type": "health", "technical": 1, "incident_ids": [i]})
        await asyncio.sleep(0.01)
    last_message = time.monotonic()
    # The last change is seen: one more reload comes after the last message...
    await page.wait_for_event("request", predicate=lambda request: (
        "/api/technical-alarms?scope=open" in request.url), timeout=UI_TIMEOUT_MS)
    await page.wait_for_timeout(1500)  # ...and nothing more comes of the burst after that

    span = last_message - started
    print(f"{len(reloads)} reloads for 150 health messages over {span:.1f} s")
    assert 2 <= len(reloads) <= span + 3, (len(reloads), span)
