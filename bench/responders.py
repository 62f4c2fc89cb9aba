"""The ceiling: bare responders that answer every `<mrq>` with an `<mrs>` and do nothing else.

Each runs in its own process, subscribed to `{root}/dev/+/mrq` at QoS 1, and publishes
`<mrs><ref>REF</ref><snu>0</snu></mrs>` at QoS 1 to `{root}/dev/{cid}/mrs`: the ref is
really echoed (read with one regex), so the device side can match answers to requests.
No XML parsing, no storage, no logging. Both set TCP_NODELAY, as the gateway does.

The aiomqtt one is built like the gateway's link (same client options; one task per
answer, because aiomqtt's `publish` at QoS 1 awaits the PUBACK and awaiting it inline
would serialize the answers). The paho one publishes from its `on_message` callback.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from multiprocessing.connection import Connection
from typing import Any

_REF = re.compile(rb"<ref>\s*([A-Za-z0-9]{1,16})\s*</ref>")
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _answer(payload: bytes) -> bytes | None:
    m = _REF.search(payload)
    return None if m is None else b"<mrs><ref>" + m.group(1) + b"</ref><snu>0</snu></mrs>"


def _cid(prefix: str, topic: str) -> str:
    return topic[len(prefix):-len("/mrq")]


# -- aiomqtt --------------------------------------------------------------------------------


def run_aiomqtt(host: str, port: int, root: str, conn: Connection) -> None:
    """Process entry."""
    asyncio.run(_aiomqtt(host, port, root, conn))


async def _aiomqtt(host: str, port: int, root: str, conn: Connection) -> None:
    import aiomqtt

    prefix = f"{root}/dev/"
    tasks: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(host, port, identifier=f"bench-aiomqtt-{secrets.token_hex(4)}",
                              max_inflight_messages=1000, socket_options=NODELAY,
                              timeout=10) as client:
        # "Does nothing else": no log line per answer. aiomqtt warns on every publish
        # while more than 10 are awaiting their PUBACK, which at these rates is always.
        client.pending_calls_threshold = 1 << 30
        await client.subscribe(f"{root}/dev/+/mrq", qos=1)
        conn.send("ready")
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            answer = _answer(bytes(payload))
            if answer is None:
                continue
            topic = f"{prefix}{_cid(prefix, message.topic.value)}/mrs"
            task = asyncio.create_task(client.publish(topic, answer, qos=1))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


# -- paho -----------------------------------------------------------------------------------


def run_paho(host: str, port: int, root: str, conn: Connection) -> None:
    """Process entry."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"{root}/dev/"
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"bench-paho-{secrets.token_hex(4)}", clean_session=True)
    client.max_inflight_messages_set(1000)

    def on_subscribe(*_: Any) -> None:
        conn.send("ready")

    def on_message(c: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        answer = _answer(bytes(msg.payload))
        if answer is not None:
            c.publish(f"{prefix}{_cid(prefix, msg.topic)}/mrs", answer, qos=1)

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=60)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe(f"{root}/dev/+/mrq", qos=1)
    client.loop_forever()
