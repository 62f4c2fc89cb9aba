"""The `trygg` command: run the service, import a registry, add users, simulate devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import getpass
import json
import random
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.clock import SystemClock
from core.db import Database
from core.errors import TryggError
from core.logs import configure_logging
from core.settings import SHIPPED_CONFIG, Settings
from dispatch import audit, orders, route_reload, route_tree, users
from dispatch.config import MunicipalityConfig, Shifts, load_config
from dispatch.demo_orders import seed_demo_orders
from dispatch.models import Device, Team, User
from dispatch.registry import SqlTeamDirectory, import_audited
from trygg.broker_sync import add_commands as add_broker_commands
from trygg.migrations import upgrade
from trygg.runtime import Role, Service
from trygg.supervise import GatewayProcess, stop_when_orphaned

if TYPE_CHECKING:
    from simulator import ResponderAccount, SimulatedReceiver

log = structlog.get_logger(__name__)

# The demo's simulated alarm receiver: a poll well inside the shipped DC-09 account's
# 600 s supervision interval, an alarm now and then, and a minute of resends before a
# frame is given up (the gateway process may still be starting).
RECEIVER_POLL_EVERY_S = 300.0
RECEIVER_ALARM_MEAN_INTERVAL_S = 600.0
RECEIVER_MAX_RESENDS = 12


class PortUnavailable(TryggError):
    """`trygg run` cannot listen where it was told to: said in one line, before starting."""

    def __init__(self, host: str, port: int, setting: str, reason: str) -> None:
        advice = f"set {setting} to use another"
        if setting == "TRYGG_EMBEDDED_MQTT_PORT":
            advice += ", or TRYGG_MQTT_URL to use a broker of your own"
        super().__init__(f"port {port} on {host} {reason}; {advice}")
        self.host = host
        self.port = port
        self.setting = setting


def _ports_to_listen_on(settings: Settings, args: argparse.Namespace
                        ) -> list[tuple[str, int, str]]:
    """(host, port, the variable that moves it) for everything this `trygg run` listens on."""
    ports = [(settings.http_host, settings.http_port, "TRYGG_HTTP_PORT")]
    if args.role == "gateway":
        return ports
    if args.role == "all" and not args.single_process:
        ports.append((settings.http_host, GatewayProcess(settings).http_port,
                      "TRYGG_GATEWAY_HTTP_PORT"))
    if settings.mqtt is None:
        ports.append(("127.0.0.1", settings.embedded_mqtt_port, "TRYGG_EMBEDDED_MQTT_PORT"))
    return ports


def check_ports_free(settings: Settings, args: argparse.Namespace) -> None:
    """Bind each port for a moment, as uvicorn and the broker will (SO_REUSEADDR)."""
    for host, port, setting in _ports_to_listen_on(settings, args):
        if not 0 < port < 65536:
            raise PortUnavailable(host, port, setting, "is not a port number")
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            reason = ("is in use (is Trygg already running?)" if exc.errno == errno.EADDRINUSE
                      else f"cannot be listened on ({exc.strerror or exc})")
            raise PortUnavailable(host, port, setting, reason) from exc


def _open_db(settings: Settings) -> Database:
    db = Database(settings.database_url)
    upgrade(db.engine)
    return db


def _config(settings: Settings) -> MunicipalityConfig:
    return load_config(settings.config or SHIPPED_CONFIG)


def base_unit_cids(config: MunicipalityConfig) -> list[str]:
    return [d.cid for c in config.customers for s in c.sites for d in s.devices
            if d.kind == "base_unit"]


def base_unit_areas(config: MunicipalityConfig) -> dict[str, str]:
    """The area of each base unit, by cid: that of the site it is installed at."""
    return {d.cid: s.area for c in config.customers for s in c.sites for d in s.devices
            if d.kind == "base_unit"}


def lock_cids(config: MunicipalityConfig) -> list[str]:
    """The registry's keyless locks: `trygg run --simulate` plays one for each."""
    return [d.cid for c in config.customers for s in c.sites for d in s.devices
            if d.kind == "lock"]


def dc09_accounts(config: MunicipalityConfig) -> list[str]:
    """The DC-09 accounts of the registry: what an alarm receiver reports for."""
    return [d.cid for c in config.customers for s in c.sites for d in s.devices
            if d.kind == "dc09_account"]


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    config = load_config(Path(args.file))
    db = _open_db(settings)
    now = SystemClock().now()
    # The registry file is the municipality's own: it may lift a protected identity,
    # which the API refuses. Every record it changes is in the audit log.
    counts = db.transaction(lambda s: import_audited(s, config, _cli_actor(), now,
                                                     may_lift_protection=True))
    db.close()
    print(f"imported {args.file}: {counts.created} created, {counts.updated} updated, "
          f"{counts.unchanged} unchanged")
    return 0


def _cli_actor() -> audit.System:
    """Who made a change from the command line: the server account that ran it."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return audit.System(f"cli:{who}")


def _read_password(args: argparse.Namespace) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    # One line: `echo "$PW" | trygg user add ...` and a typed line alike.
    return sys.stdin.readline().rstrip("\r\n")


def _user_change(settings: Settings, name: str, action: str,
                 change: Callable[[Session, datetime], Any]) -> Any:
    """Apply one change to a user and record it (before, after) in the audit log."""
    db = _open_db(settings)
    now = SystemClock().now()

    def run(s: Session) -> Any:
        return users.audited_change(s, name, action, _cli_actor(), now,
                                    lambda: change(s, now))[0]

    try:
        return db.transaction(run)
    finally:
        db.close()


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args)
    hashed = None if password is None else users.hash_password(password)
    token = _user_change(settings, args.name, "user.create", lambda s, now: users.add_user(
        s, args.name, args.role, now, team=args.team, password_hash=hashed))
    team = f", team {args.team}" if args.team else ""
    print(f"user {args.name} ({args.role}{team}) added; the API token is shown only once:")
    print(token)
    return 0


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    db = _open_db(settings)
    now = SystemClock().now()
    rows = db.transaction(lambda s: users.list_users(s, now))
    db.close()
    print(f"{'name':<24} {'role':<14} {'team':<12} {'state':<9} password tokens sessions")
    for u in rows:
        print(f"{u.name:<24} {u.role:<14} {u.team or '-':<12} "
              f"{'enabled' if u.enabled else 'disabled':<9} {'yes' if u.has_password else 'no':<8} "
              f"{u.tokens:<6} {u.sessions}")
    return 0


def cmd_user_enable(settings: Settings, args: argparse.Namespace) -> int:
    enabled = args.user_command == "enable"
    _user_change(settings, args.name, f"user.{args.user_command}",
                 lambda s, now: users.set_enabled(s, args.name, enabled, now))
    print(f"user {args.name} {'enabled' if enabled else 'disabled; its sessions and tokens ended'}")
    return 0


def cmd_user_set_role(settings: Settings, args: argparse.Namespace) -> int:
    _user_change(settings, args.name, "user.set_role", lambda s, now: users.set_role(
        s, args.name, args.role, now, team=args.team))
    print(f"user {args.name} is now {args.role}" + (f" of team {args.team}" if args.team else ""))
    return 0


def cmd_user_reset_password(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args)
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(12)
    hashed = users.hash_password(password)
    _user_change(settings, args.name, "user.reset_password",
                 lambda s, now: users.reset_password(s, args.name, hashed, now))
    print(f"user {args.name} has a new password; their sessions ended")
    if generated:
        print(password)
    return 0


def cmd_user_new_token(settings: Settings, args: argparse.Namespace) -> int:
    token = _user_change(settings, args.name, "user.new_token",
                         lambda s, now: users.new_token(s, args.name, now))
    print(f"user {args.name} has a new API token; it is shown only once:")
    print(token)
    return 0


def cmd_user_unlock(settings: Settings, args: argparse.Namespace) -> int:
    if args.address:
        db = _open_db(settings)
        now = SystemClock().now()

        def run(s: Session) -> int:
            n = users.unlock(s, address=args.address)
            audit.record(s, _cli_actor(), "user.unlock", now, address=args.address,
                         detail={"count": n})
            return n

        n = db.transaction(run)
        db.close()
        print(f"address {args.address}: {n} failed sign-ins forgotten")
        return 0
    if not args.name:
        raise users.InvalidUser("give a user name or --address ADDRESS")
    n = _user_change(settings, args.name, "user.unlock",
                     lambda s, now: users.unlock(s, name=args.name))
    print(f"user {args.name}: {n} failed sign-ins forgotten")
    return 0


def cmd_user_revoke_tokens(settings: Settings, args: argparse.Namespace) -> int:
    n = _user_change(settings, args.name, "user.revoke_tokens",
                     lambda s, now: users.revoke_tokens(s, args.name, now))
    print(f"user {args.name}: {n} sessions and tokens revoked")
    return 0


def cmd_routes_check(settings: Settings, args: argparse.Namespace) -> int:
    tree = route_reload.tree_from_file(Path(args.file), Shifts())
    print(f"{args.file}: ok, {len(tree.routes)} routes, "
          f"{len(tree.time_intervals)} time intervals")
    return 0


def cmd_routes_explain(settings: Settings, args: argparse.Namespace) -> int:
    """First line: the team a press at CID at TIME would go to ("-": nobody)."""
    try:
        at = datetime.fromisoformat(args.time)
    except ValueError as exc:
        raise TryggError(f"{args.time!r} is not an ISO 8601 time") from exc
    if at.tzinfo is None:
        at = at.replace(tzinfo=route_tree.STOCKHOLM)  # a time as the alarm centre says it
    config = _config(settings)
    # The tree the service routes by: its own file if it has one, else the config's.
    tree = route_reload.tree_from_file(settings.routing_file, config.shifts) \
        if settings.routing_file else route_tree.tree_of(config.routing, config.shifts)
    db = _open_db(settings)

    def explain(s: Session) -> route_tree.Explained:
        device = s.get(Device, args.cid)
        site = device.site if device else None
        customer = site.customer if site else None
        provider = orders.day_provider_at(s, customer, at) if customer else None
        facts = route_tree.Facts(area=site.area_code if site else None, provider=provider,
                                 site_kind=site.kind if site else None)
        return route_tree.decide(tree, facts, at, SqlTeamDirectory(s))

    explained = db.transaction(explain)
    db.close()
    print(explained.team.code if explained.team else "-")
    print(f"route: {explained.route or 'none'} ({explained.reason.value})")
    if explained.also_teams:  # continue routes: told of the alarm, not responsible
        print(f"also told: {', '.join(t.code for t in explained.also_teams)}")
    for line in explained.why:
        print(f"  {line}")
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    _open_db(settings).close()
    print("database schema is up to date")
    return 0


def _broker(settings: Settings) -> tuple[str, int]:
    """Where the simulated devices connect: the configured broker, else the embedded one."""
    target = settings.mqtt
    return (target.host, target.port) if target else ("127.0.0.1", settings.embedded_mqtt_port)


async def _simulate(settings: Settings, args: argparse.Namespace,
                    stop: asyncio.Event | None = None, service: Service | None = None) -> int:
    """Play the scenario's units; with the `service` of `trygg run --simulate`, its
    responders too (as demo responder users of that service's database)."""
    from simulator import load_scenario, run_simulation

    host, port = _broker(settings)
    scenario = load_scenario(args.scenario)
    if args.speed:
        scenario = scenario.with_speed(args.speed)
    responders: list[ResponderAccount] = []
    if scenario.responders is not None and service is not None:
        now = service.clock.now()
        responders = await service.db.write(lambda s: demo_responders(s, now))
    if args.cids:
        cids = args.cids.split(",")
        # The registry is read only when a step names an area; cids not in it have none.
        areas = base_unit_areas(_config(settings)) if scenario.areas_used else {}
    else:
        config = _config(settings)
        cids, areas = base_unit_cids(config), base_unit_areas(config)
    if args.units:
        cids = (cids * (args.units // max(len(cids), 1) + 1))[: args.units] if cids else []
    report = await run_simulation(host, port, cids, scenario, root=settings.mqtt_topic_root,
                                  stop=stop, seed=args.seed, areas=areas,
                                  api_url=_api_url(service) if service else None,
                                  responders=responders)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _api_url(service: Service) -> str:
    """Where this host reaches the service's API (a wildcard address is not one)."""
    host = service.settings.http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (compared, not bound)
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{service.settings.http_port}"


# Who made the demo's responder users, in the audit log.
DEMO_ACTOR = audit.System("demo")


def demo_responders(session: Session, now: datetime) -> list[ResponderAccount]:
    """A responder user of its team for each name in the teams' call orders, each with
    a fresh API token for the simulated responders: held in memory, never printed or
    logged. Their earlier API tokens end; sessions on the phone page stay. A name that a
    user of another role or team (or a disabled one) has already is not played, and is
    left as it is; a name in two call orders is played in the first team only."""
    from simulator import ResponderAccount

    accounts: list[ResponderAccount] = []
    played: set[str] = set()
    teams = session.execute(select(Team).options(selectinload(Team.members))
                            .order_by(Team.code)).scalars()
    for team in teams:
        for member in team.members:
            name = member.name
            if name in played:
                continue
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
            if user is None:
                try:
                    token, _ = users.audited_change(
                        session, name, "user.create", DEMO_ACTOR, now,
                        partial(users.add_user, session, name, "responder", now,
                                team=team.code))
                except users.InvalidName:
                    log.warning("demo_responder_not_played", team=team.code,
                                position=member.position, reason="not a valid user name")
                    continue
            elif (user.role, user.team_code) == ("responder", team.code) \
                    and user.disabled_at is None:
                token, _ = users.audited_change(
                    session, name, "user.new_token", DEMO_ACTOR, now,
                    partial(_fresh_token, session, user, now))
            else:
                log.warning("demo_responder_not_played", team=team.code,
                            position=member.position, reason="the name is another user's")
                continue
            played.add(name)
            accounts.append(ResponderAccount(name=name, team=team.code,
                                             position=member.position, token=token))
    log.info("demo_responders_ready", responders=len(accounts))
    return accounts


def _fresh_token(session: Session, user: User, now: datetime) -> str:
    """End a user's API tokens (not their sessions) and give them a new one."""
    users.revoke_all(session, user, now, kind="token")
    return users.issue_token(session, user, now)


async def _simulate_locks(settings: Settings, stop: asyncio.Event) -> None:
    """The demo's keyless locks obey the dashboard's "Open the door lock" until `stop`."""
    from simulator import simulated_locks

    cids = lock_cids(_config(settings))
    if not cids:
        return
    host, port = _broker(settings)
    async with simulated_locks(host, port, cids, root=settings.mqtt_topic_root):
        await stop.wait()


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_simulate(settings, args))
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.role == "gateway":
        return await _run_gateway(settings)
    async with simulated_receiver(settings, args) as (settings, receiver):
        if args.role == "dispatch" or not args.single_process:
            # By default the gateway runs as a child process with its own interpreter: it
            # keeps answering devices whatever dispatch is doing (see trygg.runtime). It
            # gets its settings, the receiver's line among them, through its environment.
            gateway = GatewayProcess(settings) if args.role == "all" else None
            readiness = {"gateway_process": gateway.ready} if gateway else {}
            async with (Service(settings, roles={Role.DISPATCH},
                                readiness=readiness) as service,
                        gateway or contextlib.nullcontext()):
                await _serve(service, settings, args, receiver)
            return 0
        async with Service(settings) as service:
            await _serve(service, settings, args, receiver)
    return 0


def wants_simulated_receiver(settings: Settings, args: argparse.Namespace) -> bool:
    """`trygg run --simulate` plays an alarm receiver too, unless real receivers' lines
    are configured (TRYGG_SERIAL_PORTS) or the gateway runs elsewhere (--role)."""
    return bool(args.simulate) and args.role == "all" and not settings.serial_paths


@contextlib.asynccontextmanager
async def simulated_receiver(settings: Settings, args: argparse.Namespace
                             ) -> AsyncIterator[tuple[Settings, SimulatedReceiver | None]]:
    """The settings to run with, and the demo's simulated receiver if it gets one.

    The receiver's pty exists before the service starts, and the settings name its
    slave as the one serial line, as TRYGG_SERIAL_PORTS=/dev/ttyUSB0 would a real one.
    """
    if not wants_simulated_receiver(settings, args):
        yield settings, None
        return
    from simulator import SimulatedReceiver

    async with SimulatedReceiver(max_resends=RECEIVER_MAX_RESENDS) as receiver:
        print(f"  Simulated DC-09 alarm receiver on {receiver.slave_path} "
              "(set TRYGG_SERIAL_PORTS to use real ones)", file=sys.stderr, flush=True)
        yield settings.model_copy(update={"serial_ports": receiver.slave_path}), receiver


async def _play_receiver(settings: Settings, args: argparse.Namespace,
                         receiver: SimulatedReceiver) -> None:
    from simulator import play_receiver_traffic

    speed = args.speed or 1.0
    await play_receiver_traffic(
        receiver, dc09_accounts(_config(settings)),
        poll_every_s=RECEIVER_POLL_EVERY_S / speed,
        alarm_mean_interval_s=RECEIVER_ALARM_MEAN_INTERVAL_S / speed,
        rng=random.Random(args.seed))  # noqa: S311 (traffic, not crypto)


async def _run_gateway(settings: Settings) -> int:
    async with Service(settings, roles={Role.GATEWAY}) as service:
        _stop_on_signals(service)
        watch = asyncio.create_task(stop_when_orphaned(service.stop), name="trygg.orphan-watch")
        await service.wait()
        watch.cancel()
    return 0


def _stop_on_signals(service: Service) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)


async def _serve(service: Service, settings: Settings, args: argparse.Namespace,
                 receiver: SimulatedReceiver | None = None) -> None:
    _stop_on_signals(service)
    if args.demo_user:
        _print_demo_sign_in(service)
    if not args.simulate:
        await service.wait()
        return
    # The demo's board has a few orders in different states (once, on an empty list).
    service.db.transaction(lambda s: seed_demo_orders(s, service.clock.now()))
    stop = asyncio.Event()
    sim = asyncio.create_task(_simulate(settings, args, stop, service),
                              name="trygg.simulator")
    sim.add_done_callback(log_if_failed)
    locks = asyncio.create_task(_simulate_locks(settings, stop), name="trygg.simulator.locks")
    locks.add_done_callback(log_if_failed)
    played = None
    if receiver is not None:
        played = asyncio.create_task(_play_receiver(settings, args, receiver),
                                     name="trygg.simulator.receiver")
        played.add_done_callback(log_if_failed)
    await service.wait()
    stop.set()
    if played is not None:
        played.cancel()
        await asyncio.gather(played, return_exceptions=True)
    # A failure of any was logged as it happened, by log_if_failed.
    await asyncio.wait({sim, locks}, timeout=10)
    if not (sim.done() and locks.done()):
        sim.cancel()
        locks.cancel()
        print("trygg: the simulator did not stop within 10 s", file=sys.stderr)
    await asyncio.gather(sim, locks, return_exceptions=True)


def log_if_failed(task: asyncio.Task[Any]) -> None:
    """Demo traffic that fails is logged as it fails, not when the service stops."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("demo_traffic_failed", task=task.get_name(), error=repr(exc))


# (name, role, team): the alarm centre, its admin, the alarm manager who reads the
# reports, and a responder of Solrosen Kungsängen for the phone page (/m/).
DEMO_USERS = (("demo", "operator", None), ("demo-admin", "admin", None),
              ("demo-manager", "alarm_manager", None),
              ("demo-responder", "responder", "solrosen-kungsangen"))


def _print_demo_sign_in(service: Service) -> None:
    """The demo's users get fresh passwords at every start, printed for the person at
    hand (a demo database is not a production one)."""
    now = service.clock.now()
    lines = []
    for name, role, team in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        hashed = users.hash_password(password)

        def ensure(s: Session, name: str = name, role: str = role, team: str | None = team,
                   hashed: str = hashed) -> None:
            if s.execute(select(User.id).where(User.name == name)).first() is None:
                users.add_user(s, name, role, now, team=team)
            users.rotate_token(s, name, role, now)
            users.set_role(s, name, role, now, team=team)
            users.reset_password(s, name, hashed, now)
            users.set_enabled(s, name, True, now)

        service.db.transaction(ensure)
        lines.append(f"    {role:<13} name {name:<15} password {password}")
    print(f"\n  Trygg dashboard: {service.http_url}/   responders' phones: "
          f"{service.http_url}/m/\n  Sign in with:\n\n"
          + "\n".join(lines) + "\n", file=sys.stderr, flush=True)


class DemoUserRefused(TryggError):
    def __init__(self) -> None:
        super().__init__("--demo-user makes an admin with a printed password: it is for the "
                         "demo (the embedded broker), not a service with TRYGG_MQTT_URL set; "
                         "make users with `trygg user add`")


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    if args.demo_user and settings.mqtt is not None:
        raise DemoUserRefused()
    check_ports_free(settings, args)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(settings, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trygg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run gateway, dispatch, API and dashboard")
    run.add_argument("--role", choices=("all", "gateway", "dispatch"), default="all",
                     help="all (default: dispatch here, the gateway as a child process), "
                          "or one role for a service of its own")
    run.add_argument("--single-process", action="store_true",
                     help="with --role all: run both roles in this one process")
    run.add_argument("--simulate", action="store_true",
                     help="also run simulated base units against the service")
    run.add_argument("--demo-user", action="store_true",
                     help="give the demo operator 'demo' and admin 'demo-admin' new "
                          "passwords and print them (only with the embedded broker: a demo)")
    _simulation_options(run)
    run.set_defaults(func=cmd_run)

    imp = sub.add_parser("import", help="import a registry YAML file (idempotent)")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_import)

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user; prints its API token as the last line")
    add.add_argument("name")
    add.add_argument("--role", choices=users.ROLES, default="operator")
    add.add_argument("--team", help="a responder's team code (they see its alarms only)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read a password for signing in from standard input (one line)")
    add.set_defaults(func=cmd_user_add)
    user_sub.add_parser("list", help="list users, their roles and state").set_defaults(
        func=cmd_user_list)
    for verb, text in (("disable", "disable a user: their sessions and tokens end at once"),
                       ("enable", "enable a disabled user again")):
        p = user_sub.add_parser(verb, help=text)
        p.add_argument("name")
        p.set_defaults(func=cmd_user_enable)
    role = user_sub.add_parser("set-role", help="give a user another role")
    role.add_argument("name")
    role.add_argument("role", choices=users.ROLES)
    role.add_argument("--team", help="the team, for a responder")
    role.set_defaults(func=cmd_user_set_role)
    reset = user_sub.add_parser(
        "reset-password", help="set a new password (printed if not read from stdin); "
                               "the user's sessions end")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    reset.set_defaults(func=cmd_user_reset_password)
    token = user_sub.add_parser("new-token", help="another API token for a user (printed)")
    token.add_argument("name")
    token.set_defaults(func=cmd_user_new_token)
    unlock = user_sub.add_parser("unlock", help="end a sign-in lock-out of a user or address")
    unlock.add_argument("name", nargs="?")
    unlock.add_argument("--address", help="the client address locked out, instead of a user")
    unlock.set_defaults(func=cmd_user_unlock)
    revoke = user_sub.add_parser("revoke-tokens", help="end every session and API token")
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_user_revoke_tokens)

    sim = sub.add_parser("simulate", help="run simulated base units over MQTT")
    _simulation_options(sim)
    sim.set_defaults(func=cmd_simulate)

    routes = sub.add_parser("routes", help="check or explain the routing rules")
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    check = routes_sub.add_parser("check", help="validate a route tree file")
    check.add_argument("file")
    check.set_defaults(func=cmd_routes_check)
    explain = routes_sub.add_parser(
        "explain", help="the team a press at CID at TIME would go to, and why")
    explain.add_argument("cid")
    explain.add_argument("time", help="ISO 8601, e.g. 2026-11-30T22:00:00+01:00")
    explain.set_defaults(func=cmd_routes_explain)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)
    add_broker_commands(sub)
    return parser


def _simulation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="demo", help="a shipped scenario name or a YAML file")
    p.add_argument("--units", type=int, default=0,
                   help="number of base units (default: every base unit in the configuration)")
    p.add_argument("--cids", default="",
                   help="comma-separated cids instead of the configured ones (a scenario's "
                        "area steps still find their areas in the configuration)")
    p.add_argument("--speed", type=float, default=0.0, help="compress scenario time by this factor")
    p.add_argument("--seed", type=int, default=None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(settings.log_level)
        return int(args.func(settings, args))
    except TryggError as exc:
        print(f"trygg: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
