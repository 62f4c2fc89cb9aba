"""The DC-09 TCP listener: alarm panels and receivers connect, send frames and are answered
on the same connection.

Each connection has its own Framer and its own `reply`, so an answer can only go back
where its frame came from, and a connection that misbehaves (garbage, half a frame,
never reading its answers) is dropped alone. An idle connection is closed after
`idle_timeout_s`: a panel that went away without a FIN must not hold a slot forever.
Peer addresses are not logged (a home panel's address can be personal data); a
connection is known by a running number instead.
"""

from __future__ import annotations

import asyncio
import itertools

import structlog

from gateway.dc09_framing import DEFAULT_MAX_FRAME, Framer, OnFrame
from gateway.errors import LineDown
from gateway.serial_metrics import FRAMING_DISCARDS, HANDLER_FAILURES, TCP_CLOSED, TCP_CONNECTIONS

log = structlog.get_logger(__name__)

# Answers a peer has not read yet; past this it is not reading at all, and is dropped.
_MAX_UNSENT = 64 * 1024


class _Connection(asyncio.Protocol):
    """One peer: frames in through the Framer, answers out on the same transport."""

    def __init__(self, listener: Dc09TcpListener, number: int) -> None:
        self.listener = listener
        self.number = number
        self.framer = Framer(max_frame=listener.max_frame, on_discard=_count_discard)
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._close_reason = "peer"
        self._unanswered = 0  # frames handed on whose answer has not been written yet
        self._peer_done = False  # the peer sent EOF: close once it has its answers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.listener.connections) >= self.listener.max_connections:
            self.close("over_limit", abort=True)
            return
        self.listener.connections.add(self)
        TCP_CONNECTIONS.inc()
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        for frame in self.framer.feed(data):
            self._unanswered += 1
            try:
                self.listener.on_frame(frame, self.reply)
            except Exception as exc:  # a handler bug must not take other frames down
                self._unanswered -= 1
                HANDLER_FAILURES.labels("tcp").inc()
                log.error("frame_handler_failed", connection=self.number,
                          error=type(exc).__name__)

    def eof_received(self) -> bool:
        # Many panels connect per message and shut their side once it is sent; the
        # answer may still be on its way from the commit. Keep the connection open for
        # it (an answer that never comes is cut by the idle timer), then close.
        self._peer_done = True
        if self._unanswered == 0:
            self.close("peer")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.transport = None
        self.listener._forget(self)
        reason = self._close_reason
        if reason == "peer" and exc is not None:
            reason = "error"  # reset by the peer, or a write that failed
        TCP_CLOSED.labels(reason).inc()

    def reply(self, answer: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise LineDown("tcp", "closed")
        if transport.get_write_buffer_size() + len(answer) > _MAX_UNSENT:
            self.close("stalled", abort=True)  # it reads nothing: its buffer is lost
            raise LineDown("tcp", "stalled")
        transport.write(answer)
        self._unanswered = max(0, self._unanswered - 1)
        if self._peer_done and self._unanswered == 0:
            self.close("peer")  # after the answer is flushed

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close with a reason label for the metric; `abort` drops unsent answers."""
        transport = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            self._close_reason = reason
        if abort:
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.listener.idle_timeout_s, self._went_idle)

    def _went_idle(self) -> None:
        log.info("dc09_tcp_idle_closed", connection=self.number)
        self.close("idle")


class Dc09TcpListener:
    """Accept DC-09 connections on host:port; each frame goes to `on_frame(frame, reply)`.

    `on_frame` is called on the event loop and must not block (the runtime passes
    `lambda f, r: ingest.accept(f, codec, r)`). Use `async with listener:` or
    `await start()` / `await close()`; `bound_port` is the port really bound (for 0).
    """

    def __init__(self, host: str, port: int, on_frame: OnFrame, *,
                 idle_timeout_s: float = 120.0, max_connections: int = 256,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.host = host
        self.port = port
        self.on_frame = on_frame
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.max_frame = max_frame
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._emptied: asyncio.Event | None = None  # set once close() saw the last one go
        self._numbers = itertools.count(1)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the DC-09 TCP listener is already started")
        def connection() -> _Connection:
            return _Connection(self, next(self._numbers))

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(connection, self.host, self.port)
        log.info("dc09_tcp_listening", host=self.host, port=self.bound_port)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close every open connection, and wait until they are gone.

        Answers already handed over are flushed first, for up to `timeout_s`; then
        whatever is left is cut.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self.connections):
            connection.close("shutdown")
        # Python 3.11's Server.wait_closed does not wait for open connections: we do.
        if self.connections:
            self._emptied = asyncio.Event()
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
            except TimeoutError:
                for connection in list(self.connections):
                    connection.close("shutdown", abort=True)
        await server.wait_closed()

    def _forget(self, connection: _Connection) -> bool:
        """A connection is gone; True if it was one of ours (counted in the gauge)."""
        if connection not in self.connections:
            return False
        self.connections.discard(connection)
        TCP_CONNECTIONS.dec()
        if not self.connections and self._emptied is not None:
            self._emptied.set()
        return True

    async def __aenter__(self) -> Dc09TcpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the DC-09 TCP listener is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port


def _count_discard(reason: str, size: int) -> None:
    FRAMING_DISCARDS.labels("tcp", reason).inc()
