"""Registry routes: read customers, sites, devices and teams; edit them (admin).

Edits take the same document shape as the configuration file, so "import a file" and
"edit through the API" are one code path (`import_config`), idempotent by code.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from dispatch import audit
from dispatch.api.audit import note
from dispatch.api.deps import StateDep, client_address
from dispatch.api.roles import allow
from dispatch.config import CallOrderEntry, ConfigError, MunicipalityConfig
from dispatch.models import Area, Customer, Device, Provider, Site, Team, TeamMember
from dispatch.registry import import_audited
from dispatch.signin import Principal
from dispatch.users import ROLES
from dispatch.views import MASK

router = APIRouter(prefix="/api", tags=["registry"])
Anyone = Annotated[Principal, allow(*ROLES)]
# Customers and their devices: the alarm centre, the install team, the alarm manager and
# the admin who keeps the registry; every such view is in the audit log.
CustomerReader = Annotated[Principal, allow("operator", "tfh", "alarm_manager", "admin")]
TeamReader = Annotated[Principal, allow("operator", "alarm_manager", "admin")]
Admin = Annotated[Principal, allow("admin")]
CallOrderEditor = Annotated[Principal, allow("alarm_manager", "admin")]


def _customer(c: Customer) -> dict[str, Any]:
    # Masked for every role: a protected identity is revealed only on an open alarm.
    hide = c.protected_identity
    return {
        "code": c.code,
        "name": MASK if hide else c.name,
        "protected_identity": c.protected_identity,
        "day_provider": c.day_provider.code if c.day_provider else None,
        "sites": [{
            "code": s.code, "kind": s.kind, "area": s.area_code,
            "address": MASK if hide else s.address,
            "postal_code": None if hide else s.postal_code, "city": s.city,
            "door_name": None if hide else s.door_name,
            "devices": [{"cid": d.cid, "kind": d.kind, "model": d.model} for d in s.devices],
        } for s in c.sites],
    }


def _customers_query() -> Any:
    return select(Customer).options(selectinload(Customer.sites).selectinload(Site.devices),
                                    selectinload(Customer.day_provider))


@router.get("/customers")
async def list_customers(request: Request, state: StateDep,
                         user: CustomerReader) -> list[dict[str, Any]]:
    def load(s: Session) -> list[dict[str, Any]]:
        return [_customer(c) for c in s.execute(
            _customers_query().order_by(Customer.code)).scalars()]
    customers = await state.db.read(load)
    await note(state, user, "customer.list", request=request,
               detail={"count": len(customers)})
    return customers


@router.get("/customers/{code}")
async def get_customer(code: str, request: Request, state: StateDep,
                       user: CustomerReader) -> dict[str, Any]:
    """One customer's record; the view is in the audit log."""
    def load(s: Session) -> dict[str, Any] | None:
        c = s.execute(_customers_query().where(Customer.code == code)).scalar_one_or_none()
        return None if c is None else _customer(c)
    customer = await state.db.read(load)
    if customer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {code}")
    await note(state, user, "customer.view", subject=("customer", code), request=request)
    return customer


@router.get("/teams")
async def list_teams(state: StateDep, user: TeamReader) -> list[dict[str, Any]]:
    def load(s: Session) -> list[dict[str, Any]]:
        q = select(Team).options(selectinload(Team.members), selectinload(Team.provider))
        return [{
            "code": t.code, "name": t.name, "provider": t.provider.code,
            "provider_kind": t.provider.kind, "area": t.area_code, "phone": t.phone,
            "call_order": [{"position": m.position, "name": m.name, "phone": m.phone}
                           for m in t.members],
        } for t in s.execute(q.order_by(Team.code)).scalars()]
    return await state.db.read(load)


@router.get("/areas")
async def list_areas(state: StateDep, user: Anyone) -> list[dict[str, str]]:
    return await state.db.read(lambda s: [
        {"code": a.code, "name": a.name}
        for a in s.execute(select(Area).order_by(Area.code)).scalars()])


@router.get("/devices")
async def list_devices(state: StateDep, user: CustomerReader) -> list[dict[str, Any]]:
    def load(s: Session) -> list[dict[str, Any]]:
        rows = s.execute(select(Device).options(selectinload(Device.site)).order_by(Device.cid))
        return [{"cid": d.cid, "kind": d.kind, "model": d.model,
                 "site": d.site.code if d.site else None,
                 "supervision_interval_s": d.supervision_interval_s,
                 "supervision_tolerance_s": d.supervision_tolerance_s}
                for d in rows.scalars()]
    return await state.db.read(load)


@router.post("/registry", status_code=status.HTTP_200_OK)
async def upsert_registry(document: dict[str, Any], request: Request, state: StateDep,
                          user: Admin) -> dict[str, int]:
    """Create or update areas, providers, teams, customers, sites and devices by code.

    References may point at records already in the database; nothing is deleted. Each
    record changed is in the audit log with what changed (personal values as "changed").
    """
    try:
        config = MunicipalityConfig.model_validate(document, context={"partial": True})
    except ValidationError as exc:
        # Without the context: a validator's own error (a code that cannot be a topic
        # level, a code listed twice) is an exception object there, not JSON.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            exc.errors(include_url=False, include_context=False)) from exc
    now, address = state.clock.now(), client_address(request)
    try:
        counts = await state.db.write(lambda s: import_audited(s, config, user, now,
                                                               address=address))
    except (ConfigError, IntegrityError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the document does not fit the registry: {exc}") from exc
    return {"created": counts.created, "updated": counts.updated, "unchanged": counts.unchanged}


class CallOrderIn(BaseModel):
    call_order: list[CallOrderEntry] = Field(min_length=1)


@router.put("/teams/{code}/call-order")
async def set_call_order(code: str, body: CallOrderIn, request: Request, state: StateDep,
                         user: CallOrderEditor) -> dict[str, Any]:
    """Replace a team's call order (changes go via the municipal alarm manager, 004 §8.1.6)."""
    now, address = state.clock.now(), client_address(request)

    def change(s: Session) -> bool:
        team = s.execute(select(Team).where(Team.code == code)).scalar_one_or_none()
        if team is None:
            return False
        before = len(team.members)
        audit.record(s, user, "call_order.update", now, subject=("teams", code),
                     address=address, detail={
                         "changes": {"call_order": {"changed": True},
                                     "entries": {"before": before,
                                                 "after": len(body.call_order)}}})
        team.members.clear()
        s.flush()
        team.members.extend(TeamMember(position=i + 1, name=e.name, phone=e.phone)
                            for i, e in enumerate(body.call_order))
        return True

    if not await state.db.write(change):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {code}")
    return {"code": code, "call_order": [e.model_dump() for e in body.call_order]}


@router.get("/providers")
async def list_providers(state: StateDep, user: Anyone) -> list[dict[str, Any]]:
    return await state.db.read(lambda s: [
        {"code": p.code, "name": p.name, "kind": p.kind}
        for p in s.execute(select(Provider).order_by(Provider.code)).scalars()])
