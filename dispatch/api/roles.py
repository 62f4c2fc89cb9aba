"""Who may call which route: every route and page declares its roles, or the app won't start.

A route says `user: Annotated[Principal, allow("operator", "admin")]` (or, when it needs
no user object, `dependencies=[allow(...)]`); a route anyone may call, signed in or not,
says `dependencies=[public()]`. `declare_roles(app)` walks the built app, copies each
route's roles into its OpenAPI operation (`x-roles`) and refuses to build an app with a
route that declares nothing, so a new route without a rule fails at start-up and in the
suite's role matrix, not in production.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from dispatch.users import ROLES, Role

PUBLIC = "public"


class RoleGate:
    """The dependency behind `allow`: refuses (403) a signed-in user of another role."""

    def __init__(self, roles: frozenset[str]) -> None:
        unknown = roles - set(ROLES) - {PUBLIC}
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
        self.roles = roles

    def __repr__(self) -> str:
        return f"RoleGate({sorted(self.roles)})"


def allow(*roles: Role) -> Any:
    """Depends(...) that yields the signed-in Principal if its role is one of `roles`."""
    if not roles:
        raise ValueError("allow() needs at least one role; use public() for open routes")
    from dispatch.api.deps import gate  # the gate needs the sign-in, which needs this module

    return Depends(gate(RoleGate(frozenset(roles))))


def public() -> Any:
    """Depends(...) for a route anyone may call: sign-in, health checks, the page shells."""
    return Depends(_PublicGate())


class _PublicGate(RoleGate):
    def __init__(self) -> None:
        super().__init__(frozenset({PUBLIC}))

    async def __call__(self) -> None:
        return None


def _gates(dependant: Dependant) -> list[RoleGate]:
    found: list[RoleGate] = []
    for dep in dependant.dependencies:
        call = dep.call
        gate_of = getattr(call, "role_gate", None)
        if isinstance(call, RoleGate):
            found.append(call)
        elif isinstance(gate_of, RoleGate):
            found.append(gate_of)
        found += _gates(dep)
    return found


def roles_of(route: APIRoute) -> frozenset[str]:
    gates = _gates(route.dependant)
    return frozenset().union(*(g.roles for g in gates)) if gates else frozenset()


def declare_roles(app: FastAPI) -> None:
    """Put each route's roles in its OpenAPI operation; refuse a route that has none."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the static mount: the dashboard's files, which hold no data
        declared = roles_of(route)
        if not declared:
            raise RuntimeError(f"{sorted(route.methods or ())} {route.path} declares no roles: "
                               "add allow(...) or public() to it")
        route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": sorted(declared)}
