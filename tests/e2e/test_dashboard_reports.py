"""The Reports view as the alarm manager follows the providers up: headless Chromium, real
service, alarms made by presses, answers, check-ins and check-outs at chosen times.

The service runs on a fake clock. October 2026 gets four alarms in the day shift, two
for Solrosen Kungsängen (quick) and two for Trygga Händer (late: over 30 minutes to
arrive), and November one more; then the clock is set to Monday 16 November, so the
last full month, the report's default, is October. The figures each test expects follow
from these times (medians and nearest-rank p90s, dispatch/reports.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from core.clock import FakeClock
from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, unit
from tests.harness import api, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

SE = ZoneInfo("Europe/Stockholm")
MONDAY_16_NOVEMBER = datetime(2026, 11, 16, 10, 0, tzinfo=SE)
LONG_VISIT_REASON = "The customer had fallen; waited for the ambulance."


@dataclass(frozen=True)
class Made:
    """One alarm of the report: pressed at `at`, answered, arrived and checked out after
    so many seconds from the call-out (the press: the chain calls out at once)."""

    cid: str
    at: datetime
    answer_s: int
    arrival_s: int
    visit_s: int
    reason: str | None = None


OCTOBER = [
    Made("100001", datetime(2026, 10, 5, 10, 0, tzinfo=SE), 60, 600, 600),
    Made("100004", datetime(2026, 10, 6, 10, 0, tzinfo=SE), 120, 3000, 1200),
    Made("100001", datetime(2026, 10, 12, 10, 0, tzinfo=SE), 180, 1200, 1020,
         LONG_VISIT_REASON),
    Made("100007", datetime(2026, 10, 13, 10, 0, tzinfo=SE), 240, 2400, 600),
]
NOVEMBER = [Made("100004", datetime(2026, 11, 2, 10, 0, tzinfo=SE), 30, 300, 300)]


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(OCTOBER[0].at)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  clock: FakeClock) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard-reports")))
    async with running_service(settings, clock=clock, run_timer_loop=False) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Otto Operatör")


@pytest.fixture(scope="module")
def manager(service: Service) -> Account:
    return add_account(service, "Maja Larmansvarig", "alarm_manager")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def state_of(service: Service, token: str, cid: str) -> dict[str, Any] | None:
    """The newest alarm of the unit, open or closed."""
    async with api(service, token) as client:
        for scope in ("active", "closed"):
            views = (await client.get("/api/alarms", params={"scope": scope})).json()["alarms"]
            found = [v for v in views if v["cid"] == cid]
            if found:
                newest: dict[str, Any] = max(found, key=lambda v: v["id"])
                return newest
    return None


async def until(service: Service, token: str, cid: str, state: str) -> dict[str, Any]:
    """Wait until the unit's newest alarm is in `state`: applied at the clock's time."""
    await service.dispatcher.process_events()
    for _ in range(200):
        view = await state_of(service, token, cid)
        if view is not None and view["state"] == state:
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"the alarm of {cid} never reached {state}")


async def make(service: Service, clock: FakeClock, link: DeviceLink, token: str,
               made: Made) -> int:
    """Play one alarm through: press, answer, check in and out, close."""
    device = unit(link, made.cid)
    clock.set(made.at)
    await device.press()
    alarm_id = int((await until(service, token, made.cid, "called_out"))["id"])
    async with api(service, token) as client:
        clock.set(made.at + timedelta(seconds=made.answer_s))
        accepted = await client.post(f"/api/alarms/{alarm_id}/accept",
                                     json={"responder": "Someone of the team"})
        assert accepted.status_code == 200, accepted.text
        clock.set(made.at + timedelta(seconds=made.arrival_s))
        await device.check_in()
        await until(service, token, made.cid, "on_site")
        clock.set(made.at + timedelta(seconds=made.arrival_s + made.visit_s))
        await device.check_out()
        await until(service, token, made.cid, "completed")
        if made.reason:
            given = await client.post(f"/api/alarms/{alarm_id}/visit-reason",
                                      json={"reason": made.reason})
            assert given.status_code == 200, given.text
        closed = await client.post(f"/api/alarms/{alarm_id}/close", json={})
        assert closed.status_code == 200, closed.text
    return alarm_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alarms(service: Service, clock: FakeClock, link: DeviceLink,
                 operator: Account) -> list[int]:
    """The ids of OCTOBER's alarms, in order; NOVEMBER's made too. The clock then stands
    on Monday 16 November."""
    made = [await make(service, clock, link, operator.token, m) for m in OCTOBER + NOVEMBER]
    clock.set(MONDAY_16_NOVEMBER)
    return made[:len(OCTOBER)]


def tabs(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Views").get_by_role("link")


async def open_reports(page: Page) -> None:
    await page.get_by_role("navigation", name="Views").get_by_role("link", name="Reports").click()
    await expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def team_row(page: Page, team: str) -> Locator:
    return page.locator(f'#rt-rows tr[data-team="{team}"]')


async def figures(row: Locator) -> dict[str, str]:
    cells: dict[str, str] = await row.evaluate(
        "tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]"
        ".map(td => [td.dataset.col, td.textContent.trim()]))")
    return cells


async def chart_loaded(page: Page, element_id: str) -> None:
    await page.wait_for_function(
        "id => { const img = document.getElementById(id);"
        " return !img.hidden && img.complete && img.naturalWidth > 0; }",
        arg=element_id, timeout=UI_TIMEOUT_MS)


async def test_the_alarm_manager_sees_last_months_times_per_team_with_the_late_one_marked(
        page: Page, service: Service, manager: Account, alarms: list[int],
        artifacts: Path) -> None:
    await sign_in(page, manager)
    await expect(tabs(page).filter(has_text="Reports")).to_have_count(1)
    await open_reports(page)

    # The last full month by the service's clock, whatever the browser's date.
    await expect(page.get_by_label("From", exact=True)).to_have_value("2026-10-01")
    await expect(page.get_by_label("To (included)")).to_have_value("2026-10-31")
    await expect(page.locator("#rt-rows tr")).to_have_count(2)
    quick, late = team_row(page, "solrosen-kungsangen"), team_row(page, "trygga-hander")
    await expect(quick.locator("th")).to_have_text("solrosen")
    await expect(late.locator("th")).to_have_text("trygga-hander")
    assert await figures(quick) == {
        "alarms": "2", "answer_median": "2:00", "answer_p90": "3:00",
        "arrival_median": "15:00", "arrival_p90": "20:00", "within_30": "100 %",
        "visit_median": "13:30", "follow_up": "Within the targets"}
    late_figures = await figures(late)
    assert {k: v for k, v in late_figures.items() if k != "follow_up"} == {
        "alarms": "2", "answer_median": "3:00", "answer_p90": "4:00",
        "arrival_median": "45:00", "arrival_p90": "50:00", "within_30": "0 %",
        "visit_median": "15:00"}
    assert late_figures["follow_up"].startswith("⚠ deviates: ")
    assert "arrival time p90 50 min is over 30 min" in late_figures["follow_up"]
    await expect(late).to_have_attribute("data-deviates", "true")
    await expect(quick).to_have_attribute("data-deviates", "false")
    summary = page.locator("#rt-deviating")
    await expect(summary).to_contain_text("⚠ 1 provider deviates")
    await expect(summary).to_contain_text("trygga-hander")
    await expect(summary).not_to_contain_text("solrosen")
    assert await figures(page.locator("#rt-overall tr")) == {
        "alarms": "4", "answer_median": "2:30", "answer_p90": "4:00",
        "arrival_median": "30:00", "arrival_p90": "50:00", "within_30": "50 %",
        "visit_median": "13:30"}

    await chart_loaded(page, "chart-arrivals")
    await chart_loaded(page, "chart-within")
    await expect(page.locator("#chart-arrivals")).to_have_attribute(
        "alt", re.compile("Arrival times per provider, 2026-10-01 to 2026-10-31"))
    await page.screenshot(path=artifacts / "reports.png", full_page=True)


async def test_a_new_period_is_shown_and_downloads_as_csv(
        page: Page, service: Service, manager: Account, alarms: list[int]) -> None:
    await sign_in(page, manager)
    await open_reports(page)
    await expect(page.locator("#rt-rows tr")).to_have_count(2)

    await page.get_by_label("From", exact=True).fill("2026-11-01")
    await page.get_by_label("To (included)").fill("2026-11-30")
    await page.locator("#rt-form").get_by_role("button", name="Show").click()

    await expect(page.locator("#rt-rows tr")).to_have_count(1)
    only = team_row(page, "trygga-hander")
    assert (await figures(only))["arrival_median"] == "5:00"
    await expect(only).to_have_attribute("data-deviates", "false")
    await expect(page.locator("#rt-deviating")).to_be_hidden()
    link = page.get_by_role("link", name="Download CSV").first
    href = await link.get_attribute("href")
    assert href == "/api/reports/response-times?from=2026-11-01&to=2026-11-30&format=csv"
    async with page.expect_download() as download_info:
        await link.click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".csv")
    answer = await page.request.get(href)  # the same request, with the page's cookie
    assert answer.headers["content-type"].startswith("text/csv")
    lines = (await answer.text()).splitlines()
    assert lines[0].startswith("provider,team,alarms,")
    assert lines[1].startswith("trygga-hander,trygga-hander,1,")


async def test_the_months_alarm_visits_list_long_visits_and_missing_reasons(
        page: Page, service: Service, manager: Account, alarms: list[int],
        artifacts: Path) -> None:
    await sign_in(page, manager)
    await open_reports(page)

    await expect(page.get_by_label("Month", exact=True)).to_have_value("2026-10")
    visits = page.locator("#av-rows")
    quick = visits.locator('tr[data-provider="solrosen"]')
    late = visits.locator('tr[data-provider="trygga-hander"]')
    await expect(quick.locator('[data-col="visits"]')).to_have_text("2")
    await expect(quick.locator('[data-col="standard_minutes"]')).to_have_text("30")
    await expect(quick.locator('[data-col="long_visits"] li')).to_have_text(
        [f"Alarm {alarms[2]} · 17:00 · {LONG_VISIT_REASON}"])
    await expect(late.locator('[data-col="visits"]')).to_have_text("2")
    await expect(late.locator('[data-col="long_visits"] li')).to_have_text(
        [f"Alarm {alarms[1]} · 20:00 · ⚠ reason missing"])
    await expect(page.locator("#av-status")).to_contain_text("1 long visit lacks its reason")
    await page.locator("#av-table").screenshot(path=artifacts / "reports-alarm-visits.png")

    href = await page.locator("#av-csv").get_attribute("href")
    assert href == "/api/reports/alarm-visits?month=2026-10&format=csv"
    answer = await page.request.get(href)
    assert answer.headers["content-type"].startswith("text/csv")


async def test_an_operator_has_no_reports_in_the_navigation(
        page: Page, operator: Account, alarms: list[int]) -> None:
    await sign_in(page, operator)

    await expect(tabs(page)).to_have_text(
        ["Alarm queue", re.compile("^Device health"), re.compile("^Orders")])
    await page.goto("/#reports")  # typed in by hand: the queue instead
    await expect(page.get_by_role("heading", name="Alarm queue")).to_be_visible()
    await expect(page.locator("#reports-view")).to_be_hidden()


async def test_an_admin_has_reports_in_the_navigation(
        page: Page, service: Service, alarms: list[int]) -> None:
    admin = add_account(service, "Ada Admin", "admin")
    await sign_in(page, admin)

    await expect(tabs(page)).to_have_text(["Users", "Audit log", "Reports"])
    await open_reports(page)
    await expect(page.locator("#rt-rows tr")).to_have_count(2)
