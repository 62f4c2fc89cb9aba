"""`trygg routes check FILE` and `trygg routes explain CID TIME`, as a person runs them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.db import Database
from core.inbox import Incoming, append_events
from core.settings import SHIPPED_CONFIG
from devices.events import DeviceEvent, EventKind
from dispatch import services
from dispatch.models import Alarm
from dispatch.route_tree import RouteTree
from dispatch.services import DispatchRules
from trygg import cli

SE = ZoneInfo("Europe/Stockholm")


@pytest.fixture
def trygg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("TRYGG_DATABASE_URL", f"sqlite:///{tmp_path / 'routes.db'}")
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    assert run("import", str(SHIPPED_CONFIG))[0] == 0
    return run


Trygg = Callable[..., tuple[int, str, str]]


def test_explain_prints_the_team_first_and_then_the_route_and_why(trygg: Trygg) -> None:
    code, day, _ = trygg("routes", "explain", "100008", "2026-11-30T21:59:00+01:00")
    _, night, _ = trygg("routes", "explain", "100008", "2026-11-30T22:00:00+01:00")
    _, unknown, _ = trygg("routes", "explain", "999999", "2026-11-30T12:00:00+01:00")

    assert code == 0
    assert day.splitlines()[:2] == ["solrosen-bro", "route: day (day_provider)"]
    assert night.splitlines()[0] == "nattpatrull-bro"
    assert "route day: no, Mon 22:00 is outside day" in night
    assert unknown.splitlines()[:2] == ["-", "route: none (unknown_device)"]


def test_check_accepts_a_good_file_and_refuses_a_bad_one_with_the_place(
        trygg: Trygg, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("time_intervals:\n  night: [{times: ['22:00-07:00']}]\n"
                    "routes:\n  - {name: night, when: [night], to: night_patrol}\n"
                    "  - {name: day, to: day_provider}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("routing:\n  routes:\n    - {name: night, when: [night], to: moon}\n")

    ok = trygg("routes", "check", str(good))
    refused = trygg("routes", "check", str(bad))

    assert ok[:2] == (0, f"{good}: ok, 2 routes, 1 time intervals\n")
    assert refused[0] == 2
    assert refused[2].startswith(f"trygg: {bad}: routing.routes.0.to: ")
    assert "'moon' is not a target" in refused[2]


def test_dispatch_routes_new_alarms_by_the_configured_tree(db: Database) -> None:
    """A tree that gives holidays to the night patrol, day or not: a press at noon on
    julafton goes to the night patrol, one the day after to the day provider."""
    tree = RouteTree.model_validate({
        "time_intervals": {"holiday": [{"holidays": True}],
                           "day": [{"times": ["07:00-22:00"]}]},
        "routes": [{"name": "holidays", "when": ["holiday"], "to": "night_patrol"},
                   {"name": "day", "when": ["day"], "to": "day_provider"},
                   {"name": "night", "to": "night_patrol"}]})
    rules = DispatchRules(routes=tree)

    def press_at(at: datetime) -> tuple[str | None, str]:
        event = DeviceEvent(kind=EventKind.ALARM, protocol="scaip", cid="100008",
                            ref=f"{at:%d%H}", priority=5)
        db.transaction(lambda s: append_events(s, [Incoming(event, b"<mrq/>", at)]))
        db.transaction(lambda s: services.process_pending(s, at, rules, budget_s=60.0))
        alarm = db.transaction(lambda s: s.execute(
            select(Alarm).order_by(Alarm.id.desc())).scalars().first())
        assert alarm is not None
        db.transaction(lambda s: setattr(s.get(Alarm, alarm.id), "state", "closed"))
        return alarm.team_code, alarm.route_reason

    julafton = press_at(datetime(2026, 12, 24, 12, 0, tzinfo=SE))
    after = press_at(datetime(2026, 12, 28, 12, 0, tzinfo=SE))

    assert julafton == ("nattpatrull-bro", "night_patrol")
    assert after == ("solrosen-bro", "day_provider")


def test_explain_asks_the_routing_file_the_service_routes_by(
        trygg: Trygg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - {name: tell the night, to: night_patrol, continue: true}\n"
                      "  - {name: urgent, to: 'team:trygga-hander'}\n", encoding="utf-8")
    monkeypatch.setenv("TRYGG_ROUTING_FILE", str(routes))

    code, out, _ = trygg("routes", "explain", "100008", "2026-11-30T12:00:00+01:00")

    assert code == 0
    assert out.splitlines()[:3] == ["trygga-hander", "route: urgent (named_team)",
                                    "also told: nattpatrull-bro"]
