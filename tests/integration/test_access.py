"""Who may call what: the role matrix over the whole OpenAPI, and signing in and out.

The matrix below is the rule book, written out by hand: every operation the API
publishes must be in it with exactly the roles it declares, and each role is really
allowed or really refused (403) when it calls it. A route added without a rule fails
here (and the app refuses to start); a rule changed by accident fails here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from core.clock import FakeClock
from core.db import Database
from core.settings import Settings
from dispatch.api import hashing
from dispatch.api.app import create_app
from dispatch.api.deps import SESSION_COOKIE, AppState
from dispatch.api.roles import declare_roles
from dispatch.live import LiveFeed
from dispatch.models import AuditEntry
from dispatch.services import DispatchRules
from dispatch.signin import (
    SessionPolicy,
    SignInChanged,
    begin_attempt,
    candidate,
    open_session,
)
from dispatch.users import (
    ROLES,
    add_user,
    hash_password,
    reset_password,
    set_enabled,
    set_role,
)
from dispatch.worker import Dispatcher
from trygg.migrations import upgrade

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
OPS = {"operator"}
READERS = {"operator", "responder", "alarm_manager"}
HEALTH = {"operator", "tfh", "alarm_manager"}
CUSTOMERS = {"operator", "tfh", "alarm_manager", "admin"}
EVERYONE: set[str] = set(ROLES)
ADMIN = {"admin"}
ORDERS = {"tfh", "operator", "alarm_manager"}
PUBLIC = {"public"}
REPORTS = {"alarm_manager", "admin"}

RULES: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/api/session"): PUBLIC,
    ("GET", "/api/session"): EVERYONE,
    ("DELETE", "/api/session"): EVERYONE,
    ("GET", "/api/me"): EVERYONE,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("POST", "/api/users/{name}/disable"): ADMIN,
    ("POST", "/api/users/{name}/enable"): ADMIN,
    ("PUT", "/api/users/{name}/role"): ADMIN,
    ("POST", "/api/users/{name}/reset-password"): ADMIN,
    ("POST", "/api/users/{name}/revoke-tokens"): ADMIN,
    ("POST", "/api/users/{name}/tokens"): ADMIN,
    ("POST", "/api/users/{name}/unlock"): ADMIN,
    ("GET", "/api/alarms"): READERS,
    ("GET", "/api/alarms/{alarm_id}"): READERS,
    ("POST", "/api/alarms/{alarm_id}/reveal"): OPS,
    ("POST", "/api/alarms/{alarm_id}/call-out"): OPS,
    ("POST", "/api/alarms"): OPS,
    ("POST", "/api/alarms/{alarm_id}/accept"): {"operator", "responder"},
    ("POST", "/api/alarms/{alarm_id}/decline"): {"operator", "responder"},
    ("POST", "/api/alarms/{alarm_id}/on-my-way"): {"responder"},
    ("POST", "/api/alarms/{alarm_id}/check-in"): {"responder"},
    ("POST", "/api/alarms/{alarm_id}/check-out"): {"responder"},
    ("POST", "/api/alarms/{alarm_id}/false-alarm"): OPS,
    ("POST", "/api/alarms/{alarm_id}/visit-reason"): {"operator", "responder"},
    ("POST", "/api/alarms/{alarm_id}/close"): OPS,
    ("POST", "/api/alarms/{alarm_id}/phone-kvittering"): OPS,
    ("POST", "/api/alarms/{alarm_id}/open-lock"): {"operator", "responder"},
    ("GET", "/api/technical-alarms"): HEALTH,
    ("GET", "/api/technical-alarms/{technical_id}"): HEALTH,
    ("POST", "/api/technical-alarms/{technical_id}/clear"): HEALTH,
    ("GET", "/api/incidents"): HEALTH,
    ("GET", "/api/devices/health"): HEALTH,
    ("GET", "/api/links"): HEALTH | ADMIN,
    ("GET", "/api/customers"): CUSTOMERS,
    ("GET", "/api/customers/{code}"): CUSTOMERS,
    ("GET", "/api/teams"): {"operator", "alarm_manager", "admin"},
    ("GET", "/api/areas"): EVERYONE,
    ("GET", "/api/devices"): CUSTOMERS,
    ("POST", "/api/registry"): ADMIN,
    ("PUT", "/api/teams/{code}/call-order"): {"alarm_manager", "admin"},
    ("GET", "/api/providers"): EVERYONE,
    ("GET", "/api/audit"): {"admin", "alarm_manager"},
    ("GET", "/api/stream"): EVERYONE,
    ("POST", "/api/orders"): ORDERS,
    ("GET", "/api/orders"): ORDERS | {"responder"},
    ("GET", "/api/orders/{order_id}"): ORDERS | {"responder"},
    ("POST", "/api/orders/{order_id}/steps/{step}"): ORDERS | {"responder"},
    ("POST", "/api/orders/{order_id}/will-not-be-delivered"): ORDERS,
    ("GET", "/api/reports/response-times"): REPORTS,
    ("GET", "/api/reports/alarm-visits"): REPORTS,
    ("GET", "/api/reports/charts/response-times.svg"): REPORTS,
    ("GET", "/api/reports/charts/within-30-min.svg"): REPORTS,
}
# Values for path parameters: ids and names that exist nowhere (an allowed role gets 404
# or 422 then, which is still "allowed": it was not refused for its role).
PATH_VALUES = {"alarm_id": "999", "technical_id": "999", "code": "no-such", "name": "nobody",
               "order_id": "999", "step": "installed"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def make_app(db: Database, clock: FakeClock, **settings: Any) -> FastAPI:
    async def publish(topic: str, payload: str, *, retain: bool = False) -> None:
        return None

    rules = DispatchRules()
    return create_app(AppState(
        db=db, clock=clock, rules=rules, live=LiveFeed(),
        dispatcher=Dispatcher(db, clock, rules, LiveFeed(), publish=publish),
        settings=Settings(**settings)))


@pytest.fixture
def app(db: Database, clock: FakeClock) -> FastAPI:
    return make_app(db, clock)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://trygg") as c:
        yield c


def operations(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    schema = app.openapi()
    return {(method.upper(), path): op for path, item in schema["paths"].items()
            for method, op in item.items()}


def test_every_operation_declares_exactly_the_roles_of_the_rule_book(app: FastAPI) -> None:
    declared = {key: set(op.get("x-roles", ())) for key, op in operations(app).items()}

    assert set(declared) == set(RULES), "an operation without a rule here, or a rule for none"
    assert {k: v for k, v in declared.items() if v != RULES[k]} == {}


def test_an_app_with_a_route_without_roles_does_not_start() -> None:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/api/forgotten")
    async def forgotten() -> None:
        return None

    with pytest.raises(RuntimeError, match="/api/forgotten declares no roles"):
        declare_roles(app)


def test_an_app_with_a_route_that_cannot_declare_roles_does_not_start() -> None:
    from starlette.responses import PlainTextResponse

    app = FastAPI(docs_url=None, redoc_url=None)
    app.add_route("/raw", lambda request: PlainTextResponse("no rule"))

    with pytest.raises(RuntimeError, match="/raw is not a FastAPI route"):
        declare_roles(app)


def test_the_pages_declare_their_roles_too(app: FastAPI) -> None:
    published = set(operations(app))
    pages = {key: set(roles) for key, roles in app.state.route_roles.items()
             if key not in published}

    # The page shells hold no data: the API they call says who may see what.
    assert pages == {("GET", "/"): PUBLIC, ("GET", "/docs"): PUBLIC,
                     ("GET", "/m/"): PUBLIC,
                     ("GET", "/openapi.json"): PUBLIC, ("HEAD", "/openapi.json"): PUBLIC}


async def test_each_role_is_allowed_or_refused_on_every_operation(
        app: FastAPI, client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    def user(role: str) -> str:
        return db.transaction(lambda s: add_user(
            s, f"{role}-1", role, clock.now(), team="solrosen-kungsangen"
            if role == "responder" else None))

    tokens: dict[str, str] = {role: user(role) for role in ROLES}
    wrong: list[str] = []
    # Signing out ends the token: those calls go last.
    ordered = sorted(operations(app), key=lambda k: k == ("DELETE", "/api/session"))
    for method, path in ordered:
        url = path.format(**PATH_VALUES)
        if path == "/api/stream":
            continue  # a stream never ends by itself: checked below
        for role in ("anonymous", *ROLES):
            headers = {} if role == "anonymous" else {"Authorization": f"Bearer {tokens[role]}"}
            response = await client.request(method, url, headers=headers, json={})
            allowed = "public" in RULES[(method, path)] or role in RULES[(method, path)]
            if allowed and response.status_code in (401, 403):
                wrong.append(f"{role} refused {method} {path}: {response.status_code}")
            if not allowed and response.status_code != (401 if role == "anonymous" else 403):
                wrong.append(f"{role} not refused {method} {path}: {response.status_code}")

    assert wrong == []


async def test_the_stream_tells_each_role_only_what_it_may_read() -> None:
    from dispatch.api.stream import _for
    from dispatch.signin import Principal

    def who(role: str, team: str | None = None) -> Principal:
        return Principal(user_id=1, name="x", role=role, team=team, credential_id=1,
                         kind="token")

    alarm = {"type": "alarm", "alarm": {"id": 1, "team": {"code": "solrosen-kungsangen"},
                                        "customer": None}}
    health = {"type": "health", "technical": 1, "incident_ids": []}

    seen = {role: (_for(alarm, who(role, "solrosen-kungsangen" if role == "responder"
                                   else None)) is not None, _for(health, who(role)) is not None)
            for role in ROLES}

    assert seen == {"operator": (True, True), "responder": (True, False),
                    "tfh": (False, True), "alarm_manager": (True, True),
                    "admin": (False, False)}
    assert _for(alarm, who("responder", "nattpatrull-bro")) is None


async def test_an_id_too_large_for_the_database_is_not_found(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    token = db.transaction(lambda s: add_user(s, "op", "operator", clock.now()))
    headers = {"Authorization": f"Bearer {token}"}

    answers = [(await client.request(method, url, headers=headers, json={"note": "x"})).status_code
               for method, url in (("GET", f"/api/alarms/{2**63}"),
                                   ("GET", f"/api/alarms/{2**31}"),
                                   ("POST", f"/api/alarms/{2**40}/call-out"),
                                   ("GET", f"/api/technical-alarms/{2**64}"),
                                   ("POST", f"/api/technical-alarms/{2**33}/clear"))]

    assert answers == [404, 404, 404, 404, 404]


# -- signing in ------------------------------------------------------------------------


def with_password(db: Database, clock: FakeClock, name: str = "maria",
                  role: str = "operator") -> None:
    hashed = hash_password(PASSWORD)
    db.transaction(lambda s: add_user(s, name, role, clock.now(), password_hash=hashed))


async def sign_in(client: httpx.AsyncClient, name: str = "maria",
                  password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/session", json={"name": name, "password": password})


async def test_a_user_signs_in_with_name_and_password_and_gets_a_cookie_and_a_token(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)

    response = await sign_in(client)
    body = response.json()
    by_cookie = await client.get("/api/session")
    client.cookies.clear()
    by_token = await client.get("/api/session",
                                headers={"Authorization": f"Bearer {body['token']}"})

    assert response.status_code == 200
    assert (body["name"], body["role"], body["kind"]) == ("maria", "operator", "session")
    assert body["expires_at"] == (T0 + timedelta(hours=12)).isoformat()
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={body['token']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert by_cookie.json()["name"] == by_token.json()["name"] == "maria"


@pytest.mark.parametrize(("name", "password"), [("maria", "wrong password!"),
                                                ("nobody", PASSWORD)],
                         ids=["wrong password", "unknown user"])
async def test_a_failed_sign_in_says_the_same_whatever_was_wrong_and_logs_no_password(
        client: httpx.AsyncClient, db: Database, clock: FakeClock, name: str,
        password: str) -> None:
    with_password(db, clock)

    with capture_logs() as logs:
        response = await sign_in(client, name, password)

    assert response.status_code == 401
    assert response.json()["detail"] == "the name or the password is wrong"
    assert "set-cookie" not in response.headers
    assert [e["event"] for e in logs] == ["sign_in_failed"]
    assert password not in repr(logs) and name not in repr(logs)


async def test_five_failures_lock_the_user_out_even_with_the_right_password(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)

    failures = [(await sign_in(client, password=f"guess number {i}")).status_code
                for i in range(5)]
    clock.advance(timedelta(minutes=1))
    locked = await sign_in(client)
    clock.advance(timedelta(minutes=13, seconds=59))  # 14:59 after the first failure
    still_locked = await sign_in(client)
    clock.advance(timedelta(seconds=1))  # the first failure leaves the 15 minutes
    again = await sign_in(client)

    assert failures == [401] * 5
    assert locked.status_code == still_locked.status_code == 429
    assert int(locked.headers["retry-after"]) == 14 * 60
    assert "too many failed sign-ins for this user" in locked.json()["detail"]
    assert again.status_code == 200


async def test_failures_from_one_address_lock_every_name_from_it(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)

    for i in range(5):
        await sign_in(client, f"someone-{i}", "guessing away")
    locked = await sign_in(client)

    assert locked.status_code == 429
    assert "from this address" in locked.json()["detail"]


async def test_a_right_sign_in_forgets_the_users_earlier_failures(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)

    for _ in range(4):
        await sign_in(client, password="typo typo typo")
    ok = await sign_in(client)
    later = [(await sign_in(client, password="typo again!!")).status_code for _ in range(4)]
    still_ok = await sign_in(client)

    assert ok.status_code == 200 and later == [401] * 4 and still_ok.status_code == 200


async def test_a_session_ends_after_a_shift_however_busy_it_is(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    await sign_in(client)

    answers = []
    for _ in range(25):  # a request every 29 minutes: never idle
        clock.advance(timedelta(minutes=29))
        answers.append((await client.get("/api/session")).status_code)

    assert answers == [200] * 24 + [401]  # 24 x 29 min = 11:36; 25 x 29 min = 12:05


async def test_a_session_ends_after_the_idle_period_without_requests(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    await sign_in(client)

    clock.advance(timedelta(minutes=29))
    kept = await client.get("/api/session")  # a request moves the idle mark
    clock.advance(timedelta(minutes=29, seconds=59))
    kept_again = await client.get("/api/session")
    clock.advance(timedelta(minutes=30))
    ended = await client.get("/api/session")

    assert (kept.status_code, kept_again.status_code, ended.status_code) == (200, 200, 401)
    assert "sign in again" in ended.json()["detail"]


async def test_expiry_is_configurable(db: Database, clock: FakeClock) -> None:
    app = make_app(db, clock, session_max_s=3600, session_idle_s=600)
    with_password(db, clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://trygg") as client:
        body = (await sign_in(client)).json()
        clock.advance(timedelta(minutes=10))
        idle = await client.get("/api/session")

    assert body["expires_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert body["idle_timeout_s"] == 600
    assert idle.status_code == 401


async def test_an_api_token_does_not_expire_but_can_be_revoked(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    token = db.transaction(lambda s: add_user(s, "script", "alarm_manager", clock.now()))
    headers = {"Authorization": f"Bearer {token}"}

    clock.advance(timedelta(days=90))
    months_later = await client.get("/api/session", headers=headers)
    signed_out = await client.delete("/api/session", headers=headers)
    after = await client.get("/api/session", headers=headers)

    assert months_later.json()["kind"] == "token"
    assert signed_out.status_code == 200 and after.status_code == 401


async def test_signing_out_ends_the_session_and_clears_the_cookie(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    token = (await sign_in(client)).json()["token"]

    out = await client.delete("/api/session")
    client.cookies.clear()
    replayed = await client.get("/api/session", headers={"Authorization": f"Bearer {token}"})

    assert out.status_code == 200
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert replayed.status_code == 401


async def test_a_disabled_user_is_out_at_once_and_a_new_role_applies_at_once(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    await sign_in(client)

    before = await client.get("/api/alarms")
    db.transaction(lambda s: set_role(s, "maria", "tfh", clock.now()))
    as_tfh = await client.get("/api/alarms")
    db.transaction(lambda s: set_enabled(s, "maria", False, clock.now()))
    disabled = await client.get("/api/technical-alarms")
    client.cookies.clear()
    sign_in_again = await sign_in(client)

    assert before.status_code == 200
    assert as_tfh.status_code == 403
    assert disabled.status_code == 401
    assert sign_in_again.status_code == 403
    assert sign_in_again.json()["detail"] == "this user is disabled"


async def test_the_session_cookie_is_refused_for_a_change_from_another_site(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    await sign_in(client)

    cross = await client.post("/api/alarms/1/close", headers={"Origin": "https://evil.example"})
    same = await client.post("/api/alarms/1/close", headers={"Origin": "http://trygg"})

    assert cross.status_code == 403
    assert "another site" in cross.json()["detail"]
    assert same.status_code == 404  # through the door; there is just no alarm 1


async def test_sign_ins_and_sign_outs_are_in_the_audit_log_without_secrets(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    await sign_in(client, password="not the one!!")
    token = (await sign_in(client)).json()["token"]
    await client.delete("/api/session")

    rows = db.transaction(lambda s: [(e.action, e.actor, e.detail) for e in s.execute(
        select(AuditEntry).order_by(AuditEntry.id)).scalars()])

    assert [(a, who) for a, who, _ in rows] == [
        ("session.sign_in_failed", "anonymous"), ("session.sign_in", "maria"),
        ("session.sign_out", "maria")]
    assert PASSWORD not in repr(rows) and token not in repr(rows)


async def test_parallel_guesses_on_two_processes_count_no_more_than_the_limit(
        database_url: str, clock: FakeClock) -> None:
    """Two dispatch processes serve the API on one database (PostgreSQL in production):
    twenty guesses at once get five "wrong" answers, and the rest are refused unread."""
    dbs = [Database(database_url) for _ in range(2)]
    upgrade(dbs[0].engine)
    with_password(dbs[0], clock)
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(db, clock)),
                                 base_url="http://trygg") for db in dbs]
    try:
        answers = await asyncio.gather(*(
            sign_in(clients[i % 2], password=f"guess number {i}") for i in range(20)))
        right = await sign_in(clients[0])
    finally:
        for c in clients:
            await c.aclose()
        for db in dbs:
            db.close()

    assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * 15
    assert right.status_code == 429


async def test_a_lock_out_is_one_audit_entry_however_many_attempts_it_refuses(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    for i in range(5):
        await sign_in(client, f"someone-{i}", "guessing away")
    refused = [(await sign_in(client, f"other-{i}", "still guessing")).status_code
               for i in range(20)]

    locks = db.transaction(lambda s: [e.detail for e in s.execute(select(AuditEntry).where(
        AuditEntry.action == "session.sign_in_locked")).scalars()])
    assert refused == [429] * 20
    assert locks == [{"by": "from this address"}]


async def test_over_https_the_session_cookie_is_secure(app: FastAPI, db: Database,
                                                       clock: FakeClock) -> None:
    with_password(db, clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://trygg.kommun.example") as client:
        response = await sign_in(client)

    assert "Secure" in response.headers["set-cookie"]


async def test_a_password_reset_during_the_check_opens_no_session(
        db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    policy = SessionPolicy()

    def attempt(s: Session) -> None:
        checked = candidate(s, "maria").password_hash
        failure = begin_attempt(s, "maria", "127.0.0.1", clock.now(), policy)
        reset_password(s, "maria", hash_password("a brand new one"), clock.now())
        open_session(s, candidate(s, "maria").user_id or 0, checked, failure, clock.now(),
                     policy)

    with pytest.raises(SignInChanged):
        db.transaction(attempt)


async def test_a_flood_of_sign_ins_is_turned_away_not_queued(
        client: httpx.AsyncClient, db: Database, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with_password(db, clock)
    monkeypatch.setattr(hashing, "MAX_WAITING", 0)  # as if 16 were being checked already

    busy = await sign_in(client)

    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"


async def test_an_admin_ends_a_lock_out_and_gives_a_script_a_new_token(
        client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    with_password(db, clock)
    admin = {"Authorization": "Bearer " + db.transaction(
        lambda s: add_user(s, "ada", "admin", clock.now()))}
    for _ in range(5):
        await sign_in(client, password="not it at all")
    locked = await sign_in(client)
    unlocked = await client.post("/api/users/maria/unlock", headers=admin)
    after = await sign_in(client)
    client.cookies.clear()
    await client.post("/api/users/maria/revoke-tokens", headers=admin)
    issued = await client.post("/api/users/maria/tokens", headers=admin)
    by_new_token = await client.get(
        "/api/session", headers={"Authorization": f"Bearer {issued.json()['token']}"})

    assert locked.status_code == 429
    assert unlocked.json()["unlocked"] == 5
    assert after.status_code == 200
    assert issued.status_code == 201 and by_new_token.json()["kind"] == "token"
