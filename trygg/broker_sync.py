"""Mosquitto's accounts and ACL for production, written from the registry by
`trygg broker sync` (the demo's embedded broker is in trygg.broker).

Every MQTT device (base unit or lock; DC-09 accounts report over serial or TCP) signs in
with its cid as user name, every team's app as `team-<code>`, every provider's
coordinator (who hears of an alarm nobody has checked in to after 45 minutes) as
`provider-<code>`, and Trygg itself with the user name and password of TRYGG_MQTT_URL.
Device, team and provider passwords are not stored anywhere: each is an HMAC of the
account name under the secret in TRYGG_BROKER_SECRET_FILE, so `trygg broker password
CID` gives an installer a unit's password before or after the unit is registered.
`trygg broker sync` writes Mosquitto's password file and ACL from the registry and tells
Mosquitto to reload them (SIGHUP): an account no longer in the registry is refused from
then on.

Errors:

TryggError
 └── BrokerSetupError            the accounts cannot be written or applied as configured
      ├── BrokerSecretMissing     no secret file (`trygg broker secret` creates one)
      ├── GatewayAccountMissing   TRYGG_MQTT_URL names no user and password
      ├── UnknownAccount          not a device cid, team-<code> or provider-<code>
      └── BrokerReloadFailed      the files are written, but Mosquitto was not told
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import signal
import stat
import sys
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import TryggError
from core.settings import Settings
from dispatch.models import Device, Provider, Team
from trygg.migrations import at_head

log = structlog.get_logger(__name__)


# -- errors ------------------------------------------------------------------------------


class BrokerSetupError(TryggError):
    """The broker's accounts cannot be written or applied as configured."""


class BrokerSecretMissing(BrokerSetupError):
    def __init__(self, path: Path | None) -> None:
        where = f"no secret file at {path}" if path else "TRYGG_BROKER_SECRET_FILE is not set"
        super().__init__(f"{where}: broker passwords are derived from it; create one with "
                         "`trygg broker secret`")
        self.path = path


class GatewayAccountMissing(BrokerSetupError):
    def __init__(self) -> None:
        super().__init__(
            "TRYGG_MQTT_URL has no user name and password (mqtts://USER:PASSWORD@host:port): "
            "Trygg's own broker account is taken from it, and the broker allows no "
            "anonymous clients")


class UnknownAccount(BrokerSetupError):
    def __init__(self, account: str, reason: str) -> None:
        super().__init__(f"{account!r}: {reason}")
        self.account = account


class BrokerReloadFailed(BrokerSetupError):
    def __init__(self, pid_file: Path, reason: str, pid: int | None = None) -> None:
        super().__init__(f"the accounts are written, but mosquitto was not told to reload "
                         f"them: {reason}")
        self.pid_file = pid_file
        self.pid = pid


# -- accounts ----------------------------------------------------------------------------

# Device kinds that speak MQTT; a DC-09 account reports through a receiver's line.
MQTT_DEVICE_KINDS = ("base_unit", "lock")
TEAM_PREFIX = "team-"
PROVIDER_PREFIX = "provider-"
_CID = re.compile(r"[0-9A-Fa-f]{1,32}")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_GATEWAY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# What `mosquitto_passwd` (2.0) writes: PBKDF2-SHA512, 12 bytes of salt, 101 rounds.
# Mosquitto hashes at every sign-in, and a broker restart signs in the whole fleet at
# once; the derived passwords carry 128 bits, so more rounds would buy nothing against
# a stolen file. The gateway's password is chosen by people: make it long and random.
PBKDF2_ROUNDS = 101
SALT_BYTES = 12
SECRET_MIN_CHARS = 32


@dataclass(frozen=True, slots=True)
class Account:
    """One broker account; `kind` is "gateway", "team", "provider" or "device". A device
    that is a lock also reads its own commands (`{root}/dev/{cid}/cmd`: a remote
    unlock)."""

    name: str
    kind: str
    password: str = field(repr=False)
    lock: bool = False


def team_account(code: str) -> str:
    return f"{TEAM_PREFIX}{code}"


def provider_account(code: str) -> str:
    return f"{PROVIDER_PREFIX}{code}"


def _hmac(secret: bytes, purpose: bytes, account: str) -> bytes:
    return hmac.new(secret, purpose + b"\0" + account.encode(), hashlib.sha256).digest()


def derive_password(secret: bytes, account: str) -> str:
    """A device's or team's password: 128 bits as 26 lower-case letters and digits 2-7
    (base32), typeable into a unit's installer menu."""
    digest = _hmac(secret, b"trygg broker password v1", account)[:16]
    return base64.b32encode(digest).decode().rstrip("=").lower()


def password_hash(password: str, salt: bytes, rounds: int = PBKDF2_ROUNDS) -> str:
    """Mosquitto 2's `$7$` entry: PBKDF2-HMAC-SHA512 of the password, base64."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return (f"$7${rounds}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def read_secret(path: Path | None) -> bytes:
    if path is None or not path.exists():
        raise BrokerSecretMissing(path)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BrokerSetupError(f"the broker secret {path} is readable by others; it derives "
                               f"every unit's password: chmod 600 {path}")
    secret = path.read_bytes().strip()
    if len(secret) < SECRET_MIN_CHARS:
        raise BrokerSetupError(f"the broker secret {path} is shorter than {SECRET_MIN_CHARS} "
                               "characters; create one with `trygg broker secret`")
    return secret


def create_secret(path: Path) -> None:
    """A new random secret, mode 0600; an existing one is never overwritten (a new
    secret changes every unit's and team's password)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BrokerSetupError(
            f"{path} exists already; a new secret would change every unit's and team's "
            "password, so remove the old one yourself if that is what you want") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def gateway_account(settings: Settings) -> tuple[str, str]:
    """Trygg's own user name and password, from TRYGG_MQTT_URL."""
    target = settings.mqtt
    if target is None or not target.username or not target.password:
        raise GatewayAccountMissing
    name = target.username
    if not _GATEWAY_NAME.fullmatch(name) or _CID.fullmatch(name) or name.startswith(
            (TEAM_PREFIX, PROVIDER_PREFIX)):
        raise UnknownAccount(name, "Trygg's own broker user name (in TRYGG_MQTT_URL) must be "
                                   "letters, digits, '_', '.' or '-', not all digits (a "
                                   f"device's cid) and not starting with {TEAM_PREFIX!r} "
                                   f"or {PROVIDER_PREFIX!r}")
    return name, target.password


def check_topic_root(root: str) -> str:
    if not root or root != root.strip("/") or any(c in root for c in "+#\0") or any(
            c.isspace() for c in root):
        raise BrokerSetupError(f"TRYGG_MQTT_TOPIC_ROOT {root!r} cannot be used in an ACL: no "
                               "wildcards, spaces, or leading or trailing '/'")
    return root


@dataclass(frozen=True, slots=True)
class RegistryAccounts:
    """Who in the registry gets a broker account, each list in a stable order (numbers
    in numeric order, shorter first; codes alphabetically): the same file while nothing
    changes."""

    cids: list[str]  # MQTT devices
    team_codes: list[str]
    locks: set[str]  # those of the cids that are locks
    provider_codes: list[str]


def registry_accounts(session: Session) -> RegistryAccounts:
    devices = session.execute(select(Device.cid, Device.kind)
                              .where(Device.kind.in_(MQTT_DEVICE_KINDS))).all()
    return RegistryAccounts(
        cids=sorted((d.cid for d in devices), key=lambda c: (len(c), c)),
        team_codes=sorted(session.execute(select(Team.code)).scalars()),
        locks={d.cid for d in devices if d.kind == "lock"},
        provider_codes=sorted(session.execute(select(Provider.code)).scalars()))


def accounts(secret: bytes, gateway: tuple[str, str], cids: Iterable[str],
             team_codes: Iterable[str], locks: Collection[str] = frozenset(),
             provider_codes: Iterable[str] = ()) -> list[Account]:
    """Every broker account: the gateway first, then the teams, the providers'
    coordinators, then the devices (those among `locks` may read their own commands).

    A cid that is not hex digits, or a code that could not be a topic level, gets no
    account (the registry's validation keeps them out; this does not trust it).
    """
    result = [Account(gateway[0], "gateway", gateway[1])]
    for kind, codes, name_of in (("team", team_codes, team_account),
                                 ("provider", provider_codes, provider_account)):
        for code in codes:
            if _CODE.fullmatch(code):
                name = name_of(code)
                result.append(Account(name, kind, derive_password(secret, name)))
            else:
                log.warning("broker_account_skipped", kind=kind, code=code[:64])
    for cid in cids:
        if _CID.fullmatch(cid):
            result.append(Account(cid, "device", derive_password(secret, cid),
                                  lock=cid in locks))
        else:
            log.warning("broker_account_skipped", kind="device", cid=cid[:64])
    return result


# -- Mosquitto's files -------------------------------------------------------------------

GENERATED = ("# Written by `trygg broker sync` from Trygg's registry. Do not edit: the next "
             "sync replaces it.\n")


def password_file(accounts: Iterable[Account], secret: bytes) -> str:
    """Mosquitto's password file. The salts are derived from the secret too (unique per
    account and installation, unknown without the secret), so the file is the same
    byte for byte while nothing changes, and a diff shows exactly what did."""
    return "".join(f"{a.name}:{password_hash(a.password, _salt(secret, a.name))}\n"
                   for a in accounts)


def _salt(secret: bytes, account: str) -> bytes:
    return _hmac(secret, b"trygg broker salt v1", account)[:SALT_BYTES]


def acl_file(accounts: Iterable[Account], root: str) -> str:
    """Mosquitto's ACL: a `user` block per account, nothing for anyone else.

    Devices get explicit blocks too, not `pattern write {root}/dev/%u/mrq`: a pattern
    applies to every account, so each team app (and Trygg's own account, and any account
    someone adds by hand) could publish requests on `dev/<its own name>/mrq`, which the
    gateway reads. The gateway drops them, since such a name is not a cid, but then the
    broker's promise rests on the gateway's parser. Explicit blocks grant each account
    exactly what is written under its name, and `grep -A3 '^user 1234$'` shows it. The
    cost, four lines a device, is read only at start and reload.
    """
    out = [GENERATED,
           "# Anonymous clients, and any account not listed here, may do nothing.\n"]
    headings = {  # each followed by its first block, which opens with a newline
        "team": "\n# Team apps (team-<code>): each reads its own team's messages only.",
        "provider": "\n# Providers' coordinators (provider-<code>): each reads its own "
                    "provider's\n# escalations only.",
        "device": "\n# Units and locks (user name = cid): each publishes its own requests, and\n"
                  "# reads its own answers and availability (a lock its own commands too),\n"
                  "# nothing else."}
    for account in accounts:
        name = account.name
        out.append(headings.pop(account.kind, ""))
        if account.kind == "gateway":
            out.append(
                "\n# Trygg (gateway and dispatch): reads every unit's requests, answers every\n"
                "# unit, publishes availability, commands locks, sends call-outs and\n"
                "# reminders to teams and escalations to providers' coordinators.\n"
                f"user {name}\n"
                f"topic read {root}/dev/+/mrq\n"
                f"topic write {root}/dev/+/mrs\n"
                f"topic write {root}/dev/+/availability\n"
                f"topic write {root}/dev/+/cmd\n"
                f"topic write {root}/team/#\n"
                f"topic write {root}/provider/#\n")
        elif account.kind == "team":
            code = name.removeprefix(TEAM_PREFIX)
            out.append(f"\nuser {name}\ntopic read {root}/team/{code}/#\n")
        elif account.kind == "provider":
            code = name.removeprefix(PROVIDER_PREFIX)
            out.append(f"\nuser {name}\ntopic read {root}/provider/{code}/#\n")
        else:
            out.append(f"\nuser {name}\n"
                       f"topic write {root}/dev/{name}/mrq\n"
                       f"topic read {root}/dev/{name}/mrs\n"
                       f"topic read {root}/dev/{name}/availability\n")
            if account.lock:  # only a lock takes commands: a unit has nothing to read there
                out.append(f"topic read {root}/dev/{name}/cmd\n")
    return "".join(out)


def write_atomically(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace `path` in one step (temp file, fsync, rename): Mosquitto reading it at the
    moment of a reload sees the old file or the new one, never half of one. The group
    is the directory's if it is set-group-id (see deploy/README.md)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def reload_mosquitto(pid_file: Path) -> int:
    """SIGHUP to the mosquitto whose pid is in `pid_file`: it re-reads its password file
    and ACL. Returns the pid."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        raise BrokerReloadFailed(pid_file, f"there is no {pid_file}; is mosquitto running with "
                                           f"`pid_file {pid_file}`? (It reads the new files "
                                           "when it starts.)") from None
    if not text.isdigit():
        raise BrokerReloadFailed(pid_file, f"{pid_file} holds no pid")
    pid = int(text)
    comm = Path(f"/proc/{pid}/comm")
    with contextlib.suppress(OSError):  # no /proc (not Linux), or the process is gone
        if "mosquitto" not in comm.read_text():
            raise BrokerReloadFailed(pid_file, f"process {pid} is not mosquitto (a stale "
                                               f"{pid_file}?)", pid)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BrokerReloadFailed(pid_file, f"no process {pid} (a stale {pid_file}?)",
                                 pid) from None
    except PermissionError:
        raise BrokerReloadFailed(pid_file, f"not allowed to signal mosquitto (pid {pid}); run "
                                           "`systemctl reload mosquitto` as root, or see "
                                           "deploy/README.md", pid) from None
    return pid


@dataclass(frozen=True, slots=True)
class SyncReport:
    devices: int
    teams: int
    providers: int
    password_file: Path
    acl_file: Path


def _read_registry(settings: Settings) -> RegistryAccounts:
    # Never migrates: a sync run by a timer must not move the schema ahead of the
    # running service (dispatch, or `trygg migrate`, does that).
    db = Database(settings.database_url)
    try:
        if not at_head(db.engine):
            raise BrokerSetupError("the database schema is not at the newest revision: "
                                   "start dispatch (or run `trygg migrate`) first")
        return db.transaction(registry_accounts)
    finally:
        db.close()


def write_accounts(settings: Settings) -> SyncReport:
    """Write the password file and ACL for the registry as it is now (no reload)."""
    if settings.broker_password_file is None or settings.broker_acl_file is None:
        raise BrokerSetupError("set TRYGG_BROKER_PASSWORD_FILE and TRYGG_BROKER_ACL_FILE to "
                               "where mosquitto reads its password_file and acl_file")
    root = check_topic_root(settings.mqtt_topic_root)
    gateway = gateway_account(settings)
    secret = read_secret(settings.broker_secret_file)
    registry = _read_registry(settings)
    every = accounts(secret, gateway, registry.cids, registry.team_codes, registry.locks,
                     registry.provider_codes)
    for path, text in ((settings.broker_password_file, password_file(every, secret)),
                       (settings.broker_acl_file, acl_file(every, root))):
        try:
            write_atomically(path, text)
        except OSError as exc:
            raise BrokerSetupError(f"cannot write {path}: {exc.strerror or exc}") from exc
    report = SyncReport(devices=sum(a.kind == "device" for a in every),
                        teams=sum(a.kind == "team" for a in every),
                        providers=sum(a.kind == "provider" for a in every),
                        password_file=settings.broker_password_file,
                        acl_file=settings.broker_acl_file)
    log.info("broker_accounts_written", devices=report.devices, teams=report.teams,
             providers=report.providers,
             password_file=str(report.password_file), acl_file=str(report.acl_file))
    return report


# -- `trygg broker ...` ------------------------------------------------------------------


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    report = write_accounts(settings)
    every = report.devices + report.teams + report.providers + 1
    print(f"broker accounts written: {report.devices} devices, {report.teams} teams, "
          f"{report.providers} providers' coordinators and Trygg's own ({every} in all) "
          f"to {report.password_file} and {report.acl_file}")
    if args.no_reload:
        print("not reloaded (--no-reload): mosquitto reads them when it starts or reloads")
    elif settings.broker_pid_file is None:
        print("TRYGG_BROKER_PID_FILE is not set: make mosquitto read them now with "
              "`systemctl reload mosquitto` (or `kill -HUP <its pid>`); until then it "
              "still accepts the accounts of the last reload")
    else:
        pid = reload_mosquitto(settings.broker_pid_file)
        log.info("broker_reloaded", pid=pid)
        print(f"mosquitto (pid {pid}) told to reload them")
    return 0


def cmd_password(settings: Settings, args: argparse.Namespace) -> int:
    account: str = args.account
    target = settings.mqtt
    if target is not None and account == target.username:
        raise UnknownAccount(account, "Trygg's own password is the one in TRYGG_MQTT_URL")
    is_team, is_provider = (account.startswith(prefix) and bool(_CODE.fullmatch(
        account.removeprefix(prefix))) for prefix in (TEAM_PREFIX, PROVIDER_PREFIX))
    if not (_CID.fullmatch(account) or is_team or is_provider):
        raise UnknownAccount(account, f"not a unit's cid (hex digits), {TEAM_PREFIX}<team code> "
                                      f"or {PROVIDER_PREFIX}<provider code>")
    secret = read_secret(settings.broker_secret_file)
    registry = _read_registry(settings)
    if is_team:
        known = account.removeprefix(TEAM_PREFIX) in registry.team_codes
    elif is_provider:
        known = account.removeprefix(PROVIDER_PREFIX) in registry.provider_codes
    else:
        known = account in registry.cids
    if not known:
        print(f"note: {account} is not in the registry (as a team, a provider, or a base unit "
              "or lock); it can sign in once it is and `trygg broker sync` has run",
              file=sys.stderr)
    log.info("broker_password_shown", account=account)
    print(derive_password(secret, account))
    return 0


def cmd_secret(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.broker_secret_file
    if path is None:
        raise BrokerSecretMissing(None)
    create_secret(path)
    log.info("broker_secret_created", path=str(path))
    print(f"broker secret created at {path} (mode 0600); keep a copy with your backups: "
          "without it no unit's password can be derived again")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `trygg broker sync|password|secret` to the `trygg` command's subparsers."""
    broker = sub.add_parser("broker", help="Mosquitto's accounts and ACL from the registry")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    sync = broker_sub.add_parser(
        "sync", help="write the broker's password file and ACL from the registry and "
                     "make mosquitto reload them (after every registry change)")
    sync.add_argument("--no-reload", action="store_true",
                      help="only write the files (e.g. before mosquitto first starts)")
    sync.set_defaults(func=cmd_sync)
    password = broker_sub.add_parser(
        "password", help="print the broker password of a unit (its cid), a team "
                         "(team-<code>) or a provider's coordinator (provider-<code>), "
                         "for provisioning")
    password.add_argument("account",
                          help="a unit's cid, team-<team code> or provider-<provider code>")
    password.set_defaults(func=cmd_password)
    secret = broker_sub.add_parser(
        "secret", help="create TRYGG_BROKER_SECRET_FILE, from which the passwords derive")
    secret.set_defaults(func=cmd_secret)
