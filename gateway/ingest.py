"""From a device frame to a committed event and only then an answer: the gateway's core.

Frames are decoded on arrival through the codec registry and queued; one writer commits
whatever has queued up in a single transaction (group commit, so a burst of alarms costs
one fsync, not hundreds), and after the commit each device gets its answer. A heartbeat
is answered at once and only moves the unit's last-seen (no row: see last_seen.py). A
frame that cannot be decoded is answered at once with the codec's error answer: there
is nothing to store. If a commit fails, the batch is tried frame by frame so one bad
frame holds up no other unit; what still cannot be stored is not answered, and its
device resends. On a graceful stop, what was already taken from the broker is
committed and answered before the gateway lets go (`drain`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import structlog

from core.clock import Clock
from core.db import Database, Lane
from core.errors import LinkDown
from core.inbox import DEFAULT_RESEND_WINDOW, URGENT_KINDS, Incoming, Stored, append_events
from core.logs import Throttle
from devices.codecs import SCAIP, Codec
from devices.errors import ContentError, FrameError
from devices.events import DeviceEvent, EventKind
from gateway import topics
from gateway.last_seen import LastSeenBook
from gateway.metrics import (
    ANSWERS_NOT_SENT,
    BATCH_SIZE,
    DUPLICATES,
    EVENTS,
    HEARTBEATS,
    INGEST_LATENCY,
    REJECTIONS,
    STORE_FAILURES,
)
from gateway.mqtt import MqttLink

log = structlog.get_logger(__name__)


# Hands an answer to the link the frame came on; raises LinkDown when it cannot.
Reply = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    incoming: Incoming
    started: float  # time.perf_counter() on arrival, for the latency histogram
    codec: Codec
    reply: Reply


class Ingest:
    """Commits what every device link hands in, then answers on that link.

    The MQTT link is attached (`attach`); serial lines and the DC-09 TCP listener call
    `accept` with the codec of their protocol and a `Reply` that writes to their line.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        codec: Codec = SCAIP,
        topic_root: str = "trygg/v1",
        heartbeat_interval_min: int = 60,
        resend_window: timedelta = DEFAULT_RESEND_WINDOW,
        last_seen: LastSeenBook | None = None,
        max_batch: int = 500,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.codec = codec
        self.root = topic_root
        self.heartbeat_interval_min = heartbeat_interval_min
        self.resend_window = resend_window
        self.last_seen = last_seen or LastSeenBook(db)
        self.max_batch = max_batch
        self.on_committed = on_committed
        self.link: MqttLink | None = None
        # Help-call events (a press, check-in/out, a cancel) wait in their own queue and
        # are committed before anything else: in a power cut thousands of mains-lost
        # frames arrive at once, and a press must not queue behind them.
        self._urgent: deque[_Pending] = deque()
        self._rest: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued and nothing being committed
        self._idle.set()
        self._in_flight = 0
        # One line per interval during an outage, with a count, not one per frame.
        self._store_failures = Throttle()
        self._unanswered = Throttle()

    def attach(self, link: MqttLink) -> None:
        self.link = link
        link.subscriptions.append(topics.request_filter(self.root))
        link.on_message = self.on_frame

    # -- arrival (on the event loop; never blocks) --------------------------------------

    def on_frame(self, topic: str, payload: bytes) -> None:
        """A frame from the broker: its topic names the only cid it may speak for."""
        topic_cid = topics.cid_of_request(self.root, topic)
        if topic_cid is None:
            REJECTIONS.labels("bad_topic").inc()
            log.warning("frame_rejected", reason="bad_topic", topic=topic[:200])
            return
        self.accept(payload, self.codec, partial(self._publish, topic_cid),
                    link_cid=topic_cid)

    def accept(self, frame: bytes, codec: Codec, reply: Reply, *,
               link_cid: str | None = None) -> None:
        """Decode a frame and queue it for the commit; answer at once what has no row.

        `link_cid` is the only device the link may speak for (the broker's ACL ties a
        topic to one unit); None for a receiver's line, which carries many accounts.
        """
        started = time.perf_counter()
        now = self.clock.now()
        try:
            event = codec.decode(frame, now=now)
            if link_cid is not None and event.cid != link_cid:
                # A frame naming another cid is a misconfigured or spoofing unit, and
                # must not raise its alarm.
                raise ContentError("cid_mismatch", f"frame says cid {event.cid}",
                                   ref=event.ref, cid=event.cid)
        except FrameError as err:
            REJECTIONS.labels(err.reason).inc()
            log.warning("frame_rejected", protocol=codec.name, reason=err.reason,
                        detail=err.detail[:200], cid=link_cid or getattr(err, "cid", None),
                        ref=getattr(err, "ref", None))
            self._answer(reply, codec.encode_error(err, now=now), link_cid, None,
                         started=None)
            return
        except Exception as exc:  # a codec bug must not take the link down
            REJECTIONS.labels("internal_error").inc()
            log.error("frame_decode_failed", protocol=codec.name, cid=link_cid,
                      error=type(exc).__name__)
            internal = FrameError("internal_error", type(exc).__name__)
            self._answer(reply, codec.encode_error(internal, now=now), link_cid, None,
                         started=None)
            return
        if event.kind is EventKind.HEARTBEAT:
            # Nothing to commit: the unit is alive, and its last-seen is written in batches.
            self.last_seen.saw(event.cid, now, event.kind.value)
            HEARTBEATS.inc()
            # Not timed: a histogram observation cost 14 % of the gateway at 4,200
            # heartbeats a second, and the latency that matters is a stored event's.
            self._answer(reply, self._ok(codec, event, now), event.cid, event.ref,
                         started=None)
            return
        pending = _Pending(Incoming(event, frame, now), started, codec, reply)
        (self._urgent if event.kind in URGENT_KINDS else self._rest).append(pending)
        self._idle.clear()
        self._arrived.set()

    @property
    def in_hand(self) -> int:
        """Frames taken from the broker and not yet answered (or given up on)."""
        return len(self._urgent) + len(self._rest) + self._in_flight

    # -- the writer ---------------------------------------------------------------------

    def _next_batch(self) -> list[_Pending]:
        """Help calls alone if any wait (a small commit, answered soonest), else the rest."""
        queue = self._urgent or self._rest
        return [queue.popleft() for _ in range(min(len(queue), self.max_batch))]

    async def run(self) -> None:
        """Commit queued events in batches and answer them, forever."""
        while True:
            if not self._urgent and not self._rest:
                self._idle.set()
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = self._next_batch()
            self._in_flight = len(batch)
            try:
                committed = await self._commit(batch)
                if not committed and len(batch) > 1:
                    # One odd frame must not keep every other unit's alarm unanswered: try
                    # each alone, so only what really cannot be stored waits for a resend.
                    for pending in batch:
                        committed += await self._commit([pending])
            finally:
                self._in_flight = 0
            if not committed:
                await asyncio.sleep(0.5)  # the database is down: devices resend meanwhile

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every frame already taken in is committed and answered (or given up).

        For a graceful stop, while the link is still up: whatever the broker already
        handed us is answered now instead of waiting for a resend.
        """
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("gateway_drain_incomplete", left=self.in_hand)
            return False
        return True

    async def _commit(self, batch: list[_Pending]) -> int:
        """Store and answer a batch; on failure answer nothing, so the devices resend."""
        items = [p.incoming for p in batch]
        try:
            results = await self.db.write(
                partial(append_events, items=items, resend_window=self.resend_window),
                Lane.DEVICE)
        except Exception as exc:
            STORE_FAILURES.inc()
            if (count := self._store_failures.hit()) is not None:
                # The error's class only: its text can quote the stored values.
                log.error("event_store_failed", batches=count, batch=len(batch),
                          error=type(exc).__name__,
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
        self.last_seen.saw(event.cid, pending.incoming.received_at, event.kind.value)
        answer = self._ok(pending.codec, event, self.clock.now())
        self._answer(pending.reply, answer, event.cid, event.ref, started=pending.started)

    def _ok(self, codec: Codec, event: DeviceEvent, now: datetime) -> bytes:
        return codec.encode_ok(event, now=now,
                               heartbeat_interval_min=self.heartbeat_interval_min)

    def _publish(self, cid: str, answer: bytes) -> None:
        if self.link is None:
            return  # no broker attached (tests that drive the inbox alone)
        self.link.publish_nowait(topics.response_topic(self.root, cid), answer)

    def _answer(self, reply: Reply, answer: bytes, cid: str | None, ref: str | None, *,
                started: float | None) -> None:
        try:
            reply(answer)
        except LinkDown:
            # Stored but not answered: the device resends and is answered from the log.
            ANSWERS_NOT_SENT.inc()
            if (count := self._unanswered.hit()) is not None:
                log.warning("answer_not_sent", answers=count, cid=cid, ref=ref)
            return
        if started is not None:
            INGEST_LATENCY.observe(time.perf_counter() - started)
