"""The door lock in the alarm's details, as an operator uses it: headless Chromium, the
real service, and a simulated keyless lock on a real Mosquitto.

The shipped registry has a lock (300001) at K-1001's door, beside its base unit
(100001); the customer gets two key sets here. An operator opens the lock from a pressed
alarm's details and sees the lock's own report of the opening arrive on the trail: that
has travelled dashboard -> API -> outbox -> MQTT -> lock -> MQTT -> gateway -> trail ->
live stream -> details. Roles that may not open it, and closed alarms, get no button.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Locator, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import Customer, KeyHolding, KeySet
from simulator import DeviceLink, SimulatedLock
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, open_alarm, press_and_see, row
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

UNIT, LOCK = "100001", "300001"  # K-1001-1, routed by day to solrosen-kungsangen
SENT = re.compile(
    rf"^Unlock sent to lock {LOCK} at \d\d:\d\d:\d\d; it expires at \d\d:\d\d:\d\d\.$")
KEYS = [("D-1001", "day_provider", "solrosen"),
        ("N-1001", "night_organisation", "nattorganisationen")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("dashboard-lock")))
    async with running_service(settings, clock=ShiftedClock(MONDAY_10_LOCAL)) as svc:
        now = svc.clock.now()

        def give_keys(s: Session) -> None:
            customer = s.execute(select(Customer).where(Customer.code == "K-1001")).scalar_one()
            for number, holder, code in KEYS:
                s.add(KeySet(customer_id=customer.id, number=number, holder=holder,
                             holder_code=code, created_at=now,
                             history=[KeyHolding(holder=holder, holder_code=code, at=now)]))

        svc.db.transaction(give_keys)
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lock(service: Service, link: DeviceLink) -> AsyncIterator[SimulatedLock]:
    # On the service's clock, which judges the command's expiry; it locks itself again.
    async with SimulatedLock(LOCK, link, clock=service.clock.now, relock_after_s=0.2,
                             resend_after_s=1.0) as device:
        yield device


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Olle Operatör")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


async def pressed(page: Page, link: DeviceLink, service: Service, token: str) -> dict[str, Any]:
    """The unit at K-1001 is pressed; its open alarm, once the queue shows it."""
    await press_and_see(page, link, UNIT)
    return await open_alarm(service, token, UNIT)


async def open_details(page: Page) -> Locator:
    await row(page, UNIT).get_by_role("button", name="Details").click()
    dialog = page.locator("#details-dialog")
    await expect(dialog).to_be_visible()
    return dialog


def trail(dialog: Locator) -> Locator:
    return dialog.locator("table.log tbody")


async def test_an_operator_sees_the_keys_and_opens_the_door_lock_and_the_trail_shows_it(
        page: Page, operator: Account, service: Service, link: DeviceLink,
        lock: SimulatedLock, artifacts: Path) -> None:
    await sign_in(page, operator)
    await pressed(page, link, service, operator.token)
    dialog = await open_details(page)

    keys = dialog.locator('[data-role="keys"] li')
    await expect(keys).to_have_text(["Key D-1001 · Day provider (solrosen)",
                                     "Key N-1001 · Night organisation (nattorganisationen)"])
    await dialog.get_by_role("button", name="Open the door lock").click()
    # Opening a door is consequential: it asks first, and Cancel takes the focus.
    await expect(dialog.get_by_text("Open the door at Tibblevägen 12 now (lock 300001)?")
                 ).to_be_visible()
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    assert lock.obeyed == []
    await page.screenshot(path=artifacts / "lock-confirm.png")
    await dialog.get_by_role("button", name="Yes, open the door").click()

    sent = dialog.locator("#lock-sent")
    await expect(sent).to_have_text(SENT, timeout=UI_TIMEOUT_MS)
    await expect(trail(dialog)).to_contain_text("lock open requested")
    await expect(trail(dialog)).to_contain_text("lock opened", timeout=UI_TIMEOUT_MS)
    await expect(trail(dialog)).to_contain_text(f"device:{LOCK}")
    await expect(sent).to_be_visible()  # the answer stays through the live re-renders
    assert len(lock.obeyed) == 1
    await page.screenshot(path=artifacts / "lock-opened.png")



async def test_a_responder_of_the_alarms_team_gets_the_button_too(
        page: Page, operator: Account, service: Service, link: DeviceLink) -> None:
    responder = add_account(service, "Maria Holm", "responder", team="solrosen-kungsangen")
    await sign_in(page, responder)
    await pressed(page, link, service, operator.token)
    dialog = await open_details(page)

    await expect(dialog.locator('[data-role="keys"] li')).to_have_count(len(KEYS))
    await expect(dialog.get_by_role("button", name="Open the door lock")).to_be_visible()


async def test_an_alarm_manager_sees_the_keys_and_the_lock_but_no_button(
        page: Page, operator: Account, service: Service, link: DeviceLink) -> None:
    manager = add_account(service, "Åsa Larmansvarig", "alarm_manager")
    await sign_in(page, manager)
    await pressed(page, link, service, operator.token)
    dialog = await open_details(page)

    await expect(dialog.locator('[data-role="keys"] li')).to_have_count(len(KEYS))
    await expect(dialog.locator('[data-role="lock"]')).to_contain_text(f"Keyless lock {LOCK}.")
    await expect(dialog.locator('[data-action="open-lock"]')).to_have_count(0)


async def test_a_tfh_technician_has_no_alarm_details_to_open_a_lock_from(
        page: Page, service: Service) -> None:
    await sign_in(page, add_account(service, "Tore Tekniker", "tfh"))

    views = page.get_by_role("navigation", name="Views")
    await expect(views.get_by_role("link", name="Device health")).to_be_visible()
    await expect(views.get_by_role("link", name="Alarm queue")).to_have_count(0)
    await expect(page.locator('[data-action="open-lock"]')).to_have_count(0)


async def test_a_closed_alarm_shows_no_button(
        page: Page, operator: Account, service: Service, link: DeviceLink) -> None:
    await sign_in(page, operator)
    alarm = await pressed(page, link, service, operator.token)
    async with api(service, operator.token) as client:
        closed = await client.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                   json={"reason": "Customer answered: all well."})
    assert closed.status_code == 200, closed.text
    await expect(row(page, UNIT)).to_have_count(0, timeout=UI_TIMEOUT_MS)

    await page.locator("#history summary").click()
    await page.locator(f'#history-list li[data-id="{alarm["id"]}"]').get_by_role(
        "button", name="Details").click()
    dialog = page.locator("#details-dialog")
    await expect(dialog.locator('[data-role="lock"]')).to_contain_text(
        "only while the alarm is open")
    await expect(dialog.locator('[data-action="open-lock"]')).to_have_count(0)
