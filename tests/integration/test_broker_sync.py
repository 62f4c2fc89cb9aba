"""`trygg broker sync` against a real Mosquitto: each unit and team reaches only its own
topics, a removed unit is refused; and Trygg's own MQTT client over TLS."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
import structlog
from alembic import command
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import REGISTRY
from sqlalchemy import delete

from core.db import Database
from core.settings import Settings
from dispatch.models import Device
from gateway.mqtt import MqttLink, tls_parameters
from simulator.link import DeviceLink
from tests.brokers import Broker, free_port, mosquitto
from trygg import cli
from trygg.broker_sync import add_commands, derive_password, read_secret
from trygg.migrations import alembic_config, at_head
from trygg.runtime import Role, Service

pytestmark = pytest.mark.mqtt

ROOT = "trygg/v1"
GATEWAY_USER, GATEWAY_PASSWORD = "trygg-gateway", "a-long-random-gateway-password"
UNIT, OTHER_UNIT = "100001", "100002"  # base units of the shipped registry
TEAM, OTHER_TEAM = "nattpatrull-bro", "nattpatrull-kungsangen"
PROVIDER, OTHER_PROVIDER = "solrosen", "trygga-hander"  # day providers with coordinators


# -- `trygg broker ...` as a user runs it ------------------------------------------------


@pytest.fixture
def trygg(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """`trygg ARGS` through `trygg.cli.main`, settings from the environment."""
    # main() would configure structlog for good (loggers cached on first use), and later
    # tests' capture_logs would see nothing; how Trygg logs is not the subject here.
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    return lambda *argv: cli.main(list(argv))


@dataclass(frozen=True)
class Files:
    passwords: Path
    acl: Path
    pid: Path
    secret: Path

    def mosquitto_settings(self) -> str:
        return (f"allow_anonymous false\npassword_file {self.passwords}\n"
                f"acl_file {self.acl}\npid_file {self.pid}\n")


@pytest.fixture
def files(tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> Files:
    """The environment of `trygg broker`, and a database holding the shipped registry."""
    f = Files(tmp_path / "trygg.passwd", tmp_path / "trygg.acl", tmp_path / "mosquitto.pid",
              tmp_path / "broker.secret")
    port = free_port()
    for name, value in {
        "TRYGG_DATABASE_URL": f"sqlite:///{tmp_path / 'trygg.db'}",
        "TRYGG_MQTT_URL": f"mqtt://{GATEWAY_USER}:{GATEWAY_PASSWORD}@127.0.0.1:{port}",
        "TRYGG_MQTT_TOPIC_ROOT": ROOT,
        "TRYGG_BROKER_PASSWORD_FILE": str(f.passwords),
        "TRYGG_BROKER_ACL_FILE": str(f.acl),
        "TRYGG_BROKER_PID_FILE": str(f.pid),
        "TRYGG_BROKER_SECRET_FILE": str(f.secret),
    }.items():
        monkeypatch.setenv(name, value)
    return f


def broker_port() -> int:
    port = Settings().mqtt.port  # type: ignore[union-attr]
    return port


@pytest.fixture
def synced(files: Files, trygg: Callable[..., int]) -> Iterator[Broker]:
    """A Mosquitto reading the accounts that `trygg broker sync` wrote, as deployed."""
    assert trygg("broker", "secret") == 0
    assert trygg("broker", "sync", "--no-reload") == 0  # mosquitto is not running yet
    with mosquitto(broker_port(), settings=files.mosquitto_settings()) as broker:
        yield broker


def password(files: Files, account: str) -> str:
    return derive_password(read_secret(files.secret), account)


@contextlib.asynccontextmanager
async def client(broker: Broker, user: str, secret: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, username=user, password=secret,
                              timeout=5) as c:
        yield c


@contextlib.asynccontextmanager
async def unit(broker: Broker, files: Files, cid: str) -> AsyncIterator[aiomqtt.Client]:
    async with client(broker, cid, password(files, cid)) as c:
        yield c


@contextlib.asynccontextmanager
async def gateway(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    async with client(broker, GATEWAY_USER, GATEWAY_PASSWORD) as c:
        yield c


async def next_message(c: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(aiter(c.messages)), timeout_s)


# -- accounts and ACL --------------------------------------------------------------------


async def test_a_unit_publishes_its_own_requests_and_the_gateway_reads_them(
        synced: Broker, files: Files) -> None:
    async with gateway(synced) as gw, unit(synced, files, UNIT) as u:
        await gw.subscribe(f"{ROOT}/dev/+/mrq", qos=1)
        await u.publish(f"{ROOT}/dev/{UNIT}/mrq", b"<mrq/>", qos=1)
        message = await next_message(gw)

    assert message.topic.value == f"{ROOT}/dev/{UNIT}/mrq"


async def test_a_unit_cannot_publish_requests_for_another_unit(
        synced: Broker, files: Files) -> None:
    async with gateway(synced) as gw, unit(synced, files, UNIT) as u:
        await gw.subscribe(f"{ROOT}/dev/+/mrq", qos=1)
        await u.publish(f"{ROOT}/dev/{OTHER_UNIT}/mrq", b"forged", qos=1)
        await u.publish(f"{ROOT}/dev/{UNIT}/mrq", b"own", qos=1)  # ordered after the forgery
        message = await next_message(gw)

    assert (message.topic.value, message.payload) == (f"{ROOT}/dev/{UNIT}/mrq", b"own")


async def test_a_unit_reads_its_own_answers_and_availability_but_not_another_units(
        synced: Broker, files: Files) -> None:
    async with gateway(synced) as gw, unit(synced, files, UNIT) as u:
        await u.subscribe(f"{ROOT}/dev/+/mrs", qos=1)
        await u.subscribe(f"{ROOT}/dev/{OTHER_UNIT}/mrs", qos=1)
        await u.subscribe(f"{ROOT}/dev/+/availability", qos=1)
        await gw.publish(f"{ROOT}/dev/{OTHER_UNIT}/mrs", b"not yours", qos=1)
        await gw.publish(f"{ROOT}/dev/{OTHER_UNIT}/availability", b"not yours", qos=1)
        await gw.publish(f"{ROOT}/dev/{UNIT}/mrs", b"yours", qos=1)
        await gw.publish(f"{ROOT}/dev/{UNIT}/availability", b"yours", qos=1)
        first, second = await next_message(u), await next_message(u)

    assert {first.topic.value, second.topic.value} == {
        f"{ROOT}/dev/{UNIT}/mrs", f"{ROOT}/dev/{UNIT}/availability"}


async def test_a_unit_cannot_answer_another_unit(synced: Broker, files: Files) -> None:
    async with unit(synced, files, OTHER_UNIT) as victim, unit(synced, files, UNIT) as u:
        await victim.subscribe(f"{ROOT}/dev/{OTHER_UNIT}/#", qos=1)
        await u.publish(f"{ROOT}/dev/{OTHER_UNIT}/mrs", b"<mrs>forged</mrs>", qos=1)
        async with gateway(synced) as gw:
            await gw.publish(f"{ROOT}/dev/{OTHER_UNIT}/mrs", b"real", qos=1)
            message = await next_message(victim)

    assert message.payload == b"real"


async def test_a_team_reads_its_own_callouts_but_not_another_teams(
        synced: Broker, files: Files) -> None:
    team = f"team-{TEAM}"
    async with gateway(synced) as gw, client(synced, team, password(files, team)) as app:
        await app.subscribe(f"{ROOT}/team/#", qos=1)
        await app.subscribe(f"{ROOT}/dev/+/mrq", qos=1)
        await gw.publish(f"{ROOT}/team/{OTHER_TEAM}/callout", b"theirs", qos=1)
        async with unit(synced, files, UNIT) as u:
            await u.publish(f"{ROOT}/dev/{UNIT}/mrq", b"<mrq/>", qos=1)
        await gw.publish(f"{ROOT}/team/{TEAM}/callout", b"ours", qos=1)
        message = await next_message(app)

    assert (message.topic.value, message.payload) == (f"{ROOT}/team/{TEAM}/callout", b"ours")


async def test_a_team_cannot_publish_requests(synced: Broker, files: Files) -> None:
    team = f"team-{TEAM}"
    async with gateway(synced) as gw, client(synced, team, password(files, team)) as app:
        await gw.subscribe(f"{ROOT}/dev/+/mrq", qos=1)
        await app.publish(f"{ROOT}/dev/{team}/mrq", b"forged", qos=1)  # what %u would allow
        await app.publish(f"{ROOT}/dev/{UNIT}/mrq", b"forged", qos=1)
        async with unit(synced, files, UNIT) as u:
            await u.publish(f"{ROOT}/dev/{UNIT}/mrq", b"real", qos=1)
        message = await next_message(gw)

    assert message.payload == b"real"


async def test_a_team_cannot_send_another_team_a_callout(synced: Broker, files: Files) -> None:
    team, other = f"team-{TEAM}", f"team-{OTHER_TEAM}"
    async with gateway(synced) as gw, client(synced, team, password(files, team)) as app, \
            client(synced, other, password(files, other)) as other_app:
        await other_app.subscribe(f"{ROOT}/team/{OTHER_TEAM}/#", qos=1)
        await app.publish(f"{ROOT}/team/{OTHER_TEAM}/callout", b"forged", qos=1)
        await gw.publish(f"{ROOT}/team/{OTHER_TEAM}/callout", b"real", qos=1)
        message = await next_message(other_app)

    assert message.payload == b"real"


async def test_a_coordinator_reads_its_own_providers_escalations_and_nothing_else(
        synced: Broker, files: Files) -> None:
    coordinator = f"provider-{PROVIDER}"
    async with gateway(synced) as gw, client(synced, coordinator,
                                             password(files, coordinator)) as app:
        await app.subscribe(f"{ROOT}/provider/#", qos=1)
        await app.subscribe(f"{ROOT}/team/#", qos=1)
        await gw.publish(f"{ROOT}/provider/{OTHER_PROVIDER}/escalation", b"theirs", qos=1)
        await gw.publish(f"{ROOT}/team/solrosen-kungsangen/callout", b"a team's", qos=1)
        await gw.publish(f"{ROOT}/provider/{PROVIDER}/escalation", b"ours", qos=1)
        message = await next_message(app)

    assert (message.topic.value, message.payload) == (
        f"{ROOT}/provider/{PROVIDER}/escalation", b"ours")


async def test_a_coordinator_cannot_send_another_provider_an_escalation(
        synced: Broker, files: Files) -> None:
    coordinator, other = f"provider-{PROVIDER}", f"provider-{OTHER_PROVIDER}"
    async with gateway(synced) as gw, client(
            synced, coordinator, password(files, coordinator)) as app, client(
            synced, other, password(files, other)) as other_app:
        await other_app.subscribe(f"{ROOT}/provider/{OTHER_PROVIDER}/#", qos=1)
        await app.publish(f"{ROOT}/provider/{OTHER_PROVIDER}/escalation", b"forged", qos=1)
        await gw.publish(f"{ROOT}/provider/{OTHER_PROVIDER}/escalation", b"real", qos=1)
        message = await next_message(other_app)

    assert message.payload == b"real"


async def test_a_lock_reads_its_own_commands_and_nobody_else_reads_or_sends_them(
        files: Files, db: Database, trygg: Callable[..., int]) -> None:
    lock, other_lock = "300001", "300002"  # the shipped registry's lock, and one more
    db.transaction(lambda s: s.add(Device(cid=other_lock, kind="lock")))
    trygg("broker", "secret")
    trygg("broker", "sync", "--no-reload")
    with mosquitto(broker_port(), settings=files.mosquitto_settings()) as broker:
        async with gateway(broker) as gw, unit(broker, files, lock) as door, \
                unit(broker, files, other_lock) as other, unit(broker, files, UNIT) as u:
            await door.subscribe(f"{ROOT}/dev/+/cmd", qos=1)
            await u.subscribe(f"{ROOT}/dev/+/cmd", qos=1)
            await u.subscribe(f"{ROOT}/dev/{UNIT}/mrs", qos=1)
            await other.publish(f"{ROOT}/dev/{lock}/cmd", b"forged", qos=1)
            await gw.publish(f"{ROOT}/dev/{other_lock}/cmd", b"not yours", qos=1)
            await gw.publish(f"{ROOT}/dev/{lock}/cmd", b"yours", qos=1)
            await gw.publish(f"{ROOT}/dev/{UNIT}/mrs", b"the unit's own", qos=1)
            to_lock, to_unit = await next_message(door), await next_message(u)

    assert (to_lock.topic.value, to_lock.payload) == (f"{ROOT}/dev/{lock}/cmd", b"yours")
    assert to_unit.payload == b"the unit's own"  # a base unit reads no commands at all
    assert f"topic read {ROOT}/dev/{UNIT}/cmd" not in files.acl.read_text()


async def test_a_wrong_password_is_refused(synced: Broker, files: Files) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with client(synced, UNIT, password(files, OTHER_UNIT)):
            pass

    assert "not authorized" in str(refused.value).lower()  # CONNACK's refusal


async def test_an_anonymous_client_is_refused(synced: Broker) -> None:
    with pytest.raises(aiomqtt.MqttCodeError):
        async with aiomqtt.Client(synced.host, synced.port, timeout=5):
            pass


async def test_a_removed_unit_is_refused_after_the_next_sync(
        synced: Broker, files: Files, db: Database, trygg: Callable[..., int]) -> None:
    async with unit(synced, files, UNIT) as u:
        db.transaction(lambda s: s.execute(delete(Device).where(Device.cid == UNIT)))
        assert trygg("broker", "sync") == 0  # rewrites the files and signals mosquitto
        # Mosquitto drops a connection whose account is gone at the reload itself.
        with pytest.raises(aiomqtt.MqttError):
            await next_message(u)

    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with unit(synced, files, UNIT):
            pass
    async with unit(synced, files, OTHER_UNIT):
        pass  # the others still sign in

    assert "not authorized" in str(refused.value).lower()  # CONNACK's refusal


async def test_trygg_answers_a_unit_through_the_synced_broker(
        synced: Broker, files: Files) -> None:
    settings = Settings(http_port=free_port())
    async with Service(settings, roles={Role.GATEWAY}), DeviceLink(
            synced.host, synced.port, root=ROOT, username=UNIT,
            password=password(files, UNIT)) as link:
        with link.expect(UNIT, "C1") as answers:
            await link.publish(UNIT, b"<mrq><ref>C1</ref><cid>100001</cid><dty>3</dty></mrq>")
            answer = await asyncio.wait_for(answers.get(), 5)

    assert answer.snu == 0


async def test_a_unit_cannot_take_the_gateways_client_id_and_throw_it_off(
        synced: Broker, files: Files) -> None:
    """Mosquitto throws a client off when another connects under its id; the gateway's
    id is keyed with its own password, so no unit's account can work it out."""
    settings = Settings(http_port=free_port())
    guessable = "trygg-gateway-" + hashlib.sha256(ROOT.encode()).hexdigest()[:8]
    async with Service(settings, roles={Role.GATEWAY}) as service:
        losses = REGISTRY.get_sample_value("trygg_mqtt_connection_losses_total",
                                           {"link": "devices"}) or 0.0
        async with aiomqtt.Client(synced.host, synced.port, username=UNIT,
                                  password=password(files, UNIT), identifier=guessable,
                                  timeout=5), DeviceLink(
                synced.host, synced.port, root=ROOT, username=OTHER_UNIT,
                password=password(files, OTHER_UNIT)) as link:
            with link.expect(OTHER_UNIT, "C2") as answers:
                await link.publish(OTHER_UNIT, b"<mrq><ref>C2</ref><cid>" + OTHER_UNIT.encode()
                                   + b"</cid><dty>3</dty></mrq>")
                answer = await asyncio.wait_for(answers.get(), 5)
        after = REGISTRY.get_sample_value("trygg_mqtt_connection_losses_total",
                                          {"link": "devices"}) or 0.0
        identifier = service.link.identifier

    assert identifier != guessable and GATEWAY_PASSWORD not in (identifier or "")
    assert answer.snu == 0
    assert after == losses  # the gateway's link never dropped


# -- the files and commands --------------------------------------------------------------


def test_sync_gives_every_mqtt_device_and_team_an_account_and_no_dc09_account(
        files: Files, db: Database, trygg: Callable[..., int],
        capsys: pytest.CaptureFixture[str]) -> None:
    trygg("broker", "secret")  # the shipped registry has a lock, 300001, at K-1001
    capsys.readouterr()

    code = trygg("broker", "sync", "--no-reload")

    users = [line.split(":")[0] for line in files.passwords.read_text().splitlines()]
    assert code == 0
    assert users[0] == GATEWAY_USER
    assert {"100001", "100102", "300001", f"team-{TEAM}", f"provider-{PROVIDER}"} <= set(users)
    assert "4321" not in users  # a DC-09 account reports through a receiver
    assert len(users) == 1 + 6 + 4 + 10  # Trygg, 6 teams, 4 providers, 9 units and the lock
    assert "user 4321" not in files.acl.read_text()
    assert "pattern" not in files.acl.read_text()
    assert "10 devices, 6 teams, 4 providers' coordinators" in capsys.readouterr().out


def test_sync_writes_the_same_files_again_with_mode_0640(
        files: Files, trygg: Callable[..., int]) -> None:
    trygg("broker", "secret")
    trygg("broker", "sync", "--no-reload")
    first = files.passwords.read_bytes(), files.acl.read_bytes()

    trygg("broker", "sync", "--no-reload")

    assert (files.passwords.read_bytes(), files.acl.read_bytes()) == first
    assert stat.S_IMODE(files.passwords.stat().st_mode) == 0o640
    assert stat.S_IMODE(files.acl.stat().st_mode) == 0o640
    assert not [p for p in files.acl.parent.iterdir() if p.name.startswith(".")]


def test_sync_never_prints_or_logs_a_password(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    trygg("broker", "secret")
    with structlog.testing.capture_logs() as logs:
        trygg("broker", "sync", "--no-reload")

    out = capsys.readouterr()
    said = out.out + out.err + repr(logs)
    assert GATEWAY_PASSWORD not in said
    assert password(files, UNIT) not in said


def test_the_secret_is_created_once_with_mode_0600(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert trygg("broker", "secret") == 0
    secret = files.secret.read_bytes()

    again = trygg("broker", "secret")

    assert stat.S_IMODE(files.secret.stat().st_mode) == 0o600
    assert again == 2
    assert "exists already" in capsys.readouterr().err
    assert files.secret.read_bytes() == secret


def test_sync_refuses_without_a_secret(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    code = trygg("broker", "sync")

    assert code == 2
    assert "trygg broker secret" in capsys.readouterr().err
    assert not files.passwords.exists()


def test_sync_refuses_when_trygg_has_no_broker_credentials(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    trygg("broker", "secret")
    monkeypatch.setenv("TRYGG_MQTT_URL", "mqtts://broker.example:8883")

    code = trygg("broker", "sync")

    assert code == 2
    assert "TRYGG_MQTT_URL has no user name and password" in capsys.readouterr().err


def test_sync_says_what_to_do_without_a_pid_file(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    trygg("broker", "secret")
    monkeypatch.delenv("TRYGG_BROKER_PID_FILE")

    code = trygg("broker", "sync")

    assert code == 0
    assert "systemctl reload mosquitto" in capsys.readouterr().out


def test_sync_fails_when_mosquitto_is_not_running(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    trygg("broker", "secret")

    code = trygg("broker", "sync")  # the pid file does not exist

    assert code == 2
    assert "not told to reload" in capsys.readouterr().err
    assert files.acl.exists()


async def test_the_printed_password_signs_the_unit_in(
        synced: Broker, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert trygg("broker", "password", UNIT) == 0
    printed = capsys.readouterr().out.splitlines()[-1]  # the password is the last line

    async with client(synced, UNIT, printed) as c:
        await c.publish(f"{ROOT}/dev/{UNIT}/mrq", b"<mrq/>", qos=1)

    assert len(printed) == 26 and printed.isalnum()


async def test_the_printed_password_signs_a_coordinator_in(
        synced: Broker, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    coordinator = f"provider-{PROVIDER}"
    capsys.readouterr()
    assert trygg("broker", "password", coordinator) == 0
    out = capsys.readouterr()
    printed = out.out.splitlines()[-1]

    async with client(synced, coordinator, printed) as c:
        await c.subscribe(f"{ROOT}/provider/{PROVIDER}/#", qos=1)

    assert "not in the registry" not in out.err


def test_password_refuses_trygg_s_own_account_and_unknown_names(
        files: Files, trygg: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    trygg("broker", "secret")

    own, odd = trygg("broker", "password", GATEWAY_USER), trygg("broker", "password", "unit-7")

    assert (own, odd) == (2, 2)
    assert GATEWAY_PASSWORD not in capsys.readouterr().out


def test_add_commands_gives_a_broker_group_with_sync_password_and_secret() -> None:
    parser = argparse.ArgumentParser(prog="trygg")
    add_commands(parser.add_subparsers(dest="command", required=True))

    sync = parser.parse_args(["broker", "sync"])
    password_args = parser.parse_args(["broker", "password", "100001"])
    secret = parser.parse_args(["broker", "secret"])

    assert callable(sync.func) and not sync.no_reload
    assert password_args.account == "100001" and callable(password_args.func)
    assert callable(secret.func)


# -- Trygg's own client over TLS ---------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
                 server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    elif server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and
    an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _certificate("Trygg test CA", ca_key, "Trygg test CA", ca_key, ca=True)
    other = _certificate("Someone else's CA", other_key, "Someone else's CA", other_key,
                         ca=True)
    return Pki(
        ca=_write_cert(d / "ca.crt", ca),
        server_cert=_write_cert(d / "server.crt", _certificate(
            "localhost", server_key, "Trygg test CA", ca_key, server=True)),
        server_key=_write_key(d / "server.key", server_key),
        client_cert=_write_cert(d / "client.crt", _certificate(
            GATEWAY_USER, client_key, "Trygg test CA", ca_key)),
        client_key=_write_key(d / "client.key", client_key),
        other_ca=_write_cert(d / "other-ca.crt", other))


def tls_listener(pki: Pki, *, require_certificate: bool = False) -> str:
    return (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            f"require_certificate {str(require_certificate).lower()}\n")


@contextlib.asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[MqttLink]:
    task = asyncio.create_task(link.run(), name="test.mqtt")
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def first_failure(logs: Sequence[Mapping[str, object]], timeout_s: float = 10.0) -> str:
    """The error of the link's first failed connect, as it logs it."""
    async with asyncio.timeout(timeout_s):
        while True:
            for entry in logs:
                if entry["event"] == "mqtt_link_lost":
                    return str(entry["error"])
            await asyncio.sleep(0.02)


async def test_mqtt_link_connects_over_tls_with_the_ca_and_publishes_and_subscribes(
        pki: Pki) -> None:
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    with mosquitto(settings=f"allow_anonymous true\n{tls_listener(pki)}",
                   scheme="mqtts") as broker:
        target = Settings(mqtt_url=broker.url).mqtt
        assert target is not None and target.tls
        link = MqttLink("devices", target.host, target.port, subscriptions=["t/#"],
                        on_message=lambda topic, payload: received.put_nowait((topic, payload)),
                        tls=tls_parameters(ca_file=pki.ca))
        async with running(link):
            await link.wait_connected(timeout_s=10)
            await link.publish("t/x", b"over tls")
            message = await asyncio.wait_for(received.get(), 5)

    assert message == ("t/x", b"over tls")


async def test_mqtt_link_does_not_connect_to_a_broker_its_ca_did_not_sign(pki: Pki) -> None:
    with mosquitto(settings=f"allow_anonymous true\n{tls_listener(pki)}",
                   scheme="mqtts") as broker, structlog.testing.capture_logs() as logs:
        link = MqttLink("devices", broker.host, broker.port,
                        tls=tls_parameters(ca_file=pki.other_ca))
        async with running(link):
            error = await first_failure(logs)

            assert not link.connected
    assert "CERTIFICATE_VERIFY_FAILED" in error


async def test_mqtt_link_presents_its_client_certificate_when_the_broker_requires_one(
        pki: Pki) -> None:
    with mosquitto(settings=f"allow_anonymous true\n{tls_listener(pki, require_certificate=True)}",
                   scheme="mqtts") as broker:
        link = MqttLink("devices", broker.host, broker.port, tls=tls_parameters(
            ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key))
        async with running(link):
            await link.wait_connected(timeout_s=10)
            await link.publish("t/x", b"with a client certificate")

        assert link.state.value == "disconnected"


async def test_a_client_without_a_certificate_is_refused_when_one_is_required(
        pki: Pki) -> None:
    with mosquitto(settings=f"allow_anonymous true\n{tls_listener(pki, require_certificate=True)}",
                   scheme="mqtts") as broker, pytest.raises(aiomqtt.MqttError):
        # Under TLS 1.3 the refusal comes after the handshake, while the client waits for
        # CONNACK: it notices only when its timeout ends.
        async with aiomqtt.Client(broker.host, broker.port, timeout=2,
                                  tls_params=tls_parameters(ca_file=pki.ca)):
            pass


def test_tls_parameters_refuse_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"CA file .* cannot be read"):
        tls_parameters(ca_file=tmp_path / "missing.crt")


async def test_trygg_answers_a_unit_over_tls_with_the_synced_accounts(
        files: Files, pki: Pki, trygg: Callable[..., int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed shape: TLS, no anonymous clients, the ACL from the registry."""
    port = broker_port()
    monkeypatch.setenv("TRYGG_MQTT_URL",
                       f"mqtts://{GATEWAY_USER}:{GATEWAY_PASSWORD}@127.0.0.1:{port}")
    monkeypatch.setenv("TRYGG_MQTT_CA_FILE", str(pki.ca))
    trygg("broker", "secret")
    trygg("broker", "sync", "--no-reload")
    with mosquitto(port, settings=files.mosquitto_settings() + tls_listener(pki),
                   scheme="mqtts") as broker:
        settings = Settings(http_port=free_port())
        async with Service(settings, roles={Role.GATEWAY}), DeviceLink(
                broker.host, broker.port, root=ROOT, username=UNIT,
                password=password(files, UNIT), tls=tls_parameters(ca_file=pki.ca)) as link:
            with link.expect(UNIT, "T1") as answers:
                await link.publish(UNIT, b"<mrq><ref>T1</ref><cid>100001</cid></mrq>")
                answer = await asyncio.wait_for(answers.get(), 5)

    assert answer.snu == 0



def test_a_unit_with_a_hex_cid_gets_an_account_like_any_other() -> None:
    from trygg.broker_sync import accounts

    names = [a.name for a in accounts(b"s" * 32, ("trygg-gateway", "pw"), ["100001", "A1B2C3"],
                                      ["nattpatrull-bro"])]

    assert names == ["trygg-gateway", "team-nattpatrull-bro", "100001", "A1B2C3"]


def test_sync_never_migrates_the_database_it_reads(
        files: Files, trygg: Callable[..., int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.db"
    monkeypatch.setenv("TRYGG_DATABASE_URL", f"sqlite:///{old}")
    trygg("broker", "secret")
    db = Database(f"sqlite:///{old}")
    command.upgrade(alembic_config(db.engine), "0003")  # a service not yet upgraded

    refused = trygg("broker", "sync", "--no-reload")
    still = at_head(db.engine)
    db.close()

    assert refused == 2
    assert "not at the newest revision" in capsys.readouterr().err
    assert not still and not files.passwords.exists()
