"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, column, insert, table, text
from sqlalchemy.exc import DBAPIError

import core.inbox  # noqa: F401  (registers the inbox tables)
import dispatch.models  # noqa: F401  (registers the dispatch tables)
from core.db import Base, Database, UTCDateTime
from dispatch import audit
from dispatch.signin import SessionPolicy, principal_for
from dispatch.users import digest
from tests.conftest import needs_postgres
from trygg.migrations import alembic_config, upgrade


def _drift(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(context, Base.metadata)
    # Alembic reads a partial index back without its WHERE and reports it as removed and
    # added again: an index of the same name on both sides is no drift.
    added = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "add_index"}
    removed = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "remove_index"}
    return [d for d in diffs if not (isinstance(d, tuple) and d[0].endswith("_index")
                                     and d[1].name in added & removed)]


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade(db.engine)
        assert _drift(db) == []
    finally:
        db.close()


# -- 0004: the users' tokens move to credentials ----------------------------------------

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _users_before_0004(db: Database) -> dict[str, str]:
    """Two users as 0003 kept them; their tokens, by name."""
    command.upgrade(alembic_config(db.engine), "0003")
    tokens = {"anna": "token-of-anna", "bo": "token-of-bo"}
    users = table("users", column("name"), column("role"), column("token_hash"),
                  column("created_at", UTCDateTime()))
    with db.engine.begin() as conn:
        conn.execute(insert(users), [
            {"name": name, "role": "admin" if name == "anna" else "operator",
             "token_hash": digest(token), "created_at": T0} for name, token in tokens.items()])
    return tokens


def test_upgrading_a_database_with_users_keeps_their_tokens_working(database_url: str) -> None:
    db = Database(database_url)
    try:
        tokens = _users_before_0004(db)
        upgrade(db.engine)
        signed_in = db.transaction(lambda s: {
            name: (p.name, p.role, p.kind) if (p := principal_for(
                s, token, T0, SessionPolicy())) else None for name, token in tokens.items()})
    finally:
        db.close()

    assert signed_in == {"anna": ("anna", "admin", "token"), "bo": ("bo", "operator", "token")}


def test_a_downgrade_gives_the_tokens_back_and_upgrades_again(database_url: str) -> None:
    db = Database(database_url)
    config = alembic_config(db.engine)
    try:
        tokens = _users_before_0004(db)
        upgrade(db.engine)
        command.downgrade(config, "0003")
        with db.engine.connect() as conn:
            kept = dict(conn.execute(text("SELECT name, token_hash FROM users")).all())
        upgrade(db.engine)
    finally:
        db.close()

    assert kept == {name: digest(token) for name, token in tokens.items()}


def test_no_downgrade_throws_the_audit_log_away(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade(db.engine)
        db.transaction(lambda s: audit.record(s, audit.System("cli:root"), "user.create", T0))
        with pytest.raises(RuntimeError, match="the audit log has entries"):
            command.downgrade(alembic_config(db.engine), "0003")
        with db.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    finally:
        db.close()

    assert left == 1


@needs_postgres
def test_the_audit_log_cannot_be_truncated_on_postgresql(postgres_database_url: str) -> None:
    db = Database(postgres_database_url)
    try:
        upgrade(db.engine)
        db.transaction(lambda s: audit.record(s, audit.System("cli:root"), "user.create", T0))
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
        with db.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    finally:
        db.close()

    assert left == 1


# -- 0008: call chains and escalation on the alarm ---------------------------------------


def _alarms_before_0008(db: Database) -> None:
    """A called-out alarm waiting for its reminder, and one checked in, as 0007 kept them."""
    command.upgrade(alembic_config(db.engine), "0007")
    with db.engine.begin() as conn:
        conn.execute(insert(table("providers", column("id"), column("code"), column("name"),
                                  column("kind"), column("municipal"))),
                     [{"id": 1, "code": "solrosen", "name": "Solrosen", "kind": "day",
                       "municipal": False}])
        conn.execute(insert(table("teams", column("id"), column("code"), column("name"),
                                  column("provider_id"))),
                     [{"id": 1, "code": "solrosen-bro", "name": "Solrosen Bro",
                       "provider_id": 1}])
        alarms = table("alarms", column("id"), column("cid"), column("state"),
                       column("priority"), column("unknown_device"), column("route_reason"),
                       column("call_order", JSON()), column("received_at", UTCDateTime()),
                       column("called_out_at", UTCDateTime()),
                       column("on_site_at", UTCDateTime()), column("team_id"),
                       column("team_code"), column("reminder_count"),
                       column("repeat_count"), column("version"))
        common = {"priority": 5, "unknown_device": False, "route_reason": "day_provider",
                  "call_order": [], "received_at": T0, "called_out_at": T0, "team_id": 1,
                  "team_code": "solrosen-bro", "reminder_count": 0, "repeat_count": 0,
                  "version": 2}
        conn.execute(insert(alarms), [
            {"id": 1, "cid": "100002", "state": "called_out", "on_site_at": None, **common},
            {"id": 2, "cid": "100102", "state": "on_site", "on_site_at": T0, **common}])
        conn.execute(insert(table("deadlines", column("alarm_id"), column("kind"),
                                  column("due_at", UTCDateTime()))),
                     [{"alarm_id": 1, "kind": "reminder",
                       "due_at": T0 + timedelta(minutes=30)}])


def test_upgrading_keeps_a_pending_reminder_which_fires_once_as_the_chains_first_step(
        database_url: str) -> None:
    from dispatch import services
    from dispatch.models import Alarm

    db = Database(database_url)
    try:
        _alarms_before_0008(db)
        upgrade(db.engine)
        at = T0 + timedelta(minutes=30)
        fired = [db.transaction(lambda s: services.fire_due(
            s, at, services.DispatchRules())).reminders for _ in range(2)]
        rows = db.transaction(lambda s: [
            (a.provider_code, a.kvittering, a.reminder_count)
            for a in s.query(Alarm).order_by(Alarm.id)])
    finally:
        db.close()

    assert fired == [1, 0]
    assert rows == [("solrosen", None, 1), ("solrosen", "unit", 0)]


def test_0008_downgrades_and_upgrades_again(database_url: str) -> None:
    db = Database(database_url)
    try:
        _alarms_before_0008(db)
        upgrade(db.engine)
        command.downgrade(alembic_config(db.engine), "0007")
        with db.engine.connect() as conn:
            kinds = conn.execute(text("SELECT kind FROM deadlines")).scalars().all()
        upgrade(db.engine)
        assert _drift(db) == []
    finally:
        db.close()

    assert kinds == ["reminder"]
