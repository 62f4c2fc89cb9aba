"""Alembic migrations, shipped with the package and applied by `trygg run` at start."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection_engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    command.upgrade(alembic_config(engine), "head")


def at_head(engine: Engine) -> bool:
    """Whether the schema is at the newest revision (without changing anything)."""
    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


def wait_for_head(engine: Engine, timeout_s: float = 120.0) -> None:
    """For a process that must not migrate (the gateway): wait until another one has."""
    deadline = time.monotonic() + timeout_s
    while not at_head(engine):
        if time.monotonic() > deadline:
            raise TimeoutError("the database schema is not at the newest revision; "
                               "start the dispatch role (or run `trygg migrate`) first")
        time.sleep(0.5)
