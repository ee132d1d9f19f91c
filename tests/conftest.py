"""Shared fixtures: real services on loopback ports (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.services import InfluxDB, Mosquitto, PtyPair, VictoriaMetrics

# No timing assertions in tests: on a loaded 2-core machine one example can take 100x longer than
# the next, which hypothesis's default 200 ms deadline reports as a failure.
settings.register_profile(
    "hub", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("hub")


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
