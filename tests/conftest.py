"""Fixtures shared by every test layer: a real Mosquitto, a fake clock, topic isolation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers import Broker, mosquitto


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A real Mosquitto on a free port, for the whole test session."""
    with mosquitto() as b:
        yield b
