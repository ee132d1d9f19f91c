"""Issue 5 end to end through the real Hub: AIS in over TCP, UDP and serial, out to InfluxDB and MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import serial
from pyais import encode_dict
from pyais.stream import IterMessages

from bench.make_ais_capture import generate
from drivers.nmea.sources import NmeaSerialSource, NmeaTcpSource, NmeaUdpSource
from hub.clock import AcceleratedClock
from hub.config import HubConfig
from sim.ais import AisUdpScene, SimVessel
from tests.hubtest import config, running
from tests.services import InfluxDB, Mosquitto
from tests.util import wait_for

REPO = Path(__file__).resolve().parents[2]
SEA_GRID = "ZS-SEA-09"
SEA_POLICE_GRID = "ZS-PG-SEA-9"
RESTRICTED_MICRO_GRID = "ZS-SEA-09-R1"
# The sea grid spans 29.5-30.5 N, 121.8-122.8 E; the restricted cable area sits in its north-east.
ZONES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {
                "id": "sea-09",
                "kind": "sea_grid",
                "grid": SEA_GRID,
                "police_grid": SEA_POLICE_GRID,
            },
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[121.8, 29.5], [122.8, 29.5], [122.8, 30.5], [121.8, 30.5], [121.8, 29.5]]
                ],
            },
        },
        {
            "type": "Feature",
            "properties": {
                "id": "rz-cable-09",
                "kind": "restricted",
                "name": "Cable area 9",
                "grid": SEA_GRID,
                "micro_grid": RESTRICTED_MICRO_GRID,
                "allowed_mmsi": ["413777001"],
            },
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[122.6, 30.3], [122.7, 30.3], [122.7, 30.4], [122.6, 30.4], [122.6, 30.3]]
                ],
            },
        },
    ],
}
FERRY, TUG, JUMPER, PATROL = "413801234", "413456780", "413222333", "413777001"
LOITERER, INVALID = "412999001", "200123456"  # not whitelisted; MID 200 is not allocated
VESSELS_CSV = f"""mmsi,name,owner,home_port,type,permits
{FERRY},ZHOUSHAN FERRY 3,Owner One,Dinghai,passenger,passenger
{TUG},DONGHAI TUG 7,Owner Two,Dinghai,tug,
{JUMPER},XINHAI 88,Owner Three,Ningbo,cargo,
{PATROL},HAIXUN 0701,Maritime Safety Admin,Dinghai,law_enforcement,patrol
"""
FACTOR = 60.0  # accelerated clock: one simulated minute per wall-clock second


def maritime_registry(tmp_path: Path) -> str:
    (tmp_path / "vessels.csv").write_text(VESSELS_CSV)
    (tmp_path / "zones.geojson").write_text(json.dumps(ZONES))
    return f"""
[registry.maritime]
vessels_csv = "{tmp_path / "vessels.csv"}"
zones_geojson = "{tmp_path / "zones.geojson"}"
"""


def influx_section(db: InfluxDB) -> str:
    return f"""
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
batch_size = 500
flush_interval_s = 0.05
"""


def hub_config(tmp_path: Path, site: str, body: str) -> HubConfig:
    return config(tmp_path, maritime_registry(tmp_path) + body, site=site)


def ais(**fields: Any) -> list[str]:
    """One AIS message as !AIVDM sentences (pyais encoder, channel A)."""
    return list(encode_dict(fields, talker_id="AI", radio_channel="A"))


async def query(db: InfluxDB, influxql: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(db.query, influxql)


async def rows_when(db: InfluxDB, influxql: str, count: int) -> list[dict[str, Any]]:
    rows = await query(db, influxql)
    return rows if len(rows) >= count else []


# --- 1. NMEA over a real TCP socket: the hub's nmea_tcp client → tagged points in InfluxDB -------

# What the test AIS server encodes: mmsi -> the position message fields.
TCP_POSITIONS: dict[str, dict[str, Any]] = {
    # whitelisted, under way inside the sea grid
    FERRY: {"type": 1, "lat": 29.95, "lon": 122.22, "speed": 12.3, "course": 80.5, "heading": 81},
    # not whitelisted, outside every zone
    LOITERER: {"type": 1, "lat": 31.2, "lon": 123.4, "speed": 3.4, "course": 200.1, "heading": 199},
    # class B inside the grid with "not available" speed (102.3), course (360) and heading (511)
    "412555666": {"type": 18, "lat": 30.1, "lon": 122.5, "speed": 102.3, "course": 360.0,
                  "heading": 511},
    # whitelisted, position "not available" (lat 91, lon 181)
    TUG: {"type": 1, "lat": 91.0, "lon": 181.0, "speed": 5.0, "course": 10.0, "heading": 11},
}  # fmt: skip
TCP_STATICS = {FERRY: ("ZHOUSHAN FERRY 3", "BFER3"), LOITERER: ("HAI XING 88", "BHXN8")}


def tcp_capture() -> list[str]:
    lines: list[str] = []
    for mmsi, msg in TCP_POSITIONS.items():
        status = {"status": 0} if msg["type"] == 1 else {}
        lines += ais(mmsi=int(mmsi), **msg, **status)
    for mmsi, (name, callsign) in TCP_STATICS.items():  # after the positions: grid remembered
        lines += ais(
            type=5, mmsi=int(mmsi), shipname=name, callsign=callsign, ship_type=60, ais_version=0
        )
    return lines


@contextlib.asynccontextmanager
async def ais_tcp_server(lines: list[str]) -> AsyncIterator[tuple[int, list[int]]]:
    """A receiver's TCP feed: sends the lines to each client, then keeps the connection open."""
    done = asyncio.Event()
    clients: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(1)
        writer.write("".join(f"{line}\r\n" for line in lines).encode())
        await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), clients
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_ais_over_tcp_client_lands_tagged_in_influxdb(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database("e2e_ais_tcp")
    site = f"ais-tcp-{uuid.uuid4().hex[:6]}"
    async with ais_tcp_server(tcp_capture()) as (port, clients):
        cfg = hub_config(
            tmp_path,
            site,
            influx_section(db)
            + f"""
[[sources]]
type = "nmea_tcp"
name = "ais-tcp"
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.1
""",
        )
        async with running(cfg) as hub:
            source = hub.sources[0]
            assert isinstance(source, NmeaTcpSource)
            positions = await wait_for(
                lambda: rows_when(db, "SELECT * FROM vessel_position", len(TCP_POSITIONS)),
                timeout=15,
                message="positions in InfluxDB",
            )
            statics = await wait_for(
                lambda: rows_when(db, "SELECT * FROM vessel_static", len(TCP_STATICS)),
                timeout=15,
                message="static reports in InfluxDB",
            )
            assert source.stats.error_total == 0  # no checksum, framing or connection errors
    assert clients == [1]  # one connection carried it all

    rows = {r["mmsi"]: r for r in positions}
    assert set(rows) == set(TCP_POSITIONS) and len(positions) == len(TCP_POSITIONS)
    for row in positions:
        assert row["site"] == site and row["source"] == "ais-tcp"
    ferry = rows[FERRY]
    assert (ferry["lat"], ferry["lon"]) == (pytest.approx(29.95, abs=1e-5), pytest.approx(122.22))
    assert ferry["sog_kn"] == pytest.approx(12.3) and ferry["cog_deg"] == pytest.approx(80.5)
    assert ferry["heading_deg"] == 81 and ferry["nav_status"] == 0 and ferry["msg_type"] == 1
    assert (ferry["registered"], ferry["grid"], ferry["police_grid"]) == (
        "true",
        SEA_GRID,
        SEA_POLICE_GRID,
    )
    assert ferry["ais_class"] == "A"
    stranger = rows[LOITERER]
    assert stranger["lat"] == pytest.approx(31.2, abs=1e-5)
    assert stranger["lon"] == pytest.approx(123.4, abs=1e-5)
    assert stranger["sog_kn"] == pytest.approx(3.4) and stranger["cog_deg"] == pytest.approx(200.1)
    assert stranger["heading_deg"] == 199
    assert stranger["registered"] == "false" and stranger["grid"] is None  # outside the sea grid
    class_b = rows["412555666"]
    assert class_b["lat"] == pytest.approx(30.1, abs=1e-5)
    assert class_b["lon"] == pytest.approx(122.5, abs=1e-5)
    assert (class_b["ais_class"], class_b["msg_type"]) == ("B", 18)
    assert (class_b["registered"], class_b["grid"]) == ("false", SEA_GRID)
    # "not available" is no field at all, never 0 (nor 102.3 / 360 / 511)
    assert (class_b["sog_kn"], class_b["cog_deg"], class_b["heading_deg"]) == (None, None, None)
    no_fix = rows[TUG]
    assert (no_fix["lat"], no_fix["lon"], no_fix["grid"]) == (None, None, None)
    assert no_fix["registered"] == "true" and no_fix["sog_kn"] == pytest.approx(5.0)

    names = {r["mmsi"]: (r["name"], r["callsign"], r["ship_type"], r["grid"]) for r in statics}
    assert names == {
        FERRY: ("ZHOUSHAN FERRY 3", "BFER3", 60, SEA_GRID),  # tagged with its last sea grid
        LOITERER: ("HAI XING 88", "BHXN8", 60, None),
    }


# --- 2. maritime alerts at a real MQTT subscriber; a platform push resolves one ------------------


class Platform:
    """The maritime platform: a real MQTT subscriber to the hub's alert topics."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []

    def with_state(self, rule: str, state: str, subject: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for _, p in self.alerts
            if p["rule"] == rule and p["state"] == state and subject in (None, p["subject"])
        ]

    def first(self, rule: str, subject: str) -> dict[str, Any]:
        (alert,) = self.with_state(rule, "open", subject)
        return alert


@contextlib.asynccontextmanager
async def platform(broker: Mosquitto, site: str) -> AsyncIterator[tuple[Platform, aiomqtt.Client]]:
    seen = Platform()
    client = aiomqtt.Client(broker.host, broker.port, identifier=f"platform-{uuid.uuid4().hex}")
    async with client:
        await client.subscribe(f"hub/{site}/alerts/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                seen.alerts.append((str(message.topic), json.loads(message.payload)))

        task = asyncio.create_task(collect())
        try:
            yield seen, client
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def alert_scene() -> dict[str, SimVessel]:
    return {
        # not whitelisted, loitering in the sea grid: unregistered_vessel after dwell_minutes
        LOITERER: SimVessel(int(LOITERER), "HAI XING 88", 30.02, 122.30, 1.2, 45.0),
        # whitelisted ferry under way, switches its transponder off: ais_gap
        FERRY: SimVessel(int(FERRY), "ZHOUSHAN FERRY 3", 29.95, 122.22, 12.0, 80.0,
                         ship_type=60, dark_after_s=120),
        # whitelisted tug inside the cable area, not on its allowed list: restricted_zone
        TUG: SimVessel(int(TUG), "DONGHAI TUG 7", 30.35, 122.62, 2.0, 90.0, ship_type=52),
        # the patrol boat may be there: no alert for it
        PATROL: SimVessel(int(PATROL), "HAIXUN 0701", 30.33, 122.64, 3.0, 270.0, ship_type=55),
        # whitelisted cargo ship whose position the test makes jump 36 nm: position_jump
        JUMPER: SimVessel(int(JUMPER), "XINHAI 88", 29.70, 122.00, 8.0, 0.0),
        # MMSI with an unallocated MID: invalid_mmsi
        INVALID: SimVessel(int(INVALID), "NO NAME", 29.80, 122.40, 5.0, 180.0),
    }  # fmt: skip


ALERT_RULES = """
[alerts]
tick_s = 5

[rules.maritime.unregistered_vessel]
dwell_minutes = 1
exit_minutes = 1

[rules.maritime.ais_gap]
gap_minutes = 2

[rules.maritime.restricted_zone]
dwell_minutes = 0

[rules.maritime.fishing_moratorium]
enabled = false
"""


def assert_position(alert: dict[str, Any], mmsi: str, vessel: SimVessel, tol: float) -> None:
    """The alert names the vessel and carries its sea grid and a position near the simulated one."""
    data = alert["data"]
    assert alert["subject"].startswith(f"mmsi:{mmsi}")
    assert data["mmsi"] == mmsi and data["sea_grid"] == SEA_GRID
    assert data["lat"] == pytest.approx(vessel.lat, abs=tol)
    assert data["lon"] == pytest.approx(vessel.lon, abs=tol)
    assert alert["severity"] in ("warning", "critical")


async def test_maritime_alerts_reach_mqtt_and_a_registry_push_resolves_one(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = f"ais-alerts-{uuid.uuid4().hex[:6]}"
    clock = AcceleratedClock(FACTOR)
    vessels = alert_scene()
    cfg = hub_config(
        tmp_path,
        site,
        f"""
[influxdb]
api = "none"

[mqtt]
enabled = true
host = "{mosquitto.host}"
port = {mosquitto.port}
{ALERT_RULES}
[[sources]]
type = "nmea_udp"
name = "ais-udp"
bind_host = "127.0.0.1"
bind_port = 0
""",
    )
    async with platform(mosquitto, site) as (seen, client), running(cfg, clock=clock) as hub:
        source = hub.sources[0]
        assert isinstance(source, NmeaUdpSource)
        await wait_for(source.bound.is_set, message="UDP source bound")
        scene = AisUdpScene(list(vessels.values()), clock, "127.0.0.1", source.port, report_s=20)
        scene.start()
        try:
            await wait_for(
                lambda: seen.with_state("unregistered_vessel", "open", f"mmsi:{LOITERER}"),
                timeout=15,
                message="unregistered_vessel",
            )
            jumper = vessels[JUMPER]
            before_jump = (jumper.lat, jumper.lon)
            jumper.lat += 0.6  # 36 nm north between two reports 20 s apart: a spoofed fix
            rules = ("ais_gap", "restricted_zone", "position_jump", "invalid_mmsi")
            await wait_for(
                lambda: all(seen.with_state(r, "open") for r in rules),
                timeout=15,
                message=f"open alerts of {rules}",
            )
            # The platform whitelists the loiterer; its next report resolves the alert.
            assert hub.mqtt is not None and hub.mqtt.connected
            push = {"mmsi": LOITERER, "name": "HAI XING 88", "owner": "Owner Four", "type": "cargo"}
            await client.publish(f"hub/{site}/registry/maritime/vessel", json.dumps(push), qos=1)
            await wait_for(
                lambda: seen.with_state("unregistered_vessel", "resolved", f"mmsi:{LOITERER}"),
                timeout=15,
                message="unregistered_vessel resolved after the registry push",
            )
        finally:
            await scene.stop()
        assert hub.mqtt_errors == 0

    topics = {t for t, _ in seen.alerts}
    assert topics <= {f"hub/{site}/alerts/{rule}" for rule in (*rules, "unregistered_vessel")}
    for _, alert in seen.alerts:
        assert alert["site"] == site and alert["grid"] == SEA_GRID

    unregistered = seen.first("unregistered_vessel", f"mmsi:{LOITERER}")
    assert_position(unregistered, LOITERER, vessels[LOITERER], tol=0.01)
    assert unregistered["data"]["registered"] is False
    assert unregistered["data"]["dwell_minutes"] >= 1
    assert unregistered["police_grid"] == SEA_POLICE_GRID
    (resolved,) = seen.with_state("unregistered_vessel", "resolved", f"mmsi:{LOITERER}")
    assert resolved["alert_id"] == unregistered["alert_id"]
    assert resolved["data"]["reason"] == "whitelisted" and resolved["data"]["registered"] is True
    # Whitelisting one vessel resolves nothing else: the invalid MMSI is still unregistered.
    assert not seen.with_state("unregistered_vessel", "resolved", f"mmsi:{INVALID}")
    assert {a["subject"] for a in seen.with_state("unregistered_vessel", "open")} <= {
        f"mmsi:{LOITERER}",
        f"mmsi:{INVALID}",
    }

    gap = seen.first("ais_gap", f"mmsi:{FERRY}")
    assert_position(gap, FERRY, vessels[FERRY], tol=0.01)  # it stopped where it went dark
    assert gap["data"]["zone"] == "sea-09" and gap["data"]["silent_minutes"] >= 2
    assert gap["data"]["name"] == "ZHOUSHAN FERRY 3" and gap["data"]["registered"] is True
    assert [a["subject"] for a in seen.with_state("ais_gap", "open")] == [f"mmsi:{FERRY}"]

    zone = seen.first("restricted_zone", f"mmsi:{TUG}:zone:rz-cable-09")
    assert_position(zone, TUG, vessels[TUG], tol=0.01)
    assert zone["severity"] == "critical" and zone["micro_grid"] == RESTRICTED_MICRO_GRID
    assert zone["data"]["zone"] == "rz-cable-09"
    assert [a["subject"] for a in seen.with_state("restricted_zone", "open")] == [
        f"mmsi:{TUG}:zone:rz-cable-09"
    ]  # the patrol boat is on the zone's allowed list

    jump = seen.first("position_jump", f"mmsi:{JUMPER}")
    assert_position(jump, JUMPER, vessels[JUMPER], tol=0.05)
    assert jump["data"]["from_lat"] == pytest.approx(before_jump[0], abs=0.01)
    assert jump["data"]["from_lon"] == pytest.approx(before_jump[1], abs=0.01)
    assert jump["data"]["distance_nm"] == pytest.approx(36, abs=1.5)
    assert jump["data"]["implied_speed_kn"] > 60
    assert [a["subject"] for a in seen.with_state("position_jump", "open")] == [f"mmsi:{JUMPER}"]

    invalid = seen.first("invalid_mmsi", f"mmsi:{INVALID}")
    assert_position(invalid, INVALID, vessels[INVALID], tol=0.05)
    assert invalid["data"]["problems"] == ["unknown_mid: 200"]
    assert [a["subject"] for a in seen.with_state("invalid_mmsi", "open")] == [f"mmsi:{INVALID}"]


# --- 3. UDP and a serial line (socat pty pair) through the Hub → positions in InfluxDB ----------

UDP_VESSELS = {"412100001": (29.91, 122.11), "412100002": (29.92, 122.12)}
SERIAL_VESSELS = {"412200001": (30.01, 122.21), "412200002": (30.02, 122.22)}


def position_lines(vessels: dict[str, tuple[float, float]]) -> bytes:
    lines: list[str] = []
    for mmsi, (lat, lon) in vessels.items():
        lines += ais(
            type=1, mmsi=int(mmsi), lat=lat, lon=lon, speed=6.5, course=45.0, heading=44, status=0
        )
    return "".join(f"{line}\r\n" for line in lines).encode()


def write_serial(port: str, data: bytes) -> None:
    with serial.Serial(port, 38400, timeout=1) as line:
        line.write(data)
        line.flush()


async def test_ais_over_udp_and_serial_lands_in_influxdb(
    influxdb: InfluxDB, pty_pair: tuple[str, str], tmp_path: Path
) -> None:
    db = influxdb.create_database("e2e_ais_udp_serial")
    hub_end, receiver_end = pty_pair
    cfg = hub_config(
        tmp_path,
        "ais-udp-serial",
        influx_section(db)
        + f"""
[[sources]]
type = "nmea_udp"
name = "ais-udp"
bind_host = "127.0.0.1"
bind_port = 0

[[sources]]
type = "nmea_serial"
name = "ais-serial"
port = "{hub_end}"
baudrate = 38400
""",
    )
    async with running(cfg) as hub:
        udp, ser = hub.sources
        assert isinstance(udp, NmeaUdpSource) and isinstance(ser, NmeaSerialSource)
        await wait_for(lambda: udp.bound.is_set() and ser.stats.connected, message="sources up")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(position_lines(UDP_VESSELS), ("127.0.0.1", udp.port))
        await asyncio.to_thread(write_serial, receiver_end, position_lines(SERIAL_VESSELS))
        expected = len(UDP_VESSELS) + len(SERIAL_VESSELS)
        rows = await wait_for(
            lambda: rows_when(db, "SELECT * FROM vessel_position", expected),
            timeout=15,
            message="UDP and serial positions in InfluxDB",
        )
        assert udp.stats.error_total == 0 and ser.stats.error_total == 0

    assert len(rows) == expected
    for source, vessels in (("ais-udp", UDP_VESSELS), ("ais-serial", SERIAL_VESSELS)):
        got = {r["mmsi"]: r for r in rows if r["source"] == source}
        assert set(got) == set(vessels)
        for mmsi, (lat, lon) in vessels.items():
            row = got[mmsi]
            assert row["lat"] == pytest.approx(lat, abs=1e-5)
            assert row["lon"] == pytest.approx(lon, abs=1e-5)
            assert row["sog_kn"] == pytest.approx(6.5) and row["cog_deg"] == pytest.approx(45.0)
            assert row["heading_deg"] == 44
            assert (row["registered"], row["grid"]) == ("false", SEA_GRID)


# --- 4. `hub replay` of a synthetic capture into a fresh InfluxDB database ----------------------

POSITION_TYPES = frozenset({1, 2, 3, 18, 19, 21, 27})  # AIS types that carry a position


def pyais_position_count(lines: list[str]) -> int:
    """Position reports in the capture by pyais alone (tag blocks stripped, fragments joined)."""
    sentences = [line.rsplit("\\", 1)[-1].encode() for line in lines if "VDM" in line]
    return sum(msg.decode().msg_type in POSITION_TYPES for msg in IterMessages(sentences))


async def test_hub_replay_cli_writes_every_position(influxdb: InfluxDB, tmp_path: Path) -> None:
    db = influxdb.create_database("e2e_ais_replay")
    lines = list(generate(20_000))
    capture = tmp_path / "capture.nmea"
    capture.write_text("".join(f"{line}\r\n" for line in lines))
    cfg = tmp_path / "replay.toml"
    cfg.write_text(
        f"""
[hub]
site = "replay"
data_dir = "{tmp_path / "data"}"
health_interval_s = 3600

[http]
enabled = false
{influx_section(db)}"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "replay",
        "--config",
        str(cfg),
        str(capture),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    expected = await asyncio.to_thread(pyais_position_count, lines)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    report = (stdout + stderr).decode()
    assert proc.returncode == 0, report
    assert "lines/s" in report and f"{len(lines)} lines" in report
    assert expected > 15_000
    rows = await query(db, "SELECT count(msg_type) FROM vessel_position")
    assert rows[0]["count"] == expected
    by_source = await query(db, "SELECT count(msg_type) FROM vessel_position GROUP BY source")
    assert [(r["source"], r["count"]) for r in by_source] == [("replay", expected)]
