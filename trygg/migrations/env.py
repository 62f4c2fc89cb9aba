"""Alembic environment: runs against the engine handed in by trygg.migrations.upgrade."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import core.inbox  # noqa: F401
import dispatch.models  # noqa: F401  (registers the tables)
from core.db import Base

config = context.config
engine = config.attributes.get("connection_engine") or create_engine(
    config.get_main_option("sqlalchemy.url") or "sqlite:///trygg.db"
)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
