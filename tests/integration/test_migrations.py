"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import core.inbox  # noqa: F401  (registers the inbox tables)
import dispatch.models  # noqa: F401  (registers the dispatch tables)
from core.db import Base, Database
from trygg.migrations import upgrade


def _drift(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(context, Base.metadata)
    # Alembic reads a partial index back without its WHERE and reports it as removed and
    # added again: an index of the same name on both sides is no drift.
    added = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "add_index"}
    removed = {d[1].name for d in diffs if isinstance(d, tuple) and d[0] == "remove_index"}
    return [d for d in diffs if not (isinstance(d, tuple) and d[0].endswith("_index")
                                     and d[1].name in added & removed)]


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade(db.engine)
        assert _drift(db) == []
    finally:
        db.close()
