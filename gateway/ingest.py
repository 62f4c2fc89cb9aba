"""From a device frame to a committed event and only then an answer: the gateway's core.

Frames are decoded on arrival and queued; one writer commits whatever has queued up in
a single transaction (group commit, so a burst of alarms costs one fsync, not hundreds),
and after the commit each device gets its `<mrs>`. A frame that cannot be decoded is
answered at once with the SCAIP error status: there is nothing to store. If a commit
fails, the batch is tried frame by frame so one bad frame holds up no other unit; what
still cannot be stored is not answered, and its device resends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import structlog

from core.clock import Clock
from core.db import Database, Lane
from core.inbox import Incoming, Stored, append_events
from devices import scaip
from devices.scaip import ScaipError, ScaipResponse, Snu
from gateway import topics
from gateway.errors import GatewayUnavailable
from gateway.metrics import (
    BATCH_SIZE,
    DUPLICATES,
    EVENTS,
    INGEST_LATENCY,
    REJECTIONS,
    STORE_FAILURES,
)
from gateway.mqtt import MqttLink

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    incoming: Incoming
    started: float  # time.perf_counter() on arrival, for the latency histogram


class Ingest:
    """Owns the request subscription of a link; commits, then answers."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        topic_root: str = "trygg/v1",
        heartbeat_interval_min: int = 60,
        resend_window: timedelta = timedelta(hours=1),
        max_batch: int = 500,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.root = topic_root
        self.heartbeat_interval_min = heartbeat_interval_min
        self.resend_window = resend_window
        self.max_batch = max_batch
        self.on_committed = on_committed
        self.link: MqttLink | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()

    def attach(self, link: MqttLink) -> None:
        self.link = link
        link.subscriptions.append(topics.request_filter(self.root))
        link.on_message = self.on_frame

    # -- arrival (on the event loop; never blocks) --------------------------------------

    def on_frame(self, topic: str, payload: bytes) -> None:
        started = time.perf_counter()
        topic_cid = topics.cid_of_request(self.root, topic)
        if topic_cid is None:
            REJECTIONS.labels("bad_topic").inc()
            log.warning("frame_rejected", reason="bad_topic", topic=topic[:200])
            return
        try:
            event = scaip.decode(payload)
            if event.cid != topic_cid:
                # The broker's ACL ties a topic to one device: a frame naming another
                # cid is a misconfigured or spoofing unit, and must not raise its alarm.
                raise ScaipError("cid_mismatch", f"frame says cid {event.cid}",
                                 status=Snu.WRONG_DATA, ref=event.ref, cid=event.cid)
        except ScaipError as err:
            REJECTIONS.labels(err.reason).inc()
            log.warning("frame_rejected", reason=err.reason, detail=err.detail[:200],
                        cid=topic_cid, ref=err.ref, snu=int(err.status))
            self._answer(topic_cid, scaip.error_response(err), started=None)
            return
        except Exception as exc:  # a codec bug must not take the broker link down
            REJECTIONS.labels("internal_error").inc()
            log.error("frame_decode_failed", cid=topic_cid, error=type(exc).__name__)
            self._answer(topic_cid, ScaipResponse(ref=None, snu=Snu.UNDEFINED), started=None)
            return
        self._queue.put_nowait(_Pending(Incoming(event, payload, self.clock.now()), started))

    # -- the writer ---------------------------------------------------------------------

    async def run(self) -> None:
        """Commit queued events in batches and answer them, forever."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            committed = await self._commit(batch)
            if not committed and len(batch) > 1:
                # One odd frame must not keep every other unit's alarm unanswered: try
                # each alone, so only what really cannot be stored waits for a resend.
                for pending in batch:
                    committed += await self._commit([pending])
            if not committed:
                await asyncio.sleep(0.5)  # the database is down: devices resend meanwhile

    async def _commit(self, batch: list[_Pending]) -> int:
        """Store and answer a batch; on failure answer nothing, so the devices resend."""
        items = [p.incoming for p in batch]
        try:
            results = await self.db.write(partial(append_events, items=items,
                                                   resend_window=self.resend_window), Lane.DEVICE)
        except Exception as exc:
            STORE_FAILURES.inc()
            # The error's class only: its text can quote the stored values.
            log.error("event_store_failed", batch=len(batch), error=type(exc).__name__,
                      cids=sorted({i.event.cid for i in items})[:20])
            return 0
        BATCH_SIZE.observe(len(batch))
        if self.on_committed is not None:
            self.on_committed()
        for pending, stored in zip(batch, results, strict=True):
            self._after_commit(pending, stored)
        return len(batch)

    def _after_commit(self, pending: _Pending, stored: Stored) -> None:
        event = pending.incoming.event
        if stored.duplicate:
            DUPLICATES.inc()
        else:
            EVENTS.labels(event.kind.value).inc()
        hbi = self.heartbeat_interval_min if event.wants_heartbeat_interval else None
        self._answer(event.cid, ScaipResponse(ref=event.ref, snu=Snu.OK, hbi=hbi),
                     started=pending.started)

    def _answer(self, cid: str, response: ScaipResponse, *, started: float | None) -> None:
        if self.link is None:
            return
        try:
            self.link.publish_nowait(topics.response_topic(self.root, cid),
                                     scaip.encode_response(response))
        except GatewayUnavailable:
            # Stored but not answered: the device resends and is answered from the log.
            log.warning("answer_not_sent", cid=cid, ref=response.ref)
            return
        if started is not None:
            INGEST_LATENCY.observe(time.perf_counter() - started)
