"""Signing in to the dashboard with a name and password, and the session's end: headless
Chromium against the real service.

The session is an HttpOnly cookie; the page keeps nothing about it. Sign-in is locked
after three failures here (the service's setting), so the lock-out can be seen; the
tests move the service's clock past the window instead of waiting it out.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from tests.brokers import Broker
from tests.e2e.conftest import (
    BROWSER_TESTS,
    SESSION_COOKIE,
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

MAX_FAILURES = 3
WINDOW = timedelta(minutes=15)
ENDED = "Your session has ended; sign in again"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard-signin")),
                             sign_in_max_failures=MAX_FAILURES,
                             sign_in_window_s=WINDOW.total_seconds())
    async with running_service(settings, clock=ShiftedClock(MONDAY_10_LOCAL)) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Dora Operatör")


@pytest.fixture(scope="module")
def admin(service: Service) -> Account:
    return add_account(service, "Erik Admin", "admin")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def signin_form(page: Page) -> tuple[Locator, Locator]:
    form = page.locator("#signin")
    return form.get_by_label("Name", exact=True), form.get_by_label("Password", exact=True)


async def test_a_wrong_password_shows_the_error_and_stays_on_the_sign_in_page(
        page: Page, operator: Account, artifacts: Path) -> None:
    await page.goto("/")
    name, password = signin_form(page)
    await expect(name).to_be_focused()
    await password.press("Enter")  # nothing typed yet
    await expect(page.get_by_role("alert")).to_have_text("Enter your name.")

    await fill_sign_in(page, operator.name, "not-the-password")

    await expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
    await expect(page.locator("#app")).to_be_hidden()
    await expect(name).to_have_value(operator.name)
    await expect(password).to_have_value("")
    await expect(password).to_be_focused()
    await expect(password).to_have_attribute("aria-invalid", "true")
    await page.screenshot(path=artifacts / "signin-wrong-password.png")


async def test_the_right_password_shows_the_name_and_role_and_keeps_no_secret_in_the_page(
        page: Page, operator: Account, artifacts: Path) -> None:
    await page.goto("/")
    name, password = signin_form(page)
    await expect(name).to_have_attribute("autocomplete", "username")
    await expect(password).to_have_attribute("autocomplete", "current-password")

    await fill_sign_in(page, operator.name, operator.password)

    await expect(page.locator("#user-name")).to_have_text("Dora Operatör")
    await expect(page.locator("#user-role")).to_have_text("Operator")
    await expect(page.get_by_role("heading", name="Alarm queue")).to_be_visible()
    await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)
    await page.screenshot(path=artifacts / "signed-in-operator.png")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert SESSION_COOKIE not in await page.evaluate("document.cookie")
    stored = await page.evaluate("[Object.keys(localStorage), Object.keys(sessionStorage)]")
    assert stored == [[], []]


async def test_signing_out_returns_to_the_sign_in_page_and_a_reload_stays_there(
        page: Page, operator: Account) -> None:
    await sign_in(page, operator)

    await page.get_by_role("button", name="Sign out").click()

    await expect(page.locator("#signin-notice")).to_have_text("You have signed out.")
    await expect(page.locator("#app")).to_be_hidden()
    await page.reload()
    await expect(signin_form(page)[1]).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    assert (await page.request.get("/api/session")).status == 401


async def test_a_disabled_user_is_told_so_at_sign_in(
        page: Page, service: Service, admin: Account) -> None:
    former = add_account(service, "Frida Slutat")
    async with api(service, admin.token) as client:
        assert (await client.post(f"/api/users/{former.name}/disable")).status_code == 200
    await page.goto("/")

    await fill_sign_in(page, former.name, former.password)

    await expect(page.get_by_role("alert")).to_contain_text("This user is disabled")
    await expect(page.locator("#app")).to_be_hidden()


async def test_a_session_ended_on_the_server_sends_the_open_dashboard_to_sign_in_within_5_s(
        page: Page, service: Service, admin: Account, artifacts: Path) -> None:
    leaving = add_account(service, "Gustav Avslutad")
    await sign_in(page, leaving)
    async with api(service, admin.token) as client:
        disabled = await client.post(f"/api/users/{leaving.name}/disable")
    ended = time.monotonic()

    # Nobody touches the page: the live stream says so.
    await expect(page.locator("#signin-notice")).to_have_text(f"{ENDED}.", timeout=5000)
    took = time.monotonic() - ended
    await expect(page.locator("#app")).to_be_hidden()
    await expect(signin_form(page)[0]).to_be_focused()
    await page.screenshot(path=artifacts / "signin-session-ended.png")

    assert disabled.status_code == 200
    assert took < 5.0, f"the dashboard took {took:.1f} s to notice"


async def test_too_many_wrong_passwords_lock_sign_in_and_say_how_long_to_wait(
        page: Page, service: Service, operator: Account, artifacts: Path) -> None:
    assert isinstance(service.clock, ShiftedClock)
    service.clock.advance(WINDOW)  # the other tests' failures are out of the window
    await page.goto("/")
    for _ in range(MAX_FAILURES):
        async with page.expect_response("**/api/session") as wrong:
            await fill_sign_in(page, operator.name, "a-wrong-guess")
        assert (await wrong.value).status == 401
        await expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")

    async with page.expect_response("**/api/session") as locked:
        await fill_sign_in(page, operator.name, operator.password)  # right, but locked

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Too many failed sign-ins")
    await expect(alert).to_contain_text("try again in 15 minutes (at ")
    await expect(page.locator("#app")).to_be_hidden()
    await page.screenshot(path=artifacts / "signin-locked.png")
    assert (await locked.value).status == 429
    service.clock.advance(WINDOW)
    await fill_sign_in(page, operator.name, operator.password)
    await expect(page.locator("#user-name")).to_have_text(operator.name)
