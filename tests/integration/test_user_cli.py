"""`trygg user ...` as the server's admin runs it: users are added, listed, disabled, given
roles, passwords and revoked, each change takes effect at once and is in the audit log."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Database
from core.settings import SHIPPED_CONFIG
from dispatch import audit, users
from dispatch.models import User
from dispatch.signin import (
    Principal,
    SessionPolicy,
    begin_attempt,
    candidate,
    open_session,
    principal_for,
)
from trygg import cli

# When the tests ask whether a secret signs someone in. API tokens never expire, so any
# instant serves for them; the sessions the tests open begin at this one.
AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
POLICY = SessionPolicy()
TEAM = "solrosen-bro"
PASSWORD = "korrekt häst batteri"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


Trygg = Callable[..., Ran]


@pytest.fixture
def trygg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Trygg:
    """`trygg ARGS` through `trygg.cli.main`, on a fresh SQLite file holding the shipped
    registry (imported with `trygg import`); `stdin=` is what is piped in."""
    monkeypatch.setenv("TRYGG_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("LOGNAME", "kim")  # the server account: getpass.getuser() reads it
    # main() would configure logging for good, onto this test's captured stderr.
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)

    def run(*argv: str, stdin: str | None = None) -> Ran:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse refuses a bad argument before main() runs
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    imported = run("import", str(SHIPPED_CONFIG))
    assert imported.code == 0, imported.err
    return run


@pytest.fixture
def database(trygg: Trygg, tmp_path: Path) -> Iterator[Database]:
    """The same database, to look at what the commands did."""
    db = Database(f"sqlite:///{tmp_path / 'cli.db'}")
    yield db
    db.close()


def signed_in(database: Database, secret: str) -> Principal | None:
    with database.sessions() as s:
        return principal_for(s, secret, AT, POLICY)


def sign_in(database: Database, name: str) -> str:
    """A session for `name`, as a right password at POST /api/session opens one."""
    def run(s: Session) -> str:
        who = candidate(s, name)
        assert who.user_id is not None, f"no user {name}"
        failure = begin_attempt(s, name, "127.0.0.1", AT, POLICY)
        token, _ = open_session(s, who.user_id, who.password_hash, failure, AT, POLICY)
        return token

    return database.transaction(run)


def user(database: Database, name: str) -> User | None:
    with database.sessions() as s:
        return s.execute(select(User).where(User.name == name)).scalar_one_or_none()


def names(database: Database) -> list[str]:
    with database.sessions() as s:
        return list(s.execute(select(User.name).order_by(User.name)).scalars())


def audit_log(database: Database) -> list[dict[str, Any]]:
    """Every entry about users, oldest first (not the registry's import by the fixture)."""
    with database.sessions() as s:
        found = [audit.entry_view(e) for e in audit.search(s, audit.AuditQuery(limit=None))]
    return [e for e in found[::-1] if not e["action"].startswith("registry.")]


def test_trygg_import_records_each_record_it_changes_and_may_lift_a_protection(
        trygg: Trygg, database: Database, tmp_path: Path) -> None:
    edited = tmp_path / "registry.yaml"
    edited.write_text(SHIPPED_CONFIG.read_text(encoding="utf-8").replace(
        "    name: Karin Dold\n    protected_identity: true\n",
        "    name: Karin Dold\n    protected_identity: false\n"), encoding="utf-8")

    imported = trygg("import", str(edited))

    with database.sessions() as s:
        found = [audit.entry_view(e) for e in audit.search(s, audit.AuditQuery(
            action="registry.update", limit=None))]
    assert imported.code == 0, imported.err
    assert [(e["actor"], e["subject_type"], e["subject_id"], e["detail"]) for e in found] == [
        ("cli:kim", "customers", "K-1006",
         {"changes": {"protected_identity": {"before": True, "after": False}}})]


# -- adding users ---------------------------------------------------------------------------


def test_user_add_prints_a_token_as_its_last_line_that_signs_the_user_in(
        trygg: Trygg, database: Database) -> None:
    added = trygg("user", "add", "ada", "--role", "admin")

    assert added.code == 0, added.err
    who = signed_in(database, added.last_line)
    assert who is not None
    assert (who.name, who.role, who.team, who.kind) == ("ada", "admin", None, "token")


def test_a_password_piped_to_user_add_is_the_one_that_signs_in(
        trygg: Trygg, database: Database) -> None:
    added = trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
                  stdin=PASSWORD + "\n")

    assert added.code == 0, added.err
    stored = user(database, "siv")
    assert stored is not None
    assert users.password_matches(stored.password_hash, PASSWORD)
    assert not users.password_matches(stored.password_hash, PASSWORD + "\n")
    assert not users.password_matches(stored.password_hash, "korrekt häst")
    assert PASSWORD not in added.out + added.err


def test_a_responder_is_tied_to_the_team_given(trygg: Trygg, database: Database) -> None:
    added = trygg("user", "add", "rut", "--role", "responder", "--team", TEAM)

    assert added.code == 0, added.err
    who = signed_in(database, added.last_line)
    assert who is not None
    assert (who.role, who.team) == ("responder", TEAM)


REFUSED_USERS = {
    "responder-without-team": (["--role", "responder"], None, "a responder needs a team"),
    "unknown-role": (["--role", "driver"], None, "invalid choice: 'driver'"),
    "unknown-team": (["--role", "responder", "--team", "no-such-team"], None,
                     "no team 'no-such-team' in the registry"),
    "operator-with-team": (["--role", "operator", "--team", TEAM], None,
                           "only a responder has a team"),
    "short-password": (["--role", "operator", "--password-stdin"], "kort9\n",
                       "a password needs at least 10 characters"),
    "empty-password": (["--role", "operator", "--password-stdin"], "",
                       "a password needs at least 10 characters"),
}


@pytest.mark.parametrize(("options", "stdin", "message"), REFUSED_USERS.values(),
                         ids=REFUSED_USERS.keys())
def test_a_user_that_could_not_work_is_refused_with_exit_2_and_nothing_created(
        trygg: Trygg, database: Database, options: list[str], stdin: str | None,
        message: str) -> None:
    refused = trygg("user", "add", "rut", *options, stdin=stdin)

    assert refused.code == 2
    assert message in refused.err
    assert refused.out == ""
    assert names(database) == []
    assert audit_log(database) == []


def test_a_name_taken_already_is_refused_and_the_first_user_keeps_their_token(
        trygg: Trygg, database: Database) -> None:
    first = trygg("user", "add", "ada", "--role", "admin")
    again = trygg("user", "add", "ada", "--role", "operator")

    assert again.code == 2
    assert again.err == "trygg: user 'ada' exists already\n"
    assert names(database) == ["ada"]
    who = signed_in(database, first.last_line)
    assert who is not None and who.role == "admin"
    assert [e["action"] for e in audit_log(database)] == ["user.create"]


# -- listing ---------------------------------------------------------------------------------


def test_user_list_shows_each_users_role_team_and_state(trygg: Trygg) -> None:
    tokens = [trygg("user", "add", "ada", "--role", "admin").last_line,
              trygg("user", "add", "rut", "--role", "responder", "--team", TEAM).last_line,
              trygg("user", "add", "olle", "--role", "operator").last_line]
    trygg("user", "disable", "olle")

    listed = trygg("user", "list")

    assert listed.code == 0
    header, *rows = listed.out.splitlines()
    assert header.split()[:4] == ["name", "role", "team", "state"]
    assert [tuple(row.split()[:4]) for row in rows] == [
        ("ada", "admin", "-", "enabled"),
        ("olle", "operator", "-", "disabled"),
        ("rut", "responder", TEAM, "enabled")]
    assert not [t for t in tokens if t in listed.out]


# -- disabling and enabling -----------------------------------------------------------------


def test_disable_ends_the_users_token_at_once(trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "olle", "--role", "operator").last_line
    assert signed_in(database, token) is not None

    disabled = trygg("user", "disable", "olle")

    assert disabled.code == 0, disabled.err
    assert signed_in(database, token) is None


def test_enable_brings_the_user_back_but_not_their_old_token(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "olle", "--role", "operator", "--password-stdin",
                  stdin=PASSWORD + "\n").last_line
    trygg("user", "disable", "olle")

    enabled = trygg("user", "enable", "olle")

    assert enabled.code == 0, enabled.err
    assert signed_in(database, token) is None
    with database.sessions() as s:
        assert candidate(s, "olle").enabled  # a sign-in with the password works again
    assert signed_in(database, sign_in(database, "olle")) is not None


def test_the_last_enabled_admin_can_be_neither_disabled_nor_demoted(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "ada", "--role", "admin").last_line
    trygg("user", "add", "bo", "--role", "admin")
    trygg("user", "disable", "bo")  # a disabled admin manages nobody

    disabled = trygg("user", "disable", "ada")
    demoted = trygg("user", "set-role", "ada", "operator")

    assert (disabled.code, demoted.code) == (2, 2)
    for refused in (disabled, demoted):
        assert refused.err.startswith("trygg: that would leave no enabled admin")
    who = signed_in(database, token)
    assert who is not None and who.role == "admin"
    assert [e["action"] for e in audit_log(database)] == [
        "user.create", "user.create", "user.disable"]


def test_an_admin_may_be_disabled_while_another_admin_is_enabled(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "ada", "--role", "admin").last_line
    trygg("user", "add", "bo", "--role", "admin")

    disabled = trygg("user", "disable", "ada")

    assert disabled.code == 0, disabled.err
    assert signed_in(database, token) is None


def test_a_change_to_a_user_that_does_not_exist_is_refused(trygg: Trygg) -> None:
    refused = [trygg("user", *argv) for argv in (
        ["disable", "nobody"], ["enable", "nobody"], ["set-role", "nobody", "operator"],
        ["reset-password", "nobody"], ["revoke-tokens", "nobody"])]

    assert {(r.code, r.err) for r in refused} == {(2, "trygg: no user 'nobody'\n")}


# -- roles ------------------------------------------------------------------------------------


def test_set_role_changes_the_role_on_the_users_next_request(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "olle", "--role", "operator").last_line

    to_responder = trygg("user", "set-role", "olle", "responder", "--team", TEAM)
    as_responder = signed_in(database, token)
    to_manager = trygg("user", "set-role", "olle", "alarm_manager")
    as_manager = signed_in(database, token)

    assert (to_responder.code, to_manager.code) == (0, 0)
    assert as_responder is not None and as_manager is not None
    assert (as_responder.role, as_responder.team) == ("responder", TEAM)
    assert (as_manager.role, as_manager.team) == ("alarm_manager", None)


def test_set_role_refuses_a_responder_without_a_team(trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "olle", "--role", "operator").last_line

    refused = trygg("user", "set-role", "olle", "responder")

    assert refused.code == 2
    assert "a responder needs a team" in refused.err
    who = signed_in(database, token)
    assert who is not None and who.role == "operator"


# -- passwords and tokens -----------------------------------------------------------------------


def test_reset_password_prints_a_new_one_and_ends_sessions_but_not_tokens(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
                  stdin=PASSWORD + "\n").last_line
    session = sign_in(database, "siv")

    reset = trygg("user", "reset-password", "siv")

    assert reset.code == 0, reset.err
    stored = user(database, "siv")
    assert stored is not None
    assert users.password_matches(stored.password_hash, reset.last_line)
    assert not users.password_matches(stored.password_hash, PASSWORD)
    assert signed_in(database, session) is None
    assert signed_in(database, token) is not None


def test_reset_password_takes_the_new_one_from_stdin_without_printing_it(
        trygg: Trygg, database: Database) -> None:
    trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
          stdin=PASSWORD + "\n")
    session = sign_in(database, "siv")

    reset = trygg("user", "reset-password", "siv", "--password-stdin",
                  stdin="ett helt nytt lösenord\n")

    assert reset.code == 0, reset.err
    stored = user(database, "siv")
    assert stored is not None
    assert users.password_matches(stored.password_hash, "ett helt nytt lösenord")
    assert "lösenord" not in reset.out
    assert signed_in(database, session) is None


def test_reset_password_refuses_a_short_one_and_keeps_the_old(
        trygg: Trygg, database: Database) -> None:
    trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
          stdin=PASSWORD + "\n")
    session = sign_in(database, "siv")

    refused = trygg("user", "reset-password", "siv", "--password-stdin", stdin="kort\n")

    assert refused.code == 2
    assert "at least 10 characters" in refused.err
    stored = user(database, "siv")
    assert stored is not None and users.password_matches(stored.password_hash, PASSWORD)
    assert signed_in(database, session) is not None


def test_revoke_tokens_ends_every_session_and_token_of_the_user(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
                  stdin=PASSWORD + "\n").last_line
    session = sign_in(database, "siv")

    revoked = trygg("user", "revoke-tokens", "siv")

    assert revoked.code == 0, revoked.err
    assert "2 sessions and tokens revoked" in revoked.out
    assert (signed_in(database, token), signed_in(database, session)) == (None, None)
    with database.sessions() as s:
        assert candidate(s, "siv").enabled  # still a user: they sign in again


def test_new_token_gives_a_script_back_its_access_after_revoke_tokens(
        trygg: Trygg, database: Database) -> None:
    old = trygg("user", "add", "skript", "--role", "alarm_manager").last_line
    trygg("user", "revoke-tokens", "skript")

    issued = trygg("user", "new-token", "skript")

    assert issued.code == 0, issued.err
    assert signed_in(database, old) is None
    principal = signed_in(database, issued.last_line)
    assert principal is not None and (principal.name, principal.kind) == ("skript", "token")


def test_unlock_ends_a_lock_out_of_a_user_and_of_an_address(
        trygg: Trygg, database: Database) -> None:
    trygg("user", "add", "siv", "--role", "operator", "--password-stdin",
          stdin=PASSWORD + "\n")
    policy = POLICY

    def fail(name: str, address: str) -> None:
        database.transaction(lambda s: begin_attempt(s, name, address, AT, policy))

    for i in range(5):
        fail("siv", f"10.0.0.{i}")  # five addresses: only the user is locked
        fail(f"typo-{i}", "10.9.9.9")  # five names: only the address is locked

    by_name = trygg("user", "unlock", "siv")
    by_address = trygg("user", "unlock", "--address", "10.9.9.9")

    assert by_name.code == by_address.code == 0, by_name.err + by_address.err
    assert "5 failed sign-ins forgotten" in by_name.out
    assert "5 failed sign-ins forgotten" in by_address.out
    fail("siv", "10.9.9.9")  # neither locked any more: no SignInLocked


# -- the audit log ------------------------------------------------------------------------------


def test_every_change_from_the_command_line_is_in_the_audit_log_as_the_cli(
        trygg: Trygg, database: Database) -> None:
    token = trygg("user", "add", "rut", "--role", "responder", "--team", TEAM,
                  "--password-stdin", stdin=PASSWORD + "\n").last_line
    trygg("user", "disable", "rut")
    trygg("user", "enable", "rut")
    trygg("user", "set-role", "rut", "operator")
    generated = trygg("user", "reset-password", "rut").last_line
    trygg("user", "reset-password", "rut", "--password-stdin", stdin="ett helt nytt lösenord\n")
    trygg("user", "revoke-tokens", "rut")
    stored = user(database, "rut")
    assert stored is not None

    entries = audit_log(database)

    assert {(e["actor"], e["user_id"], e["role"], e["subject_type"], e["subject_id"])
            for e in entries} == {("cli:kim", None, None, "user", str(stored.id))}
    assert [(e["action"], e["detail"]["changes"]) for e in entries] == [
        ("user.create", {"role": {"before": None, "after": "responder"},
                         "team": {"before": None, "after": TEAM},
                         "enabled": {"before": None, "after": True},
                         "has_password": {"before": None, "after": True}}),
        ("user.disable", {"enabled": {"before": True, "after": False}}),
        ("user.enable", {"enabled": {"before": False, "after": True}}),
        ("user.set_role", {"role": {"before": "responder", "after": "operator"},
                           "team": {"before": TEAM, "after": None}}),
        ("user.reset_password", {}),
        ("user.reset_password", {}),
        ("user.revoke_tokens", {})]
    logged = json.dumps(entries, ensure_ascii=False)
    assert [s for s in (token, users.digest(token), generated, PASSWORD,
                        "ett helt nytt lösenord") if s in logged] == []
