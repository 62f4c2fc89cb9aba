"""Inside the gateway a help call never queues behind technical traffic: a press taken in
after a power cut's thousand mains-lost frames is committed and answered first.

The real Ingest, the SCAIP codec and a SQLite file; answers are collected as a device
link would send them, in the order they go out.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from core.clock import FakeClock
from core.db import Database
from devices import scaip
from devices.codecs import SCAIP
from gateway.ingest import Ingest


def frame(ref: int, cid: str, stc: str | None) -> bytes:
    fields = f"<ref>{ref}</ref><cid>{cid}</cid><dty>0002</dty>"
    return f"<mrq>{fields}{f'<stc>{stc}</stc>' if stc else ''}</mrq>".encode()


async def test_a_press_behind_a_thousand_mains_lost_frames_is_answered_first(
        empty_db: Database) -> None:
    ingest = Ingest(empty_db, FakeClock(datetime(2026, 1, 15, 9, 0, tzinfo=UTC)),
                    max_batch=100)
    answered: list[str] = []

    def reply(answer: bytes) -> None:
        answered.append(scaip.decode_response(answer).ref or "")

    for n in range(1000):
        ingest.accept(frame(n + 1, f"{900000 + n}", "0085"), SCAIP, reply)
    ingest.accept(frame(7, "100001", None), SCAIP, reply)  # a press, no stc

    writer = asyncio.create_task(ingest.run())
    try:
        assert await ingest.drain(timeout_s=30)
    finally:
        writer.cancel()

    assert len(answered) == 1001
    assert answered[0] == "7"  # the press, before any of the technical frames
    assert answered[1:4] == ["1", "2", "3"]  # the rest in the order they came
