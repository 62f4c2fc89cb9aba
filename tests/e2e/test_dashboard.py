"""The operator dashboard as an operator uses it: headless Chromium against the real service.

Pendant presses come from simulated base units over a real Mosquitto, so every row that
appears has travelled device -> MQTT -> gateway -> dispatch -> live stream -> browser.
Screenshots land in test-artifacts/ for a human look.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, Route, expect

from dispatch.users import revoke_tokens
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.e2e.conftest import (
    BROWSER_TESTS,
    UI_TIMEOUT_MS,
    Account,
    add_account,
    fill_sign_in,
    sign_in,
)
from tests.harness import (
    MONDAY_10_LOCAL,
    ShiftedClock,
    api,
    running_service,
    sqlite_url,
    test_settings,
)
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard")))
    # A weekday morning whatever the hour, with time moving for the countdowns.
    async with running_service(settings, clock=ShiftedClock(MONDAY_10_LOCAL)) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Anna Operatör")


@pytest.fixture(scope="module")
def token(operator: Account) -> str:
    return operator.token


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def unit(link: DeviceLink, cid: str) -> SimulatedBaseUnit:
    return SimulatedBaseUnit(cid, link, resend_after_s=1.0)


def row(page: Page, cid: str) -> Any:
    return page.locator(f'li.alarm[data-cid="{cid}"]')


async def press_and_see(page: Page, link: DeviceLink, cid: str) -> SimulatedBaseUnit:
    device = unit(link, cid)
    await device.press()
    await expect(row(page, cid)).to_be_visible(timeout=UI_TIMEOUT_MS)
    return device


async def open_alarm(service: Service, token: str, cid: str) -> dict[str, Any]:
    async with api(service, token) as client:
        views = (await client.get("/api/alarms", params={"scope": "active"})).json()["alarms"]
    [view] = [v for v in views if v["cid"] == cid]
    return view


async def alarm_by_id(service: Service, token: str, alarm_id: int) -> dict[str, Any]:
    async with api(service, token) as client:
        return (await client.get(f"/api/alarms/{alarm_id}")).json()


def has_class(name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def seconds(mm_ss: str) -> int:
    minutes, secs = mm_ss.split(":")
    return int(minutes) * 60 + int(secs)


async def test_a_wrong_password_is_refused_and_the_right_one_opens_the_queue(
        page: Page, operator: Account, artifacts: Path) -> None:
    await page.goto("/")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Enter your name")

    await fill_sign_in(page, operator.name, "not-the-password")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
    await expect(page.locator("#app")).to_be_hidden()
    await page.screenshot(path=artifacts / "signin-error.png")

    await fill_sign_in(page, operator.name, operator.password)
    await expect(page.get_by_role("heading", name="Alarm queue")).to_be_visible()
    await expect(page.locator("#user-name")).to_have_text("Anna Operatör")
    await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)
    assert "Trygg" in await page.title()

    # A reload keeps the session (the cookie); signing out ends it.
    await page.reload()
    await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin").get_by_label("Password", exact=True)).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_press_appears_within_a_second_with_customer_team_and_countdown(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink) -> None:
    await sign_in(page, operator)
    before = int(await page.locator("#open-count").inner_text())

    await unit(link, "100001").press()  # returns once the alarm centre answered the unit
    answered = time.monotonic()
    await row(page, "100001").wait_for(state="visible", timeout=1000)
    latency = time.monotonic() - answered
    assert latency < 1.0, f"the alarm took {latency:.3f} s to show"
    print(f"press answered -> row visible: {latency * 1000:.0f} ms")

    view = await open_alarm(service, token, "100001")
    card = row(page, "100001")
    await expect(card).to_contain_text("Astrid Lindqvist")
    await expect(card).to_contain_text("Tibblevägen 12")
    await expect(card).to_contain_text("Door: Lindqvist")
    await expect(card).to_contain_text(view["team"]["name"])
    await expect(card).to_contain_text(view["team"]["phone"])
    await expect(card.locator('[data-role="state"]')).to_have_text("Called out")
    await expect(page.locator("#open-count")).to_have_text(str(before + 1))
    assert f"({before + 1})" in await page.title()

    countdown = card.locator('[data-role="countdown"]')
    first = seconds(await countdown.inner_text())
    assert 29 * 60 <= first <= 30 * 60
    await page.wait_for_timeout(2100)
    second = seconds(await countdown.inner_text())
    assert first - 3 <= second < first, (first, second)


async def test_accept_records_who_answered(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await press_and_see(page, link, "100002")
    view = await open_alarm(service, token, "100002")
    first_in_order = view["call_order"][0]["name"]
    card = row(page, "100002")

    # Keyboard only: the button, the name (suggested from the call order), Enter.
    await card.get_by_role("button", name="Accept").focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Who answered the call-out?")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name=first_in_order)).to_be_visible()
    await expect(dialog.get_by_label("Name of the person who answered")).to_be_focused()
    await page.keyboard.press("Enter")  # nothing typed yet: refused
    await expect(dialog.get_by_role("alert")).to_contain_text("Write the name")
    await dialog.get_by_role("button", name=first_in_order).click()
    await expect(dialog.get_by_label("Name of the person who answered")).to_have_value(
        first_in_order)
    await page.screenshot(path=artifacts / "accept-dialog.png")
    await page.keyboard.press("Enter")

    await expect(dialog).to_be_hidden()
    await expect(card.locator('[data-role="state"]')).to_have_text("Accepted")
    await expect(card).to_contain_text(f"Answered by {first_in_order}")
    assert (await alarm_by_id(service, token, view["id"]))["accepted_by"] == first_in_order

    # The details view shows the audit trail, answer included.
    await card.get_by_role("button", name="Details").click()
    details = page.get_by_role("dialog", name=f"Alarm {view['id']}")
    await expect(details.get_by_role("heading", name="Audit trail")).to_be_visible()
    trail = details.locator("table.log")
    await expect(trail).to_contain_text("receive")
    await expect(trail).to_contain_text("call out")
    await expect(trail).to_contain_text(f"answered by {first_in_order}")
    await page.screenshot(path=artifacts / "details.png")
    await page.keyboard.press("Escape")
    await expect(details).to_be_hidden()


async def test_phone_kvittering_needs_a_reason_and_then_closes_the_alarm(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await press_and_see(page, link, "100003")
    view = await open_alarm(service, token, "100003")
    card = row(page, "100003")

    await card.get_by_role("button", name="Phone kvittering").click()
    dialog = page.get_by_role("dialog", name="Phone kvittering")
    await dialog.get_by_label("Reason", exact=True).fill("   ")
    await dialog.get_by_role("button", name="Close by phone kvittering").click()
    await expect(dialog.get_by_role("alert")).to_contain_text("A reason is required")
    await expect(dialog).to_be_visible()
    await page.screenshot(path=artifacts / "kvittering-refused.png")
    assert (await alarm_by_id(service, token, view["id"]))["state"] == "called_out"

    reason = "Customer answered the phone: pressed by mistake, all well."
    await dialog.get_by_label("Reason", exact=True).fill(reason)
    await dialog.get_by_role("button", name="Close by phone kvittering").click()
    await expect(dialog).to_be_hidden()
    await expect(card).to_have_count(0)
    closed = await alarm_by_id(service, token, view["id"])
    assert (closed["state"], closed["close_reason"]) == ("closed", reason)


async def test_unknown_device_is_flagged_and_sorts_above_a_called_out_alarm(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink) -> None:
    await sign_in(page, operator)
    await press_and_see(page, link, "100004")
    await press_and_see(page, link, "990001")  # not in the register

    unknown = row(page, "990001")
    await expect(unknown).to_contain_text("Unknown device")
    await expect(unknown).to_contain_text("990001")
    await expect(unknown).to_contain_text("No responsible team")
    await expect(unknown.locator('[data-role="state"]')).to_have_text("Received")
    order = await page.locator("li.alarm").evaluate_all("rows => rows.map(r => r.dataset.cid)")
    assert order.index("990001") < order.index("100004"), order


async def test_check_in_and_out_change_the_badge_live_and_the_operator_closes(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink) -> None:
    await sign_in(page, operator)
    device = await press_and_see(page, link, "100005")
    card = row(page, "100005")
    badge = card.locator('[data-role="state"]')
    await expect(badge).to_have_text("Called out")

    await device.check_in()
    await expect(badge).to_have_text("On site", timeout=2000)
    await expect(card).to_contain_text("On site since")

    await device.check_out()
    await expect(badge).to_have_text("Completed", timeout=2000)
    await expect(card).to_have_class(has_class("state-completed"))
    await card.get_by_role("button", name="Close alarm").click()
    await expect(card).to_have_count(0)


async def test_queue_overview_with_every_kind_of_alarm(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink,
        artifacts: Path) -> None:
    """Protected identity, an extra site, on site, completed, and the amber and red clock."""
    await sign_in(page, operator)
    await press_and_see(page, link, "100006")
    await press_and_see(page, link, "100102")
    visited = await press_and_see(page, link, "100007")
    arrived = await press_and_see(page, link, "100008")
    await press_and_see(page, link, "990004")  # a second alarm nobody can be called for
    await visited.check_in()
    await visited.check_out()
    await arrived.check_in()
    await expect(row(page, "100007").locator('[data-role="state"]')).to_have_text("Completed")
    await expect(row(page, "100008").locator('[data-role="state"]')).to_have_text("On site")

    protected = row(page, "100006")
    await expect(protected).to_contain_text("Skyddad identitet")
    await expect(protected).not_to_contain_text("Karin Dold")
    await expect(protected).not_to_contain_text("Gömda gränd")
    extra = row(page, "100102")
    await expect(extra.locator(".tag-extra")).to_have_text("Extra")
    await expect(extra).to_contain_text("Sommarstugevägen 7")
    await expect(extra).to_contain_text("Gunnar Pettersson")

    # Completed sorts under on site, which sorts under everything still waiting; and the
    # page, which re-sorts on every live update, keeps the server's order exactly.
    order = await page.locator("li.alarm").evaluate_all("rows => rows.map(r => r.dataset.cid)")
    assert order[-2:] == ["100008", "100007"], order
    async with api(service, token) as client:
        listed = (await client.get("/api/alarms", params={"scope": "active"})).json()["alarms"]
    assert order == [v["cid"] for v in listed]

    # Waiting half an hour is too slow for a test: let the list answer with two deadlines
    # moved (one 95 s past, one 7 min ahead) to see the clock turn red and amber.
    now = service.clock.now()  # the page counts down on the server's time
    moved = {"100006": now - timedelta(seconds=95), "100102": now + timedelta(minutes=7)}

    async def shift_deadlines(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for view in body["alarms"]:
            if view["cid"] in moved:
                view["deadline_at"] = moved[view["cid"]].isoformat()
                view["reminder_count"] = 1 if view["cid"] == "100006" else 0
        await route.fulfill(response=response, body=json.dumps(body))

    await page.route("**/api/alarms?scope=active", shift_deadlines)
    await page.reload()
    await expect(protected.locator('[data-role="clock-label"]')).to_have_text("Overdue")
    await expect(protected).to_have_class(has_class("level-overdue"))
    await expect(protected).to_contain_text("Reminded 1×")
    assert (await protected.locator('[data-role="countdown"]').inner_text()).startswith("+01:3")
    await expect(extra).to_have_class(has_class("level-warn"))
    await expect(row(page, "990004")).not_to_have_class(has_class("level-warn"))
    assert "1 overdue" in await page.title()
    await page.screenshot(path=artifacts / "dashboard-queue.png", full_page=True)
    await page.set_viewport_size({"width": 1024, "height": 900})
    await page.screenshot(path=artifacts / "dashboard-narrow.png")

    # The amber/red thresholds themselves, straight from the page's own module.
    levels = await page.evaluate("""async () => {
        const m = await import('/static/model.js');
        const t = Date.parse('2026-01-01T12:00:00Z');
        return [m.countdown('2026-01-01T12:10:01Z', t), m.countdown('2026-01-01T12:09:59Z', t),
                m.countdown('2026-01-01T11:59:00Z', t)].map(c => [c.level, c.text]);
    }""")
    assert levels == [["ok", "10:01"], ["warn", "09:59"], ["overdue", "+01:00"]]


async def test_a_press_while_disconnected_shows_after_the_reconnect(
        page: Page, operator: Account, token: str, link: DeviceLink, artifacts: Path) -> None:
    await sign_in(page, operator)
    await page.context.set_offline(True)
    await expect(page.locator("#conn-text")).to_have_text("Reconnecting…")
    await expect(page.locator("#banner-conn")).to_contain_text("may be out of date")
    await page.screenshot(path=artifacts / "reconnecting.png")
    await unit(link, "990002").press()
    await asyncio.sleep(0.3)
    await expect(row(page, "990002")).to_have_count(0)

    await page.context.set_offline(False)
    await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)
    await expect(row(page, "990002")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#banner-conn")).to_be_hidden()


async def test_a_revoked_session_returns_to_sign_in_with_a_message(
        page: Page, service: Service, link: DeviceLink, artifacts: Path) -> None:
    temporary = add_account(service, "Temporary operator")
    await sign_in(page, temporary)
    await press_and_see(page, link, "990003")
    now = service.clock.now()
    await service.db.write(lambda s: revoke_tokens(s, "Temporary operator", now))

    await row(page, "990003").get_by_role("button", name="Details").click()
    await expect(page.locator("#signin").get_by_label("Password", exact=True)).to_be_visible()
    await expect(page.locator("#signin-notice")).to_contain_text(
        "Your session has ended; sign in again")
    await page.screenshot(path=artifacts / "signin-revoked.png")
    assert await page.evaluate("sessionStorage.length") == 0
