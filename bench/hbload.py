"""The device side of `bench/heartbeats` and `bench/fleet`: many units heartbeating, a few
pressing for help, and (bench/fleet) bursts of status messages such as a power cut.

Processes of their own (multiprocessing, spawn), so none shares a GIL with the gateway:

- **senders** (`--senders`, 2): paho, TCP_NODELAY, publish only. Heartbeat k (0 <= k < K)
  is due at t0 + k / rate, from unit k mod U, with ref `H{k}`; sender s sends the k with
  k mod S == s, open loop (late ones are sent at once, and the lateness is reported).
  With U = rate x interval every unit heartbeats once per interval, evenly spread.
- **the receiver**: paho, subscribed to `{root}/dev/+/mrs` at QoS 1: counts every answer
  by its ref, and the latency from the *scheduled* send time (the schedule is a formula,
  so the receiver knows it). It also sends the help calls (an alarm press, no `stc`,
  ref `A{j}`, due at t0 + 0.5 + j / help_rate, each from the next registered unit).
- **the burst sender** (`run_burst_sender`, bench/fleet): each `Burst` is one status
  message (`<stc>`) from each of a block of units, spread evenly over a while (a power
  cut: mains lost from 20,000 units within 10 s), ref `{letter}{i}`; the receiver times
  their answers as it does the heartbeats'.
- **the operators' view** (`watch_sse`): the dispatch API's live stream
  `GET /api/stream` with an operator's bearer token; notes when each alarm first shows
  up, by cid.

Times are `time.monotonic()` (CLOCK_MONOTONIC: one clock for every process here).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import scaip
from devices.scaip import ScaipError, ScaipRequest

HB_CID_BASE = 2_000_000
_ANSWER = re.compile(rb"^<mrs><ref>([A-Z])([0-9]{1,15})</ref><snu>([0-9]{1,2})</snu>")


@dataclass(frozen=True)
class Burst:
    """One status message from each of `units` units (cids cid_base..), due evenly over
    `spread_s` from `at_s` after the start: a power cut, or the power coming back."""

    letter: str      # the refs' prefix: one capital letter, not A or H
    stc: str         # the SCAIP status code, e.g. "0085" mains lost
    cid_base: int
    units: int
    at_s: float
    spread_s: float

    def due(self, i: int, t0: float) -> float:
        return t0 + self.at_s + i * self.spread_s / self.units

    def cid(self, i: int) -> str:
        return str(self.cid_base + i)

    def frame(self, i: int) -> bytes:
        return scaip.encode_request(ScaipRequest(ref=f"{self.letter}{i}", cid=self.cid(i),
                                                 dty="0002", stc=self.stc))


@dataclass
class Plan:
    host: str
    port: int
    root: str
    rate: float            # heartbeats per second, all senders together
    units: int             # heartbeating units (cids HB_CID_BASE ..)
    duration_s: float
    senders: int
    help_rate: float       # help calls per second
    help_cids: list[str]   # registered units, one per help call (round robin)
    bursts: tuple[Burst, ...] = ()
    # The receiver stands for every unit, and the broker lets one MQTT 3.1.1 client have
    # only 20 QoS 1 messages in flight (Mosquitto's max_inflight_messages). With a window
    # > 0 the receiver connects with MQTT 5 and asks for that many (Receive Maximum), as
    # the units together would have; 0 keeps MQTT 3.1.1 and the broker's 20.
    answer_window: int = 0

    @property
    def heartbeats(self) -> int:
        return int(self.rate * self.duration_s)

    @property
    def help_calls(self) -> int:
        return int(self.help_rate * self.duration_s)

    def hb_due(self, k: int, t0: float) -> float:
        return t0 + k / self.rate

    def help_due(self, j: int, t0: float) -> float:
        return t0 + 0.5 / self.help_rate + j / self.help_rate

    def help_cid(self, j: int) -> str:
        return self.help_cids[j % len(self.help_cids)]


def heartbeat_frame(k: int, cid: str) -> bytes:
    return f"<mrq><ref>H{k}</ref><cid>{cid}</cid><dty>0002</dty><mty>PI</mty></mrq>".encode()


def help_frame(j: int, cid: str) -> bytes:
    return scaip.encode_request(ScaipRequest(ref=f"A{j}", cid=cid, dty="0003"))


# The fast heartbeat frame is what the product's own encoder writes.
assert heartbeat_frame(7, "2000007") == scaip.encode_request(
    ScaipRequest(ref="H7", cid="2000007", dty="0002", mty="PI"))


def _client(name: str, *, v5: bool = False) -> mqtt.Client:
    client_id = f"bench-{name}-{secrets.token_hex(4)}"
    if v5:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
    else:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.max_inflight_messages_set(0)  # no client-side limit
    c.max_queued_messages_set(0)
    return c


def _connect(c: mqtt.Client, plan: Plan, receive_maximum: int = 0) -> None:
    if receive_maximum:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = receive_maximum
        c.connect(plan.host, plan.port, keepalive=60, clean_start=True, properties=props)
    else:
        c.connect(plan.host, plan.port, keepalive=60)
    sock = c.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pump(c: mqtt.Client, timeout: float) -> None:
    rc = c.loop(timeout=max(timeout, 0.0))
    if rc != mqtt.MQTT_ERR_SUCCESS:
        raise RuntimeError(f"device connection lost: {mqtt.error_string(rc)}")


# -- senders ------------------------------------------------------------------------------


def run_sender(plan: Plan, index: int, conn: Connection) -> None:
    """Process entry: connect, say "ready", get ("go", t0), send this sender's share."""
    try:
        c = _client(f"hb-sender{index}")
        _connect(c, plan)
        for _ in range(20):
            _pump(c, 0.05)
        conn.send(("ready", None))
        _, t0 = conn.recv()
        topics_prefix = f"{plan.root}/dev/"
        k, step, n = index, plan.senders, plan.heartbeats
        lag_max = 0.0
        late_100ms = 0
        sent = refused = 0  # refused: publishes paho would not take (never sent)
        while k < n:
            now = time.monotonic()
            burst = 0
            while k < n and burst < 200:  # when late, catch up in bursts, reading PUBACKs
                burst += 1
                due = plan.hb_due(k, t0)
                if due > now:
                    break
                lag = now - due
                if lag > lag_max:
                    lag_max = lag
                if lag > 0.1:
                    late_100ms += 1
                cid = str(HB_CID_BASE + k % plan.units)
                info = c.publish(f"{topics_prefix}{cid}/mrq", heartbeat_frame(k, cid), qos=1)
                refused += info.rc != mqtt.MQTT_ERR_SUCCESS
                sent += 1
                k += step
            if k < n:
                _pump(c, min(plan.hb_due(k, t0) - time.monotonic(), 0.01))
        finished = time.monotonic()
        # Until every PUBACK is in: the broker has the lot.
        deadline = time.monotonic() + 30
        while c._out_messages and time.monotonic() < deadline:
            _pump(c, 0.05)
        unacked = len(c._out_messages)
        c.disconnect()
        conn.send(("result", {"sent": sent, "lag_max_s": lag_max, "late_100ms": late_100ms,
                              "finished_at": finished, "unacked": unacked,
                              "refused": refused}))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def run_burst_sender(plan: Plan, conn: Connection) -> None:
    """Process entry: as `run_sender`, for the plan's bursts (merged by due time)."""
    try:
        c = _client("burst-sender")
        _connect(c, plan)
        for _ in range(20):
            _pump(c, 0.05)
        conn.send(("ready", None))
        _, t0 = conn.recv()
        schedule = sorted((b.due(i, t0), n, i) for n, b in enumerate(plan.bursts)
                          for i in range(b.units))
        prefix = f"{plan.root}/dev/"
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        lag_max = 0.0
        pos = refused = 0
        while pos < len(schedule):
            now = time.monotonic()
            burst = 0
            while pos < len(schedule) and burst < 200:
                due, n, i = schedule[pos]
                if due > now:
                    break
                b = plan.bursts[n]
                lag_max = max(lag_max, now - due)
                info = c.publish(f"{prefix}{b.cid(i)}/mrq", b.frame(i), qos=1)
                refused += info.rc != mqtt.MQTT_ERR_SUCCESS
                first.setdefault(b.letter, now)
                last[b.letter] = now
                pos += 1
                burst += 1
            if pos < len(schedule):
                _pump(c, min(schedule[pos][0] - time.monotonic(), 0.01))
        deadline = time.monotonic() + 30
        while c._out_messages and time.monotonic() < deadline:
            _pump(c, 0.05)
        unacked = len(c._out_messages)
        c.disconnect()
        conn.send(("result", {"sent": len(schedule), "first_sent_at": first,
                              "last_sent_at": last, "lag_max_s": lag_max,
                              "unacked": unacked, "refused": refused}))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


# -- the receiver (and help calls) ------------------------------------------------------------


@dataclass
class BurstAnswers:
    answered: int = 0
    duplicates: int = 0
    not_ok: int = 0
    latency_ms: list[float] = field(default_factory=list)
    last_answered_at: float = 0.0


@dataclass
class ReceiverResult:
    hb_answered: int = 0
    hb_duplicates: int = 0
    hb_not_ok: int = 0
    hb_latency_ms: list[float] = field(default_factory=list)
    help_sent: int = 0
    help_sent_at: dict[int, float] = field(default_factory=dict)   # j -> due time
    help_answered_at: dict[int, float] = field(default_factory=dict)
    help_not_ok: int = 0
    help_lag_max_s: float = 0.0
    unexpected: int = 0
    bad_frames: int = 0
    strict_checked: int = 0
    last_answer_at: float = 0.0
    drained: bool = False
    bursts: dict[str, BurstAnswers] = field(default_factory=dict)  # by letter


def run_receiver(plan: Plan, conn: Connection, drain_s: float) -> None:
    try:
        conn.send(("result", _receive(plan, conn, drain_s)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _receive(plan: Plan, conn: Connection, drain_s: float) -> ReceiverResult:
    r = ReceiverResult()
    n_hb, n_help = plan.heartbeats, plan.help_calls
    seen = bytearray(n_hb)
    lat = array("f")
    t0_box: list[float] = []
    subscribed = threading.Event()
    bursts = {b.letter: b for b in plan.bursts}
    burst_seen = {b.letter: bytearray(b.units) for b in plan.bursts}
    burst_lat = {b.letter: array("f") for b in plan.bursts}
    r.bursts = {b.letter: BurstAnswers() for b in plan.bursts}

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        payload = bytes(msg.payload)
        m = _ANSWER.match(payload)
        if m is None or (r.hb_answered + len(r.help_answered_at)) % 100 == 0:
            try:
                resp = scaip.decode_response(payload)
            except ScaipError:
                r.bad_frames += 1
                return
            r.strict_checked += 1
            ref = resp.ref or ""
            kind, num, snu = ref[:1], ref[1:], int(resp.snu)
            if (kind not in ("A", "H") and kind not in bursts) or not num.isdigit():
                r.unexpected += 1
                return
            i = int(num)
        else:
            kind, i, snu = m.group(1).decode(), int(m.group(2)), int(m.group(3))
        if not t0_box:
            r.unexpected += 1
            return
        r.last_answer_at = now
        if kind == "H":
            if i >= n_hb:
                r.unexpected += 1
            elif seen[i]:
                r.hb_duplicates += 1
            else:
                seen[i] = 1
                r.hb_answered += 1
                if snu:
                    r.hb_not_ok += 1
                lat.append((now - plan.hb_due(i, t0_box[0])) * 1000.0)
        elif kind in bursts:
            b, got = bursts[kind], r.bursts[kind]
            if i >= b.units:
                r.unexpected += 1
            elif burst_seen[kind][i]:
                got.duplicates += 1
            else:
                burst_seen[kind][i] = 1
                got.answered += 1
                got.last_answered_at = now
                if snu:
                    got.not_ok += 1
                burst_lat[kind].append((now - b.due(i, t0_box[0])) * 1000.0)
        elif kind == "A":
            if i not in r.help_sent_at or i in r.help_answered_at:
                r.unexpected += 1
            else:
                r.help_answered_at[i] = now
                if snu:
                    r.help_not_ok += 1
        else:
            r.unexpected += 1

    c = _client("hb-receiver", v5=plan.answer_window > 0)
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    _connect(c, plan, receive_maximum=plan.answer_window)
    c.subscribe(f"{plan.root}/dev/+/mrs", qos=1)
    deadline = time.monotonic() + 10
    while not subscribed.is_set():
        if time.monotonic() > deadline:
            raise RuntimeError("no SUBACK within 10 s")
        _pump(c, 0.05)
    conn.send(("ready", None))
    _, t0 = conn.recv()
    t0_box.append(t0)
    prefix = f"{plan.root}/dev/"
    j = 0
    end = t0 + plan.duration_s
    while True:
        now = time.monotonic()
        while j < n_help and plan.help_due(j, t0) <= now:
            due = plan.help_due(j, t0)
            r.help_lag_max_s = max(r.help_lag_max_s, now - due)
            cid = plan.help_cid(j)
            r.help_sent_at[j] = due
            c.publish(f"{prefix}{cid}/mrq", help_frame(j, cid), qos=1)
            r.help_sent += 1
            j += 1
        if now >= end and j >= n_help:
            break
        nxt = plan.help_due(j, t0) if j < n_help else end
        _pump(c, min(max(nxt - now, 0.0), 0.01))
    # The drain: wait for the answers still owed (no new requests now).
    conn.send(("sent", None))
    drain_end = time.monotonic() + drain_s
    while time.monotonic() < drain_end:
        if (r.hb_answered >= n_hb and len(r.help_answered_at) >= n_help
                and all(r.bursts[b.letter].answered >= b.units for b in plan.bursts)):
            r.drained = True
            break
        _pump(c, 0.05)
    c.disconnect()
    r.hb_latency_ms = lat.tolist()
    for letter, values in burst_lat.items():
        r.bursts[letter].latency_ms = values.tolist()
    return r


# -- the operators' view: the live stream -------------------------------------------------


def watch_sse(url: str, token: str, conn: Connection) -> None:
    """Process entry: follow /api/stream; on "stop" send back [(time, cid, alarm id)]."""
    import httpx

    seen: list[tuple[float, str, int]] = []
    errors: list[str] = []
    ready = threading.Event()

    def follow() -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client, client.stream(
                    "GET", url, headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status_code != 200:
                    errors.append(f"GET {url}: {resp.status_code}")
                    ready.set()
                    return
                event = None
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                        if event == "hello":
                            ready.set()
                    elif line.startswith("data:") and event == "alarm":
                        now = time.monotonic()
                        alarm = json.loads(line[5:])["alarm"]
                        seen.append((now, str(alarm.get("cid")), int(alarm.get("id", 0))))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            ready.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    if not ready.wait(20):
        errors.append("no hello from /api/stream within 20 s")
    conn.send(("ready", errors[:]))
    conn.recv()  # "stop"
    conn.send(("result", {"seen": list(seen), "errors": errors}))
