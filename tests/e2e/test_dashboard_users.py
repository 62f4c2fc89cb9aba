"""The dashboard by role: an admin's users page, an operator's audited reveal of a
protected identity, and what a responder, a TFH technician and an alarm manager see.
Headless Chromium against the real service; presses from simulated units over MQTT.

The registry is the shipped one; its protected customer (K-1006, unit 100006) has a
fictional name, address and door name, so a test can tell the revealed identity from
the mask.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from dispatch.views import MASK
from simulator import DeviceLink
from tests.brokers import Broker
from tests.e2e.conftest import BROWSER_TESTS, UI_TIMEOUT_MS, Account, add_account, sign_in
from tests.e2e.test_dashboard import ARTIFACTS, open_alarm, press_and_see, row, unit
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

# K-1006, the shipped registry's customer with protected identity, as it is stored.
PROTECTED_CID = "100006"
HIDDEN_NAME = "Karin Dold"
HIDDEN_ADDRESS = "Gömda gränd 5"
HIDDEN_DOOR = "K. Dold"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    folder = tmp_path_factory.mktemp("dashboard-users")
    settings = test_settings(broker, sqlite_url(folder))
    async with running_service(settings, clock=ShiftedClock(MONDAY_10_LOCAL)) as svc:
        yield svc


@pytest.fixture(scope="module")
def admin(service: Service) -> Account:
    return add_account(service, "Hanna Admin", "admin")


@pytest.fixture(scope="module")
def operator(service: Service) -> Account:
    return add_account(service, "Ivar Operatör")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def user_row(page: Page, name: str) -> Any:
    return page.locator(f'#users tr[data-name="{name}"]')


async def audit_entries(service: Service, token: str, **params: str) -> list[dict[str, Any]]:
    async with api(service, token) as client:
        response = await client.get("/api/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_an_admin_adds_a_user_sees_the_token_once_and_disables_them(
        page: Page, service: Service, admin: Account, artifacts: Path) -> None:
    await sign_in(page, admin)
    await expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    await expect(user_row(page, admin.name)).to_contain_text("Admin")
    form = page.locator("#add-user-form")
    await form.get_by_label("Name", exact=True).fill("Jonna Nyanställd")
    await form.get_by_label("Role").select_option("responder")
    await form.get_by_label("Team").select_option("solrosen-bro")
    await form.get_by_label("Password (optional)").fill("short")
    await form.get_by_role("button", name="Add user").click()
    await expect(form.get_by_role("alert")).to_contain_text("at least 10 characters")
    await form.get_by_label("Password (optional)").fill("a-long-enough-password")
    await form.get_by_role("button", name="Add user").click()

    dialog = page.get_by_role("dialog", name="API token for Jonna Nyanställd")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("shown only this once")
    await expect(dialog).to_contain_text("Ctrl+C")
    token = await dialog.get_by_label("Token").input_value()
    await page.screenshot(path=artifacts / "users-new-token.png")
    await dialog.get_by_role("button", name="Done").click()
    await expect(dialog).to_be_hidden()
    new = user_row(page, "Jonna Nyanställd")
    await expect(new).to_contain_text("Responder, solrosen-bro")
    await expect(new.locator('[data-role="status"]')).to_have_text("Enabled")
    assert token not in await page.content()  # shown once: gone with the dialog
    async with api(service, token) as client:
        me = (await client.get("/api/me")).json()
    assert (me["name"], me["role"], me["team"]) == ("Jonna Nyanställd", "responder",
                                                    "solrosen-bro")

    await new.get_by_role("button", name="Disable").click()
    confirm = page.get_by_role("dialog", name="Disable Jonna Nyanställd?")
    await confirm.get_by_role("button", name="Disable user").click()

    await expect(confirm).to_be_hidden()
    await expect(new.locator('[data-role="status"]')).to_have_text("Disabled")
    await expect(new.get_by_role("button", name="Enable")).to_be_visible()
    await page.screenshot(path=artifacts / "users-list.png", full_page=True)
    async with api(service, admin.token) as client:
        listed = {u["name"]: u for u in (await client.get("/api/users")).json()}
    async with api(service, token) as client:
        refused = await client.get("/api/me")
    assert listed["Jonna Nyanställd"]["enabled"] is False
    assert refused.status_code == 401


async def test_an_admin_changes_a_role_and_a_password_and_sees_the_servers_refusal(
        page: Page, service: Service, admin: Account) -> None:
    changing = add_account(service, "Kalle Byter")
    await sign_in(page, admin)
    target = user_row(page, changing.name)

    await target.get_by_role("button", name="Change role").click()
    dialog = page.get_by_role("dialog", name=f"Change role of {changing.name}")
    await dialog.get_by_label("Role").select_option("alarm_manager")
    await dialog.get_by_role("button", name="Change role").click()
    await expect(dialog).to_be_hidden()
    await expect(target).to_contain_text("Alarm manager")

    await target.get_by_role("button", name="Reset password").click()
    dialog = page.get_by_role("dialog", name=f"Reset the password of {changing.name}")
    await dialog.get_by_label("New password").fill("a-brand-new-password")
    await dialog.get_by_role("button", name="Set password").click()
    await expect(dialog).to_be_hidden()

    # The only admin may not disable themself: the server's reason is shown.
    await user_row(page, admin.name).get_by_role("button", name="Disable").click()
    confirm = page.get_by_role("dialog", name=f"Disable {admin.name}?")
    await confirm.get_by_role("button", name="Disable user").click()
    await expect(confirm.get_by_role("alert")).to_contain_text("no enabled admin")
    await confirm.get_by_role("button", name="Cancel").click()
    async with api(service, admin.token) as client:
        listed = {u["name"]: u for u in (await client.get("/api/users")).json()}
    assert listed[changing.name]["role"] == "alarm_manager"
    assert listed[changing.name]["has_password"] is True
    assert listed[admin.name]["enabled"] is True


async def test_an_operator_reveals_a_protected_identity_and_the_audit_log_has_it(
        page: Page, service: Service, operator: Account, admin: Account, link: DeviceLink,
        artifacts: Path) -> None:
    await sign_in(page, operator)
    await press_and_see(page, link, PROTECTED_CID)
    alarm = await open_alarm(service, operator.token, PROTECTED_CID)
    card = row(page, PROTECTED_CID)
    await expect(card).to_contain_text(MASK)
    await card.get_by_role("button", name="Details").click()
    details = page.get_by_role("dialog", name=f"Alarm {alarm['id']}")

    await details.get_by_role("button", name="Show protected identity").click()

    revealed = details.locator('[data-role="revealed"]')
    await expect(revealed).to_contain_text(HIDDEN_NAME)
    await expect(revealed).to_contain_text(f"{HIDDEN_ADDRESS}, 196 99")
    await expect(revealed).to_contain_text(HIDDEN_DOOR)
    await expect(details).to_contain_text("Revealed")
    await expect(details).to_contain_text("recorded in the audit log")
    await page.screenshot(path=artifacts / "details-revealed.png")
    await expect(card).not_to_contain_text(HIDDEN_NAME)  # the list shows the mask only
    await page.keyboard.press("Escape")
    await expect(details).to_be_hidden()
    await expect(page.locator("body")).not_to_contain_text(HIDDEN_NAME)  # gone with the details
    [entry] = await audit_entries(service, admin.token, action="alarm.reveal",
                                  subject_type="alarm", subject_id=str(alarm["id"]))
    assert (entry["actor"], entry["role"]) == (operator.name, "operator")
    assert entry["detail"] == {"customer": "K-1006"}


async def test_a_revealed_identity_goes_when_the_alarm_closes(
        page: Page, service: Service, operator: Account, link: DeviceLink) -> None:
    await sign_in(page, operator)
    alarm = await open_alarm(service, operator.token, PROTECTED_CID)
    await row(page, PROTECTED_CID).get_by_role("button", name="Details").click()
    details = page.get_by_role("dialog", name=f"Alarm {alarm['id']}")
    await details.get_by_role("button", name="Show protected identity").click()
    await expect(details).to_contain_text(HIDDEN_NAME)

    async with api(service, add_account(service, "Lisa Kollega").token) as colleague:
        closed = await colleague.post(f"/api/alarms/{alarm['id']}/phone-kvittering",
                                      json={"reason": "Handled on the phone."})

    assert closed.status_code == 200
    await expect(details).to_contain_text("Closed", timeout=UI_TIMEOUT_MS)
    await expect(details).not_to_contain_text(HIDDEN_NAME)
    await expect(details.get_by_role("button", name="Show protected identity")).to_have_count(0)


async def test_a_responder_sees_only_their_teams_alarms_and_may_only_accept(
        page: Page, service: Service, operator: Account, link: DeviceLink,
        artifacts: Path) -> None:
    responder = add_account(service, "Maria Holm", "responder", team="solrosen-kungsangen")
    await sign_in(page, responder)
    await expect(page.locator("#user-role")).to_have_text("Responder, solrosen-kungsangen")
    views = page.get_by_role("navigation", name="Views")
    await expect(views.get_by_role("link")).to_have_text(["Alarm queue"])

    await unit(link, "100004").press()  # Trygga Händer's customer in Bro: not hers
    await unit(link, "100001").press()  # Solrosen Kungsängen's customer: hers

    own = row(page, "100001")
    await expect(own).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(row(page, "100004")).to_have_count(0)
    await expect(own.get_by_role("button", name="Accept")).to_be_visible()
    for other in ("Call out again", "Phone kvittering", "Close alarm"):
        await expect(own.get_by_role("button", name=other)).to_have_count(0)
    await page.screenshot(path=artifacts / "responder-queue.png")
    async with api(service, operator.token) as client:
        everyone = (await client.get("/api/alarms")).json()["alarms"]
    shown = await page.locator("li.alarm").evaluate_all("rows => rows.map(r => r.dataset.cid)")
    assert "100004" in [a["cid"] for a in everyone]
    assert shown == [a["cid"] for a in everyone if (a["team"] or {}).get("code") ==
                     "solrosen-kungsangen"]

    # She answers for herself: one click, no dialog asking whose name to record.
    alarm_id = int(await own.get_attribute("data-id") or 0)
    await own.get_by_role("button", name=re.compile(r"^Accept alarm")).click()
    await expect(page.locator(".toast")).to_contain_text(
        f"You accepted alarm {alarm_id}: nobody else is called.")
    await expect(page.locator("#accept-dialog")).to_be_hidden()
    await expect(own).to_contain_text("Answered by Maria Holm")


async def test_a_tfh_technician_sees_device_health_and_no_alarm_queue(
        page: Page, service: Service, operator: Account, artifacts: Path) -> None:
    technician = add_account(service, "Nils Tekniker", "tfh")
    async with api(service, operator.token) as client:
        assert (await client.get("/api/alarms")).json()["alarms"], "no open alarm to hide"

    await sign_in(page, technician)

    await expect(page.get_by_role("heading", name="Device health")).to_be_visible()
    await expect(page.locator("#user-role")).to_have_text("TFH technician")
    views = page.get_by_role("navigation", name="Views")
    await expect(views.get_by_role("link")).to_have_text(
        [re.compile("^Device health"), re.compile("^Orders")])
    await expect(page.locator("#queue-view")).to_be_hidden()
    await expect(page.locator("#open-count-box")).to_be_hidden()
    await page.goto("/#queue")  # asking for the queue by its address shows health
    await expect(page.get_by_role("heading", name="Device health")).to_be_visible()
    await expect(page.locator("#queue-view")).to_be_hidden()
    await expect(page.locator("li.alarm")).to_have_count(0)
    await page.screenshot(path=artifacts / "tfh-health.png")


async def test_an_alarm_manager_follows_the_queue_and_searches_the_audit_log(
        page: Page, service: Service, artifacts: Path) -> None:
    manager = add_account(service, "Olle Larmansvarig", "alarm_manager")
    await sign_in(page, manager)
    views = page.get_by_role("navigation", name="Views")
    await expect(views.get_by_role("link")).to_have_text(
        ["Alarm queue", re.compile("^Device health"), re.compile("^Orders"), "Audit log",
         "Reports"])
    card = page.locator("li.alarm").first
    await expect(card).to_be_visible()
    await expect(card.get_by_role("button")).to_have_text([re.compile("^Details")])

    await views.get_by_role("link", name="Audit log").click()
    await page.get_by_label("Action").fill("alarm.reveal")
    await page.get_by_role("button", name="Search").click()

    entries = page.locator("#audit-entries tr")
    await expect(entries).to_have_count(2)  # both reveals above
    await expect(entries.first).to_contain_text("Ivar Operatör")
    await page.screenshot(path=artifacts / "audit-log.png")
    export = page.get_by_role("link", name="Export CSV")
    href = await export.get_attribute("href")
    assert href is not None and "action=alarm.reveal" in href and "format=csv" in href
    csv = await page.request.get(href)
    assert csv.status == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert (await csv.text()).count("alarm.reveal") == 2
    # The time filters are read as Swedish time, as the table shows them, summer or winter.
    sent = await page.evaluate("""async () => {
        const m = await import('/static/audit.js');
        const p = m.auditParams({from: '2026-11-23T10:00', to: '2026-07-01T10:00:30'});
        return [p.get('from'), p.get('to')];
    }""")
    assert sent == ["2026-11-23T09:00:00.000Z", "2026-07-01T08:00:30.000Z"]
