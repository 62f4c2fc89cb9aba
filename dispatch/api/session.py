"""Sign-in for the dashboard: check a token and say who it belongs to."""

from __future__ import annotations

from fastapi import APIRouter

from dispatch.api.deps import UserDep

router = APIRouter(prefix="/api", tags=["session"])


@router.get("/me")
async def me(user: UserDep) -> dict[str, str]:
    return {"name": user.name, "role": user.role}
