"""The leader lock: of several dispatch processes on one database, one applies events.

Two dispatchers applying the same inbox would raise two alarms, two call-outs and two
reminders for one press. So dispatch runs its loops (inbox, timers, outbox, retention)
only while it holds this lock; another process waits as a standby, serving the API and
the dashboard, and takes over within a few seconds when the leader dies.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`), held on a
  connection of its own for as long as the process leads. When the process dies, even
  by kill -9, its session ends and the server frees the lock. The key is one constant
  per schema, so test schemas in one database do not meet. The connection is checked
  every `check_s`; if it is gone, or does not answer in `timeout_s`, leadership is lost
  (a session the server still holds frees the lock when the server notices it is gone).
  The connection must be a real session: not through a transaction-pooling bouncer.
- SQLite: a non-blocking `flock` on `<database file>.dispatch.lock`, which the OS frees
  when the process dies. An in-memory database cannot be shared: it always leads.

Whatever it writes, a dispatcher's writes are conditional besides (see
`dispatch.services`), so even two leaders at once would apply nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol

import structlog
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from dispatch.metrics import DISPATCH_LEADER

log = structlog.get_logger(__name__)

# The advisory lock's first key: "trygg.dispatch" as a number (the second is the schema).
PG_LOCK_NAMESPACE = 0x74727967  # "tryg"
APPLICATION_NAME = "trygg-dispatch-leader"


class _Backend(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits for it."""

    def still_held(self) -> bool:
        """Is the lock still ours? False once it cannot be known."""

    def release(self) -> None:
        """Give the lock up (closing whatever held it)."""


class _PostgresLock:
    def __init__(self, url: str, timeout_s: float) -> None:
        connect_args = {
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(int(timeout_s), 1),
            # A server that vanished is noticed by the kernel, not only at the next check.
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
            "keepalives_count": 2,
            # And the server's side: a leader whose host died without closing its socket
            # (power, network) must free the lock in seconds, not after the kernel's two
            # hours. About 11 s: longer than the leader's own give-up (check_s +
            # timeout_s), so two leaders never overlap.
            # Added to any options the URL carries (a search_path, say), not instead.
            "options": " ".join(filter(None, (
                str(make_url(url).query.get("options") or ""),
                "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
                "-c tcp_keepalives_count=3"))),
        }
        self._engine = create_engine(url, poolclass=NullPool, hide_parameters=True,
                                     connect_args=connect_args)
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is None:
            # Autocommit: a session lock needs no transaction, and an idle one open for
            # hours would hold back vacuum.
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = self._conn.execute(
            text("SELECT pg_try_advisory_lock(:ns, hashtext(coalesce(current_schema(), '')))"),
            {"ns": PG_LOCK_NAMESPACE}).scalar()
        if not got:
            self.release()  # a standby keeps no connection open between tries
        return bool(got)

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
        except Exception:
            return False
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing the session frees its advisory locks; no unlock is needed.
            with contextlib.suppress(Exception):
                conn.close()

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def still_held(self) -> bool:
        # Ours while the file we locked is still the file at the path: if somebody
        # deleted it, the next process would lock a new file and lead beside us.
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor frees the flock

    def dispose(self) -> None:
        self.release()


class _AlwaysLeads:
    """An in-memory database: no other process can share it."""

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def dispose(self) -> None:
        pass


def _backend_for(database_url: str, timeout_s: float) -> _PostgresLock | _FileLock | _AlwaysLeads:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return _PostgresLock(database_url, timeout_s)
    if backend == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return _AlwaysLeads()
        return _FileLock(Path(f"{database}.dispatch.lock"))
    raise ValueError(f"no leader lock for a {backend} database")


class LeaderLock:
    """Tries for the lock every `retry_s` until it leads, then checks every `check_s`.

    Use as `async with LeaderLock(url) as lock:`; then `await lock.wait_leading()` and
    `await lock.wait_lost()`. Leaving the block gives the lock up. The gauge
    `trygg_dispatch_leader` says 1 while it leads, 0 while it waits.
    """

    def __init__(self, database_url: str, *, retry_s: float = 1.0, check_s: float = 1.0,
                 timeout_s: float = 5.0) -> None:
        self.database_url = database_url
        self.retry_s = retry_s
        self.check_s = check_s
        self.timeout_s = timeout_s
        self._backend = _backend_for(database_url, timeout_s)
        self._leading = asyncio.Event()
        self._standby = asyncio.Event()
        self._tried = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_lost(self) -> None:
        await self._standby.wait()

    async def wait_tried(self, timeout_s: float) -> None:
        """Until the first try is over (taken or not), so a lone dispatcher starts leading."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), timeout_s)

    async def __aenter__(self) -> LeaderLock:
        if self._task is not None:
            raise RuntimeError("this leader lock is in use already")
        self._set(leading=False)
        self._task = asyncio.create_task(self._run(), name="trygg.dispatch.leader-lock")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._quietly(self._backend.dispose)
        if self.is_leader:
            log.info("dispatch_leadership_released")
        self._set(leading=False)

    def _set(self, *, leading: bool) -> None:
        if leading:
            self._standby.clear()
            self._leading.set()
        else:
            self._leading.clear()
            self._standby.set()
        DISPATCH_LEADER.set(1 if leading else 0)

    async def _call(self, fn: Callable[[], bool]) -> bool:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose the cancel of a stop
        # that meets the call's end, and the lock's loop would then never stop.
        async with asyncio.timeout(self.timeout_s):
            return await asyncio.to_thread(fn)

    async def _quietly(self, fn: Callable[[], None]) -> None:
        """Give up or close the lock without waiting on a database that does not answer:
        the backend forgets the connection first, so the next try opens a new one."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout_s):
                await asyncio.to_thread(fn)

    async def _run(self) -> None:
        waiting_logged = False
        while True:
            try:
                got = await self._call(self._backend.try_acquire)
            except Exception as exc:  # the database is away: a standby keeps trying
                got = False
                log.warning("dispatch_leader_lock_unavailable", error=type(exc).__name__)
                await self._quietly(self._backend.release)
            self._tried.set()
            if not got:
                if not waiting_logged:
                    log.info("dispatch_standby", reason="another dispatcher leads")
                    waiting_logged = True
                await asyncio.sleep(self.retry_s)
                continue
            waiting_logged = False
            log.info("dispatch_leadership_gained")
            self._set(leading=True)
            await self._hold()
            self._set(leading=False)
            log.warning("dispatch_leadership_lost")
            await self._quietly(self._backend.release)

    async def _hold(self) -> None:
        """Until the lock can no longer be vouched for."""
        while True:
            await asyncio.sleep(self.check_s)
            try:
                if not await self._call(self._backend.still_held):
                    return
            except Exception:  # no answer in time: assume the worst
                return
