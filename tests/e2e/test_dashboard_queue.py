"""The dashboard with a full queue: 1,500 open alarms in headless Chromium, all shown, live.

The alarms are written straight into the service's database (see test_queue.py); a press
still travels device -> MQTT -> gateway -> dispatch -> live stream -> browser. A
PerformanceObserver in the page records every main-thread task over 50 ms, so the test
can tell how long a live update of the full queue keeps the page busy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from core.clock import FakeClock
from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, row, unit
from tests.e2e.test_queue import NOW, seed
from tests.harness import api, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

FULL_QUEUE_TIMEOUT_MS = 15000
# Busy-time budget of one live update of a 1,500-row queue. Generous for a loaded CI
# machine; rebuilding every row on each update takes several times this.
UPDATE_BUDGET_MS = 250

LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("full-queue")))
    async with running_service(settings, clock=FakeClock(NOW), run_timer_loop=False) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Berit Operatör")


@pytest.fixture(scope="module")
def token(operator: Account) -> str:
    return operator.token


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, service: Service) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=service.http_url,
                                        viewport={"width": 1440, "height": 900})
    tab = await context.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda request: None if request.url.startswith(
        (service.http_url, "data:")) else foreign.append(request.url))
    await tab.add_init_script(LONG_TASKS)
    yield tab
    await context.close()
    assert not errors, f"script errors in the page: {errors}"
    assert not foreign, f"the page fetched from outside the service: {foreign}"


async def queue_order(page: Page) -> list[int]:
    ids: list[str] = await page.locator("li.alarm").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")
    return [int(i) for i in ids]


async def server_order(service: Service, token: str) -> list[int]:
    async with api(service, token) as client:
        body = (await client.get("/api/alarms", params={"scope": "active"})).json()
    return [a["id"] for a in body["alarms"]]


async def expect_rows(page: Page, n: int) -> None:
    await expect(page.locator("li.alarm")).to_have_count(n, timeout=FULL_QUEUE_TIMEOUT_MS)


async def busy_ms_since(page: Page, mark: int) -> tuple[int, float]:
    """Long tasks recorded after the first `mark`: (how many now, longest of the new).

    Waits for the frame that shows the change first: layout and paint come after the
    script that changed the rows, and the observer hears of a task only once it ended.
    """
    tasks: list[float] = await page.evaluate("""() => new Promise((done) =>
        requestAnimationFrame(() => requestAnimationFrame(() =>
            setTimeout(() => done(window.__longTasks), 100))))""")
    return len(tasks), max(tasks[mark:], default=0.0)


async def test_the_dashboard_shows_all_1500_open_alarms_most_urgent_first_and_stays_live(
        page: Page, operator: Account, service: Service, token: str, link: DeviceLink) -> None:
    waiting = seed(service.db, service.clock, 1500, every_nth_without_team=50)

    await sign_in(page, operator)
    await expect_rows(page, 1500)
    first = page.locator("li.alarm").first
    await expect(first).to_have_attribute("data-id", str(waiting[0]))
    await expect(page.locator("#open-count")).to_have_text("1500")
    assert await queue_order(page) == await server_order(service, token)
    loaded, longest_load = await busy_ms_since(page, 0)
    print(f"first render of 1,500 rows: longest task {longest_load:.0f} ms")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "dashboard-full-queue.png")

    # A press arrives live and takes its place by urgency.
    await unit(link, "100001").press()
    await expect(row(page, "100001")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect_rows(page, 1501)
    pressed, longest_press = await busy_ms_since(page, loaded)
    assert await queue_order(page) == await server_order(service, token)

    # The most urgent alarm is closed elsewhere: it leaves, the next one moves up.
    async with api(service, token) as client:
        closed = await client.post(f"/api/alarms/{waiting[0]}/phone-kvittering",
                                   json={"reason": "handled by phone"})
    assert closed.status_code == 200
    await expect_rows(page, 1500)
    await expect(first).to_have_attribute("data-id", str(waiting[50]))  # the next without team
    _, longest_close = await busy_ms_since(page, pressed)
    print(f"live update of a 1,500-row queue: longest task {longest_press:.0f} ms (press), "
          f"{longest_close:.0f} ms (close)")

    assert max(longest_press, longest_close) < UPDATE_BUDGET_MS
    assert await queue_order(page) == await server_order(service, token)


async def test_a_resync_brings_in_alarms_the_live_feed_missed(
        page: Page, operator: Account, service: Service, token: str) -> None:
    await sign_in(page, operator)
    before = len(await server_order(service, token))
    await expect_rows(page, before)
    missed = seed(service.db, service.clock, 40)  # written behind the live feed's back

    service.live.publish({"type": "resync"})  # what a dashboard gets when it fell behind

    await expect_rows(page, before + 40)
    assert await queue_order(page) == await server_order(service, token)
    assert set(missed) <= set(await queue_order(page))


async def test_closed_alarms_list_a_page_at_a_time_with_load_more(
        page: Page, operator: Account, service: Service, token: str) -> None:
    seed(service.db, service.clock, 70, state="closed")
    async with api(service, token) as client:
        closed: list[int] = []
        cursor = None
        while True:
            params = {"scope": "closed", "limit": 500, **({"cursor": cursor} if cursor else {})}
            body = (await client.get("/api/alarms", params=params)).json()
            closed += [a["id"] for a in body["alarms"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    await sign_in(page, operator)

    await page.get_by_text("Closed alarms", exact=True).click()
    history = page.locator("#history-list li")
    await expect(history).to_have_count(50)
    await page.get_by_role("button", name="Load more").click()
    await expect(history).to_have_count(len(closed))
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    shown = [int(i) for i in await history.evaluate_all("rows => rows.map(r => r.dataset.id)")]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.locator("#history").screenshot(path=ARTIFACTS / "dashboard-closed-alarms.png")

    assert shown == closed  # newest first, each once
    await history.first.get_by_role("button", name="Details").click()
    await expect(page.get_by_role("dialog", name=f"Alarm {closed[0]}")).to_be_visible()
