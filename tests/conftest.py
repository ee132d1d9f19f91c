"""Shared fixtures: real services on loopback ports (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import InfluxDB, Mosquitto, PtyPair, VictoriaMetrics


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    service = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    service = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    service = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    pair = PtyPair(tmp_path)
    yield pair.a, pair.b
    pair.close()
