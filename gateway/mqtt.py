"""The adapter over aiomqtt: one connection, a reconnect loop anyone can read, a state.

Everything else in Trygg talks to `MqttLink`, not to aiomqtt, so the client library can
change behind it. The loop reconnects with exponential backoff and jitter, capped at a
few seconds: devices wait for us, so once the broker is back we must be too. The
current state is visible for /readyz and as a metric; the link counts as connected
only once its subscriptions are confirmed. Over TLS (an mqtts:// broker) it checks the
broker's certificate and host name against the given CA, or the system's, and can
present a client certificate.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
import structlog

from gateway.backoff import backoff
from gateway.errors import GatewayError, GatewayUnavailable
from gateway.metrics import MQTT_CONNECTED, MQTT_RECONNECTS

log = structlog.get_logger(__name__)

# Without TCP_NODELAY, loopback latency is dominated by Nagle's algorithm.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def tls_parameters(ca_file: Path | None = None, cert_file: Path | None = None,
                   key_file: Path | None = None) -> aiomqtt.TLSParameters:
    """TLS for a link: verify the broker against `ca_file` (None: the system's CAs), and
    present `cert_file` (with `key_file`, unless the key is in it) if given.

    The files are read again at every connect, so renewed certificates are picked up;
    one missing now is a configuration error, said once at start rather than at every
    reconnect.
    """
    for what, path in (("CA file", ca_file), ("client certificate", cert_file),
                       ("client key", key_file)):
        if path is not None and not os.access(path, os.R_OK):
            raise GatewayError(f"MQTT over TLS: the {what} {path} cannot be read")
    if key_file is not None and cert_file is None:
        raise GatewayError("MQTT over TLS: a client key without a client certificate")
    return aiomqtt.TLSParameters(
        ca_certs=str(ca_file) if ca_file else None,
        certfile=str(cert_file) if cert_file else None,
        keyfile=str(key_file) if key_file else None)


class LinkState(StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class MqttLink:
    """A named, self-healing MQTT connection that hands each message to `on_message`.

    `on_message(topic, payload)` is called on the event loop and must not block: the
    gateway only enqueues there.
    `tls` (see `tls_parameters`) makes it connect over TLS; None is plain TCP.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        identifier: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: aiomqtt.TLSParameters | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 3.0,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.identifier = identifier
        self.username = username
        self.password = password
        self.tls = tls  # None: plain TCP
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.state = LinkState.STARTING
        self.on_state = on_state  # told True when the link is up, False when it drops
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()

    def _new_client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.host, self.port,
            identifier=self.identifier,
            username=self.username, password=self.password,
            tls_params=self.tls,
            # A persistent session: the broker keeps our QoS 1 messages while we reconnect.
            clean_session=self.identifier is None,
            # No window: every answer goes out at once. With one (1,000), paho kept the
            # rest queued and walked its whole list of unacknowledged messages on every
            # PUBACK, so a gateway that fell behind fell further behind.
            max_inflight_messages=0,
            socket_options=NODELAY,
            timeout=10,
        )
        # aiomqtt warns above 10 unacknowledged publishes; at alarm bursts that is normal.
        client.pending_calls_threshold = 1000
        return client

    def backoff(self) -> Iterator[float]:
        """The waits between reconnect attempts: doubling, jittered, never over the cap."""
        return backoff(self.backoff_initial_s, self.backoff_max_s)

    async def run(self) -> None:
        """Connect, subscribe, deliver; on any loss wait and do it again. Never returns."""
        waits = self.backoff()
        while True:
            try:
                async with self._new_client() as client:
                    self._receive_directly(client)
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self._up(client)
                    waits = self.backoff()
                    # Messages go straight to `on_message` (see _receive_directly); this
                    # only waits for the connection to drop, which raises MqttError.
                    async for message in client.messages:
                        self._deliver_message(message.topic.value, message.payload)
            except aiomqtt.MqttError as exc:
                self._down()
                MQTT_RECONNECTS.labels(self.name).inc()
                wait = next(waits)
                log.warning("mqtt_link_lost", link=self.name, host=self.host, port=self.port,
                            error=str(exc), retry_in_s=round(wait, 2))
                await asyncio.sleep(wait)
            finally:
                self._down()

    def _receive_directly(self, client: aiomqtt.Client) -> None:
        """Hand each message to `on_message` from paho's callback, not through aiomqtt's
        queue and iterator.

        At 4,200 heartbeats a second aiomqtt's receive path (a Message object, a queue,
        a task and an `asyncio.wait` per message) was the gateway's ceiling: help calls
        waited seconds behind heartbeats in the broker. paho reads the socket on our
        event loop (aiomqtt registers it with `add_reader`), so the callback runs there
        too, and the PUBACK goes out when it returns, as before: after the frame is
        queued for the commit. Messages that reached aiomqtt's queue before the switch
        (a persistent session replays at once on connect) are delivered first.
        """
        if self.on_message is None:
            return
        while not client._queue.empty():
            message = client._queue.get_nowait()
            self._deliver_message(message.topic.value, message.payload)

        def on_message(_client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
            self._deliver_message(message.topic, message.payload)

        client._client.on_message = on_message

    def _deliver_message(self, topic: str, payload: object) -> None:
        if self.on_message is not None and isinstance(payload, bytes | bytearray):
            self.on_message(topic, bytes(payload))

    def _up(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.state = LinkState.CONNECTED
        self._connected.set()
        MQTT_CONNECTED.labels(self.name).set(1)
        if self.on_state is not None:
            self.on_state(True)
        log.info("mqtt_link_up", link=self.name, host=self.host, port=self.port,
                 tls=self.tls is not None)

    def _down(self) -> None:
        if self._client is not None:
            self.state = LinkState.DISCONNECTED
            if self.on_state is not None:
                self.on_state(False)
        self._client = None
        self._connected.clear()
        MQTT_CONNECTED.labels(self.name).set(0)

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Hand a message to the connection without waiting for the broker's PUBACK.

        For answers to devices: one lost with the connection is harmless, since the
        device resends and is answered again from the event log. aiomqtt's own publish
        awaits every PUBACK (a future, a lock and a task per answer, which halves the
        answers a core can send), so this goes to the paho client underneath, as
        aiomqtt's publish itself does first.
        """
        client = self._client
        if client is None:
            raise GatewayUnavailable(self.host, self.port)
        info = client._client.publish(topic, payload, qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise GatewayUnavailable(self.host, self.port)

    async def publish(self, topic: str, payload: bytes | str, *, qos: int = 1,
                      retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise GatewayUnavailable(self.host, self.port)
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise GatewayUnavailable(self.host, self.port) from exc
