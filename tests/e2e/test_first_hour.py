"""The first hour of a new user: one database for every command, clear words for mistakes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.db import Database
from core.settings import DEFAULT_DATABASE_URL
from dispatch.users import InvalidName, add_user
from tests.brokers import Broker, free_port
from trygg.migrations import upgrade

ROOT = Path(__file__).resolve().parents[2]

# Runs a `trygg` command up to the moment it opens its database, prints that database's
# URL and stops: nothing is written, least of all into the developer's own var/trygg.db.
OPENED_DATABASE = """
import os, sys
from core import db

def opened(self, url, *args, **kwargs):
    print(url, flush=True)
    os._exit(0)

db.Database.__init__ = opened
from trygg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def environment(**trygg: str) -> dict[str, str]:
    """This environment without any TRYGG_* setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYGG_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"TRYGG_{name.upper()}": value for name, value in trygg.items()})
    return env


def trygg(*args: str, env: dict[str, str], cwd: Path,
          script: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["-c", script] if script else ["-m", "trygg.cli"]
    return subprocess.run([sys.executable, *command, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_user_add_without_settings_uses_the_database_the_service_uses(
        tmp_path: Path, broker: Broker) -> None:
    # Ports and broker given, so `run` gets as far as its database on a busy machine too.
    env = environment(http_port=str(free_port()), gateway_http_port=str(free_port()),
                      mqtt_url=broker.url)

    added = trygg("user", "add", "anna", env=env, cwd=tmp_path, script=OPENED_DATABASE)
    served = trygg("run", env=env, cwd=tmp_path, script=OPENED_DATABASE)

    assert added.stdout.strip() == served.stdout.strip() == DEFAULT_DATABASE_URL, (
        added.stdout + added.stderr, served.stdout + served.stderr)
    assert Path(DEFAULT_DATABASE_URL.removeprefix("sqlite:///")) == ROOT / "var" / "trygg.db"
    assert list(tmp_path.iterdir()) == []  # not a new database wherever the user stood


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else (another Trygg, say) is listening on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("which", ["http", "gateway", "embedded broker"])
def test_trygg_run_on_a_busy_port_says_so_in_one_line_and_starts_nothing(
        which: str, held_port: int, broker: Broker, tmp_path: Path) -> None:
    ports = {"http_port": str(free_port()), "gateway_http_port": str(free_port()),
             "database_url": f"sqlite:///{tmp_path / 'run.db'}"}
    if which == "http":
        ports["http_port"] = str(held_port)
        advice = "set TRYGG_HTTP_PORT to use another"
    elif which == "gateway":
        ports["gateway_http_port"] = str(held_port)
        advice = "set TRYGG_GATEWAY_HTTP_PORT to use another"
    else:
        ports["embedded_mqtt_port"] = str(held_port)
        advice = ("set TRYGG_EMBEDDED_MQTT_PORT to use another, "
                  "or TRYGG_MQTT_URL to use a broker of your own")
    if which != "embedded broker":
        ports["mqtt_url"] = broker.url

    second = trygg("run", env=environment(**ports), cwd=tmp_path)

    assert second.returncode != 0
    assert second.stderr.strip() == (
        f"trygg: port {held_port} on 127.0.0.1 is in use (is Trygg already running?); "
        f"{advice}"), second.stderr[-2000:]
    assert not (tmp_path / "run.db").exists()


@pytest.mark.parametrize("name", ["", "   ", "anna\x1b[2J", "anna\nadmin", "an\u200bna",
                                  "..", "a/b"],
                         ids=["empty", "blank", "escape", "newline", "zero-width", "dots",
                              "slash"])
def test_user_add_refuses_a_name_nobody_could_read_back(name: str, tmp_path: Path) -> None:
    env = environment(database_url=f"sqlite:///{tmp_path / 'users.db'}")

    refused = trygg("user", "add", name, env=env, cwd=tmp_path)

    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.startswith(f"trygg: user name {name!r} ")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stdout == ""  # no token printed


def test_adding_a_user_with_a_blank_name_raises_invalid_name(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'users.db'}")
    upgrade(db.engine)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    with pytest.raises(InvalidName) as refused:
        db.transaction(lambda s: add_user(s, " \t", "operator", now))
    db.close()

    assert refused.value.name == " \t"


@pytest.mark.mqtt
async def test_the_demo_prints_names_and_passwords_that_sign_in_and_new_ones_each_start(
        broker: Broker, sqlite_database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.harness import api, running_service, test_settings
    from trygg.cli import _print_demo_sign_in

    settings = test_settings(broker, sqlite_database_url)
    printed: list[dict[str, str]] = []
    for _ in range(2):  # two starts of the demo
        async with running_service(settings) as service:
            _print_demo_sign_in(service)
            lines = capsys.readouterr().err.splitlines()
            shown = {parts[2]: parts[4] for line in lines
                     if (parts := line.split()) and len(parts) == 5 and parts[1] == "name"}
            printed.append(shown)
            async with api(service, None) as client:
                roles = {name: (await client.post("/api/session", json={
                    "name": name, "password": password})).json()["role"]
                    for name, password in shown.items()}

        assert roles == {"demo": "operator", "demo-admin": "admin",
                         "demo-manager": "alarm_manager", "demo-responder": "responder"}
    assert printed[0]["demo"] != printed[1]["demo"]


def test_the_demo_users_are_refused_for_a_service_with_a_broker_of_its_own(
        tmp_path: Path) -> None:
    env = environment(database_url=f"sqlite:///{tmp_path / 'prod.db'}",
                      mqtt_url="mqtts://trygg:secret@broker.kommun.example:8883")

    refused = trygg("run", "--demo-user", env=env, cwd=tmp_path)

    assert refused.returncode == 2
    assert refused.stderr.startswith("trygg: --demo-user makes an admin with a printed password")
    assert not (tmp_path / "prod.db").exists()
