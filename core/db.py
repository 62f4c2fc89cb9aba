"""Database plumbing: the declarative base, UTC timestamps, engines and a single writer thread.

Every write goes through `Database.write`, which runs the given function in a transaction
on one dedicated thread. On SQLite that serializes writers instead of letting them fight
over the file lock; on PostgreSQL it keeps commit order equal to arrival order. Reads run
on the default executor with their own sessions.

The writer serves three lanes in priority order: device events first (a device is waiting
for its answer), then operator actions, then background work (dispatch, timers, the
outbox). Background transactions are kept short, so an answer never waits long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import structlog
from prometheus_client import Histogram
from sqlalchemy import DateTime, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")
log = structlog.get_logger(__name__)
LOCK_WAIT = Histogram(
    "trygg_db_write_lock_wait_seconds",
    "Time a write transaction waited for SQLite's write lock (another process held it)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, hands back aware UTC, refuses naive input (a naive time is a bug)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def make_engine(url: str, *, for_writes: bool = False, **kwargs: Any) -> Engine:
    # Error messages would otherwise quote the statement's parameters: names, personal
    # numbers and addresses would reach the logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _make_parent_dir(url)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        # Writers wait for the lock in _begin_immediate, readers in SQLite's handler.
        busy_ms = 0 if for_writes else 10_000
        event.listen(engine, "connect", lambda conn, record: _sqlite_pragmas(conn, busy_ms))
        # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
        if for_writes:
            event.listen(engine, "begin", _begin_immediate)
        else:
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    # A database that is down must fail fast (a scrape, a sweep), not hang for minutes.
    connect_args = kwargs.pop("connect_args", {})
    if url.startswith("postgresql"):
        connect_args.setdefault("connect_timeout", 5)
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _make_parent_dir(url: str) -> None:
    """A SQLite file in a folder that does not exist yet (var/ on a fresh checkout)."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


WRITE_LOCK_WAIT_S = 30.0


def _begin_immediate(conn: Any) -> None:
    """Take the write lock up front, asking for it every millisecond until it is free.

    Up front: a deferred transaction that reads and then writes gets SQLITE_BUSY at
    once, without waiting. Every millisecond: SQLite's own busy handler sleeps longer
    and longer (up to 100 ms a try), so a writer in another process that commits back
    to back would starve it; the gateway must get the lock the moment it is free.
    """
    started = time.monotonic()
    deadline = started + WRITE_LOCK_WAIT_S
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            waited = time.monotonic() - started
            LOCK_WAIT.observe(waited)
            if waited > 0.05:
                log.warning("db_write_lock_wait", waited_ms=round(waited * 1000))
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _sqlite_pragmas(dbapi_conn: Any, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the gateway writes; FULL makes a commit durable before
    # we answer the device, which is the whole point of answering after the commit.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.execute("PRAGMA foreign_keys=ON")
    # No checkpoint inside a commit: SQLite's automatic one runs in the connection that
    # happens to commit the 1000th page, and stalls that commit (and every device
    # waiting on it) for tens of milliseconds. `Database.checkpoint` does it beside the
    # writers instead; the last connection to close checkpoints what is left.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()
    dbapi_conn.isolation_level = None


class Lane(IntEnum):
    """Who is waiting for a write; lower goes first."""

    DEVICE = 0
    OPERATOR = 1
    BACKGROUND = 2


class _Writer:
    """One thread running write jobs, most urgent lane first, in order within a lane."""

    def __init__(self, run: Callable[[Callable[[Session], Any]], Any],
                 niceness: int = 0) -> None:
        self._run = run
        self._niceness = niceness
        self._jobs: queue.PriorityQueue[tuple[int, int, Any, Future[Any] | None]] = (
            queue.PriorityQueue())
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="trygg-db-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Session], T], lane: Lane) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((int(lane), next(self._order), fn, future))
        return future

    def _loop(self) -> None:
        if self._niceness:
            # On Linux a thread has a priority of its own: this one yields the CPU to
            # the threads and processes that answer devices when both want it.
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)
        while True:
            _, _, fn, future = self._jobs.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._run(fn))
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Finish every job already submitted, then stop."""
        self._jobs.put((len(Lane), next(self._order), None, None))
        self._thread.join()


class Database:
    """An engine, a session factory, and the writer thread."""

    def __init__(self, url: str, *, writer_niceness: int = 0, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_engine = make_engine(url, for_writes=True, **engine_kwargs)
        self.write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._writer = _Writer(self.transaction, writer_niceness)

    def transaction(self, fn: Callable[[Session], T]) -> T:
        """Run fn in a write transaction on the calling thread (CLI, tests, the writer)."""
        with self.write_sessions() as session, session.begin():
            return fn(session)

    async def write(self, fn: Callable[[Session], T], lane: Lane = Lane.OPERATOR) -> T:
        """Run fn in a transaction on the writer thread; returns once it is committed."""
        return await asyncio.wrap_future(self._writer.submit(fn, lane))

    async def read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the SQLite file without holding up any writer.

        PASSIVE: it takes what it can and waits for nobody, so the gateway's commits go
        on meanwhile. Run every second or so by each process (`run_checkpoints`).
        """
        if self.is_sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def run_checkpoints(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception as exc:  # the WAL only grows meanwhile
                log.warning("db_checkpoint_failed", error=type(exc).__name__)

    def close(self) -> None:
        self._writer.shutdown()
        self.engine.dispose()
        self.write_engine.dispose()
