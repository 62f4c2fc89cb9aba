"""The audit log as a municipality's reviewer reads it: every view, reveal, registry, call-order
and user change and every sign-in is there with who, when and what, and never the personal
data itself; the database refuses to rewrite it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.clock import FakeClock
from core.db import Database
from dispatch import audit, users
from dispatch.config import load_config
from dispatch.models import Alarm, AuditEntry
from dispatch.views import MASK
from simulator import DeviceLink, SimulatedBaseUnit
from tests.brokers import Broker
from tests.e2e import test_privacy as privacy
from tests.harness import MONDAY_10_LOCAL, api, running_service, test_settings
from trygg.migrations import upgrade
from trygg.runtime import Service

NOW = MONDAY_10_LOCAL  # a Monday, 10:00 in Stockholm: alarms go to the day provider
TEAM = "solrosen-kungsangen"  # the day team of K-1001 and of the protected K-1006
PROTECTED, PROTECTED_SITE, PROTECTED_CID = "K-1006", "K-1006-1", "100006"
PLAIN_CID = "100001"  # K-1001, no protected identity
# Who the protected customer really is: the shipped registry names them "Skyddad
# identitet", which is also the mask, so a reveal could not be told from a mask.
SECRET = {"name": "Hemming Dold", "address": "Gömstället 4", "postal_code": "196 99",
          "door_name": "Dold-Hemming"}
NAMES = {"operator": "olle", "responder": "rut", "tfh": "tove", "alarm_manager": "mona",
         "admin": "ada"}
ROLES = tuple(NAMES)
PASSWORD = "korrekt-häst-batteri"


def personal_strings() -> set[str]:
    """Every name, personal number, address, door name and call-order entry of the
    shipped registry (as tests/e2e/test_privacy.py reads them), and the phones too."""
    config = load_config(Path("config/municipality.yaml"))
    phones = {m.phone for p in config.providers for t in p.teams for m in t.call_order}
    return privacy.personal_strings() | set(filter(None, phones))


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- the service, its users and its devices ---------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest_asyncio.fixture
async def service(broker: Broker, database_url: str, clock: FakeClock) -> AsyncIterator[Service]:
    settings = test_settings(broker, database_url)
    async with running_service(settings, clock=clock, run_timer_loop=False) as svc:
        yield svc


@pytest_asyncio.fixture
async def link(service: Service, broker: Broker) -> AsyncIterator[DeviceLink]:
    async with DeviceLink(broker.host, broker.port,
                          root=service.settings.mqtt_topic_root) as device_link:
        yield device_link


@dataclass
class Crew:
    """One user of each role, signed in by API token (made straight in the database, so
    no audit entry comes of making them)."""

    tokens: dict[str, str]
    ids: dict[str, int]
    clients: dict[str, httpx.AsyncClient]

    def __getitem__(self, role: str) -> httpx.AsyncClient:
        return self.clients[role]


@pytest_asyncio.fixture
async def crew(service: Service) -> AsyncIterator[Crew]:
    now = service.clock.now()

    def add(s: Session) -> tuple[dict[str, str], dict[str, int]]:
        tokens = {role: users.add_user(s, name, role, now,
                                       team=TEAM if role == "responder" else None)
                  for role, name in NAMES.items()}
        s.flush()
        return tokens, {role: users.get_user(s, name).id for role, name in NAMES.items()}

    tokens, ids = service.db.transaction(add)
    clients = {role: api(service, token) for role, token in tokens.items()}
    yield Crew(tokens, ids, clients)
    for client in clients.values():
        await client.aclose()


async def raise_alarm(service: Service, link: DeviceLink, cid: str) -> int:
    await SimulatedBaseUnit(cid, link).press()
    await service.dispatcher.process_events()
    alarm_id = await service.db.read(lambda s: s.execute(
        select(Alarm.id).where(Alarm.cid == cid).order_by(Alarm.id.desc())).scalars().first())
    assert alarm_id is not None, f"no alarm from {cid}"
    return alarm_id


async def entries(service: Service, **filters: Any) -> list[dict[str, Any]]:
    """The log as stored, oldest first, filtered as `audit.search` filters."""
    query = audit.AuditQuery(limit=None, **filters)
    found = await service.db.read(
        lambda s: [audit.entry_view(e) for e in audit.search(s, query)])
    return found[::-1]


async def give_the_protected_customer_a_real_identity(admin: httpx.AsyncClient) -> None:
    edited = await admin.post("/api/registry", json={"customers": [{
        "code": PROTECTED, "name": SECRET["name"], "protected_identity": True,
        "sites": [{"code": PROTECTED_SITE, "address": SECRET["address"],
                   "postal_code": SECRET["postal_code"], "door_name": SECRET["door_name"],
                   "area": "kungsangen"}]}]})
    assert edited.status_code == 200, edited.text


# -- what a reviewer's scenarios do; each test below runs one, the privacy test all --------


async def view_an_alarm(service: Service, link: DeviceLink, crew: Crew,
                        clock: FakeClock) -> int:
    alarm_id = await raise_alarm(service, link, PLAIN_CID)
    clock.advance(timedelta(minutes=3))
    seen = await crew["operator"].get(f"/api/alarms/{alarm_id}")
    assert seen.status_code == 200, seen.text
    return alarm_id


async def view_customers(crew: Crew, clock: FakeClock) -> None:
    clock.advance(timedelta(minutes=1))
    listed = await crew["tfh"].get("/api/customers")
    clock.advance(timedelta(minutes=1))
    viewed = await crew["tfh"].get("/api/customers/K-1001")
    assert (listed.status_code, viewed.status_code) == (200, 200)


async def reveal_the_protected_identity(service: Service, link: DeviceLink, crew: Crew,
                                        clock: FakeClock) -> tuple[int, httpx.Response]:
    await give_the_protected_customer_a_real_identity(crew["admin"])
    alarm_id = await raise_alarm(service, link, PROTECTED_CID)
    clock.advance(timedelta(minutes=2))
    return alarm_id, await crew["operator"].post(f"/api/alarms/{alarm_id}/reveal")


NEW_CUSTOMER: dict[str, Any] = {
    "code": "K-2001", "name": "Nils Nyman", "personal_number": "19400101-1234",
    "day_provider": "solrosen", "sites": [{
        "code": "K-2001-1", "address": "Nybyggevägen 2", "postal_code": "196 40",
        "city": "Kungsängen", "area": "kungsangen", "door_name": "Nyman",
        "devices": [{"cid": "200001", "model": "Neo 2"}]}]}


async def edit_the_registry(crew: Crew, clock: FakeClock) -> None:
    clock.advance(timedelta(minutes=1))
    edited = await crew["admin"].post("/api/registry", json={"customers": [{
        "code": "K-1001", "name": "Astrid Lindqvist",
        "sites": [{"code": "K-1001-1", "address": "Flyttvägen 9", "area": "kungsangen",
                   "devices": [{"cid": PLAIN_CID, "model": "Neo 2"}]}]}]})
    created = await crew["admin"].post("/api/registry", json={"customers": [NEW_CUSTOMER]})
    assert (edited.status_code, created.status_code) == (200, 200), edited.text + created.text


NEW_CALL_ORDER = [{"name": "Tove Ringer", "phone": "+46 70 555 99 01"},
                  {"name": "Ulf Svarar", "phone": "+46 70 555 99 02"}]


async def change_the_call_order(crew: Crew, clock: FakeClock) -> None:
    clock.advance(timedelta(minutes=1))
    changed = await crew["alarm_manager"].put(f"/api/teams/{TEAM}/call-order",
                                              json={"call_order": NEW_CALL_ORDER})
    assert changed.status_code == 200, changed.text


async def change_a_user(crew: Crew, clock: FakeClock) -> list[str]:
    """ulla: created, disabled, enabled, made operator, given a password, her tokens
    revoked. Returns the secrets handed out on the way."""
    admin = crew["admin"]
    clock.advance(timedelta(minutes=1))
    created = await admin.post("/api/users", json={
        "name": "ulla", "role": "responder", "team": TEAM, "password": PASSWORD})
    assert created.status_code == 201, created.text
    steps: list[Callable[[], Awaitable[httpx.Response]]] = [
        lambda: admin.post("/api/users/ulla/disable"),
        lambda: admin.post("/api/users/ulla/enable"),
        lambda: admin.put("/api/users/ulla/role", json={"role": "operator"}),
        lambda: admin.post("/api/users/ulla/reset-password",
                           json={"password": PASSWORD + "-2"}),
        lambda: admin.post("/api/users/ulla/revoke-tokens")]
    for step in steps:
        clock.advance(timedelta(minutes=1))
        answer = await step()
        assert answer.status_code == 200, answer.text
    return [created.json()["token"], PASSWORD, PASSWORD + "-2"]


async def sign_in_and_out(service: Service, clock: FakeClock) -> list[str]:
    """siv types a wrong password, then the right one, then signs out; someone types a
    password into the name field. Returns the secrets typed and handed out."""
    now = service.clock.now()
    hashed = users.hash_password(PASSWORD)
    service.db.transaction(lambda s: users.add_user(s, "siv", "operator", now,
                                                    password_hash=hashed))
    async with api(service, None) as anyone:
        clock.advance(timedelta(minutes=1))
        wrong = await anyone.post("/api/session", json={"name": "siv",
                                                        "password": "fel-lösenord-1"})
        nameless = await anyone.post("/api/session", json={"name": "Sommar2026!!",
                                                           "password": "fel-lösenord-2"})
        clock.advance(timedelta(minutes=1))
        right = await anyone.post("/api/session", json={"name": "siv", "password": PASSWORD})
    assert (wrong.status_code, nameless.status_code, right.status_code) == (401, 401, 200)
    session_token = right.json()["token"]
    async with api(service, session_token) as siv:
        clock.advance(timedelta(minutes=1))
        out = await siv.delete("/api/session")
    assert out.status_code == 200
    return [session_token, PASSWORD, "fel-lösenord-1", "fel-lösenord-2", "Sommar2026!!"]


# -- views --------------------------------------------------------------------------------


@pytest.mark.mqtt
async def test_viewing_an_alarm_records_who_viewed_which_alarm_and_when(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    alarm_id = await view_an_alarm(service, link, crew, clock)

    views = await entries(service, action="alarm.view")
    assert [(e["actor"], e["user_id"], e["role"], e["subject_type"], e["subject_id"],
             when(e["at"])) for e in views] == [
        ("olle", crew.ids["operator"], "operator", "alarm", str(alarm_id), clock.now())]
    assert views[0]["address"] == "127.0.0.1"


@pytest.mark.mqtt
async def test_listing_and_viewing_customers_records_customer_list_and_customer_view(
        service: Service, crew: Crew, clock: FakeClock) -> None:
    await view_customers(crew, clock)

    found = await entries(service, actor="tove")
    assert [(e["action"], e["subject_type"], e["subject_id"], when(e["at"]), e["detail"])
            for e in found] == [
        ("customer.list", None, None, NOW + timedelta(minutes=1), {"count": 8}),
        ("customer.view", "customer", "K-1001", NOW + timedelta(minutes=2), None)]
    assert {(e["user_id"], e["role"]) for e in found} == {(crew.ids["tfh"], "tfh")}


# -- protected identities -----------------------------------------------------------------


@pytest.mark.mqtt
async def test_an_operator_reveals_a_protected_identity_of_an_open_alarm_and_it_is_logged(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    alarm_id, revealed = await reveal_the_protected_identity(service, link, crew, clock)

    assert revealed.status_code == 200, revealed.text
    body = revealed.json()
    assert body["alarm_id"] == alarm_id
    assert when(body["revealed_at"]) == clock.now()
    assert body["customer"] == {"code": PROTECTED, "name": SECRET["name"]}
    assert body["site"] == {"code": PROTECTED_SITE, "address": SECRET["address"],
                            "postal_code": SECRET["postal_code"],
                            "door_name": SECRET["door_name"]}
    reveals = await entries(service, action="alarm.reveal")
    assert [(e["actor"], e["user_id"], e["role"], e["subject_type"], e["subject_id"],
             when(e["at"]), e["detail"]) for e in reveals] == [
        ("olle", crew.ids["operator"], "operator", "alarm", str(alarm_id), clock.now(),
         {"customer": PROTECTED})]


@pytest.mark.mqtt
async def test_no_role_but_the_operator_may_reveal_a_protected_identity_admins_included(
        service: Service, link: DeviceLink, crew: Crew) -> None:
    await give_the_protected_customer_a_real_identity(crew["admin"])
    alarm_id = await raise_alarm(service, link, PROTECTED_CID)

    refused = {role: (await crew[role].post(f"/api/alarms/{alarm_id}/reveal"))
               for role in ROLES if role != "operator"}

    assert {role: r.status_code for role, r in refused.items()} == {
        "responder": 403, "tfh": 403, "alarm_manager": 403, "admin": 403}
    assert not [role for role, r in refused.items() if SECRET["name"] in r.text]
    assert await entries(service, action="alarm.reveal") == []


@pytest.mark.mqtt
async def test_a_reveal_is_refused_on_a_closed_alarm_and_for_an_unprotected_customer(
        service: Service, link: DeviceLink, crew: Crew) -> None:
    await give_the_protected_customer_a_real_identity(crew["admin"])
    operator = crew["operator"]
    closed_id = await raise_alarm(service, link, PROTECTED_CID)
    closing = await operator.post(f"/api/alarms/{closed_id}/phone-kvittering",
                                  json={"reason": "the customer answered: pressed by mistake"})
    plain_id = await raise_alarm(service, link, PLAIN_CID)

    closed = await operator.post(f"/api/alarms/{closed_id}/reveal")
    plain = await operator.post(f"/api/alarms/{plain_id}/reveal")

    assert closing.json()["state"] == "closed"
    assert (closed.status_code, plain.status_code) == (409, 409)
    assert SECRET["name"] not in closed.text
    assert await entries(service, action="alarm.reveal") == []


@pytest.mark.mqtt
async def test_alarms_and_customers_stay_masked_for_every_role_before_and_after_a_reveal(
        service: Service, link: DeviceLink, crew: Crew) -> None:
    await give_the_protected_customer_a_real_identity(crew["admin"])
    alarm_id = await raise_alarm(service, link, PROTECTED_CID)
    routes = ("/api/alarms", "/api/alarms?scope=all", f"/api/alarms/{alarm_id}",
              "/api/customers", f"/api/customers/{PROTECTED}")

    async def everything_shown() -> dict[tuple[str, str], httpx.Response]:
        return {(role, route): await crew[role].get(route) for role in ROLES
                for route in routes}

    before = await everything_shown()
    revealed = await crew["operator"].post(f"/api/alarms/{alarm_id}/reveal")
    after = await everything_shown()

    assert revealed.status_code == 200
    assert revealed.json()["customer"]["name"] == SECRET["name"]
    for shown in (before, after):
        # Who may read what: everyone reads something, so no role passes by being refused.
        assert {key for key, r in shown.items() if r.status_code == 200} == {
            (role, route) for role in ROLES for route in routes
            if (route.startswith("/api/alarms") and role in ("operator", "responder",
                                                             "alarm_manager"))
            or (route.startswith("/api/customers") and role != "responder")}
        assert all(r.status_code == 403 for r in shown.values() if r.status_code != 200)
        leaks = [(key, value) for key, r in shown.items() for value in SECRET.values()
                 if r.status_code == 200 and value in dump(r.json())]
        assert leaks == []
    masked = after[("operator", f"/api/alarms/{alarm_id}")].json()
    assert masked["customer"]["name"] == "Skyddad identitet"
    assert (masked["site"]["address"], masked["site"]["door_name"]) == (
        "Skyddad identitet", None)


# -- changes --------------------------------------------------------------------------------


@pytest.mark.mqtt
async def test_a_registry_edit_records_a_model_before_and_after_and_an_address_as_changed(
        service: Service, crew: Crew, clock: FakeClock) -> None:
    await edit_the_registry(crew, clock)

    updates = await entries(service, action="registry.update")
    assert [(e["actor"], e["role"], e["subject_type"], e["subject_id"], when(e["at"]),
             e["detail"]) for e in updates] == [
        ("ada", "admin", "devices", PLAIN_CID, clock.now(),
         {"changes": {"model": {"before": "Demo base unit", "after": "Neo 2"}}}),
        ("ada", "admin", "sites", "K-1001-1", clock.now(),
         {"changes": {"address": {"changed": True}}})]


@pytest.mark.mqtt
async def test_the_api_does_not_lift_a_protected_identity_admins_included(
        service: Service, crew: Crew) -> None:
    lifted = await crew["admin"].post("/api/registry", json={"customers": [{
        "code": PROTECTED, "name": "?", "protected_identity": False}]})
    customer = (await crew["admin"].get(f"/api/customers/{PROTECTED}")).json()

    assert lifted.status_code == 422
    assert "not lifted through the API" in lifted.json()["detail"]
    assert customer["protected_identity"] is True and customer["name"] == MASK
    assert await entries(service, action="registry.update") == []


@pytest.mark.mqtt
async def test_a_new_registry_record_is_recorded_as_registry_create(
        service: Service, crew: Crew, clock: FakeClock) -> None:
    await edit_the_registry(crew, clock)

    created = {(e["subject_type"], e["subject_id"]): e["detail"]["changes"]
               for e in await entries(service, action="registry.create")}
    assert sorted(created) == [("customers", "K-2001"), ("devices", "200001"),
                               ("sites", "K-2001-1")]
    customer, site, device = (created[("customers", "K-2001")],
                              created[("sites", "K-2001-1")], created[("devices", "200001")])
    assert customer["name"] == customer["personal_number"] == {"changed": True}
    assert customer["protected_identity"] == {"before": None, "after": False}
    assert site["address"] == site["door_name"] == site["postal_code"] == {"changed": True}
    assert site["city"] == {"before": None, "after": "Kungsängen"}
    assert device["model"] == {"before": None, "after": "Neo 2"}


@pytest.mark.mqtt
async def test_a_call_order_change_is_recorded_with_how_many_but_not_who(
        service: Service, crew: Crew, clock: FakeClock) -> None:
    await change_the_call_order(crew, clock)

    changes = await entries(service, action="call_order.update")
    assert [(e["actor"], e["role"], e["subject_type"], e["subject_id"], when(e["at"]),
             e["detail"]) for e in changes] == [
        ("mona", "alarm_manager", "teams", TEAM, clock.now(),
         {"changes": {"call_order": {"changed": True},
                      "entries": {"before": 3, "after": 2}}})]


@pytest.mark.mqtt
async def test_user_changes_through_the_api_record_role_team_and_state_before_and_after(
        service: Service, crew: Crew, clock: FakeClock) -> None:
    await change_a_user(crew, clock)
    ulla = await service.db.read(lambda s: users.get_user(s, "ulla").id)

    found = await entries(service, subject_type="user", subject_id=str(ulla))
    assert {(e["actor"], e["user_id"], e["role"]) for e in found} == {
        ("ada", crew.ids["admin"], "admin")}
    assert [(e["action"], when(e["at"]) - NOW, e["detail"]["changes"]) for e in found] == [
        ("user.create", timedelta(minutes=1), {
            "role": {"before": None, "after": "responder"},
            "team": {"before": None, "after": TEAM},
            "enabled": {"before": None, "after": True},
            "has_password": {"before": None, "after": True}}),
        ("user.disable", timedelta(minutes=2), {"enabled": {"before": True, "after": False}}),
        ("user.enable", timedelta(minutes=3), {"enabled": {"before": False, "after": True}}),
        ("user.set_role", timedelta(minutes=4), {
            "role": {"before": "responder", "after": "operator"},
            "team": {"before": TEAM, "after": None}}),
        ("user.reset_password", timedelta(minutes=5), {}),
        ("user.revoke_tokens", timedelta(minutes=6), {})]


# -- signing in ----------------------------------------------------------------------------


@pytest.mark.mqtt
async def test_sign_in_failed_sign_in_and_sign_out_are_recorded_without_what_was_typed(
        service: Service, clock: FakeClock) -> None:
    await sign_in_and_out(service, clock)
    siv = await service.db.read(lambda s: users.get_user(s, "siv").id)

    found = [e for e in await entries(service) if e["action"].startswith("session.")]
    assert [(e["action"], e["actor"], e["user_id"], e["subject_id"], e["address"],
             when(e["at"]) - NOW, e["detail"]) for e in found] == [
        ("session.sign_in_failed", "anonymous", siv, None, "127.0.0.1",
         timedelta(minutes=1), {"outcome": "wrong"}),
        ("session.sign_in_failed", "anonymous", None, None, "127.0.0.1",
         timedelta(minutes=1), {"outcome": "unknown_user"}),
        ("session.sign_in", "siv", siv, str(siv), "127.0.0.1", timedelta(minutes=2), None),
        ("session.sign_out", "siv", siv, str(siv), "127.0.0.1", timedelta(minutes=3),
         {"kind": "session"})]


@pytest.mark.mqtt
async def test_a_locked_out_sign_in_is_recorded(service: Service) -> None:
    now = service.clock.now()
    hashed = users.hash_password(PASSWORD)
    service.db.transaction(lambda s: users.add_user(s, "siv", "operator", now,
                                                    password_hash=hashed))
    async with api(service, None) as anyone:
        tries = [(await anyone.post("/api/session", json={
            "name": "siv", "password": f"gissning-{n:03}"})).status_code for n in range(5)]
        locked = await anyone.post("/api/session", json={"name": "siv", "password": PASSWORD})

    assert (tries, locked.status_code) == ([401] * 5, 429)
    assert [(e["actor"], e["address"], e["detail"])
            for e in await entries(service, action="session.sign_in_locked")] == [
        ("anonymous", "127.0.0.1", {"by": "for this user"})]


# -- no personal data ----------------------------------------------------------------------


@pytest.mark.mqtt
async def test_no_personal_data_password_or_token_ever_reaches_the_audit_log(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    await view_an_alarm(service, link, crew, clock)
    await view_customers(crew, clock)
    _, revealed = await reveal_the_protected_identity(service, link, crew, clock)
    await edit_the_registry(crew, clock)
    await change_the_call_order(crew, clock)
    handed_out = await change_a_user(crew, clock)
    handed_out += await sign_in_and_out(service, clock)
    handed_out += crew.tokens.values()
    searched = await crew["alarm_manager"].get("/api/audit")
    exported = await crew["admin"].get("/api/audit", params={"format": "csv"})
    rows = await service.db.read(lambda s: [
        {c.key: getattr(e, c.key) for c in AuditEntry.__table__.columns}
        for e in s.execute(select(AuditEntry)).scalars()])
    stored = dump(rows)

    assert revealed.status_code == 200
    assert {r["action"] for r in rows} == {
        "alarm.view", "customer.list", "customer.view", "alarm.reveal", "registry.update",
        "registry.create", "call_order.update", "user.create", "user.disable", "user.enable",
        "user.set_role", "user.reset_password", "user.revoke_tokens", "session.sign_in",
        "session.sign_in_failed", "session.sign_out", "audit.search", "audit.export",
        "registry.seed"}
    personal = personal_strings() | set(SECRET.values()) | {
        NEW_CUSTOMER["name"], NEW_CUSTOMER["personal_number"], "Flyttvägen 9",
        "Nybyggevägen 2", "Nyman"} | {v for entry in NEW_CALL_ORDER for v in entry.values()}
    assert sorted(s for s in personal if s in stored) == []
    hidden = {*handed_out, *(hashlib.sha256(s.encode()).hexdigest() for s in handed_out)}
    assert [s for s in hidden if s in stored] == []
    for shown in (searched.text, exported.text):
        assert sorted(s for s in personal | hidden if s in shown) == []


# -- searching and exporting ---------------------------------------------------------------


@pytest.mark.mqtt
async def test_the_log_is_searched_by_actor_action_subject_and_time_with_offsets(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    first = await raise_alarm(service, link, PLAIN_CID)
    second = await raise_alarm(service, link, "100002")
    plan = [("operator", f"/api/alarms/{first}"), ("tfh", "/api/customers/K-1001"),
            ("alarm_manager", f"/api/alarms/{second}"), ("operator", f"/api/alarms/{second}"),
            ("operator", f"/api/alarms/{first}")]
    for minute, (role, route) in enumerate(plan, start=1):
        clock.set(NOW + timedelta(minutes=minute))
        assert (await crew[role].get(route)).status_code == 200
    reviewer = crew["alarm_manager"]

    async def search(**params: str) -> list[tuple[str, str, str | None, int]]:
        answer = await reviewer.get("/api/audit", params={"limit": "1000", **params})
        assert answer.status_code == 200, answer.text
        return [(e["actor"], e["action"], e["subject_id"],
                 int((when(e["at"]) - NOW) / timedelta(minutes=1)))
                for e in answer.json()["entries"]]

    by_actor = await search(actor="olle")
    by_action = await search(action="customer.view")
    by_subject = await search(subject_type="alarm", subject_id=str(first))
    # 10:02 to 10:04 in Stockholm, written with their offset; `to` is exclusive.
    by_time = await search(**{"from": "2026-11-23T10:02:00+01:00",
                              "to": "2026-11-23T09:04:00+00:00"})
    naive = await reviewer.get("/api/audit", params={"from": "2026-11-23T10:02:00"})

    assert by_actor == [("olle", "alarm.view", str(first), 5),
                        ("olle", "alarm.view", str(second), 4),
                        ("olle", "alarm.view", str(first), 1)]
    assert by_action == [("tove", "customer.view", "K-1001", 2)]
    assert by_subject == [("olle", "alarm.view", str(first), 5),
                          ("olle", "alarm.view", str(first), 1)]
    assert by_time == [("mona", "alarm.view", str(second), 3),
                       ("tove", "customer.view", "K-1001", 2)]
    assert naive.status_code == 422


@pytest.mark.mqtt
async def test_paging_by_next_cursor_shows_every_entry_once(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    alarm_id = await raise_alarm(service, link, PLAIN_CID)
    for _ in range(7):
        clock.advance(timedelta(seconds=20))
        await crew["operator"].get(f"/api/alarms/{alarm_id}")
    reviewer = crew["admin"]
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"action": "alarm.view", "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        # Searching is itself logged between pages: it must not shift them.
        body = (await reviewer.get("/api/audit", params=params)).json()
        pages.append([e["id"] for e in body["entries"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    every = [e["id"] for e in await entries(service, action="alarm.view")][::-1]

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == every


@pytest.mark.mqtt
async def test_the_csv_export_has_a_header_and_one_row_per_entry(
        service: Service, link: DeviceLink, crew: Crew, clock: FakeClock) -> None:
    await view_an_alarm(service, link, crew, clock)
    await view_customers(crew, clock)
    await change_the_call_order(crew, clock)
    reviewer = crew["alarm_manager"]
    wanted = (await reviewer.get("/api/audit", params={"limit": 1000, "actor": "tove"})).json()
    exported = await reviewer.get("/api/audit", params={"format": "csv", "actor": "tove"})
    everything = await reviewer.get("/api/audit", params={"format": "csv"})

    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    header, *rows = list(csv.reader(io.StringIO(exported.text)))
    assert header == list(audit.CSV_COLUMNS)
    assert [row[0] for row in rows] == [str(e["id"]) for e in wanted["entries"]]
    assert [(row[2], row[3], row[4], row[6]) for row in rows] == [
        ("tove", "tfh", "customer.view", "K-1001"), ("tove", "tfh", "customer.list", "")]
    assert json.loads(rows[1][8]) == {"count": 8}
    all_rows = list(csv.DictReader(io.StringIO(everything.text)))
    stored = await entries(service)
    # The export itself is logged before it is read, so it is in its own file.
    assert sorted(int(r["id"]) for r in all_rows) == sorted(e["id"] for e in stored)
    assert next(r for r in all_rows if r["action"] == "call_order.update")["subject_id"] == TEAM


@pytest.mark.mqtt
async def test_only_admins_and_alarm_managers_read_the_audit_log(
        service: Service, crew: Crew) -> None:
    answers = {(role, fmt): (await crew[role].get("/api/audit", params={"format": fmt}))
               .status_code for role in ROLES for fmt in ("json", "csv")}

    assert answers == {(role, fmt): 200 if role in ("admin", "alarm_manager") else 403
                       for role in ROLES for fmt in ("json", "csv")}
    assert {e["actor"] for e in await entries(service) if e["action"].startswith("audit.")
            } == {"ada", "mona"}


# -- append-only in the database itself ----------------------------------------------------


@pytest.fixture
def migrated(database_url: str) -> Iterator[Database]:
    """A fresh database brought up by the migrations, as `trygg migrate` does."""
    db = Database(database_url)
    upgrade(db.engine)
    yield db
    db.close()


REWRITES: dict[str, Callable[[Session, int], object]] = {
    "orm-update": lambda s, i: setattr(s.get(AuditEntry, i), "actor", "someone-else"),
    "update-statement": lambda s, i: s.execute(
        update(AuditEntry).where(AuditEntry.id == i).values(action="nothing.happened")),
    "orm-delete": lambda s, i: s.delete(s.get(AuditEntry, i)),
    "delete-statement": lambda s, i: s.execute(delete(AuditEntry).where(AuditEntry.id == i)),
    "delete-everything": lambda s, i: s.execute(text("DELETE FROM audit_log")),
}


@pytest.mark.parametrize("rewrite", REWRITES.values(), ids=REWRITES.keys())
def test_the_database_refuses_to_rewrite_or_remove_an_audit_entry(
        migrated: Database, rewrite: Callable[[Session, int], object]) -> None:
    def write(s: Session) -> int:
        audit.record(s, audit.System("cli:kim"), "user.disable", NOW, subject=("user", 7),
                     detail={"changes": {"enabled": {"before": True, "after": False}}})
        s.flush()
        return int(s.execute(select(AuditEntry.id)).scalar_one())

    entry_id = migrated.transaction(write)

    with pytest.raises(DBAPIError, match="append-only"):
        migrated.transaction(lambda s: rewrite(s, entry_id))
    kept = migrated.transaction(lambda s: [audit.entry_view(e) for e in s.execute(
        select(AuditEntry)).scalars()])
    assert [(e["id"], e["actor"], e["action"], e["subject_id"]) for e in kept] == [
        (entry_id, "cli:kim", "user.disable", "7")]



def test_the_csv_export_comes_a_chunk_at_a_time_and_loses_no_entry(
        migrated: Database) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    migrated.transaction(lambda s: [audit.record(
        s, audit.System("cli:root"), "user.create", start, subject=("user", i))
        for i in range(7)])

    with migrated.sessions() as s:
        chunks = list(audit.csv_chunks(s, audit.AuditQuery(limit=None), rows_per_chunk=3))
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))

    assert len(chunks) == 3  # 3 + 3 + 1 rows, the header in the first
    assert [r["subject_id"] for r in rows] == [str(i) for i in range(6, -1, -1)]
