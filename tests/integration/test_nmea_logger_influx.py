"""End to end: real AIS logger captures over UDP into a running hub, read back from InfluxDB.

USCG/NAIS receiver fields give the points their logger time; AIS types 4 and 9 land in their
own measurements (tests/data/README.md says where each capture comes from).
"""

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


USCG = DATA / "uscg_noaadata_2006.nmea"
EXTRA = ("gpsd_sample_excerpt.nmea", "libais_typeexamples.nmea", "clj_ais_placeholder_tag.nmea")


async def test_logger_captures_land_in_influxdb_at_logger_time(
    tmp_path: Path, influxdb: InfluxDB
) -> None:
    db = influxdb.create_database("nmea_logger_it")
    hub = Hub(parse_config(CONFIG.format(url=db.url, db=db.db), tmp_path / "hub.toml"))
    await hub.start()
    try:
        source = hub.sources[0]
        assert isinstance(source, NmeaUdpSource)
        await wait_for(source.bound.is_set)
        lines = USCG.read_bytes().splitlines()
        for name in EXTRA:
            lines += (DATA / name).read_bytes().splitlines()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for line in lines:
                sock.sendto(line + b"\r\n", ("127.0.0.1", source.port))

        def count(measurement: str, field: str = "lat") -> int:
            rows = db.query(f'SELECT count("{field}") FROM "{measurement}"')
            return int(rows[0]["count"]) if rows else 0

        # 673 + 6 + 1 type 1-3 positions; 22 base stations (4 + 21 + 1, less 4 that report
        # neither position nor time); 2 + 1 aircraft.
        await wait_for(lambda: count("vessel_position", "msg_type") >= 680, timeout=30)
        await wait_for(lambda: len(db.query('SELECT * FROM "ais_base_station"')) >= 22)
        await wait_for(lambda: len(db.query('SELECT * FROM "sar_aircraft"')) >= 3)
        positions = db.query(
            "SELECT msg_type, lat FROM \"vessel_position\" WHERE time < '2007-01-01T00:00:00Z'"
        )
        stations = db.query('SELECT * FROM "ais_base_station"')
        aircraft = db.query('SELECT * FROM "sar_aircraft"')
        errors, unstorable = dict(source.stats.errors), sum(hub.counters().unstorable.values())
    finally:
        await hub.stop()
    assert len(positions) == 673  # the USCG log's, all at its 2006-07-15 logger times
    day = 1152921600 * 10**9  # 2006-07-15T00:00:00Z
    assert all(day <= int(str(row["time"])) < day + 86400 * 10**9 for row in positions)
    assert len(stations) == 22 and len(aircraft) == 3 and unstorable == 0
    coast = [r for r in stations if r["mmsi"] == "003669702"]  # gpsd sample.aivdm line 101
    assert coast and coast[0]["station_utc_s"] == 1179172659  # 2007-05-14T19:57:39Z
    sar = {row["mmsi"]: row for row in aircraft}
    assert (sar["111232511"]["altitude_m"], sar["111232511"]["sog_kn"]) == (303, 42)
    assert sar["111232511"]["cog_deg"] == 154.5
    # Only the log's comment line and the placeholder tag block are counted, nothing lost.
    assert errors == {"framing": 1, "tag_block_ignored": 1}
