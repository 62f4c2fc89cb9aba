"""The MQTT side of the simulator: one shared connection that every simulated unit uses.

Units publish their `<mrq>` through the link, and the link hands each `<mrs>` to the
message session waiting for it, keyed by (cid, ref), and each command on a lock's `cmd`
topic to the lock listening for it. One client for all units keeps a
simulation of hundreds of units to one broker connection. Against a broker with
per-device ACLs (deploy/) that connection can speak only for the unit whose account it
signs in with: give `username` (the cid), its `password` and `tls` to simulate that one
unit, or use a test account allowed to publish for all.

If the broker goes away the link reconnects with exponential backoff; while it is down
`publish` raises `LinkDown` and the units simply try again at their next resend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import aiomqtt
import structlog

from devices.errors import FrameError
from devices.scaip import ScaipResponse, decode_response
from simulator.errors import LinkDown

log = structlog.get_logger(__name__)

DEFAULT_ROOT = "trygg/v1"


def mrq_topic(root: str, cid: str) -> str:
    """Where a unit publishes its requests."""
    return f"{root}/dev/{cid}/mrq"


def mrs_topic(root: str, cid: str) -> str:
    """Where the alarm centre publishes its responses to a unit."""
    return f"{root}/dev/{cid}/mrs"


def cmd_topic(root: str, cid: str) -> str:
    """Where the alarm centre publishes its commands to a device (a lock's unlock)."""
    return f"{root}/dev/{cid}/cmd"


class DeviceLink:
    """One MQTT connection shared by all simulated units of a process.

    Use as `async with DeviceLink(host, port, root=...) as link:`; entering waits for
    the first connection (at most `connect_timeout_s`, else `LinkDown`). The link can
    be used again after it is closed, but not entered twice at once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        root: str = DEFAULT_ROOT,
        username: str | None = None,
        password: str | None = None,
        tls: aiomqtt.TLSParameters | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.root = root.rstrip("/")
        self._username = username
        self._password = password
        self._tls = tls
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting: dict[tuple[str, str], asyncio.Queue[ScaipResponse]] = {}
        self._commands: dict[str, asyncio.Queue[bytes]] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def __aenter__(self) -> DeviceLink:
        if self._task is not None:
            raise RuntimeError("DeviceLink is already open; it is reusable but not reentrant")
        self._task = asyncio.create_task(self._stay_connected(), name="trygg.simulator.link")
        await self._wait_first_connection(self._task)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def publish(self, cid: str, frame: bytes) -> None:
        """Publish one `<mrq>` for `cid` at QoS 1 and wait for the broker's PUBACK."""
        client = self._client
        if client is None:
            raise LinkDown(self.host, self.port)
        try:
            await client.publish(
                mrq_topic(self.root, cid), frame, qos=1, timeout=self._publish_timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise LinkDown(self.host, self.port) from exc

    @contextlib.contextmanager
    def expect(self, cid: str, ref: str) -> Iterator[asyncio.Queue[ScaipResponse]]:
        """Collect every `<mrs>` for (cid, ref) in a queue while the block runs.

        A queue, not a future: a HOLD answer is followed by later answers to the same
        ref, and resends may be answered more than once.
        """
        key = (cid, ref)
        if key in self._waiting:
            raise ValueError(f"a session for unit {cid} ref {ref} is already waiting")
        answers: asyncio.Queue[ScaipResponse] = asyncio.Queue()
        self._waiting[key] = answers
        try:
            yield answers
        finally:
            del self._waiting[key]

    @contextlib.asynccontextmanager
    async def commands(self, cid: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        """Collect every command published to `cid` (raw `<cmd>` frames) while the block
        runs. Subscribed before the block starts if the link is up, and again after every
        reconnect; only devices that take commands (locks) subscribe to their topic.
        """
        if cid in self._commands:
            raise ValueError(f"device {cid} is already listening for commands")
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._commands[cid] = queue
        try:
            if (client := self._client) is not None:
                await client.subscribe(cmd_topic(self.root, cid), qos=1)
            yield queue
        finally:
            del self._commands[cid]
            if (client := self._client) is not None:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.unsubscribe(cmd_topic(self.root, cid))

    async def _stay_connected(self) -> None:
        """Connect, subscribe, route answers; on any MQTT failure wait and start over."""
        delay = self._retry_min_s
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, username=self._username,
                                          password=self._password,
                                          tls_params=self._tls) as client:
                    await client.subscribe(f"{self.root}/dev/+/mrs", qos=1)
                    for cid in list(self._commands):
                        await client.subscribe(cmd_topic(self.root, cid), qos=1)
                    self._went_up(client)
                    delay = self._retry_min_s
                    async for message in client.messages:
                        self._route(message)
            except aiomqtt.MqttError as exc:
                log.warning("simulator.link.lost", error=str(exc), retry_in_s=delay)
            finally:
                self._went_down()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    async def _wait_first_connection(self, task: asyncio.Task[None]) -> None:
        up = asyncio.create_task(self._up.wait(), name="trygg.simulator.link.first-up")
        done, _ = await asyncio.wait(
            {task, up}, timeout=self._connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if up in done:
            return
        up.cancel()
        # The loop only ends by crashing; surface that crash instead of a timeout.
        crashed = task.done() and not task.cancelled() and task.exception() is not None
        await self._close()
        if crashed:
            task.result()
        raise LinkDown(self.host, self.port)

    async def _close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _went_up(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._up.set()
        log.info("simulator.link.connected", host=self.host, port=self.port)

    def _went_down(self) -> None:
        self._client = None
        self._up.clear()

    def _route(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return
        if (cid := self._cid_of(message.topic.value, "/cmd")) is not None:
            if (commands := self._commands.get(cid)) is not None:
                commands.put_nowait(bytes(payload))  # the device reads it strictly itself
            return
        cid = self._cid_of(message.topic.value, "/mrs")
        if cid is None:
            return
        try:
            response = decode_response(bytes(payload))
        except FrameError as exc:
            log.warning("simulator.link.bad_mrs", cid=cid, reason=exc.reason)
            return
        answers = self._waiting.get((cid, response.ref or ""))
        if answers is None:
            # A late duplicate answer to a resend, or an answer for a unit not simulated here.
            log.debug("simulator.link.unclaimed_mrs", cid=cid, ref=response.ref)
            return
        answers.put_nowait(response)

    def _cid_of(self, topic: str, suffix: str) -> str | None:
        prefix = f"{self.root}/dev/"
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            return None
        return topic[len(prefix) : -len(suffix)] or None
