"""The order board as TFH and the alarm centre use it: headless Chromium, real service.

The service's clock starts on Friday 27 November 2026 at 16:30 in Stockholm and moves on
in real time, so an order received at 16:05 that Friday is confirmed by Monday 17:00
(after 16:00: the next working day). The last test moves the clock past Monday 17:00.
Screenshots land in test-artifacts/ for a human look.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from dispatch import orders
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, has_class
from tests.harness import ShiftedClock, api, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

SE = ZoneInfo("Europe/Stockholm")
FRIDAY_16_30 = datetime(2026, 11, 27, 16, 30, tzinfo=SE)


def se(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SE)


@pytest.fixture(scope="module")
def clock() -> ShiftedClock:
    return ShiftedClock(FRIDAY_16_30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  clock: ShiftedClock) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard-orders")))
    async with running_service(settings, clock=clock) as svc:
        yield svc


@pytest.fixture(scope="module")
def technician(service: Service) -> Account:
    return add_account(service, "Tove Tekniker", "tfh")


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Olga Operatör")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def register(service: Service, token: str, **fields: Any) -> dict[str, Any]:
    async with api(service, token) as client:
        response = await client.post("/api/orders", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(service: Service, token: str, **params: str) -> list[dict[str, Any]]:
    async with api(service, token) as client:
        body = (await client.get("/api/orders", params=params)).json()
    found: list[dict[str, Any]] = body["orders"]
    return found


def tabs(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Views").get_by_role("link")


async def open_board(page: Page) -> None:
    await page.get_by_role("navigation", name="Views").get_by_role(
        "link", name=re.compile("^Orders")).click()
    await expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()


def card(page: Page, order_id: int) -> Locator:
    return page.locator(f'#orders-board li.order[data-id="{order_id}"]')


async def open_order(page: Page, order_id: int) -> Locator:
    await card(page, order_id).locator("button.order-open").click()
    dialog = page.get_by_role("dialog", name=re.compile(rf"order {order_id}:"))
    await expect(dialog).to_be_visible()
    return dialog


def step_row(dialog: Locator, step: str) -> Locator:
    return dialog.locator(f'li.order-step[data-step="{step}"]')


async def test_a_tfh_technician_registers_an_order_received_friday_16_05_due_monday_17(
        page: Page, service: Service, technician: Account, artifacts: Path) -> None:
    await sign_in(page, technician)
    await expect(tabs(page)).to_have_text([re.compile("^Device health"), re.compile("^Orders")])
    await open_board(page)
    await page.get_by_role("button", name="Register an order…").click()
    form = page.get_by_role("dialog", name="Register an order")
    await form.get_by_label("Kind").select_option("install")
    await form.get_by_label("Customer code").fill("K-9999")
    await form.get_by_label("Date", exact=True).fill("2026-11-27")
    await form.get_by_label("Time", exact=True).fill("16:05")
    await form.get_by_role("button", name="Register order").click()
    await expect(form.get_by_role("alert")).to_have_text("no customer K-9999")  # the server's
    await form.get_by_label("Customer code").fill("K-1008")
    await page.screenshot(path=artifacts / "orders-register.png")
    await form.get_by_role("button", name="Register order").click()

    await expect(form).to_be_hidden()
    new = page.locator('#orders-board section.col-day_provider li.order[data-customer="K-1008"]')
    await expect(new).to_have_count(1)
    await expect(new.locator(".order-next")).to_have_text("Next: Provider confirms")
    await expect(new.locator(".order-due")).to_contain_text("Due Mon 30 Nov 17:00")
    await expect(new).to_contain_text("Also open: Night organisation confirms")
    await expect(new).not_to_have_class(has_class("is-overdue"))
    await expect(new.locator("button.order-open")).to_be_focused()
    [order] = await listed(service, technician.token, customer="K-1008")
    assert (order["kind"], order["received_at"], order["state"]) == (
        "install", "2026-11-27T16:05:00+01:00", "open")
    await page.screenshot(path=artifacts / "orders-board.png", full_page=True)


async def test_provider_confirms_is_recorded_from_the_details_and_goes_on_the_timeline(
        page: Page, service: Service, technician: Account, artifacts: Path) -> None:
    order = await register(service, technician.token, kind="install", customer="K-1005",
                           received_at=se(2026, 11, 27, 9, 0).isoformat())
    await sign_in(page, technician)
    await open_board(page)

    dialog = await open_order(page, order["id"])
    confirms = step_row(dialog, "provider_confirms")
    await expect(confirms).to_contain_text("Can be done now · due Fri 27 Nov 17:00")
    await expect(step_row(dialog, "keys_collected")).to_contain_text(
        "Waits for Provider confirms")
    await confirms.get_by_role("button", name=re.compile("^Record as done…")).click()
    await confirms.get_by_role("button", name="Record as done", exact=True).click()

    await expect(dialog.get_by_role("status")).to_have_text(
        f"Provider confirms recorded for order {order['id']}.")
    await expect(confirms).to_contain_text(re.compile(
        rf"Done Fri 27 Nov 16:\d\d by {technician.name}"))
    await expect(step_row(dialog, "keys_collected")).to_contain_text("Can be done now")
    await expect(dialog.locator(".order-timeline tbody tr td:nth-child(2)")).to_have_text(
        ["Registered", "Provider confirms done"])
    await expect(dialog.locator(".order-timeline tbody tr td:nth-child(3)")).to_have_text(
        [technician.name, technician.name])
    [done] = [s for s in (await listed(service, technician.token, customer="K-1005"))[0]["steps"]
              if s["step"] == "provider_confirms"]
    assert done["done_by"] == technician.name
    await page.screenshot(path=artifacts / "order-details.png", full_page=True)


async def test_the_keys_collected_show_who_holds_each_set_and_a_refusal_shows_why(
        page: Page, service: Service, technician: Account) -> None:
    order = await register(service, technician.token, kind="install", customer="K-1004")
    async with api(service, technician.token) as client:
        await client.post(f"/api/orders/{order['id']}/steps/provider_confirms", json={})
    await sign_in(page, technician)
    await open_board(page)
    dialog = await open_order(page, order["id"])
    keys = step_row(dialog, "keys_collected")
    await keys.get_by_role("button", name=re.compile("^Record as done…")).click()
    await keys.get_by_label("Key numbers").fill("TH-7, N-7")
    await keys.get_by_label("The night patrol's key (optional)").fill("N-8")
    await keys.get_by_role("button", name="Record as done", exact=True).click()
    await expect(keys.get_by_role("alert")).to_have_text("night_key must be one of key_numbers")

    await keys.get_by_label("The night patrol's key (optional)").fill("N-7")
    await keys.get_by_role("button", name="Record as done", exact=True).click()

    await expect(keys).to_contain_text("Keys: TH-7, N-7 · Night patrol's key: N-7")
    held = dialog.locator(".order-keys tbody tr")
    await expect(held).to_have_count(2)
    await expect(dialog.locator('.order-keys tr[data-key="N-7"] td').first).to_have_text(
        "Night organisation (nattpatrull-bro)")
    await expect(dialog.locator('.order-keys tr[data-key="TH-7"] td').first).to_have_text(
        "Day provider (trygga-hander)")


async def test_an_overdue_order_is_marked_in_words_and_the_filter_shows_only_those(
        page: Page, service: Service, operator: Account) -> None:
    late = await register(service, operator.token, kind="removal", customer="K-1001",
                          received_at=se(2026, 11, 26, 10, 0).isoformat())  # due Thu 17:00
    fresh = await register(service, operator.token, kind="removal", customer="K-1003")
    await sign_in(page, operator)
    await open_board(page)

    await expect(card(page, late["id"])).to_have_class(has_class("is-overdue"))
    await expect(card(page, late["id"]).locator(".badge-overdue")).to_contain_text("Overdue")
    await expect(card(page, late["id"]).locator(".order-due")).to_contain_text(
        "Was due Thu 26 Nov 17:00")
    await expect(card(page, fresh["id"])).not_to_have_class(has_class("is-overdue"))
    await expect(card(page, fresh["id"]).locator(".badge-overdue")).to_have_count(0)
    overdue = await listed(service, operator.token, overdue="true")
    await expect(page.locator("#orders-count")).to_have_text(f"{len(overdue)} overdue")
    await expect(page.locator("#orders-board li.order").first).to_have_class(
        has_class("is-overdue"))

    await page.get_by_label("Overdue only").check()
    await expect(card(page, fresh["id"])).to_have_count(0)
    await expect(page.locator("#orders-board li.order")).to_have_count(len(overdue))
    dialog = await open_order(page, late["id"])
    await expect(step_row(dialog, "contact_agreed")).to_contain_text(
        "Overdue · was due Thu 26 Nov 17:00")


async def test_an_operator_sees_the_board_with_every_open_order(
        page: Page, service: Service, operator: Account) -> None:
    await register(service, operator.token, kind="install", customer="K-1007")
    await sign_in(page, operator)

    await expect(tabs(page)).to_have_text(
        ["Alarm queue", re.compile("^Device health"), re.compile("^Orders")])
    await open_board(page)
    shown = await listed(service, operator.token, state="open")
    await expect(page.locator("#orders-board li.order")).to_have_count(len(shown))
    await expect(page.locator("#orders-board h2")).to_contain_text(
        ["Day provider's turn", "Night organisation's turn", "TFH's turn"])


@pytest.mark.parametrize(("role", "team", "views"), [
    ("admin", None, ["Users", "Audit log", "Reports"]),
    ("responder", "solrosen-bro", ["Alarm queue"]),
])
async def test_an_admin_or_a_responder_has_no_order_board(
        page: Page, service: Service, role: str, team: str | None, views: list[str]) -> None:
    account = add_account(service, f"Utan Beställningar {role}", role, team=team)
    await sign_in(page, account)

    await expect(tabs(page)).to_have_text(views)
    await page.goto("/#orders")
    await expect(page.locator("#user-name")).to_have_text(account.name)
    await expect(page.get_by_role("heading", name=views[0], exact=True)).to_be_visible()
    await expect(page.locator("#orders-view")).to_be_hidden()
    await expect(page.locator("#orders-board li.order")).to_have_count(0)


async def test_the_board_knows_each_kinds_steps_as_the_server_does(page: Page) -> None:
    await page.goto("/")

    shown = await page.evaluate("""async () => {
        const m = await import('/static/orders.js');
        return {steps: m.STEPS, labels: Object.keys(m.STEP_LABEL)};
    }""")

    assert shown["steps"] == {
        kind: [{"step": s.step, "owner": s.owner, "after": list(s.after), "needs": list(s.needs)}
               for s in specs] for kind, specs in orders.STEPS.items()}
    assert {s.step for specs in orders.STEPS.values() for s in specs} <= set(shown["labels"])


async def test_an_order_turns_overdue_once_its_deadline_passes(
        page: Page, service: Service, technician: Account, clock: ShiftedClock) -> None:
    order = await register(service, technician.token, kind="install", customer="K-1002")
    clock.advance(timedelta(days=3, hours=1))  # past Monday 17:00; sessions start after
    await sign_in(page, technician)
    await open_board(page)

    late = card(page, order["id"])
    await expect(late).to_have_class(has_class("is-overdue"), timeout=UI_TIMEOUT_MS)
    await expect(late.locator(".order-due")).to_contain_text("Was due Mon 30 Nov 17:00")
    await expect(late.locator(".order-also-late")).to_contain_text(re.compile(
        r"^Also overdue: Night organisation confirms, due Mon 30 Nov 17:00; "
        r"Keys collected, due Sat 28 Nov 16:3\d$"))
