"""The real services the integration tests rely on start and answer."""

from __future__ import annotations

import time
import urllib.request

from tests.services import InfluxDB, Mosquitto, VictoriaMetrics
from tests.util import wait_for_sync


def test_influxdb_write_and_query(influxdb: InfluxDB) -> None:
    body = b"probe,site=t value=1.5 1700000000000000000"
    req = urllib.request.Request(f"{influxdb.url}/write?db={influxdb.db}&precision=ns", body)
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    rows = influxdb.query("SELECT value FROM probe")
    assert rows == [{"time": 1700000000000000000, "value": 1.5}]


def test_victoria_accepts_v2_write(victoria: VictoriaMetrics) -> None:
    # VictoriaMetrics drops samples outside its retention (1 month): use a recent timestamp.
    now_ns = time.time_ns()
    req = urllib.request.Request(
        f"{victoria.url}/api/v2/write?bucket=hub", f"probe,site=t value=2 {now_ns}".encode()
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    series = wait_for_sync(lambda: victoria.export('{__name__="probe_value"}'))
    assert series[0]["values"] == [2] and series[0]["metric"]["site"] == "t"


def test_mosquitto_accepts_connections(mosquitto: Mosquitto) -> None:
    assert mosquitto.ready()
