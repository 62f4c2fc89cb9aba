"""Fixtures the dashboard's browser tests share: a device link, Chromium, a watchful tab,
and users who sign in through the form with a name and a password.

Each test module brings its own `service`, started with the settings its tests need;
these fixtures work against whichever it is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
    expect,
)

from dispatch.users import add_user, hash_password
from simulator import DeviceLink
from tests.brokers import Broker
from trygg.runtime import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
UI_TIMEOUT_MS = 5000
# The marks of every dashboard test module. Off CI a developer without Chromium can still
# run the rest; in CI (scripts/test installs it) a missing browser must fail, never pass
# quietly.
BROWSER_TESTS = [
    pytest.mark.browser, pytest.mark.mqtt, pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"),
]
SESSION_COOKIE = "trygg_session"
# The browser's own line for an answer that is not 2xx (a 401 at sign-in, say): the
# page handles those; any other console error is a fault of the page (a CSP refusal too).
FAILED_LOAD = "Failed to load resource"


@dataclass(frozen=True)
class Account:
    """A user with a password, for the form; `token` is its API token, for the test's calls."""

    name: str
    password: str
    role: str
    token: str
    team: str | None = None


def add_account(service: Service, name: str, role: str = "operator", *,
                team: str | None = None) -> Account:
    password = f"pw-{secrets.token_urlsafe(12)}"
    hashed = hash_password(password)
    now = service.clock.now()
    token = service.db.transaction(lambda s: add_user(
        s, name, role, now, team=team, password_hash=hashed))
    return Account(name=name, password=password, role=role, token=token, team=team)


async def fill_sign_in(page: Page, name: str, password: str) -> None:
    """Type a name and password into the sign-in form and press Enter."""
    form = page.locator("#signin")
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_label("Password", exact=True).fill(password)
    await form.get_by_label("Password", exact=True).press("Enter")


async def sign_in(page: Page, account: Account) -> None:
    """Open the dashboard and sign in through the form, as a person does."""
    await page.goto("/")
    await expect(page.locator("#signin")).to_be_visible()
    await fill_sign_in(page, account.name, account.password)
    await expect(page.locator("#user-name")).to_have_text(account.name)
    await expect(page.locator("#conn-text")).to_have_text("Live", timeout=UI_TIMEOUT_MS)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def link(service: Service, broker: Broker) -> AsyncIterator[DeviceLink]:
    async with DeviceLink(broker.host, broker.port,
                          root=service.settings.mqtt_topic_root) as device_link:
        yield device_link


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(service: Service) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, service: Service) -> AsyncIterator[Page]:
    """A fresh tab. At the end: no script or console errors, no password, session secret
    or API token in the console or the page's storage, and nothing fetched from anywhere
    but the service (alarm centres run on closed networks)."""
    context = await browser.new_context(base_url=service.http_url,
                                        viewport={"width": 1440, "height": 900})
    tab = await context.new_page()
    errors: list[str] = []
    console: list[str] = []
    console_errors: list[str] = []
    foreign: list[str] = []
    secrets_seen: set[str] = set()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(message: ConsoleMessage) -> None:
        console.append(message.text)
        if message.type == "error" and not message.text.startswith(FAILED_LOAD):
            console_errors.append(message.text)

    def on_request(request: Request) -> None:
        if request.method == "POST" and request.url.endswith(("/api/session", "/api/users")):
            with contextlib.suppress(Exception):
                password = (request.post_data_json or {}).get("password")
                if password:
                    secrets_seen.add(password)

    async def on_response(response: Response) -> None:
        # The sign-in's session secret, and a new user's API token.
        if response.request.method == "POST" and response.ok and response.url.endswith(
                ("/api/session", "/api/users")):
            with contextlib.suppress(Exception):
                token = (await response.json()).get("token")
                if token:
                    secrets_seen.add(token)

    tab.on("console", on_console)
    tab.on("request", on_request)
    tab.on("response", on_response)
    tab.on("request", lambda request: None if request.url.startswith(
        (service.http_url, "data:")) else foreign.append(request.url))
    yield tab
    # A stand-in answer still being fetched when the test ends is no error of the page.
    await tab.unroute_all(behavior="ignoreErrors")
    secrets_seen.update(c["value"] for c in await context.cookies()
                        if c["name"] == SESSION_COOKIE)
    storage = ""
    with contextlib.suppress(Exception):
        storage = await tab.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    await context.close()
    assert not errors, f"script errors in the page: {errors}"
    assert not console_errors, f"errors in the console: {console_errors}"
    assert not [m for m in console for s in secrets_seen if s in m], (
        "a password or a token was written to the console")
    assert not [s for s in secrets_seen if s in storage], (
        "a password or a token was kept in the browser's storage")
    assert not foreign, f"the page fetched from outside the service: {foreign}"
