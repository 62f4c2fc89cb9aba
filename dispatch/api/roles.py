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

from fastapi import Depends, FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Mount

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


def route_roles(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the roles it declares, for every API route of the app (those of
    included routers too, with the routers' own dependencies)."""
    table: dict[tuple[str, str], frozenset[str]] = {}
    for ctx in routing.iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, Mount):
            continue  # the static mount: the dashboard's files, which hold no data
        if app.openapi_url and ctx.path_format == app.openapi_url:
            # FastAPI's own route for the API's description: public, like /docs.
            table.update({(m, app.openapi_url): frozenset({PUBLIC}) for m in ctx.methods or ()})
            continue
        if not isinstance(ctx.original_route, APIRoute):
            # A plain Starlette route or a websocket has no dependencies to declare roles
            # with: refused, rather than let it through unchecked.
            raise RuntimeError(f"{ctx.path_format} is not a FastAPI route and cannot "
                               "declare roles: make it one, with allow(...) or public()")
        gates = _gates(ctx.dependant)
        declared = frozenset().union(*(g.roles for g in gates)) if gates else frozenset()
        for method in sorted(ctx.methods or ()):
            if not declared:
                raise RuntimeError(f"{method} {ctx.path_format} declares no roles: "
                                   "add allow(...) or public() to it")
            table[(method, str(ctx.path_format))] = declared
    return table


def declare_roles(app: FastAPI) -> None:
    """Refuse an app with a route that declares no roles; put each operation's roles in
    the OpenAPI document as `x-roles`."""
    table = route_roles(app)
    app.state.route_roles = table
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for (method, path), roles in table.items():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                operation["x-roles"] = sorted(roles)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
