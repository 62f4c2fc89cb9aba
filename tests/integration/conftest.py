"""Database fixtures: a fresh migrated SQLite file per test, holding the shipped registry.

Migrating and importing cost a few fsyncs each, so it is done once per session into a
template file, and each test gets its own copy of that file in its tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.db import Database
from core.settings import SHIPPED_CONFIG
from devices.codecs import CODECS, Codec
from dispatch.config import load_config
from dispatch.registry import import_config
from gateway.ingest import Ingest
from tests.dc09 import running
from trygg.migrations import upgrade


def _build(path: Path, *, with_registry: bool) -> Path:
    database = Database(f"sqlite:///{path}")
    upgrade(database.engine)
    if with_registry:
        config = load_config(SHIPPED_CONFIG)
        database.transaction(lambda s: import_config(s, config))
    database.close()  # the last connection closing folds the WAL into the file
    return path


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("db-templates")
    return {"empty": _build(root / "empty.db", with_registry=False),
            "shipped": _build(root / "shipped.db", with_registry=True)}


def _copy(template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "trygg.db"
    shutil.copyfile(template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.close()


@pytest.fixture
def empty_db(_templates: dict[str, Path], tmp_path: Path) -> Iterator[Database]:
    """A migrated database with nothing in it."""
    yield from _copy(_templates["empty"], tmp_path)


@pytest.fixture
def db(_templates: dict[str, Path], tmp_path: Path) -> Iterator[Database]:
    """A migrated database holding the shipped configuration's registry."""
    yield from _copy(_templates["shipped"], tmp_path)


@pytest.fixture
def restart(db: Database) -> Iterator[Callable[[], Database]]:
    """Simulate a crash: a new Database on the same file, nothing in memory carried over."""
    opened: list[Database] = []

    def restarted() -> Database:
        db.close()
        opened.append(Database(db.url))
        return opened[-1]

    yield restarted
    for database in opened:
        database.close()


# The DC-09 transport tests: the codec, and the real Ingest running on an empty
# migrated SQLite file with the test module's `clock`.


@pytest.fixture
def codec() -> Codec:
    return CODECS["dc09"]


@pytest.fixture
async def ingest(empty_db: Database, clock: FakeClock) -> AsyncIterator[Ingest]:
    async for running_ingest in running(Ingest(empty_db, clock)):
        yield running_ingest
