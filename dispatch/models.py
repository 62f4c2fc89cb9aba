"""Tables of the dispatch side: the registry (who lives where, who responds) and alarms.

Personal data (names, personal numbers, addresses) lives only here, in the database; it
never goes into logs or metrics. Times are aware UTC (`UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime


class AlarmState(StrEnum):
    RECEIVED = "received"
    CALLED_OUT = "called_out"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    CLOSED = "closed"


# Open, and nobody on site yet: the 30-minute clock runs and reminders fire.
AWAITING_CHECK_IN = (AlarmState.RECEIVED, AlarmState.CALLED_OUT, AlarmState.ACCEPTED)

OPEN_STATES = (
    AlarmState.RECEIVED,
    AlarmState.CALLED_OUT,
    AlarmState.ACCEPTED,
    AlarmState.ON_SITE,
)


class Area(Base):
    __tablename__ = "areas"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Provider(Base):
    """A day provider (chosen by the customer) or the municipal night organisation."""

    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # "day" | "night"
    # The municipality's own home care, not a private provider: a private one keeps two
    # key sets and hands one to the night patrol (004 §8.1).
    municipal: Mapped[bool] = mapped_column(Boolean, default=False,
                                            server_default=text("false"))
    # Whom the escalation chain tells when a team does not check in (45 minutes).
    coordinator_name: Mapped[str | None] = mapped_column(String(200))
    coordinator_phone: Mapped[str | None] = mapped_column(String(64))
    teams: Mapped[list[Team]] = relationship(back_populates="provider", order_by="Team.code")


class Team(Base):
    """A responder team with its own phone and call order; night patrols have an area."""

    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    area_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"))
    phone: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[Provider] = relationship(back_populates="teams")
    members: Mapped[list[TeamMember]] = relationship(
        back_populates="team", order_by="TeamMember.position", cascade="all, delete-orphan"
    )


class TeamMember(Base):
    """One entry of a team's call order (ringordning): position 1 is called first."""

    __tablename__ = "team_members"
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(64))
    team: Mapped[Team] = relationship(back_populates="members")


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    personal_number: Mapped[str | None] = mapped_column(String(32))
    protected_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    day_provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    day_provider: Mapped[Provider | None] = relationship()
    sites: Mapped[list[Site]] = relationship(back_populates="customer", order_by="Site.code")


class Site(Base):
    """An address with an alarm: the main one or an extra one (e.g. a summer house)."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(16), default="main")  # "main" | "extra"
    address: Mapped[str] = mapped_column(String(300))
    postal_code: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(100))
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"))
    door_name: Mapped[str | None] = mapped_column(String(200))
    customer: Mapped[Customer] = relationship(back_populates="sites")
    area: Mapped[Area] = relationship()
    devices: Mapped[list[Device]] = relationship(back_populates="site", order_by="Device.cid")


OWN_SUPERVISION = ("supervision_interval_s IS NOT NULL "
                   "OR supervision_tolerance_s IS NOT NULL")


class Device(Base):
    """A registered device: a base unit or lock by its SCAIP controller id, or a DC-09
    account (an alarm panel or dialler reporting through a receiver) by its account."""

    __tablename__ = "devices"
    cid: Mapped[str] = mapped_column(String(32), primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(32), default="base_unit")  # | "lock" | "dc09_account"
    model: Mapped[str | None] = mapped_column(String(100))
    # How often it must be heard, and how late it may be before it counts as quiet; None:
    # its model's interval from the configuration, else TRYGG_SUPERVISION_*.
    supervision_interval_s: Mapped[int | None] = mapped_column(Integer)
    supervision_tolerance_s: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[Site | None] = relationship(back_populates="devices")

    __table_args__ = (
        # The few devices with an interval of their own, which supervision judges one by
        # one every sweep: found without reading the whole fleet.
        Index("ix_devices_own_supervision", "cid",
              sqlite_where=text(OWN_SUPERVISION), postgresql_where=text(OWN_SUPERVISION)),
    )


class Alarm(Base):
    """One alarm and its life. The routing decision is frozen on the row when it is made."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(primary_key=True)
    cid: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # The event that raised it: an id only, since retention deletes old events.
    source_event_id: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    unknown_device: Mapped[bool] = mapped_column(Boolean, default=False)
    # frozen routing decision
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    team_code: Mapped[str | None] = mapped_column(String(64))
    team_name: Mapped[str | None] = mapped_column(String(200))
    team_phone: Mapped[str | None] = mapped_column(String(64))
    route_reason: Mapped[str] = mapped_column(String(32))
    shift: Mapped[str | None] = mapped_column(String(8))  # "day" | "night"
    call_order: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The team's provider, frozen with the team: response-time reports group by it.
    provider_code: Mapped[str | None] = mapped_column(String(64))
    # Teams of routes that matched with `continue`: told of the alarm, not responsible.
    also_teams: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    # The escalation snapshot (dispatch/escalation.py), copied when the call-out starts:
    # a later configuration change does not move a running chain.
    chain: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Where the call chain is: the index into call_order repeated `rounds` times, and
    # the token every scheduled step carries; a step with another token is stale.
    call_step: Mapped[int | None] = mapped_column(Integer)
    call_token: Mapped[str | None] = mapped_column(String(36))
    # The escalation chain's own token (reminders, coordinator, red flag).
    escalation_token: Mapped[str | None] = mapped_column(String(36))
    # the life
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    called_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by: Mapped[str | None] = mapped_column(String(200))
    on_site_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    close_reason: Mapped[str | None] = mapped_column(Text)
    closed_via: Mapped[str | None] = mapped_column(String(16))  # "unit" | "phone"
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminder_count: Mapped[int] = mapped_column(Integer, default=0)
    # The call order went round `rounds` times without an answer: the operator must act.
    no_answer_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    coordinator_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    red_flag_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    on_way_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the responder's presence was confirmed: "unit" (yellow then green), "responder"
    # (their phone), "phone" (told the operator), "false_alarm" (cancelled).
    kvittering: Mapped[str | None] = mapped_column(String(16))
    # A visit longer than the standard 15 minutes needs a written reason (004 §6.1).
    visit_reason: Mapped[str | None] = mapped_column(Text)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    repeat_count: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped with every audit entry: the dashboard keeps the copy with the highest.
    version: Mapped[int] = mapped_column(Integer, default=0)

    site: Mapped[Site | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    log: Mapped[list[AlarmLogEntry]] = relationship(
        back_populates="alarm", order_by="AlarmLogEntry.id", cascade="all, delete-orphan"
    )

    # Response-time reports read a period of alarms by when they arrived.
    __table_args__ = (Index("ix_alarms_received_at", "received_at"),)


class AlarmLogEntry(Base):
    """The audit trail: every named transition and every notable thing, timestamped."""

    __tablename__ = "alarm_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))  # a user name, "device:<cid>" or "system"
    note: Mapped[str | None] = mapped_column(Text)
    alarm: Mapped[Alarm] = relationship(back_populates="log")


class Deadline(Base):
    """A durable timer: swept by the service, fired once, survives a crash."""

    __tablename__ = "deadlines"
    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "call_step" | "escalation" | "handover"
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which step of the alarm's chain, and the chain's token when it was scheduled: a
    # step whose token the alarm no longer holds is stale and does nothing.
    step: Mapped[int | None] = mapped_column(Integer)
    token: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        Index("ix_deadlines_pending", "fired_at", "cancelled_at", "due_at"),
        # The sweep's question, answered from the pending rows only: fired ones pile up.
        Index("ix_deadlines_due", "due_at",
              sqlite_where=text("fired_at IS NULL AND cancelled_at IS NULL"),
              postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL")),
    )


class PresenceRecord(Base):
    """A check-in or check-out from a unit, matched to an alarm or not (then kept for follow-up)."""

    __tablename__ = "presence_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    cid: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "check_in" | "check_out"
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarms.id"))
    event_id: Mapped[int | None] = mapped_column(Integer)  # an id only, as on Alarm


class OutboxMessage(Base):
    """A message to a team, written in the same transaction as the decision to send it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(300))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Also in the payload, so a team app can drop a message it already has.
    message_id: Mapped[str | None] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set aside after too many failed tries: counted, alerted on, and out of the way.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Kept by the broker for late subscribers (a device's availability), not a team message.
    retain: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (  # messages still to send, in order, as for the event inbox
        Index("ix_outbox_unsent", "id",
              sqlite_where=text("sent_at IS NULL AND failed_at IS NULL"),
              postgresql_where=text("sent_at IS NULL AND failed_at IS NULL")),
    )


class TechnicalKind(StrEnum):
    """What is wrong with a device: a work item for the alarm manager, not a help call."""

    LINK_FAULT = "link_fault"
    MAINS_LOST = "mains_lost"
    BATTERY_LOW = "battery_low"
    BATTERY_FAULT = "battery_fault"
    TAMPER = "tamper"


class TechnicalState(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"


class TechnicalAlarm(Base):
    """A device fault: opened by its event (or by supervision), cleared by the restoring
    event or by hand with a note. No call-out and no 30-minute clock."""

    __tablename__ = "technical_alarms"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed on its own: a batch looks up its devices' faults by cid (see
    # technical.TechnicalBook), which neither index below serves.
    cid: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))  # "device" | "supervision"
    # The device's area when it opened (frozen, like an alarm's route): what groups
    # a power cut into one incident.
    area_code: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # For a link fault: when the device was last heard before it went quiet.
    quiet_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_by: Mapped[str | None] = mapped_column(String(200))
    clear_note: Mapped[str | None] = mapped_column(Text)
    source_event_id: Mapped[int | None] = mapped_column(Integer)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    log: Mapped[list[TechnicalLogEntry]] = relationship(
        back_populates="technical_alarm", order_by="TechnicalLogEntry.id",
        cascade="all, delete-orphan")

    __table_args__ = (
        # At most one open fault of a kind per device: a repeat is a line in its trail.
        Index("uq_technical_alarms_open", "cid", "kind", unique=True,
              sqlite_where=text("state = 'open'"), postgresql_where=text("state = 'open'")),
        Index("ix_technical_alarms_state", "state", "opened_at"),
    )


class TechnicalLogEntry(Base):
    """The trail of a technical alarm: opened, repeated, cleared (and by whom, why)."""

    __tablename__ = "technical_alarm_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    technical_alarm_id: Mapped[int] = mapped_column(ForeignKey("technical_alarms.id"),
                                                    index=True)
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    technical_alarm: Mapped[TechnicalAlarm] = relationship(back_populates="log")


class Incident(Base):
    """Many units of one area with the same fault at once (a power cut, a mast down):
    shown to the operator as one row that grows and shrinks, not hundreds."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "mains_lost" | "link_fault"
    area_code: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(8))  # "open" | "closed"
    count: Mapped[int] = mapped_column(Integer, default=0)  # units affected now
    peak: Mapped[int] = mapped_column(Integer, default=0)  # the most at once
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("uq_incidents_open", "kind", "area_code", unique=True,
              sqlite_where=text("state = 'open'"), postgresql_where=text("state = 'open'")),
    )


class User(Base):
    """A person (or a script) who signs in: one role; a responder also has a team."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # see dispatch.api.roles.ROLES
    # A responder sees their team's alarms only (the code, not a key: teams come and go
    # in the registry; a responder of a team that is gone sees nothing).
    team_code: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2; None: no sign-in
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    credentials: Mapped[list[Credential]] = relationship(
        back_populates="user", order_by="Credential.id", cascade="all, delete-orphan")


class Credential(Base):
    """A bearer secret that signs a user in, stored as its SHA-256 digest only: a session
    from a sign-in (expires after a shift, or when idle) or an API token for a script
    (lives until revoked)."""

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "session" | "token"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[User] = relationship(back_populates="credentials")


class SignInFailure(Base):
    """A failed sign-in, counted per user and per address to lock out password guessing.

    The name typed is kept only as a digest: people type their password into the name
    field now and then."""

    __tablename__ = "sign_in_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    name_digest: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_sign_in_failures_name", "name_digest", "at"),
        Index("ix_sign_in_failures_address", "address", "at"),
    )


class AuditEntry(Base):
    """Who viewed or changed what, when: append-only (the database refuses an UPDATE or a
    DELETE, see migration 0004). Ids and actions only, never the personal data itself."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)  # no key: users may be removed
    actor: Mapped[str] = mapped_column(String(100))  # the account name, or "cli" / "system"
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id", "at"),
                      Index("ix_audit_log_actor", "actor", "at"))


class OrderState(StrEnum):
    OPEN = "open"
    DONE = "done"
    WILL_NOT_BE_DELIVERED = "will_not_be_delivered"


class Order(Base):
    """An install, extra alarm, removal or provider-change order, worked through its
    steps by the providers, TFH and the alarm centre (see dispatch/orders.py)."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    state: Mapped[str] = mapped_column(String(24), index=True)
    # When the order arrived (by post or phone maybe earlier than it was registered):
    # every deadline counts from here.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    # The day provider it concerns, frozen (a provider change: the new one).
    provider_code: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)
    customer: Mapped[Customer] = relationship()
    site: Mapped[Site | None] = relationship()
    steps: Mapped[list[OrderStep]] = relationship(
        back_populates="order", order_by="OrderStep.position", cascade="all, delete-orphan")
    timeline: Mapped[list[OrderTimelineEntry]] = relationship(
        back_populates="order", order_by="OrderTimelineEntry.id", cascade="all, delete-orphan")
    notices: Mapped[list[OrderNotice]] = relationship(
        order_by="OrderNotice.id", cascade="all, delete-orphan")


class OrderStep(Base):
    """One step of an order: whose it is, when it is due, and once done who did it when."""

    __tablename__ = "order_steps"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(24))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(200))
    # What the step recorded (key numbers, the receipt, the unit's cid); "applies": false
    # for a step the order turned out not to need (a lock that stays).
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    order: Mapped[Order] = relationship(back_populates="steps")

    __table_args__ = (
        # The open steps by due time: the board's overdue list without reading every order.
        Index("ix_order_steps_open_due", "due_at",
              sqlite_where=text("done_at IS NULL"), postgresql_where=text("done_at IS NULL")),
    )


class OrderTimelineEntry(Base):
    """Everything that happened to an order, in order: created, each step, its end."""

    __tablename__ = "order_timeline"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    order: Mapped[Order] = relationship(back_populates="timeline")


class KeySet(Base):
    """A set of the customer's keys, by its number, and who holds it now."""

    __tablename__ = "key_sets"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str] = mapped_column(String(32))
    # "customer" | "day_provider" | "night_organisation" | "tfh", and which one (a code)
    holder: Mapped[str] = mapped_column(String(24))
    holder_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    history: Mapped[list[KeyHolding]] = relationship(
        back_populates="key_set", order_by="KeyHolding.id", cascade="all, delete-orphan")

    __table_args__ = (
        # One live set of a number per customer; a returned number may be issued again.
        Index("uq_key_sets_live_number", "customer_id", "number", unique=True,
              sqlite_where=text("returned_at IS NULL"),
              postgresql_where=text("returned_at IS NULL")),
    )


class KeyHolding(Base):
    """One hand-over of a key set: to whom, when, by which order, against which receipt."""

    __tablename__ = "key_holdings"
    id: Mapped[int] = mapped_column(primary_key=True)
    key_set_id: Mapped[int] = mapped_column(ForeignKey("key_sets.id"), index=True)
    holder: Mapped[str] = mapped_column(String(24))
    holder_code: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    # The receipt (kvittens) number, and to whom keys went back to the customer's side
    # (a person the customer approved): kept here, never in logs.
    receipt: Mapped[str | None] = mapped_column(String(64))
    received_by: Mapped[str | None] = mapped_column(String(200))
    key_set: Mapped[KeySet] = relationship(back_populates="history")


class OrderNotice(Base):
    """A text an order sends, as the routines word it (000): to the contact centre, the
    home-care group. Generated from the order, stored as sent; no personal number."""

    __tablename__ = "order_notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text)
