"""The call chain and the escalation on the operator's dashboard: headless Chromium, real
service, presses from simulated units over a real Mosquitto.

The service runs on a fake clock from Monday 23 November 2026, 10:00 in Stockholm (the
day providers' shift) without its timer loop: a test moves the clock and fires the due
steps itself through the dispatcher, as the loop would, and the page hears of each change
on the live stream. Each test uses its own unit and closes what it opened, so a later
test's timers find nothing of it still running.

The call orders are the shipped demo's: Solrosen Kungsängen calls Maria Holm, Ahmed
Yusuf and Lena Berg (twice round: six calls, two minutes apart); Kommunens hemtjänst Eva
Lund and Karim Haddad; Trygga Händer Petra Sjöberg and Oskar Lind.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from core.clock import STOCKHOLM, FakeClock
from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, alarm_by_id, has_class, open_alarm, row, unit
from tests.harness import MONDAY_10_LOCAL, api, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = BROWSER_TESTS

STEP = timedelta(minutes=2)  # the shipped call_step_after_s


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(MONDAY_10_LOCAL)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  clock: FakeClock) -> AsyncIterator[Service]:
    # The clock jumps an hour within a second, faster than the open page's live stream
    # moves its session's idle mark: a long idle limit keeps the operator signed in.
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard-chains")),
                             session_idle_s=6 * 3600.0)
    async with running_service(settings, clock=clock, run_timer_loop=False) as svc:
        yield svc


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Olle Operatör")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def press(page: Page, service: Service, token: str, link: DeviceLink,
                cid: str) -> dict[str, Any]:
    """A press on the unit, seen in the queue; the alarm as the API has it."""
    await unit(link, cid).press()
    await expect(row(page, cid)).to_be_visible(timeout=UI_TIMEOUT_MS)
    return await open_alarm(service, token, cid)


def hhmm(at: datetime) -> str:
    """The time of day the dashboard shows, in Stockholm."""
    return at.astimezone(STOCKHOLM).strftime("%H:%M")


async def pass_time(service: Service, clock: FakeClock, total: timedelta,
                    step: timedelta = STEP) -> None:
    """Move the clock on by `total`, firing what falls due every `step`, as the loop would."""
    end = clock.now() + total
    while clock.now() < end:
        clock.set(min(clock.now() + step, end))
        await service.dispatcher.fire_due()


async def post(service: Service, token: str, alarm_id: int, action: str,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with api(service, token) as client:
        response = await client.post(f"/api/alarms/{alarm_id}/{action}", json=body or {})
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def open_details(page: Page, cid: str, alarm_id: int) -> Locator:
    await row(page, cid).get_by_role("button", name="Details").click()
    details = page.get_by_role("dialog", name=re.compile(rf"^Alarm {alarm_id}:"))
    await expect(details).to_be_visible()
    return details


async def queue_cids(page: Page) -> list[str]:
    cids: list[str] = await page.locator("li.alarm").evaluate_all(
        "rows => rows.map(r => r.dataset.cid)")
    return cids


async def server_cids(service: Service, token: str) -> list[str]:
    async with api(service, token) as client:
        body = (await client.get("/api/alarms", params={"scope": "active"})).json()
    return [a["cid"] for a in body["alarms"]]


async def test_a_call_order_that_runs_out_shows_no_answer_first_in_the_queue_and_details(
        page: Page, service: Service, clock: FakeClock, operator: Account, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    # Solrosen Bro, accepted at once: its 30-minute mark comes first.
    earlier = await press(page, service, operator.token, link, "100002")
    await post(service, operator.token, earlier["id"], "accept", {"responder": "Jonas Ek"})
    clock.advance(timedelta(seconds=30))
    view = await press(page, service, operator.token, link, "100001")
    card = row(page, "100001")
    calling = card.locator('[data-role="calling"]')
    await expect(calling).to_have_text("Calling 1/6: Maria Holm")
    assert await queue_cids(page) == ["100002", "100001"]  # the nearer 30-minute mark first

    await pass_time(service, clock, STEP)
    await expect(calling).to_have_text("Calling 2/6: Ahmed Yusuf")
    await pass_time(service, clock, 4 * STEP)
    await expect(calling).to_have_text("Calling 6/6: Lena Berg")
    await expect(card.locator('[data-role="attention"]')).to_have_count(0)
    await pass_time(service, clock, STEP)  # the sixth call unanswered too

    flag = card.locator('[data-role="attention"]')
    await expect(flag).to_have_text(
        "⚠ No answer Nobody of the call order answered: call the team.")
    await expect(calling).to_have_count(0)
    await expect(card).to_have_class(has_class("has-attention"))
    assert await queue_cids(page) == ["100001", "100002"]  # the operator must act: first
    assert await queue_cids(page) == await server_cids(service, operator.token)
    await page.screenshot(path=artifacts / "chains-no-answer.png")

    details = await open_details(page, "100001", view["id"])
    await expect(details.locator('.attention-box [data-flag="no_answer"]')).to_contain_text(
        "No answer")
    await expect(details.locator("dl.facts")).to_contain_text(
        "nobody of the call order answered")
    await expect(details.locator("table.log")).to_contain_text("no answer")
    await page.screenshot(path=artifacts / "chains-no-answer-details.png")

    # The operator starts the call order over: the flag goes, the first is called again.
    await details.get_by_role("button", name="Call the order again").click()
    await expect(page.get_by_role("status").filter(has_text="Calling 1/6: Maria Holm")
                 ).to_be_visible()
    await expect(calling).to_have_text("Calling 1/6: Maria Holm")
    await expect(flag).to_have_count(0)
    for alarm in (earlier, view):
        await post(service, operator.token, alarm["id"], "false-alarm", {"reason": "test over"})
    await expect(card).to_have_count(0)


async def test_a_red_flag_shows_when_nobody_checked_in_an_hour_after_the_call_out(
        page: Page, service: Service, clock: FakeClock, operator: Account, link: DeviceLink,
        artifacts: Path) -> None:
    responder = add_account(service, "Eva Lund", "responder", team="kommunens-hemtjanst")
    await sign_in(page, operator)
    view = await press(page, service, operator.token, link, "100003")
    called_out = clock.now()
    card = row(page, "100003")
    # Eva accepts on her phone and sets off: the call chain stops, the escalation runs on.
    await post(service, responder.token, view["id"], "accept")
    await post(service, responder.token, view["id"], "on-my-way")
    await expect(card).to_contain_text("Answered by Eva Lund")
    await expect(card.locator('[data-role="on-way"]')).to_have_text(
        f"On the way since {hhmm(called_out)}")

    await pass_time(service, clock, timedelta(minutes=45), step=timedelta(minutes=5))
    coordinator = card.locator('[data-role="coordinator"]')
    await expect(coordinator).to_have_text(
        f"Coordinator told {hhmm(called_out + timedelta(minutes=45))}")
    await expect(card.locator('[data-role="attention"]')).to_have_count(0)
    await pass_time(service, clock, timedelta(minutes=15), step=timedelta(minutes=5))

    flag = card.locator('[data-role="attention"]')
    await expect(flag).to_have_text(
        "⚑ Red flag No check-in 60 min after the call-out.")
    await expect(card).to_have_class(has_class("has-attention"))
    await page.screenshot(path=artifacts / "chains-red-flag.png")
    details = await open_details(page, "100003", view["id"])
    await expect(details.locator('.attention-box [data-flag="red_flag"]')).to_be_visible()
    facts = details.locator("dl.facts")
    await expect(facts).to_contain_text("Escalated to the provider's coordinator at")
    await expect(facts).to_contain_text("Red flag")
    await expect(facts).to_contain_text("On the way")
    await page.keyboard.press("Escape")
    await post(service, operator.token, view["id"], "false-alarm")
    await expect(card).to_have_count(0)


async def test_declined_calls_the_next_person_and_a_late_decline_is_refused_plainly(
        page: Page, service: Service, clock: FakeClock, operator: Account,
        link: DeviceLink, artifacts: Path) -> None:
    await sign_in(page, operator)
    view = await press(page, service, operator.token, link, "100004")
    card = row(page, "100004")
    calling = card.locator('[data-role="calling"]')
    await expect(calling).to_have_text("Calling 1/4: Petra Sjöberg")

    details = await open_details(page, "100004", view["id"])
    await details.get_by_role("button", name="Declined").click()
    dialog = page.get_by_role("dialog", name="Who declined the call-out?")
    await expect(dialog).to_be_visible()
    name = dialog.get_by_label("Name of the person who declined")
    await expect(name).to_have_value("Petra Sjöberg")  # the one being called, suggested
    await page.screenshot(path=artifacts / "chains-decline.png")
    await dialog.get_by_role("button", name="Record decline, call the next").click()

    await expect(dialog).to_be_hidden()
    await expect(calling).to_have_text("Calling 2/4: Oskar Lind")
    stored = await alarm_by_id(service, operator.token, view["id"])
    assert stored["calling"]["name"] == "Oskar Lind"
    assert "declined by Petra Sjöberg" in [e["note"] for e in stored["log"]]

    # Oskar answers the team phone meanwhile; the decline typed after it is refused.
    details = await open_details(page, "100004", view["id"])
    await details.get_by_role("button", name="Declined").click()
    await post(service, operator.token, view["id"], "accept", {"responder": "Oskar Lind"})
    await dialog.get_by_role("button", name="Record decline, call the next").click()
    await expect(dialog.get_by_role("alert")).to_contain_text("The alarm changed meanwhile")
    await expect(card.locator('[data-role="state"]')).to_have_text("Accepted")
    await page.keyboard.press("Escape")
    await post(service, operator.token, view["id"], "false-alarm")


async def test_a_false_alarm_is_confirmed_then_closed_with_its_kind_shown(
        page: Page, service: Service, operator: Account, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    view = await press(page, service, operator.token, link, "100005")
    card = row(page, "100005")

    details = await open_details(page, "100005", view["id"])
    await details.get_by_role("button", name="False alarm").click()
    confirm = page.get_by_role("dialog", name="Cancel as a false alarm?")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="No, keep the alarm open").click()
    await expect(confirm).to_be_hidden()
    await expect(card).to_be_visible()
    assert (await alarm_by_id(service, operator.token, view["id"]))["state"] == "called_out"

    details = await open_details(page, "100005", view["id"])
    await details.get_by_role("button", name="False alarm").click()
    await confirm.get_by_label("What happened (optional)").fill("Pressed by mistake.")
    await page.screenshot(path=artifacts / "chains-false-alarm.png")
    await confirm.get_by_role("button", name="Yes, close as false alarm").click()

    await expect(confirm).to_be_hidden()
    await expect(card).to_have_count(0)
    closed = await alarm_by_id(service, operator.token, view["id"])
    assert (closed["state"], closed["kvittering"], closed["close_reason"]) == (
        "closed", "false_alarm", "Pressed by mistake.")
    await page.locator("#history summary").click()
    entry = page.locator(f'#history-list li[data-id="{view["id"]}"]')
    await expect(entry).to_contain_text("False alarm by Olle Operatör")
    await entry.get_by_role("button", name="Details").click()
    details = page.get_by_role("dialog", name=re.compile(rf"^Alarm {view['id']}:"))
    await expect(details.locator("dl.facts")).to_contain_text("KvitteringFalse alarm")
    await expect(details.get_by_role("button", name="False alarm")).to_have_count(0)


async def test_a_visit_over_15_minutes_asks_for_a_reason_and_the_reason_is_stored(
        page: Page, service: Service, clock: FakeClock, operator: Account, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    view = await press(page, service, operator.token, link, "100007")
    card = row(page, "100007")
    device = unit(link, "100007")
    await device.check_in()
    await expect(card.locator('[data-role="state"]')).to_have_text("On site")
    clock.advance(timedelta(minutes=17, seconds=30))
    await device.check_out()
    await expect(card.locator('[data-role="state"]')).to_have_text("Completed")

    await expect(card.locator('[data-role="visit"]')).to_have_text("Visit 17:30")
    await expect(card.locator('[data-role="kvittering"]')).to_have_text("Kvittering: on the unit")
    await expect(card.locator('[data-role="needs-reason"]')).to_have_text(
        "Visit over 15 min: reason needed")
    await page.screenshot(path=artifacts / "chains-visit-reason-needed.png")
    await card.get_by_role("button", name="Visit reason").click()
    dialog = page.get_by_role("dialog", name="Why was the visit longer than 15 minutes?")
    await expect(dialog).to_contain_text("The visit took 17:30")
    await dialog.get_by_role("button", name="Save reason").click()
    await expect(dialog.get_by_role("alert")).to_contain_text("A reason is required")
    reason = "Waited with the customer for the ambulance."
    await dialog.get_by_label("Reason", exact=True).fill(reason)
    await dialog.get_by_role("button", name="Save reason").click()

    await expect(dialog).to_be_hidden()
    await expect(card.locator('[data-role="needs-reason"]')).to_have_count(0)
    await expect(card.get_by_role("button", name="Visit reason")).to_have_count(0)
    stored = await alarm_by_id(service, operator.token, view["id"])
    assert (stored["visit_reason"], stored["needs_visit_reason"]) == (reason, False)
    details = await open_details(page, "100007", view["id"])
    await expect(details.locator("dl.facts")).to_contain_text(f"Visit reason{reason}")
    await expect(details.locator("dl.facts")).to_contain_text(
        "Visit length17:30 (over the standard 15 minutes)")
    await page.keyboard.press("Escape")
    await card.get_by_role("button", name="Close alarm").click()
    await expect(card).to_have_count(0)


async def test_an_alarm_nobody_of_the_day_accepted_is_handed_to_the_night_patrol_at_22(
        page: Page, service: Service, clock: FakeClock, operator: Account,
        link: DeviceLink, artifacts: Path) -> None:
    clock.set(datetime(2026, 11, 23, 21, 55, tzinfo=STOCKHOLM))  # last of the day shift
    await sign_in(page, operator)
    view = await press(page, service, operator.token, link, "100001")
    card = row(page, "100001")
    await expect(card).to_contain_text("Solrosen Kungsängen")

    await pass_time(service, clock, timedelta(minutes=5))  # over 22:00

    calling = card.locator('[data-role="calling"]')
    await expect(calling).to_have_text("Calling 1/4: Nattpatrull Kungsängen bil 1")
    await expect(card.locator(".team-name")).to_have_text("Nattpatrull Kungsängen")
    await expect(card.locator('[data-role="handed-over"]')).to_have_text("Handed over 22:00")
    await page.screenshot(path=artifacts / "chains-handed-over.png")
    details = await open_details(page, "100001", view["id"])
    await expect(details.locator("dl.facts")).to_contain_text(
        "Handed over2026-11-23 22:00:00, at the shift change (see the audit trail)")
    await expect(details.locator("table.log")).to_contain_text("hand over")
    await expect(details.locator("table.log")).to_contain_text(
        "from solrosen-kungsangen to nattpatrull-kungsangen")
    await page.keyboard.press("Escape")
    await post(service, operator.token, view["id"], "false-alarm")
