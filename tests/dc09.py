"""What the DC-09 transport tests share: a frame to send and ways to look at the result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from prometheus_client import REGISTRY
from sqlalchemy import select

from core.db import Database
from core.inbox import DeviceEventRow
from devices import dc09
from gateway.ingest import Ingest

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
ACCOUNT = "1234"


def medical(seq: int, account: str = ACCOUNT) -> bytes:
    """A medical alarm (SIA-DCS MA), timestamped at the clock's now."""
    return dc09.encode_frame(token="SIA-DCS", seq=seq, account=account,
                             data=f"#{account}|Nri1/MA001", timestamp=T0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def stored(db: Database) -> list[tuple[str, str, str]]:
    with db.sessions() as session:
        rows = session.execute(select(DeviceEventRow).order_by(DeviceEventRow.id)).scalars()
        return [(row.cid, row.ref, row.kind) for row in rows]


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for what the event loop does next (a metric, a connection gone) to show."""
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not so after {timeout_s} s")



async def running(ingest: Ingest) -> AsyncIterator[Ingest]:
    task = asyncio.create_task(ingest.run(), name="test.ingest")
    yield ingest
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
