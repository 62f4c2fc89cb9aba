"""Database plumbing: the declarative base, UTC timestamps, engines and a single writer thread.

Every write goes through `Database.write`, which runs the given function in a transaction
on one dedicated thread. On SQLite that serializes writers instead of letting them fight
over the file lock; on PostgreSQL it keeps commit order equal to arrival order. Reads run
on the default executor with their own sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")


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
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
        # Writers take the write lock up front: a deferred transaction that reads and
        # then writes gets SQLITE_BUSY at once, without waiting for the busy timeout.
        begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the gateway writes; FULL makes a commit durable before
    # we answer the device, which is the whole point of answering after the commit.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    dbapi_conn.isolation_level = None


class Database:
    """An engine, a session factory, and the writer thread."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_engine = make_engine(url, for_writes=True, **engine_kwargs)
        self.write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trygg-db-writer")

    def transaction(self, fn: Callable[[Session], T]) -> T:
        """Run fn in a write transaction on the calling thread (CLI, tests, the writer)."""
        with self.write_sessions() as session, session.begin():
            return fn(session)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run fn in a transaction on the writer thread; returns once it is committed."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.transaction, fn)

    async def read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()
        self.write_engine.dispose()
