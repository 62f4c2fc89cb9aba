"""The responders' phone page, `/m/` (issue 9, item 3): the page shell, shipped with the
package like the dashboard. Its script and style are under `/static/mobile/`; what it
shows comes from the API, which says who may see what (a responder, their team's alarms)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from dispatch.api.roles import public

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parent.parent / "web" / "static" / "mobile" / "index.html"


@router.get("/m/", dependencies=[public()])
async def mobile_page() -> FileResponse:
    """The shell holds no data. Not kept all the same, as `/` is not: a phone passed from
    one shift to the next must load the page this server serves now."""
    return FileResponse(PAGE, headers={"Cache-Control": "no-store"})
