"""Fixtures the dashboard's browser tests share: a device link, Chromium, and a watchful tab.

Each test module brings its own `service` (and `token`, for `page`), started with the
settings its tests need; these fixtures work against whichever it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from trygg.runtime import Service


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
async def page(browser: Browser, service: Service, token: str) -> AsyncIterator[Page]:
    """A fresh tab. At the end: no script errors, the token never in the console, and
    nothing fetched from anywhere but the service (alarm centres run on closed networks)."""
    context = await browser.new_context(base_url=service.http_url,
                                        viewport={"width": 1440, "height": 900})
    tab = await context.new_page()
    errors: list[str] = []
    console: list[str] = []
    foreign: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(message: ConsoleMessage) -> None:
        console.append(message.text)

    tab.on("console", on_console)
    tab.on("request", lambda request: None if request.url.startswith(
        (service.http_url, "data:")) else foreign.append(request.url))
    yield tab
    # A stand-in answer still being fetched when the test ends is no error of the page.
    await tab.unroute_all(behavior="ignoreErrors")
    await context.close()
    assert not errors, f"script errors in the page: {errors}"
    assert not [m for m in console if token in m], "the token was written to the console"
    assert not foreign, f"the page fetched from outside the service: {foreign}"
