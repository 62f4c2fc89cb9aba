"""The registry in the database: import from the configuration file, and look teams up.

`import_config` is idempotent: every record is matched by its code (a device by its cid)
and updated in place, so importing the same file twice changes nothing, and importing an
edited file applies the edit. Nothing is deleted by an import, and a field a document
leaves out keeps its stored value: an API edit of a team's phone must not wipe its call
order, nor an edit of a customer's name their day provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import (
    ConfigError,
    CustomerSpec,
    MunicipalityConfig,
    ProviderSpec,
    SiteSpec,
)
from dispatch.models import Area, Customer, Device, Provider, Site, Team, TeamMember
from dispatch.routing import TeamRef

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class ImportCounts:
    created: int
    updated: int
    unchanged: int


class _Upserter:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.created = self.updated = self.unchanged = 0
        self._last_unchanged = False

    def upsert(self, model: type[M], key: dict[str, Any], values: dict[str, Any],
               given: BaseModel | None = None, columns: Mapping[str, str] | None = None) -> M:
        """Create with all `values`; update only the columns whose spec field was given.

        `columns` maps spec field names to column names where they differ.
        """
        row = self.session.execute(select(model).filter_by(**key)).scalar_one_or_none()
        if row is None:
            row = model(**key, **values)
            self.session.add(row)
            self.session.flush()
            self.created += 1
            self._last_unchanged = False
            return row
        if given is not None:
            names = columns or {}
            present = {names.get(f, f) for f in given.model_fields_set}
            values = {k: v for k, v in values.items() if k in present}
        changed = {k: v for k, v in values.items() if getattr(row, k) != v}
        for k, v in changed.items():
            setattr(row, k, v)
        if changed:
            self.updated += 1
        else:
            self.unchanged += 1
        self._last_unchanged = not changed
        return row

    def children_changed(self) -> None:
        """The record just upserted had its children replaced (a call order): an update."""
        if self._last_unchanged:
            self.unchanged -= 1
            self.updated += 1
            self._last_unchanged = False


def import_config(session: Session, config: MunicipalityConfig, *,
                  may_lift_protection: bool = False) -> ImportCounts:
    up = _Upserter(session)
    for area in config.areas:
        up.upsert(Area, {"code": area.code}, {"name": area.name}, area)
    session.flush()
    providers = {p.code: _import_provider(up, p) for p in config.providers}
    for c in config.customers:
        if not may_lift_protection:
            _keep_protection(session, c)
        day = _day_provider(session, providers, c.day_provider)
        customer = up.upsert(Customer, {"code": c.code}, {
            "name": c.name, "personal_number": c.personal_number,
            "protected_identity": c.protected_identity,
            "day_provider_id": day.id if day else None,
        }, c, {"day_provider": "day_provider_id"})
        for s in c.sites:
            _import_site(up, customer, s)
    session.flush()
    return ImportCounts(up.created, up.updated, up.unchanged)


def _keep_protection(session: Session, spec: CustomerSpec) -> None:
    """A protected identity is not lifted by an edit through the API: that is the
    municipality's decision, made in the registry file (`trygg import`), and until then
    the name and address are seen only through the audited reveal."""
    if "protected_identity" not in spec.model_fields_set or spec.protected_identity:
        return
    stored = session.execute(select(Customer.protected_identity).where(
        Customer.code == spec.code)).scalar_one_or_none()
    if stored:
        raise ConfigError(f"customer {spec.code} has a protected identity; it is not lifted "
                          "through the API (import the registry file with `trygg import` "
                          "on the server)")


def _day_provider(session: Session, known: dict[str, Provider],
                  code: str | None) -> Provider | None:
    if code is None:
        return None
    provider = known.get(code) or session.execute(
        select(Provider).where(Provider.code == code)).scalar_one_or_none()
    if provider is None or provider.kind != "day":  # the night organisation is no choice
        raise ConfigError(f"unknown day provider {code!r}")
    return provider


def _import_provider(up: _Upserter, spec: ProviderSpec) -> Provider:
    coordinator = spec.coordinator
    provider = up.upsert(Provider, {"code": spec.code}, {
        "name": spec.name, "kind": spec.kind, "municipal": spec.municipal,
        "coordinator_name": coordinator.name if coordinator else None,
        "coordinator_phone": coordinator.phone if coordinator else None}, spec,
        {"coordinator": "coordinator_name"})
    if "coordinator" in spec.model_fields_set:  # one field of the file, two columns
        provider.coordinator_phone = coordinator.phone if coordinator else None
    for t in spec.teams:
        team = up.upsert(Team, {"code": t.code}, {
            "name": t.name, "provider_id": provider.id, "area_code": t.area, "phone": t.phone,
        }, t, {"area": "area_code"})
        team.provider_id = provider.id  # a team listed under a provider belongs to it
        if "call_order" not in t.model_fields_set:
            continue
        wanted = [(i + 1, e.name, e.phone) for i, e in enumerate(t.call_order)]
        current = [(m.position, m.name, m.phone) for m in team.members]
        if wanted != current:
            team.members.clear()
            up.session.flush()
            team.members.extend(TeamMember(position=p, name=n, phone=ph) for p, n, ph in wanted)
            up.children_changed()
    return provider


def _import_site(up: _Upserter, customer: Customer, s: SiteSpec) -> None:
    site = up.upsert(Site, {"code": s.code}, {
        "customer_id": customer.id, "kind": s.kind, "address": s.address,
        "postal_code": s.postal_code, "city": s.city, "area_code": s.area,
        "door_name": s.door_name,
    }, s, {"area": "area_code"})
    site.customer_id = customer.id  # a site listed under a customer belongs to them
    for d in s.devices:
        device = up.upsert(Device, {"cid": d.cid},
                           {"site_id": site.id, "kind": d.kind, "model": d.model,
                            "supervision_interval_s": d.supervision_interval_s,
                            "supervision_tolerance_s": d.supervision_tolerance_s}, d)
        device.site_id = site.id


def registry_is_empty(session: Session) -> bool:
    return session.execute(select(Device.cid).limit(1)).first() is None and (
        session.execute(select(Provider.id).limit(1)).first() is None
    )


class SqlTeamDirectory:
    """Team lookups for routing, from the registry tables."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _first(self, query: Callable[[], Any]) -> TeamRef | None:
        team = self.session.execute(query()).scalars().first()
        return TeamRef(team.id, team.code) if team else None

    def day_team(self, provider_code: str, area_code: str) -> TeamRef | None:
        # The provider's team for the area if it has one, else its area-less team.
        def query() -> Any:
            return (
                select(Team).join(Provider)
                .where(Provider.code == provider_code, Provider.kind == "day")
                .where((Team.area_code == area_code) | Team.area_code.is_(None))
                .order_by(Team.area_code.is_(None), Team.code)
            )
        return self._first(query)

    def night_team(self, area_code: str) -> TeamRef | None:
        def query() -> Any:
            return (
                select(Team).join(Provider)
                .where(Provider.kind == "night", Team.area_code == area_code)
                .order_by(Team.code)
            )
        return self._first(query)

    def named_team(self, code: str) -> TeamRef | None:
        return self._first(lambda: select(Team).where(Team.code == code))


def import_audited(session: Session, config: MunicipalityConfig, actor: audit.Actor,
                   now: datetime, *, address: str | None = None,
                   may_lift_protection: bool = False) -> ImportCounts:
    """`import_config`, with one audit entry per record created or changed, saying what
    changed (personal values only as "changed"), in the same transaction."""
    before = snapshot(session, config)
    counts = import_config(session, config, may_lift_protection=may_lift_protection)
    session.flush()
    after = snapshot(session, config)
    for key in sorted(after):
        diff = audit.changes(before.get(key), after[key])
        if diff:
            kind, _, code = key.partition(":")
            audit.record(session, actor, "registry.update" if key in before else
                         "registry.create", now, subject=(kind, code), address=address,
                         detail={"changes": diff})
    return counts


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key != "id"}


def snapshot(session: Session, config: MunicipalityConfig) -> dict[str, dict[str, Any]]:
    """The records a registry document names, as they are now ("kind:code" -> columns),
    for the audit log's before and after. A record not there yet is absent."""
    wanted: dict[type[Any], tuple[Any, set[str]]] = {
        Area: (Area.code, {a.code for a in config.areas}),
        Provider: (Provider.code, {p.code for p in config.providers}),
        Team: (Team.code, {t.code for p in config.providers for t in p.teams}),
        Customer: (Customer.code, {c.code for c in config.customers}),
        Site: (Site.code, {s.code for c in config.customers for s in c.sites}),
        Device: (Device.cid, {d.cid for c in config.customers for s in c.sites
                              for d in s.devices}),
    }
    found: dict[str, dict[str, Any]] = {}
    for model, (key, codes) in wanted.items():
        if not codes:
            continue
        for row in session.execute(select(model).where(key.in_(codes))).scalars():
            values = _columns(row)
            if model is Team:
                values["call_order"] = [(m.name, m.phone) for m in row.members]
            found[f"{model.__tablename__}:{getattr(row, key.key)}"] = values
    return found
