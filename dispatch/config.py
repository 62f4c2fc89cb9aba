"""The municipality's configuration file (YAML), validated once into frozen models.

A bad file stops `trygg run` / `trygg import` with a message naming the field, rather
than surprising an operator at 03:00.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.errors import TryggError


class ConfigError(TryggError):
    """The configuration file is missing, not YAML, or does not validate."""


# A code becomes a level of an MQTT topic (`trygg/v1/team/{code}/callout`): a `+` or `#`
# cannot be published to at all, and a `/` would send to another team's topic.
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _topic_safe(value: str) -> str:
    if not CODE_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid code: 1 to 64 letters (a-z, A-Z), digits, '_', "
            "'.' or '-', starting with a letter or digit (a code is a level of an MQTT "
            "topic, so no '+', '#', '/', spaces or other characters)")
    return value


Code = Annotated[str, AfterValidator(_topic_safe)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Shifts(_Frozen):
    """Day is [day_start, night_start) local time; night is the rest, across midnight."""

    timezone: str = "Europe/Stockholm"
    day_start: time = time(7, 0)
    night_start: time = time(22, 0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Checked here, not at the first alarm: routing would fail on every alarm.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


EscalationAction = Literal["remind_team", "notify_coordinator", "red_flag"]


class EscalationStep(_Frozen):
    """A step of the chain after the call-out while nobody has checked in."""

    after_min: int = Field(ge=1, le=24 * 60)
    action: EscalationAction


class Timers(_Frozen):
    # The first reminder to the team; also the dashboard's 30-minute mark.
    reminder_after_min: int = Field(default=30, ge=1, le=24 * 60)
    # A responder of the call order who has not answered this long is passed over for
    # the next; after the list has gone round `call_rounds` times the operator is told.
    call_step_after_s: int = Field(default=120, ge=10, le=3600)
    call_rounds: int = Field(default=2, ge=1, le=10)
    # The chain after the call-out without check-in; none given: remind the team at
    # `reminder_after_min`, the provider's coordinator 15 minutes later, and a red flag
    # for the operator 15 minutes after that (30/45/60 by default).
    escalation: list[EscalationStep] | None = None
    # After the last step the team is reminded again this often, until someone checks in.
    repeat_reminder_min: int = Field(default=30, ge=1, le=24 * 60)

    @property
    def reminder_after(self) -> timedelta:
        return timedelta(minutes=self.reminder_after_min)

    @property
    def escalation_steps(self) -> list[EscalationStep]:
        if self.escalation is not None:
            return self.escalation
        first = self.reminder_after_min
        return [EscalationStep(after_min=first, action="remind_team"),
                EscalationStep(after_min=first + 15, action="notify_coordinator"),
                EscalationStep(after_min=first + 30, action="red_flag")]

    @field_validator("escalation")
    @classmethod
    def _ascending(cls, value: list[EscalationStep] | None) -> list[EscalationStep] | None:
        if value is not None:
            if not value:
                raise ValueError("escalation needs at least one step (leave it out for "
                                 "the default 30/45/60)")
            times = [step.after_min for step in value]
            if times != sorted(set(times)):
                raise ValueError(f"escalation steps must come in rising order of after_min, "
                                 f"each once: {times}")
        return value


class Handover(_Frozen):
    """What happens at 07:00 and 22:00 to an open alarm nobody has accepted yet.

    `hand_over`: it goes to the team the routes choose for the new shift (the night
    patrol at 22:00, the day provider at 07:00), on the timeline; `keep`: it stays with
    the team it was routed to. An accepted alarm always stays with whoever accepted it.
    """

    unaccepted: Literal["hand_over", "keep"] = "hand_over"


# As long as the registry's columns (dispatch/models.py): a longer value is refused here,
# on SQLite (which would store it) as on PostgreSQL (which would fail the write).
Name = Annotated[str, Field(max_length=200)]
Phone = Annotated[str, Field(max_length=64)]


class CallOrderEntry(_Frozen):
    name: Name
    phone: Phone | None = None


class TeamSpec(_Frozen):
    code: Code
    name: Name
    area: Code | None = None
    phone: Phone | None = None
    call_order: list[CallOrderEntry] = []


class CoordinatorSpec(_Frozen):
    """Whom the escalation chain tells when a team does not check in (45 minutes)."""

    name: Name
    phone: Phone | None = None


class ProviderSpec(_Frozen):
    code: Code
    name: Name
    kind: Literal["day", "night"]
    # The municipality's own home care (a private day provider keeps two key sets).
    municipal: bool = False
    coordinator: CoordinatorSpec | None = None
    teams: list[TeamSpec] = []


class AreaSpec(_Frozen):
    code: Code
    name: Name


class DeviceSpec(_Frozen):
    """A base unit or lock by its SCAIP cid (digits), or a DC-09 account (3-16 hex
    digits, as the panel reports it through an alarm receiver)."""

    cid: str = Field(pattern=r"^[0-9A-Fa-f]{1,32}$")
    kind: Literal["base_unit", "lock", "dc09_account"] = "base_unit"
    model: Annotated[str, Field(max_length=100)] | None = None
    # How often it must be heard and how late it may be; else its model's, else the
    # defaults (TRYGG_SUPERVISION_INTERVAL_S, TRYGG_SUPERVISION_TOLERANCE_S).
    supervision_interval_s: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    supervision_tolerance_s: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _cid_fits_kind(self) -> DeviceSpec:
        if self.kind == "dc09_account":
            if not 3 <= len(self.cid) <= 16:
                raise ValueError(f"a DC-09 account is 3 to 16 hex digits, not {self.cid!r}")
            # The codec reports accounts in upper case: so must the registry.
            object.__setattr__(self, "cid", self.cid.upper())
        elif not self.cid.isdigit():
            raise ValueError(f"a {self.kind}'s cid is digits only, not {self.cid!r}")
        return self


class ModelSupervision(_Frozen):
    interval_s: int = Field(ge=10, le=7 * 24 * 3600)
    tolerance_s: int = Field(default=600, ge=0, le=7 * 24 * 3600)


class SupervisionSpec(_Frozen):
    """Heartbeat intervals by device model (a model not listed uses the defaults)."""

    models: dict[str, ModelSupervision] = {}


class SiteSpec(_Frozen):
    code: Code
    kind: Literal["main", "extra"] = "main"
    address: Annotated[str, Field(max_length=300)]
    postal_code: Annotated[str, Field(max_length=16)] | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    area: Code
    door_name: Name | None = None
    devices: list[DeviceSpec] = []


class CustomerSpec(_Frozen):
    code: Code
    name: Name
    personal_number: Annotated[str, Field(max_length=32)] | None = None
    protected_identity: bool = False
    day_provider: Code | None = None
    sites: list[SiteSpec] = []


class MunicipalityConfig(_Frozen):
    municipality: str = "Demo"
    shifts: Shifts = Shifts()
    timers: Timers = Timers()
    handover: Handover = Handover()
    supervision: SupervisionSpec = SupervisionSpec()
    # Serial line settings for the DC-09 receivers (read by the gateway, see
    # gateway/serial_line.py); the lines themselves are TRYGG_SERIAL_PORTS.
    serial: dict[str, Any] = {}
    # The route tree (dispatch/route_tree.py, checked by `trygg routes check`); none:
    # the day/night rule of `shifts`.
    routing: dict[str, Any] = {}
    areas: list[AreaSpec] = []
    providers: list[ProviderSpec] = []
    customers: list[CustomerSpec] = []

    @model_validator(mode="after")
    def _references_resolve(self, info: ValidationInfo) -> MunicipalityConfig:
        # Records are matched by code on import: a code used twice would make the
        # second record silently overwrite the first.
        _once("area", (a.code for a in self.areas))
        _once("provider", (p.code for p in self.providers))
        _once("team", (t.code for p in self.providers for t in p.teams))
        _once("customer", (c.code for c in self.customers))
        _once("site", (s.code for c in self.customers for s in c.sites))
        # A partial document (an API edit) may refer to records already in the
        # database; the import checks those references against it instead.
        if info.context and info.context.get("partial"):
            return self
        areas = {a.code for a in self.areas}
        day_providers = {p.code for p in self.providers if p.kind == "day"}
        for p in self.providers:
            for t in p.teams:
                if t.area is not None and t.area not in areas:
                    raise ValueError(f"team {t.code}: unknown area {t.area!r}")
                if p.kind == "night" and t.area is None:
                    raise ValueError(f"night team {t.code} needs an area")
        cids: set[str] = set()
        for c in self.customers:
            if c.day_provider is not None and c.day_provider not in day_providers:
                raise ValueError(f"customer {c.code}: unknown day provider {c.day_provider!r}")
            for s in c.sites:
                if s.area not in areas:
                    raise ValueError(f"site {s.code}: unknown area {s.area!r}")
                for d in s.devices:
                    if d.cid in cids:
                        raise ValueError(f"device {d.cid} is listed twice")
                    cids.add(d.cid)
        return self


def _once(kind: str, codes: Iterable[str]) -> None:
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            raise ValueError(f"{kind} {code} is listed twice")
        seen.add(code)


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: Path) -> MunicipalityConfig:
    try:
        # libyaml's loader where it is built in: a registry of 20,000 units parses in
        # seconds instead of half a minute.
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return MunicipalityConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid configuration:\n{exc}") from exc
