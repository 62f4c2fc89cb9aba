"""A database whose event log already holds N processed events (`bench/ingest --prefill N`).

The schema comes from the product's own migrations (`trygg.migrations.upgrade`), so the
prefilled table is exactly what the gateway would find in production after months of
work, whatever the migrations of the day make it (before and after a migration that adds
columns or indexes: the rows are generated for the columns the table really has).

The rows are generated inside the database (a recursive CTE on SQLite, generate_series
on PostgreSQL), in chunks of their own transactions, with the table's secondary indexes
dropped first and built again at the end (each from its own `CREATE INDEX` text as the
database reports it), which is several times faster than keeping them up to date row by
row. What a row looks like:

- id: assigned by the database in arrival order (ids grow with received_at);
- cid: `--prefill-cids` (100,000) units, 850000..949999 (the benchmark's own registered
  units 900000.. are among them), each unit's events spread evenly over the log;
- ref: the unit's own counter (numeric, so it never collides with the benchmark's
  `T`/`L`/`I`/`J` refs);
- kind: 40 % alarm (no `stc`), 20 % check-in (0088), 20 % check-out (0111), 10 % test
  (0102), 5 % battery low (0016), 5 % mains lost (0085) -- heartbeats are not stored;
- idempotency_key: `scaip:{cid}:{ref}:{16 hex}`; payload the matching `<mrq>` frame;
- received_at = last_seen_at: evenly over the last 80 days (inside the 90-day retention)
  up to 10 minutes ago; processed_at 150 ms after arrival.

SQLite: the prefilled file is built once under `cache_dir` (keyed by the migration head
and N, rebuilt when older than `CACHE_MAX_AGE_S`) and copied for each run. PostgreSQL:
generated in each run's fresh schema, then `VACUUM ANALYZE` (as autovacuum would have
done to a table this old; otherwise it starts in the measured window).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

PREFILL_CIDS = 100_000
CID_BASE = 850_000
HISTORY_DAYS = 80
NEWEST_AGE_S = 600
CHUNK_SQLITE = 500_000
CHUNK_PG = 1_000_000
CACHE_MAX_AGE_S = 3 * 86400
GENERATOR_VERSION = 2  # bump when the generated rows change: old cache files are not used

Say = Callable[[str], None]


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from trygg.migrations import HERE

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return "-".join(sorted(ScriptDirectory.from_config(cfg).get_heads()))


RAW_FRAME_DAYS = 7  # TRYGG_RAW_FRAME_RETENTION_DAYS's default
# Where retention would have got to: its mark past the last blanked frame.
MARK_BLANKED = ("INSERT INTO maintenance_marks (name, value) SELECT "
                "'raw_frames_blanked_through', COALESCE(max(id), 0) FROM device_events "
                "WHERE payload = ''")


def migrate(url: str) -> None:
    from core.db import Database
    from trygg.migrations import upgrade

    db = Database(url)
    try:
        upgrade(db.engine)
    finally:
        db.close()


# -- the rows, as SQL over an integer i (0 <= i < n) -----------------------------------------


def _columns(dialect: str, n: int, ncids: int, now_us: int) -> dict[str, str]:
    """Column -> SQL expression over `i` (and the subquery's cid, ref, kind, stc, us)."""
    if dialect == "sqlite":
        def ts(us: str) -> str:
            return (f"strftime('%Y-%m-%d %H:%M:%S', ({us}) / 1000000, 'unixepoch') "
                    f"|| printf('.%06d', ({us}) % 1000000)")
        hex16 = "lower(hex(randomblob(8)))"
        txt = "CAST({} AS TEXT)"
    else:
        def ts(us: str) -> str:
            return f"(to_timestamp(({us})::float8 / 1e6) AT TIME ZONE 'UTC')"
        hex16 = "substr(md5(random()::text), 1, 16)"
        txt = "CAST({} AS TEXT)"
    frame = ("'<mrq><ref>' || " + txt.format("ref") + " || '</ref><cid>' || " + txt.format("cid")
             + " || '</cid><dty>0003</dty>' || CASE WHEN stc IS NULL THEN '' "
             "ELSE '<stc>' || stc || '</stc>' END || '</mrq>'")
    return {
        "idempotency_key": ("'scaip:' || " + txt.format("cid") + " || ':' || "
                            + txt.format("ref") + f" || ':' || {hex16}"),
        "protocol": "'scaip'",
        "cid": txt.format("cid"),
        "ref": txt.format("ref"),
        "kind": "kind",
        "device_type": "'0003'",
        "device_id": "NULL",
        "component": "CASE WHEN kind = 'alarm' THEN '002' ELSE NULL END",
        "status_code": "stc",
        "priority": "0",
        "location_code": "NULL",
        "staff_id": "NULL",
        # As retention leaves a log in steady state: frames older than 7 days are blank.
        "payload": f"CASE WHEN us < {now_us - RAW_FRAME_DAYS * 86400 * 1_000_000} THEN '' "
                   f"ELSE {frame} END",
        "received_at": ts("us"),
        "last_seen_at": ts("us"),
        "processed_at": ts("us + 150000"),
        "process_error": "NULL",
    }


def _select(dialect: str, n: int, ncids: int, now_us: int,
            columns: list[str]) -> tuple[str, str]:
    """SELECT <columns> FROM (the per-row basics over i) -- i comes from the caller's FROM."""
    span_us = HISTORY_DAYS * 86400 * 1_000_000 - NEWEST_AGE_S * 1_000_000
    start_us = now_us - HISTORY_DAYS * 86400 * 1_000_000
    k = "(i % 20)"
    kind = (f"CASE WHEN {k} < 8 THEN 'alarm' WHEN {k} < 12 THEN 'check_in' "
            f"WHEN {k} < 16 THEN 'check_out' WHEN {k} < 18 THEN 'test' "
            f"WHEN {k} = 18 THEN 'battery_low' ELSE 'mains_lost' END")
    stc = (f"CASE WHEN {k} < 8 THEN NULL WHEN {k} < 12 THEN '0088' "
           f"WHEN {k} < 16 THEN '0111' WHEN {k} < 18 THEN '0102' "
           f"WHEN {k} = 18 THEN '0016' ELSE '0085' END")
    step = span_us // max(n, 1)
    exprs = _columns(dialect, n, ncids, now_us)
    missing = [c for c in columns if c not in exprs]
    if missing:
        raise RuntimeError(f"prefill: device_events has columns this generator does not know: "
                           f"{missing}; teach bench/prefill.py their values")
    inner = (f"SELECT i, {CID_BASE} + (i * 7919) % {ncids} AS cid, (i / {ncids}) % 100000 AS ref, "
             f"{kind} AS kind, {stc} AS stc, {start_us} + i * {step} AS us")
    return inner, ", ".join(exprs[c] for c in columns)


# -- SQLite -----------------------------------------------------------------------------------


def sqlite_prefilled(path: Path, n: int, cache_dir: Path | None, say: Say,
                     ncids: int = PREFILL_CIDS) -> str:
    """Make `path` a migrated SQLite database with n processed events; returns how."""
    if cache_dir is None:
        t0 = time.perf_counter()
        _build_sqlite(path, n, ncids, say)
        return f"generated in {time.perf_counter() - t0:.0f} s"
    cache_dir.mkdir(parents=True, exist_ok=True)
    template = cache_dir / f"sqlite-{_head()}-{n}-{ncids}-v{GENERATOR_VERSION}.db"
    how = "copied from the cached template"
    if not template.exists() or time.time() - template.stat().st_mtime > CACHE_MAX_AGE_S:
        t0 = time.perf_counter()
        partial = template.with_suffix(f".{os.getpid()}.partial")
        _build_sqlite(partial, n, ncids, say)
        partial.replace(template)
        how = f"template generated in {time.perf_counter() - t0:.0f} s, then copied"
    t0 = time.perf_counter()
    shutil.copyfile(template, path)
    return f"{how} ({template}, {template.stat().st_size / 1e9:.1f} GB; copy "\
           f"{time.perf_counter() - t0:.0f} s)"


def _build_sqlite(path: Path, n: int, ncids: int, say: Say) -> None:
    path.unlink(missing_ok=True)
    migrate(f"sqlite:///{path}")
    con = sqlite3.connect(path, isolation_level=None)
    try:
        # Only for the prefill, never for the measured run: the gateway opens the file
        # with its own pragmas (WAL, synchronous=FULL).
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        con.execute("PRAGMA temp_store=MEMORY")
        columns = [r[1] for r in con.execute("PRAGMA table_info(device_events)") if r[1] != "id"]
        indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                              "AND tbl_name = 'device_events' AND sql IS NOT NULL").fetchall()
        for name, _ in indexes:
            con.execute(f'DROP INDEX "{name}"')
        inner, exprs = _select("sqlite", n, ncids, int(time.time() * 1e6), columns)
        t0 = time.perf_counter()
        for a in range(0, n, CHUNK_SQLITE):
            b = min(n, a + CHUNK_SQLITE)
            con.execute("BEGIN")
            con.execute(
                f"WITH RECURSIVE seq(i) AS (SELECT {a} UNION ALL SELECT i + 1 FROM seq "
                f"WHERE i < {b - 1}) "
                f"INSERT INTO device_events ({', '.join(columns)}) "
                f"SELECT {exprs} FROM ({inner} FROM seq) AS s")
            con.execute("COMMIT")
            say(f"    prefill (SQLite): {b:,} / {n:,} rows, {time.perf_counter() - t0:.0f} s")
        for name, sql in indexes:
            t1 = time.perf_counter()
            con.execute(sql)
            say(f"    prefill (SQLite): index {name} built in {time.perf_counter() - t1:.0f} s")
        con.execute(MARK_BLANKED)
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


# -- PostgreSQL -------------------------------------------------------------------------------


def pg_prefill(url: str, n: int, say: Say, ncids: int = PREFILL_CIDS) -> str:
    """Migrate the (empty) schema `url` points at and fill it with n processed events."""
    from sqlalchemy import create_engine, text

    t0 = time.perf_counter()
    migrate(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            columns = [r[0] for r in c.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = 'device_events' ORDER BY ordinal_position"))
                if r[0] != "id"]
            indexes = c.execute(text(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = "
                "current_schema() AND i.tablename = 'device_events' AND NOT EXISTS (SELECT 1 "
                "FROM pg_constraint k WHERE k.conindid = (quote_ident(i.schemaname) || '.' || "
                "quote_ident(i.indexname))::regclass)")).all()
            for name, _ in indexes:
                c.execute(text(f'DROP INDEX "{name}"'))
            inner, exprs = _select("postgresql", n, ncids, int(time.time() * 1e6), columns)
            for a in range(0, n, CHUNK_PG):
                b = min(n, a + CHUNK_PG)
                c.execute(text(
                    f"INSERT INTO device_events ({', '.join(columns)}) "
                    f"SELECT {exprs} FROM ({inner} FROM generate_series({a}::bigint, "
                    f"{b - 1}::bigint) AS i) AS s"))
                say(f"    prefill (PostgreSQL): {b:,} / {n:,} rows, "
                    f"{time.perf_counter() - t0:.0f} s")
            c.execute(text("SET maintenance_work_mem = '512MB'"))
            for name, sql in indexes:
                t1 = time.perf_counter()
                c.execute(text(sql))
                say(f"    prefill (PostgreSQL): index {name} built in "
                    f"{time.perf_counter() - t1:.0f} s")
            c.execute(text(MARK_BLANKED))
            c.execute(text("VACUUM ANALYZE device_events"))
    finally:
        engine.dispose()
    return f"generated in {time.perf_counter() - t0:.0f} s"


def sqlite_counts(path: Path) -> tuple[int, int]:
    con = sqlite3.connect(path)
    try:
        rows, processed = con.execute(
            "SELECT count(*), count(processed_at) FROM device_events").fetchone()
        return int(rows), int(processed)
    finally:
        con.close()
