"""End to end: AIS over UDP into a running hub, positions read back from InfluxDB with InfluxQL."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from drivers.nmea.sources import NmeaUdpSource
from hub.app import Hub
from hub.config import parse_config
from tests.services import InfluxDB
from tests.util import wait_for

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"

CONFIG = """
[hub]
site = "nmea-it"
data_dir = "var"

[http]
enabled = false

[influxdb]
api = "v1"
url = "{url}"
database = "{db}"
flush_interval_s = 0.1

[[sources]]
type = "nmea_udp"
name = "ais-udp"
bind_host = "127.0.0.1"
bind_port = 0
"""


async def test_ais_over_udp_lands_in_influxdb(tmp_path: Path, influxdb: InfluxDB) -> None:
    db = influxdb.create_database("nmea_it")
    text = CONFIG.format(url=db.url, db=db.db)
    hub = Hub(parse_config(text, tmp_path / "hub.toml"))
    await hub.start()
    try:
        source = hub.sources[0]
        assert isinstance(source, NmeaUdpSource)
        await wait_for(source.bound.is_set)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for line in (DATA / "ais_public.nmea").read_bytes().splitlines():
                sock.sendto(line + b"\r\n", ("127.0.0.1", source.port))

        def positions() -> list[dict[str, object]]:
            return db.query('SELECT lat, lon, sog_kn, heading_deg, mmsi FROM "vessel_position"')

        await wait_for(lambda: len(positions()) >= 14, timeout=20)
        rows = {row["mmsi"]: row for row in positions()}
        statics = db.query('SELECT "name", imo, mmsi FROM "vessel_static"')
    finally:
        await hub.stop()
    assert len(rows) == 14
    qinhuangdao = rows["413355820"]  # a type 1 report off Qinhuangdao
    assert qinhuangdao["lat"] == pytest.approx(39.932017, abs=1e-6)
    assert qinhuangdao["lon"] == pytest.approx(119.698612, abs=1e-6)
    assert qinhuangdao["heading_deg"] == 259
    assert rows["227006760"]["heading_deg"] is None  # 511 "not available" is no field at all
    assert rows["206914217"]["sog_kn"] == 57  # type 27
    names = {row["mmsi"]: row["name"] for row in statics if row["name"]}
    assert names["351759000"] == "EVER DIADEM"
    assert names["316021442"] == "DFO2"
