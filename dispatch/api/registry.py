"""Registry routes: read customers, sites, devices and teams; edit them (admin).

Edits take the same document shape as the configuration file, so "import a file" and
"edit through the API" are one code path (`import_config`), idempotent by code.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from dispatch.api.deps import AdminDep, StateDep, UserDep
from dispatch.config import CallOrderEntry, ConfigError, MunicipalityConfig
from dispatch.models import Area, Customer, Device, Provider, Site, Team, TeamMember
from dispatch.registry import import_config
from dispatch.views import MASK

router = APIRouter(prefix="/api", tags=["registry"])


def _customer(c: Customer, role: str) -> dict[str, Any]:
    hide = c.protected_identity and role != "admin"
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


@router.get("/customers")
async def list_customers(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
    def load(s: Session) -> list[dict[str, Any]]:
        q = select(Customer).options(
            selectinload(Customer.sites).selectinload(Site.devices),
            selectinload(Customer.day_provider)).order_by(Customer.code)
        return [_customer(c, user.role) for c in s.execute(q).scalars()]
    return await state.db.read(load)


@router.get("/teams")
async def list_teams(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
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
async def list_areas(state: StateDep, user: UserDep) -> list[dict[str, str]]:
    return await state.db.read(lambda s: [
        {"code": a.code, "name": a.name}
        for a in s.execute(select(Area).order_by(Area.code)).scalars()])


@router.get("/devices")
async def list_devices(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
    def load(s: Session) -> list[dict[str, Any]]:
        rows = s.execute(select(Device).options(selectinload(Device.site)).order_by(Device.cid))
        return [{"cid": d.cid, "kind": d.kind, "model": d.model,
                 "site": d.site.code if d.site else None,
                 "supervision_interval_s": d.supervision_interval_s,
                 "supervision_tolerance_s": d.supervision_tolerance_s}
                for d in rows.scalars()]
    return await state.db.read(load)


@router.post("/registry", status_code=status.HTTP_200_OK)
async def upsert_registry(document: dict[str, Any], state: StateDep,
                          user: AdminDep) -> dict[str, int]:
    """Create or update areas, providers, teams, customers, sites and devices by code.

    References may point at records already in the database; nothing is deleted.
    """
    try:
        config = MunicipalityConfig.model_validate(document, context={"partial": True})
    except ValidationError as exc:
        # Without the context: a validator's own error (a code that cannot be a topic
        # level, a code listed twice) is an exception object there, not JSON.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            exc.errors(include_url=False, include_context=False)) from exc
    try:
        counts = await state.db.write(lambda s: import_config(s, config))
    except (ConfigError, IntegrityError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the document does not fit the registry: {exc}") from exc
    return {"created": counts.created, "updated": counts.updated, "unchanged": counts.unchanged}


class CallOrderIn(BaseModel):
    call_order: list[CallOrderEntry] = Field(min_length=1)


@router.put("/teams/{code}/call-order")
async def set_call_order(code: str, body: CallOrderIn, state: StateDep,
                         user: AdminDep) -> dict[str, Any]:
    """Replace a team's call order (changes go via the municipal alarm manager, 004 §8.1.6)."""
    def change(s: Session) -> bool:
        team = s.execute(select(Team).where(Team.code == code)).scalar_one_or_none()
        if team is None:
            return False
        team.members.clear()
        s.flush()
        team.members.extend(TeamMember(position=i + 1, name=e.name, phone=e.phone)
                            for i, e in enumerate(body.call_order))
        return True

    if not await state.db.write(change):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {code}")
    return {"code": code, "call_order": [e.model_dump() for e in body.call_order]}


@router.get("/providers")
async def list_providers(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
    return await state.db.read(lambda s: [
        {"code": p.code, "name": p.name, "kind": p.kind}
        for p in s.execute(select(Provider).order_by(Provider.code)).scalars()])
