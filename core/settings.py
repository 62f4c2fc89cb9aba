"""Runtime settings from the environment (TRYGG_*), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "config" / "municipality.yaml"
# One database for every `trygg` command and `scripts/run` alike: a token that
# `trygg user add` prints must work in the dashboard that `scripts/run` started.
DEFAULT_DATABASE_URL = f"sqlite:///{ROOT / 'var' / 'trygg.db'}"


class MqttTarget:
    """host and port parsed from an mqtt://host:port URL; mqtts:// is the same over TLS."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parsed.hostname:
            raise ValueError(f"not an mqtt://host:port or mqtts://host:port URL: {url!r}")
        self.host: str = parsed.hostname
        self.tls: bool = parsed.scheme in ("mqtts", "ssl")
        self.port: int = parsed.port or (8883 if self.tls else 1883)
        self.username = parsed.username
        self.password = parsed.password


class Settings(BaseSettings):
    """Everything `trygg run` needs; each field is TRYGG_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRYGG_", frozen=True)

    # No broker configured means: start the embedded one.
    mqtt_url: str | None = None
    mqtt_topic_root: str = "trygg/v1"
    embedded_mqtt_port: int = 1884
    database_url: str = DEFAULT_DATABASE_URL
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # Where `trygg run` puts its gateway process's /healthz, /readyz, /metrics
    # (default: http_port + 1).
    gateway_http_port: int | None = Field(default=None, ge=1, le=65535)
    config: Path | None = None
    # The route tree in a file of its own (else the config file's `routing` section).
    # Either file is watched: a valid change routes the next alarms, a bad one is
    # refused with the place and the reason, and the running rules stay.
    routing_file: Path | None = None
    routing_reload_s: float = Field(default=5.0, gt=0)
    log_level: str = "info"
    # How often the durable timers are swept; the deadline itself lives in the database.
    timer_sweep_s: float = Field(default=1.0, gt=0)
    # A frame with the same idempotency key (cid + ref + content) is a resend only this
    # long after the key was last seen; later it is a new message (counters restart and
    # wrap). Units resend on HOLD for at most 30 minutes.
    resend_window_s: float = Field(default=3600.0, gt=0)
    # Heartbeats are not stored: last-seen is kept in memory and written this often.
    last_seen_flush_s: float = Field(default=5.0, gt=0)
    # Processed inbox events are deleted after this many days; their raw frames (free
    # text may carry personal data) are blanked much sooner.
    event_retention_days: float = Field(default=90.0, gt=0)
    raw_frame_retention_days: float = Field(default=7.0, gt=0)
    retention_interval_s: float = Field(default=60.0, gt=0)
    # Every device must be heard within its interval plus the tolerance, or it raises a
    # link fault. These are the defaults for devices whose model and registry entry say
    # nothing; the interval is also the heartbeat interval (hbi) SCAIP units are given.
    supervision_interval_s: float = Field(default=3600.0, ge=60)
    supervision_tolerance_s: float = Field(default=600.0, ge=0)
    supervision_sweep_s: float = Field(default=10.0, gt=0)
    # So many units of one area with the same fault within the window are one incident.
    mass_event_units: int = Field(default=20, ge=2)
    mass_event_window_s: float = Field(default=120.0, gt=0)
    # DC-09 alarm receivers on serial lines (comma-separated device paths; baud rate and
    # the rest per line in the configuration file's `serial:` section) and over TCP.
    serial_ports: str = ""
    dc09_tcp: str | None = None  # host:port; off when unset
    # A DC-09 timestamp this far behind or ahead of our clock is refused (NAK).
    dc09_time_past_s: float = Field(default=40.0, gt=0)
    dc09_time_future_s: float = Field(default=20.0, gt=0)
    # One line per account: `ACCOUNT HEXKEY` (AES-128/192/256), for encrypted DC-09.
    dc09_keys_file: Path | None = None
    # Trygg's own MQTT client over TLS (an mqtts:// TRYGG_MQTT_URL): the CA that signed the
    # broker's certificate (default: the system's), and a client certificate if the broker
    # asks for one.
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    # `trygg broker sync`: where Mosquitto reads its accounts and ACL, how it is told to
    # reload them (the pid file of a running mosquitto gets SIGHUP), and the secret the
    # devices' and teams' broker passwords are derived from.
    broker_password_file: Path | None = None
    broker_acl_file: Path | None = None
    broker_pid_file: Path | None = None
    broker_secret_file: Path | None = None
    # Sign-in: a session ends a shift's length after it began, or after this long without
    # a request (an open dashboard's live stream counts: only a closed one goes idle).
    session_max_s: float = Field(default=12 * 3600.0, gt=0)
    session_idle_s: float = Field(default=1800.0, gt=0)
    # So many failed sign-ins for one user, or from one address, within the window lock
    # further attempts (the right password included) until the window has passed.
    sign_in_max_failures: int = Field(default=5, ge=1)
    sign_in_window_s: float = Field(default=900.0, gt=0)
    # Mark the session cookie Secure (sent over HTTPS only): on behind a TLS proxy.
    cookie_secure: bool = False
    # The proxies in front of Trygg whose X-Forwarded-For is trusted (comma-separated
    # addresses); none by default, so no client can choose the address it is locked out
    # and audited by.
    forwarded_allow_ips: str = ""
    # Request bodies larger than this are refused (413) before they are read.
    max_request_bytes: int = Field(default=1_000_000, ge=1024)

    @field_validator("mqtt_url")
    @classmethod
    def _valid_mqtt_url(cls, v: str | None) -> str | None:
        if v:
            MqttTarget(v)
        return v

    @field_validator("dc09_tcp")
    @classmethod
    def _valid_host_port(cls, v: str | None) -> str | None:
        if v:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError(f"TRYGG_DC09_TCP must be host:port, not {v!r}")
        return v

    @property
    def serial_paths(self) -> list[str]:
        return [p.strip() for p in self.serial_ports.split(",") if p.strip()]

    @property
    def dc09_tcp_address(self) -> tuple[str, int] | None:
        if not self.dc09_tcp:
            return None
        host, _, port = self.dc09_tcp.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def mqtt(self) -> MqttTarget | None:
        return MqttTarget(self.mqtt_url) if self.mqtt_url else None
