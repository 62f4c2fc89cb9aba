"""Fixtures shared by every test layer: a real Mosquitto, databases, topic isolation."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.brokers import Broker, mosquitto

# A real PostgreSQL for the tests that ask for one: scripts/test sets this when a server
# answers on 127.0.0.1:5432 (CI has one); without it those parameters are skipped.
POSTGRES_URL = os.environ.get("TRYGG_TEST_POSTGRES_URL", "")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="no PostgreSQL given (set TRYGG_TEST_POSTGRES_URL)")


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A real Mosquitto on a free port, for the whole test session."""
    with mosquitto() as b:
        yield b


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trygg.db'}"


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """A fresh schema in the given PostgreSQL, dropped afterwards."""
    schema = f"trygg_test_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases the product supports: SQLite always, PostgreSQL when given."""
    name = "sqlite_database_url" if request.param == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(name)
    return url
