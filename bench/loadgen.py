"""The device side of the benchmark: many base units sending `<mrq>` and timing each `<mrs>`.

Runs in its own process (so it never shares a GIL with the responder under test), on one
paho client with TCP_NODELAY, single-threaded: one `client.loop()` drives both directions.

Two shapes of load:

- closed loop (`rate` is None): keep `window` requests outstanding; every answer sends
  the next one. Throughput = answers received in the measured window / its length.
- open loop (`rate` given): send on a fixed schedule whatever the answers do; latency is
  measured from the *scheduled* send time, so a stalled sender cannot hide a stall
  (no coordinated omission).

Each request is a pendant alarm from one of `cids` units (round robin, so with a window
smaller than the number of units no unit has two requests outstanding), with a distinct
`ref`. After the measured window no new requests are sent and the run drains: it waits
(up to `drain_s`) for every outstanding answer, so that "sent", "answered" and "stored"
can be compared exactly afterwards.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import scaip
from devices.scaip import ScaipError, ScaipRequest

# The fast path for reading answers; a sample (and anything this does not match) is
# read with the strict `scaip.decode_response` as well.
_ANSWER = re.compile(rb"^<mrs><ref>([A-Za-z0-9]{1,16})</ref><snu>([0-9]{1,2})</snu>")
STRICT_FIRST = 1000  # strictly decode the first this many answers ...
STRICT_EVERY = 50    # ... and every this-many-th after that


@dataclass
class LoadSpec:
    host: str
    port: int
    root: str
    ref_prefix: str          # refs are f"{ref_prefix}{seq}", 1-16 alphanumerics
    cids: list[str]
    warmup_s: float
    duration_s: float
    window: int = 200        # closed loop: requests outstanding
    rate: float | None = None  # open loop: requests per second
    drain_s: float = 10.0
    keep_refs: bool = True   # send the answered refs back (for the database check)


@dataclass
class LoadResult:
    mode: str
    sent: int = 0
    answered: int = 0                 # distinct requests answered (any snu)
    answered_ok: int = 0              # ... with snu 0
    in_window: int = 0                # answers received inside the measured window
    window_s: float = 0.0             # the measured window's actual length
    sent_in_window: int = 0
    duplicates: int = 0               # a second answer to an already answered ref
    unexpected: int = 0               # an answer to a ref we never sent
    bad_frames: int = 0               # an answer that is not a valid <mrs>
    strict_checked: int = 0
    not_ok: dict[int, int] = field(default_factory=dict)  # snu -> count
    outstanding_at_end: int = 0       # sent but never answered, after the drain
    drain_s: float = 0.0
    send_lag_max_s: float = 0.0       # open loop: worst lateness of the sender itself
    latencies_ms: list[float] = field(default_factory=list)  # of requests sent in the window
    answered_refs: list[str] = field(default_factory=list)
    unanswered_refs: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def throughput(self) -> float:
        return self.in_window / self.window_s if self.window_s else 0.0


def run(spec: LoadSpec, conn: Connection) -> None:
    """Process entry: run the load, report ("window", start|end) marks and the result."""
    try:
        result = _run(spec, conn)
    except Exception as exc:  # report, do not hang the parent
        result = LoadResult(mode="error", error=f"{type(exc).__name__}: {exc}")
    conn.send(("result", result))
    conn.close()


class _Device:
    def __init__(self, spec: LoadSpec, conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.result = LoadResult(mode="open" if spec.rate else "closed")
        self.sent_at: dict[str, float] = {}   # ref -> (scheduled) send time, while outstanding
        self.done: set[str] = set()
        self.seq = 0
        self.sending = True
        self.t_start = self.t_end = 0.0       # the measured window
        self.subscribed = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-devices-{secrets.token_hex(4)}",
                                  clean_session=True)
        self.client.max_inflight_messages_set(0)  # 0: no client-side limit
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.topics = [f"{spec.root}/dev/{cid}/mrq" for cid in spec.cids]

    # -- sending ------------------------------------------------------------------------

    def send(self, at: float | None = None) -> None:
        i = self.seq
        self.seq += 1
        n = i % len(self.spec.cids)
        ref = f"{self.spec.ref_prefix}{i}"
        frame = scaip.encode_request(ScaipRequest(ref=ref, cid=self.spec.cids[n], dty="0003"))
        now = time.perf_counter()
        self.sent_at[ref] = now if at is None else at
        if self.t_start <= now < self.t_end:
            self.result.sent_in_window += 1
        self.client.publish(self.topics[n], frame, qos=1)
        self.result.sent += 1

    # -- receiving ----------------------------------------------------------------------

    def _on_subscribe(self, *_: Any) -> None:
        self.subscribed = True

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        r = self.result
        payload = bytes(msg.payload)
        m = _ANSWER.match(payload)
        answered = len(self.done)
        if m is None or answered < STRICT_FIRST or answered % STRICT_EVERY == 0:
            try:
                resp = scaip.decode_response(payload)
            except ScaipError:
                r.bad_frames += 1
                return
            r.strict_checked += 1
            ref, snu = resp.ref, resp.snu
            if ref is None:
                r.bad_frames += 1
                return
        else:
            ref, snu = m.group(1).decode(), int(m.group(2))
        started = self.sent_at.pop(ref, None)
        if started is None:
            if ref in self.done:
                r.duplicates += 1
            else:
                r.unexpected += 1
            return
        self.done.add(ref)
        r.answered += 1
        if snu == 0:
            r.answered_ok += 1
        else:
            r.not_ok[snu] = r.not_ok.get(snu, 0) + 1
        if self.t_start <= now < self.t_end:
            r.in_window += 1
        if self.t_start <= started < self.t_end:  # latency of requests sent in the window
            r.latencies_ms.append((now - started) * 1000.0)
        if self.spec.rate is None and self.sending:
            self.send()  # closed loop: one answer in, one request out

    # -- the run ------------------------------------------------------------------------

    def connect(self) -> None:
        c = self.client
        c.connect(self.spec.host, self.spec.port, keepalive=60)
        sock = c.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.subscribe(f"{self.spec.root}/dev/+/mrs", qos=1)
        deadline = time.monotonic() + 10
        while not self.subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError("no SUBACK from the broker within 10 s")
            self._pump(0.05)

    def _pump(self, timeout: float) -> None:
        rc = self.client.loop(timeout=max(timeout, 0.0))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"device connection lost: {mqtt.error_string(rc)}")

    def run(self) -> LoadResult:
        spec, r = self.spec, self.result
        self.connect()
        t0 = time.perf_counter()
        self.t_start = t0 + spec.warmup_s
        self.t_end = self.t_start + spec.duration_s
        marked_start = False
        if spec.rate is None:
            for _ in range(spec.window):
                self.send()
            while True:
                now = time.perf_counter()
                if not marked_start and now >= self.t_start:
                    self.conn.send(("window", "start"))
                    marked_start = True
                if now >= self.t_end:
                    break
                self._pump(min(0.05, self.t_end - now))
        else:
            interval = 1.0 / spec.rate
            k = 0
            next_at = t0
            while True:
                now = time.perf_counter()
                if not marked_start and now >= self.t_start:
                    self.conn.send(("window", "start"))
                    marked_start = True
                if now >= self.t_end:
                    break
                while next_at <= now:
                    r.send_lag_max_s = max(r.send_lag_max_s, now - next_at)
                    self.send(at=next_at)
                    k += 1
                    next_at = t0 + k * interval
                self._pump(min(next_at - time.perf_counter(), 0.01))
        self.sending = False
        self.conn.send(("window", "end"))
        r.window_s = self.t_end - self.t_start
        drain_start = time.perf_counter()
        while self.sent_at and time.perf_counter() - drain_start < spec.drain_s:
            self._pump(0.05)
        r.drain_s = time.perf_counter() - drain_start
        r.outstanding_at_end = len(self.sent_at)
        if spec.keep_refs:
            r.answered_refs = sorted(self.done)
            r.unanswered_refs = sorted(self.sent_at)
        self.client.disconnect()
        return r


def _run(spec: LoadSpec, conn: Connection) -> LoadResult:
    return _Device(spec, conn).run()
