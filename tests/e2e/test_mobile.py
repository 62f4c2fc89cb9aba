"""The responders' phone page, `/m/`, as a responder uses it: headless Chromium with a
phone's screen and touch, against the real service.

Presses come from simulated base units over a real Mosquitto, so a call-out that shows
on the phone has travelled device -> MQTT -> gateway -> dispatch -> call chain -> live
stream -> phone. The service runs on a FakeClock with its timer loop off: the call
chain moves, and a visit lasts, only when a test says so. The shipped registry routes
K-1001 (unit 100001) and the protected K-1006 (100006) by day to Solrosen Kungsängen,
whose call order starts with Maria Holm, then Ahmed Yusuf; K-1007 (100007) goes to
Trygga Händer, whose call order starts with Petra Sjöberg.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    ViewportSize,
    expect,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import FakeClock
from dispatch.api.edge import CONTENT_SECURITY_POLICY
from dispatch.models import Customer, KeyHolding, KeySet
from dispatch.views import MASK
from simulator import DeviceLink, SimulatedBaseUnit, SimulatedLock
from tests.brokers import Broker
from tests.e2e.conftest import (
    BROWSER_TESTS,
    FAILED_LOAD,
    SESSION_COOKIE,
    UI_TIMEOUT_MS,
    Account,
    add_account,
    fill_sign_in,
)
from tests.harness import MONDAY_10_LOCAL, api, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TEAM = "solrosen-kungsangen"
UNIT, PROTECTED_UNIT, OTHER_TEAMS_UNIT = "100001", "100006", "100007"
LOCK = "300001"  # the keyless lock at K-1001's door
FIRST, SECOND = "Maria Holm", "Ahmed Yusuf"  # Solrosen Kungsängen's call order
KEYS = [("D-1001", "day_provider", "solrosen"),
        ("N-1001", "night_organisation", "nattorganisationen")]
PHONE = ViewportSize(width=390, height=844)
SMALL_PHONE = ViewportSize(width=360, height=740)
MIN_TOUCH_PX = 44


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("mobile")))
    async with running_service(settings, clock=FakeClock(MONDAY_10_LOCAL),
                               run_timer_loop=False) as svc:
        now = svc.clock.now()

        def give_keys(s: Session) -> None:
            customer = s.execute(select(Customer).where(Customer.code == "K-1001")).scalar_one()
            for number, holder, code in KEYS:
                s.add(KeySet(customer_id=customer.id, number=number, holder=holder,
                             holder_code=code, created_at=now,
                             history=[KeyHolding(holder=holder, holder_code=code, at=now)]))

        svc.db.transaction(give_keys)
        yield svc


@pytest.fixture(scope="module")
def maria(service: Service) -> Account:
    return add_account(service, FIRST, "responder", team=TEAM)


@pytest.fixture(scope="module")
def petra(service: Service) -> Account:
    return add_account(service, "Petra Sjöberg", "responder", team="trygga-hander")


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Olle Operatör")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def nothing_left_open(service: Service, operator: Account) -> AsyncIterator[None]:
    """Each test starts with no alarm: what one leaves open the alarm centre stands down."""
    yield
    async with api(service, operator.token) as client:
        views = (await client.get("/api/alarms", params={"scope": "active"})).json()["alarms"]
        for view in views:
            if view["state"] == "completed":
                await client.post(f"/api/alarms/{view['id']}/close")
            else:
                await client.post(f"/api/alarms/{view['id']}/false-alarm", json={})


@contextlib.asynccontextmanager
async def phone_tab(browser: Browser, service: Service,
                    screen: ViewportSize) -> AsyncIterator[Page]:
    """A phone's browser: its screen, touch and mobile viewport rules. At the end, as for
    the dashboard's tabs: no script or console errors, no session secret in the page's
    storage, and nothing fetched from anywhere but the service."""
    context = await browser.new_context(base_url=service.http_url, viewport=screen,
                                        is_mobile=True, has_touch=True,
                                        device_scale_factor=2)
    tab = await context.new_page()
    errors: list[str] = []
    foreign: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(FAILED_LOAD):
            errors.append(message.text)

    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", on_console)
    tab.on("request", lambda request: None if request.url.startswith(
        (service.http_url, "data:")) else foreign.append(request.url))
    try:
        yield tab
    finally:
        await tab.unroute_all(behavior="ignoreErrors")
        secrets = {c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE}
        storage = ""
        with contextlib.suppress(Exception):
            storage = await tab.evaluate(
                "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        await context.close()
    assert not errors, f"errors in the page or its console: {errors}"
    assert not [s for s in secrets if s in storage], "the session secret was kept in storage"
    assert not foreign, f"the page fetched from outside the service: {foreign}"


@pytest_asyncio.fixture(loop_scope="module")
async def phone(browser: Browser, service: Service) -> AsyncIterator[Page]:
    async with phone_tab(browser, service, PHONE) as tab:
        yield tab


async def sign_in_on_phone(page: Page, account: Account, *, live: bool = True) -> None:
    """Open /m/ and sign in through its form, as a responder does."""
    await page.goto("/m/")
    await expect(page.locator("#signin")).to_be_visible()
    await fill_sign_in(page, account.name, account.password)
    await expect(page.locator("#user-name")).to_have_text(account.name)
    if live:
        await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)


async def press(service: Service, link: DeviceLink, cid: str) -> None:
    """The customer presses the pendant; the service has taken the alarm in when this returns."""
    await SimulatedBaseUnit(cid, link, resend_after_s=1.0).press()
    await service.dispatcher.process_events()


def card(page: Page, cid: str) -> Locator:
    return page.locator(f'li.m-alarm[data-cid="{cid}"]')


def state_of(alarm_card: Locator) -> Locator:
    return alarm_card.locator('[data-role="state"]')


async def alarm(service: Service, account: Account, alarm_id: int) -> dict[str, Any]:
    """The alarm with its timeline, as the API answers it to `account`."""
    async with api(service, account.token) as client:
        response = await client.get(f"/api/alarms/{alarm_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


async def open_alarm(service: Service, account: Account, cid: str) -> dict[str, Any]:
    async with api(service, account.token) as client:
        views = (await client.get("/api/alarms", params={"scope": "open"})).json()["alarms"]
    [view] = [v for v in views if v["cid"] == cid]
    return dict(view)


async def no_horizontal_scroll(page: Page) -> bool:
    return bool(await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


async def shortest_button_px(page: Page) -> float:
    """The height of the shortest button (or button-like link) on screen."""
    return float(await page.evaluate("""() => Math.min(...[...document.querySelectorAll(
        'button, a.m-btn')].filter((b) => b.offsetParent !== null)
        .map((b) => b.getBoundingClientRect().height))"""))


async def test_a_signed_out_visitor_sees_only_the_sign_in_form(
        phone: Page, service: Service, link: DeviceLink, maria: Account,
        artifacts: Path) -> None:
    await press(service, link, UNIT)
    asked: list[str] = []
    phone.on("request", lambda request: asked.append(request.url))

    shell = await phone.goto("/m/")
    await expect(phone.locator("#signin")).to_be_visible()
    await fill_sign_in(phone, maria.name, "not-the-password")

    await expect(phone.get_by_role("alert")).to_contain_text("Wrong name or password")
    await expect(phone.locator("#app")).to_be_hidden()
    await expect(phone.locator("li.m-alarm")).to_have_count(0)
    await phone.screenshot(path=artifacts / "mobile-signin.png")
    assert shell is not None and shell.headers["cache-control"] == "no-store"
    assert shell.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert not [url for url in asked if "/api/alarms" in url or "/api/stream" in url]
    assert "Tibblevägen" not in await phone.content()


async def test_a_responder_answers_a_call_out_and_gives_the_reason_for_a_long_visit(
        phone: Page, service: Service, link: DeviceLink, maria: Account, operator: Account,
        artifacts: Path) -> None:
    assert isinstance(service.clock, FakeClock)
    await sign_in_on_phone(phone, maria)
    await press(service, link, UNIT)

    # Arrives without a reload, marked as theirs, with what is needed to get in.
    call = card(phone, UNIT)
    await expect(state_of(call)).to_have_text("Call-out for you", timeout=UI_TIMEOUT_MS)
    await expect(call).to_have_class(re.compile(r"\bis-for-me\b"))
    await expect(call.locator('[data-role="address"]')).to_have_text(
        "Tibblevägen 12, 196 30 Kungsängen")
    await expect(call.locator('[data-role="door"]')).to_have_text("Door: Lindqvist")
    await expect(call).to_contain_text("Customer K-1001")
    await expect(call.locator('[data-role="keys"] li')).to_have_text(
        ["Key D-1001 · Day provider (solrosen)",
         "Key N-1001 · Night organisation (nattorganisationen)"])
    await expect(call.locator('[data-role="since"]')).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await expect(phone).to_have_title("(1) Call-out for you — Trygg")
    await expect(call).not_to_contain_text(re.compile(r"\b(null|undefined)\b"))
    await phone.screenshot(path=artifacts / "mobile-callout.png")
    alarm_id = int(await call.get_attribute("data-id") or 0)

    await call.get_by_role("button", name="Accept").tap()
    await expect(state_of(call)).to_have_text("Accepted by you")
    service.clock.advance(timedelta(minutes=5))  # past two steps of the call chain
    await service.dispatcher.fire_due()
    accepted = await alarm(service, operator, alarm_id)

    await call.get_by_role("button", name="On my way").tap()
    await expect(call.locator('[data-role="status"]')).to_contain_text("On the way since")
    await call.get_by_role("button", name="Check in").tap()
    await expect(state_of(call)).to_have_text("On site")
    await expect(call.locator('[data-role="status"]')).to_contain_text("checked in by phone")
    service.clock.advance(timedelta(minutes=20))
    await call.get_by_role("button", name="Check out").tap()
    await expect(state_of(call)).to_have_text("Visit over")
    reason = call.get_by_label("The visit took longer than 15 minutes: why?")
    await expect(reason).to_be_visible()
    await phone.screenshot(path=artifacts / "mobile-visit-reason.png")
    await reason.fill("The customer had fallen; waited with her for the ambulance.")
    await call.get_by_role("button", name="Send reason").tap()
    await expect(call.get_by_role("status")).to_have_text("Reason sent. Thank you.")
    await expect(reason).to_be_hidden()
    done = await alarm(service, operator, alarm_id)

    answers = [(e["action"], e["actor"], e["note"]) for e in accepted["log"]
               if e["action"] in ("accept", "decline") or e["action"].startswith("call_out")]
    assert answers == [("call_out", "system", f"{TEAM}: call 1/6, {FIRST}"),
                       ("accept", FIRST, f"answered by {FIRST}")]  # no call after it
    assert accepted["accepted_by"] == FIRST and accepted["calling"] is None
    assert done["on_way_at"] is not None and done["kvittering"] == "responder"
    assert done["state"] == "completed" and done["visit_seconds"] == 20 * 60
    assert done["visit_reason"] == "The customer had fallen; waited with her for the ambulance."
    assert done["needs_visit_reason"] is False
    assert [e["actor"] for e in done["log"] if e["action"] in (
        "on_my_way", "check_in", "check_out", "visit_reason")] == [FIRST] * 4


async def test_the_responder_who_accepted_opens_the_door_lock_after_saying_yes(
        phone: Page, service: Service, link: DeviceLink, maria: Account, operator: Account,
        artifacts: Path) -> None:
    await sign_in_on_phone(phone, maria)
    async with SimulatedLock(LOCK, link, clock=service.clock.now, relock_after_s=0.2,
                             resend_after_s=1.0) as lock:
        await press(service, link, UNIT)
        call = card(phone, UNIT)
        await expect(state_of(call)).to_have_text("Call-out for you", timeout=UI_TIMEOUT_MS)
        door = call.locator('[data-role="door-lock"]')
        await expect(call.locator('[data-role="keys"] li')).to_have_count(len(KEYS))
        await expect(door).to_have_count(0)  # not before they have said they are going

        await call.get_by_role("button", name="Accept").tap()
        await expect(state_of(call)).to_have_text("Accepted by you")
        await door.get_by_role("button", name="Open the door…").tap()
        # Opening a door is consequential: it asks first, and Cancel takes the focus.
        await expect(door).to_contain_text(
            f"Open the door at Tibblevägen 12 now (lock {LOCK})?")
        await expect(door.get_by_role("button", name="Cancel")).to_be_focused()
        await door.get_by_role("button", name="Cancel").tap()
        await expect(door.get_by_role("button", name="Yes, open the door")).to_have_count(0)
        assert lock.obeyed == []
        await door.get_by_role("button", name="Open the door…").tap()
        await phone.screenshot(path=artifacts / "mobile-door-confirm.png")
        await door.get_by_role("button", name="Yes, open the door").tap()

        await expect(call.get_by_role("status")).to_have_text(re.compile(
            rf"^Unlock sent to lock {LOCK} at \d\d:\d\d: the door opens in a moment\.$"))
        opened = False
        for _ in range(100):  # the command goes out through the outbox to the lock
            opened = bool(lock.obeyed)
            if opened:
                break
            await phone.wait_for_timeout(100)
        alarm_id = int(await call.get_attribute("data-id") or 0)
        trail = [(e["action"], e["actor"]) for e in (
            await alarm(service, operator, alarm_id))["log"]]

    assert opened and len(lock.obeyed) == 1
    assert ("lock_open_requested", FIRST) in trail


async def test_a_call_out_is_for_her_though_her_account_is_typed_otherwise(
        phone: Page, service: Service, link: DeviceLink) -> None:
    """The call order says "Maria Holm"; this account is "MARIA  HOLM"."""
    same_maria = add_account(service, "MARIA  HOLM", "responder", team=TEAM)
    await sign_in_on_phone(phone, same_maria)
    await press(service, link, UNIT)

    call = card(phone, UNIT)
    await expect(state_of(call)).to_have_text("Call-out for you", timeout=UI_TIMEOUT_MS)
    await expect(call.get_by_role("button", name="Decline")).to_be_visible()


async def test_a_responder_of_another_team_does_not_see_the_alarm(
        phone: Page, service: Service, link: DeviceLink, petra: Account,
        operator: Account) -> None:
    await sign_in_on_phone(phone, petra)
    await expect(phone.get_by_text("No open alarms")).to_be_visible()

    await press(service, link, UNIT)  # Solrosen Kungsängen's
    await press(service, link, OTHER_TEAMS_UNIT)  # her own team's, after it

    await expect(state_of(card(phone, OTHER_TEAMS_UNIT))).to_have_text(
        "Call-out for you", timeout=UI_TIMEOUT_MS)
    await expect(phone.locator("li.m-alarm")).to_have_count(1)
    await phone.reload()
    await expect(card(phone, OTHER_TEAMS_UNIT)).to_be_visible()
    await expect(phone.locator("li.m-alarm")).to_have_count(1)
    assert (await open_alarm(service, operator, UNIT))["team"]["code"] == TEAM


async def test_declining_calls_the_next_in_the_call_order_and_a_dead_network_is_said_plainly(
        phone: Page, service: Service, link: DeviceLink, maria: Account,
        operator: Account, artifacts: Path) -> None:
    await sign_in_on_phone(phone, maria)
    await press(service, link, PROTECTED_UNIT)
    call = card(phone, PROTECTED_UNIT)
    await expect(state_of(call)).to_have_text("Call-out for you", timeout=UI_TIMEOUT_MS)
    before = await open_alarm(service, operator, PROTECTED_UNIT)

    # A protected identity stays masked on the phone, as everywhere.
    await expect(call.get_by_role("heading", level=2)).to_have_text(MASK)
    await expect(call.locator('[data-role="address"]')).to_have_text(f"{MASK}, Kungsängen")
    await expect(call.locator('[data-role="door"]')).to_have_count(0)
    await expect(call.locator('[data-role="flags"]')).to_contain_text("Protected identity")
    await expect(call).not_to_contain_text(re.compile(r"\b(null|undefined)\b"))

    await phone.context.set_offline(True)
    await call.get_by_role("button", name="Decline").tap()
    await expect(call.get_by_role("alert")).to_have_text(
        "Could not reach the server. Nothing was saved. Check the network and try again.")
    await expect(phone.locator("#banner-conn")).to_contain_text("No connection to the server")
    await phone.screenshot(path=artifacts / "mobile-offline.png")
    await phone.context.set_offline(False)
    await expect(phone.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)
    await call.get_by_role("button", name="Decline").tap()

    await expect(state_of(call)).to_have_text("Called out")
    await expect(call.locator('[data-role="status"]')).to_contain_text(
        f"Calling {SECOND} (2 of 6)")
    await expect(call.get_by_role("button", name="Decline")).to_have_count(0)
    await expect(call.get_by_role("status")).to_have_text(
        "Declined: the next in the call order is being called.")
    after = await alarm(service, operator, before["id"])
    assert before["calling"] == {"step": 1, "of": 6, "name": FIRST, "phone": "+46 70 555 11 01"}
    assert after["calling"]["step"] == 2 and after["calling"]["name"] == SECOND
    assert [(e["actor"], e["note"]) for e in after["log"] if e["action"] == "decline"] == [
        (FIRST, f"declined by {FIRST}")]  # once: the tap without a network saved nothing


async def test_accepting_what_someone_else_accepted_meanwhile_says_so(
        phone: Page, service: Service, link: DeviceLink, maria: Account,
        operator: Account, artifacts: Path) -> None:
    await press(service, link, UNIT)
    # The phone has the list but no live updates (a stream that never answers), so it
    # still offers Accept after the operator has recorded another responder's answer.

    async def never_answer(route: Route) -> None:
        return None

    await phone.route("**/api/stream", never_answer)
    await sign_in_on_phone(phone, maria, live=False)
    call = card(phone, UNIT)
    await expect(state_of(call)).to_have_text("Call-out for you")
    view = await open_alarm(service, operator, UNIT)
    async with api(service, operator.token) as client:
        taken = await client.post(f"/api/alarms/{view['id']}/accept", json={"responder": SECOND})

    await call.get_by_role("button", name="Accept").tap()

    await expect(call.get_by_role("alert")).to_have_text(
        f"Already accepted by someone else ({SECOND}): you need not go.")
    await expect(state_of(call)).to_have_text("Accepted")
    await expect(call.locator('[data-role="status"]')).to_contain_text(f"Accepted by {SECOND}")
    await expect(call.get_by_role("button", name="Accept")).to_have_count(0)
    await phone.screenshot(path=artifacts / "mobile-already-accepted.png")
    assert taken.status_code == 200
    assert (await alarm(service, operator, view["id"]))["accepted_by"] == SECOND


async def test_signing_out_leaves_only_the_sign_in_form(
        phone: Page, service: Service, link: DeviceLink, maria: Account) -> None:
    await sign_in_on_phone(phone, maria)
    await press(service, link, UNIT)
    await expect(card(phone, UNIT)).to_be_visible(timeout=UI_TIMEOUT_MS)

    await phone.get_by_role("button", name="Sign out").tap()

    await expect(phone.locator("#signin-notice")).to_have_text("You have signed out.")
    await expect(phone.locator("#app")).to_be_hidden()
    await expect(phone.locator("li.m-alarm")).to_have_count(0)
    await phone.reload()
    await expect(phone.locator("#signin")).to_be_visible()
    await expect(phone.locator("#app")).to_be_hidden()
    assert (await phone.request.get("/api/session")).status == 401


async def test_an_operator_is_sent_to_the_dashboard(
        phone: Page, operator: Account) -> None:
    await phone.goto("/m/")
    await fill_sign_in(phone, operator.name, operator.password)

    await expect(phone.get_by_role("heading", name="Only for responders")).to_be_visible()
    dashboard = phone.get_by_role("link", name="Open the alarm centre's dashboard")
    await expect(dashboard).to_have_attribute("href", "/")
    await expect(phone.locator("#list-view")).to_be_hidden()


async def test_a_360_px_screen_has_no_horizontal_scroll_and_big_buttons(
        browser: Browser, service: Service, link: DeviceLink, maria: Account,
        artifacts: Path) -> None:
    async with phone_tab(browser, service, SMALL_PHONE) as small:
        await small.goto("/m/")
        await expect(small.locator("#signin")).to_be_visible()
        signin_fits = await no_horizontal_scroll(small)
        signin_button = await shortest_button_px(small)
        await fill_sign_in(small, maria.name, maria.password)
        await press(service, link, UNIT)
        await press(service, link, PROTECTED_UNIT)
        call = card(small, UNIT)
        await expect(state_of(call)).to_have_text("Call-out for you", timeout=UI_TIMEOUT_MS)
        await expect(card(small, PROTECTED_UNIT)).to_be_visible()
        await expect(call.locator('[data-role="keys"] li')).to_have_count(len(KEYS))
        list_fits = await no_horizontal_scroll(small)
        list_button = await shortest_button_px(small)
        await call.get_by_role("button", name="Accept").tap()
        await expect(call.get_by_role("button", name="On my way")).to_be_visible()
        await small.screenshot(path=artifacts / "mobile-360.png", full_page=True)
        accepted_fits = await no_horizontal_scroll(small)
        accepted_button = await shortest_button_px(small)

    assert signin_fits and list_fits and accepted_fits
    assert min(signin_button, list_button, accepted_button) >= MIN_TOUCH_PX
