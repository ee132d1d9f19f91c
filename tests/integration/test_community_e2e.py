"""Issue 4 end to end through the real Hub: meters and doors in, InfluxDB points and MQTT alerts out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hub.clock import NS_PER_S, AcceleratedClock, Clock
from hub.config import HubConfig, parse_config
from hub.source import salted_hash
from sim.doors import ISAPI_MAC, SIM_MQTT_MAPPING, post_http, publish_mqtt, scenario
from sim.meters import (
    Cjt188MeterSim,
    Cjt188Simulator,
    MeterSim,
    ModbusMeterServer,
    building,
    dead,
    normal,
)
from tests.hubtest import running
from tests.services import InfluxDB, Mosquitto, PtyPair
from tests.util import free_port, wait_for

HOUSEHOLDS = """household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until,name,phone
7-1-101,7,1,101,G-07,G-07-1,PG-11,yes,,Wang Shufen,13800000101
7-1-102,7,1,102,G-07,G-07-1,PG-11,no,,,
7-2-201,7,2,201,G-07,G-07-2,PG-12,yes,,Li Guozhi,13800000201
7-2-202,7,2,202,G-07,G-07-2,PG-12,no,,,
"""
# device id on the bus -> (meter id, household): device 1 is the elder who stops using water.
METERS = {
    1: ("W-7-1-101", "7-1-101"),
    2: ("W-7-1-102", "7-1-102"),
    3: ("W-7-2-201", "7-2-201"),
    4: ("W-7-2-202", "7-2-202"),
}
GRIDS = {
    "7-1-101": ("G-07", "G-07-1", "PG-11"),
    "7-1-102": ("G-07", "G-07-1", "PG-11"),
    "7-2-201": ("G-07", "G-07-2", "PG-12"),
    "7-2-202": ("G-07", "G-07-2", "PG-12"),
}
DOOR_HTTP_ID = f"{ISAPI_MAC}-1"
DOORS = f"""door_id,building,unit,grid,micro_grid,police_grid,household_id
{DOOR_HTTP_ID},7,1,G-07,G-07-1,PG-11,
D-7-2,7,2,G-07,G-07-2,PG-12,
"""
ELDER_STOPS_AFTER_S = 120.0  # simulated seconds of water use before the elder's meter goes still
FACTOR = 60.0  # accelerated clock: one simulated minute per wall-clock second


def write_registry(tmp_path: Path, meters: dict[int, tuple[str, str]]) -> str:
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    rows = "".join(f"{m},{h},bldg7,{d},generic\n" for d, (m, h) in meters.items())
    (tmp_path / "meters.csv").write_text("meter_id,household_id,bus,device_id,profile\n" + rows)
    (tmp_path / "doors.csv").write_text(DOORS)
    return f"""
[registry.community]
households_csv = "{tmp_path / "households.csv"}"
meters_csv = "{tmp_path / "meters.csv"}"
doors_csv = "{tmp_path / "doors.csv"}"
"""


def hub_config(tmp_path: Path, site: str, body: str, http: bool = False) -> HubConfig:
    """A full config: the hub's HTTP server on an OS-chosen free port when `http` is set."""
    text = f"""
[hub]
site = "{site}"
data_dir = "{tmp_path / "data"}"
health_interval_s = 3600
hash_salt_env = "E2E_HASH_SALT"

[http]
enabled = {"true" if http else "false"}
port = 0
{body}
"""
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return parse_config(text, path)


def influx_section(db: InfluxDB) -> str:
    return f"""
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
batch_size = 200
flush_interval_s = 0.05
"""


def mqtt_section(broker: Mosquitto) -> str:
    return f"""
[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
"""


def modbus_source(name: str, port: int, meters: dict[int, tuple[str, str]], **opts: Any) -> str:
    entries = ", ".join(f'{{ meter_id = "{m}", device_id = {d} }}' for d, (m, _) in meters.items())
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
    return f"""
[[sources]]
type = "modbus"
name = "{name}"
transport = "tcp"
host = "127.0.0.1"
port = {port}
meters = [{entries}]
{extra}"""


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(value)


async def query(db: InfluxDB, influxql: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(db.query, influxql)


async def count_by_meter(db: InfluxDB) -> dict[str, int]:
    rows = await query(db, "SELECT count(total_m3) FROM water_meter GROUP BY meter_id")
    return {r["meter_id"]: r["count"] for r in rows}


class Platform:
    """The governance platform: a real MQTT subscriber to the hub's alert topics."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []

    def opened(self, rule: str) -> list[dict[str, Any]]:
        return [p for _, p in self.alerts if p["rule"] == rule and p["state"] == "open"]


@contextlib.asynccontextmanager
async def platform(broker: Mosquitto, site: str) -> AsyncIterator[Platform]:
    seen = Platform()
    client = aiomqtt.Client(broker.host, broker.port, identifier=f"platform-{uuid.uuid4().hex}")
    async with client:
        await client.subscribe(f"hub/{site}/alerts/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = json.loads(message.payload)
                seen.alerts.append((str(message.topic), payload))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def start_building(sims: list[MeterSim], clock: Clock) -> tuple[ModbusMeterServer, int]:
    port = free_port()
    server = ModbusMeterServer(sims, clock=clock)
    await server.start_tcp("127.0.0.1", port)
    return server, port


# --- 1. Modbus TCP building → tagged InfluxDB points and an elder_no_water alert over MQTT -------


async def test_elder_stops_using_water_over_modbus_tcp(
    influxdb: InfluxDB,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_HASH_SALT", "e2e-salt")
    site = f"elder-{uuid.uuid4().hex[:6]}"
    db = influxdb.create_database("e2e_elder")
    clock = AcceleratedClock(FACTOR)
    sims = building(4, elder_device_id=1, elder_stops_after_s=ELDER_STOPS_AFTER_S)
    for sim in sims[1:]:
        sim.use_s_per_hour = 3600.0  # everyone else draws water all the time
    server, port = await start_building(sims, clock)
    cfg = hub_config(
        tmp_path,
        site,
        influx_section(db)
        + mqtt_section(mosquitto)
        + write_registry(tmp_path, METERS)
        + """
[alerts]
tick_s = 5

[rules.community]
routing = { "G-07-1" = "worker-7-1" }

[rules.community.elder_no_water]
min_litres = 4.5
warn_hours = 0.05
critical_hours = 0.1
sample_minutes = 0.25
"""
        + modbus_source("bldg7", port, METERS, poll_interval_s=15, timeout_s=0.5),
    )
    try:
        async with platform(mosquitto, site) as seen, running(cfg, clock=clock):
            await wait_for(lambda: seen.opened("elder_no_water"), timeout=25, message="elder alert")
            await wait_for(
                lambda: _all_meters_twice(db), timeout=10, message="readings of every meter"
            )
    finally:
        await server.stop()

    (alert,) = seen.opened("elder_no_water")
    topic = next(t for t, p in seen.alerts if p is alert)
    assert topic == f"hub/{site}/alerts/elder_no_water"
    assert alert["subject"] == "household:7-1-101" and alert["site"] == site
    assert (alert["grid"], alert["micro_grid"], alert["police_grid"]) == GRIDS["7-1-101"]
    assert alert["severity"] in ("warning", "critical")
    data = alert["data"]
    assert data["household"] == "7-1-101" and data["meter_id"] == "W-7-1-101"
    assert data["recipients"] == ["worker-7-1"]
    assert 0 <= data["litres_in_window"] < 4.5
    assert data["window_hours"] in (0.05, 0.1)
    # The last rise of the total is seen by the first poll after the elder stopped.
    assert data["last_use_ns"] is not None and data["last_use_at"]
    stopped_ns = server.start_ns + int(ELDER_STOPS_AFTER_S * NS_PER_S)
    assert server.start_ns < data["last_use_ns"] <= stopped_ns + 120 * NS_PER_S
    assert "7-1-101" in alert["message"]
    # The elder who keeps using water raises nothing; nor does anyone who is not an elder.
    assert {p["subject"] for _, p in seen.alerts if p["rule"] == "elder_no_water"} == {
        "household:7-1-101"
    }

    rows = await query(db, "SELECT * FROM water_meter")
    assert {r["meter_id"] for r in rows} == {m for m, _ in METERS.values()}
    for row in rows:
        device = next(d for d, (m, _) in METERS.items() if m == row["meter_id"])
        household = METERS[device][1]
        assert row["household"] == household
        assert (row["grid"], row["micro_grid"], row["police_grid"]) == GRIDS[household]
        assert row["site"] == site and row["source"] == "bldg7"
        state = sims[device - 1].state((row["time"] - server.start_ns) / NS_PER_S)
        assert row["total_m3"] == pytest.approx(state.total_m3, abs=0.01)
        assert row["battery_v"] == pytest.approx(3.6)
        assert row["alarm_bits"] == 0
    elder = sorted((r for r in rows if r["meter_id"] == "W-7-1-101"), key=lambda r: r["time"])
    assert elder[-1]["total_m3"] == pytest.approx(100.0 + 0.6 * ELDER_STOPS_AFTER_S / 3600)
    assert elder[-1]["flow_m3h"] == 0.0
    assert all(r["flow_m3h"] == pytest.approx(0.6) for r in rows if r["meter_id"] != "W-7-1-101")
    # Names and phone numbers in the households file never reach the database.
    personal = ("Wang Shufen", "Li Guozhi", "138000")
    assert not [v for r in rows for v in r.values() if any(p in str(v) for p in personal)]


async def _all_meters_twice(db: InfluxDB) -> bool:
    counts = await count_by_meter(db)
    return len(counts) == len(METERS) and min(counts.values()) >= 2


# --- 2. door events pushed over HTTP → hashed credentials in InfluxDB, door alerts over MQTT ------


async def test_door_http_pushes_store_hashes_only_and_raise_door_alerts(
    influxdb: InfluxDB,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_HASH_SALT", "e2e-salt")
    monkeypatch.setenv("E2E_DOOR_TOKEN", "door-token-7f3a")
    site = f"doorhttp-{uuid.uuid4().hex[:6]}"
    db = influxdb.create_database("e2e_door_http")
    cfg = hub_config(
        tmp_path,
        site,
        influx_section(db)
        + mqtt_section(mosquitto)
        + write_registry(tmp_path, METERS)
        + """
[alerts]
tick_s = 0.2

[[sources]]
type = "door_http"
name = "gate7"
token_env = "E2E_DOOR_TOKEN"
""",
        http=True,
    )
    events = scenario("1", int(time.time() * 1000) - 10 * 60_000)
    cards = {e.card for e in events if e.card}
    async with platform(mosquitto, site) as seen, running(cfg) as hub:
        assert hub.http_url
        await wait_for(lambda: hub.sources[0].stats.connected, message="door_http running")
        url = hub.http_url.rstrip("/") + "/ingest/doors/gate7"
        assert await post_http(url, "door-token-7f3a", events) == [200] * len(events)
        assert await post_http(url, "not-the-token", events[:1]) == [401]

        async def stored() -> bool:
            rows = await query(db, 'SELECT count("count") FROM door_event')
            return bool(rows) and rows[0]["count"] == len(events)

        await wait_for(stored, timeout=15, message="door events in InfluxDB")
        await wait_for(
            lambda: seen.opened("door_forced") and seen.opened("door_denied_repeatedly"),
            timeout=15,
            message="door alerts over MQTT",
        )
        salt = hub.ctx.hash_salt

    rows = sorted(await query(db, "SELECT * FROM door_event"), key=lambda r: r["time"])
    assert [r["event"] for r in rows] == [e.event for e in events]
    # ISAPI dateTime has whole seconds (local time, +08:00).
    assert [r["time"] for r in rows] == [e.time_ms // 1000 * NS_PER_S for e in events]
    for row, event in zip(rows, events, strict=True):
        assert row["door_id"] == DOOR_HTTP_ID and row["building"] == "7"
        assert (row["grid"], row["micro_grid"], row["police_grid"]) == ("G-07", "G-07-1", "PG-11")
        expected = salted_hash(salt, event.card) if event.card else None
        assert row["credential_hash"] == expected
    # No raw card number anywhere in the database: every tag and field of every measurement.
    everything = await query(db, "SELECT * FROM /.*/")
    assert len(everything) >= len(events)
    leaked = [
        (k, v)
        for r in everything
        for k, v in r.items()
        if k != "time" and any(card in str(v) for card in cards)
    ]
    assert leaked == []

    (forced,) = seen.opened("door_forced")
    assert forced["subject"] == f"door:{DOOR_HTTP_ID}" and forced["severity"] == "critical"
    assert (forced["grid"], forced["micro_grid"], forced["police_grid"]) == GRIDS["7-1-101"]
    assert forced["data"]["event"] == "forced" and forced["data"]["building"] == "7"
    (denied,) = seen.opened("door_denied_repeatedly")
    assert denied["subject"] == f"door:{DOOR_HTTP_ID}"
    assert denied["data"]["denied"] == 5 and denied["data"]["distinct_credentials"] == 5
    assert (denied["grid"], denied["micro_grid"], denied["police_grid"]) == GRIDS["7-1-101"]
    topics = {t for t, p in seen.alerts if p in (forced, denied)}
    assert topics == {
        f"hub/{site}/alerts/door_forced",
        f"hub/{site}/alerts/door_denied_repeatedly",
    }


# --- 3. door events over real mosquitto → door_event points ---------------------------------------


async def test_door_mqtt_events_reach_influxdb(
    influxdb: InfluxDB,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_HASH_SALT", "e2e-salt")
    site = f"doormqtt-{uuid.uuid4().hex[:6]}"
    prefix = f"e2e-{uuid.uuid4().hex[:6]}/doors"
    db = influxdb.create_database("e2e_door_mqtt")
    cfg = hub_config(
        tmp_path,
        site,
        influx_section(db)
        + mqtt_section(mosquitto)
        + write_registry(tmp_path, METERS)
        + f"""
[[sources]]
type = "door_mqtt"
name = "doors-mqtt"
topics = ["{prefix}/+/events"]
mapping = {toml_value(SIM_MQTT_MAPPING)}
""",
    )
    events = scenario("D-7-2", int(time.time() * 1000) - 10 * 60_000)
    async with running(cfg) as hub:
        await wait_for(lambda: hub.sources[0].stats.connected, message="subscribed")
        await publish_mqtt(mosquitto.host, mosquitto.port, prefix, events)

        async def stored() -> list[dict[str, Any]]:
            rows = await query(db, "SELECT * FROM door_event")
            return rows if len(rows) == len(events) else []

        rows = await wait_for(stored, timeout=15, message="door events in InfluxDB")
        salt = hub.ctx.hash_salt
    rows.sort(key=lambda r: r["time"])
    assert [(r["time"], r["event"]) for r in rows] == [
        (e.time_ms * 1_000_000, e.event) for e in events
    ]
    for row, event in zip(rows, events, strict=True):
        assert row["door_id"] == "D-7-2" and row["building"] == "7"
        assert (row["grid"], row["micro_grid"], row["police_grid"]) == ("G-07", "G-07-2", "PG-12")
        assert row["source"] == "doors-mqtt" and row["site"] == site
        assert row["credential_hash"] == (salted_hash(salt, event.card) if event.card else None)


# --- 4. Modbus RTU and CJ/T 188 over pty pairs through the Hub ------------------------------------

CJ_ADDRESSES = ("00000000012345", "00000000012346")


async def test_serial_meters_modbus_rtu_and_cjt188(
    influxdb: InfluxDB,
    pty_pair: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_HASH_SALT", "e2e-salt")
    db = influxdb.create_database("e2e_serial")
    rtu_hub_end, rtu_meter_end = pty_pair
    (tmp_path / "cj").mkdir()
    cj_pair = PtyPair(tmp_path / "cj")
    rtu_sims = [normal(1, start_total_m3=50.0), normal(2, start_total_m3=812.5)]
    cj_sims = [
        Cjt188MeterSim(CJ_ADDRESSES[0], normal(0, start_total_m3=123.45)),
        Cjt188MeterSim(CJ_ADDRESSES[1], normal(0, start_total_m3=7.0)),
    ]
    rtu_server = ModbusMeterServer(rtu_sims)
    simulator = Cjt188Simulator(cj_sims)
    cj_meters = ", ".join(
        f'{{ meter_id = "cj{i + 1}", address = "{a}" }}' for i, a in enumerate(CJ_ADDRESSES)
    )
    cfg = hub_config(
        tmp_path,
        "serial",
        influx_section(db)
        + f"""
[[sources]]
type = "modbus"
name = "rs485"
transport = "rtu"
serial_port = "{rtu_hub_end}"
baudrate = 9600
poll_interval_s = 0.5
timeout_s = 0.3
meters = [{{ meter_id = "r1", device_id = 1 }}, {{ meter_id = "r2", device_id = 2 }}]

[[sources]]
type = "cjt188"
name = "cj188"
serial_port = "{cj_pair.a}"
baudrate = 2400
# Linux ptys refuse re-opening with parity E: both ends use N here (real lines: 8E1).
parity = "N"
poll_interval_s = 0.5
timeout_s = 0.3
meters = [{cj_meters}]
""",
    )
    try:
        await rtu_server.start_rtu(rtu_meter_end, baudrate=9600, parity="N")
        await simulator.start(cj_pair.b, baudrate=2400, parity="N")

        async def three_each() -> bool:
            counts = await count_by_meter(db)
            return set(counts) == {"r1", "r2", "cj1", "cj2"} and min(counts.values()) >= 3

        async with running(cfg):
            await wait_for(three_each, timeout=20, message="serial readings in InfluxDB")
    finally:
        await simulator.stop()
        await rtu_server.stop()
        cj_pair.close()

    rows = await query(db, "SELECT * FROM water_meter")
    for row in rows:
        if row["meter_id"].startswith("r"):
            sim, start_ns = rtu_sims[int(row["meter_id"][1:]) - 1], rtu_server.start_ns
            resolution = 0.003  # 1 L registers
            assert row["source"] == "rs485"
            assert row["flow_m3h"] == pytest.approx(sim.state(0).flow_m3h, abs=0.6)
            assert row["battery_v"] == pytest.approx(3.6)
        else:
            sim, start_ns = cj_sims[int(row["meter_id"][2:]) - 1].meter, simulator.start_ns
            resolution = 0.011  # 0.01 m3 in BCD, and the meter clock has whole seconds
            assert row["source"] == "cj188"
            assert row["alarm_bits"] == 0  # valve open, battery fine
        expected = sim.state((row["time"] - start_ns) / NS_PER_S).total_m3
        assert row["total_m3"] == pytest.approx(expected, abs=resolution)
    assert set(rtu_server.requests) == {1, 2} and min(rtu_server.requests.values()) >= 3
    assert set(simulator.requests) == set(CJ_ADDRESSES)


# --- 5. a dead meter on the TCP bus: no points for it, meter_offline over MQTT, others unaffected --


async def test_dead_meter_goes_offline_without_stale_points(
    influxdb: InfluxDB,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_HASH_SALT", "e2e-salt")
    site = f"dead-{uuid.uuid4().hex[:6]}"
    db = influxdb.create_database("e2e_dead")
    clock = AcceleratedClock(FACTOR / 2)
    sims = [*building(3), dead(4)]
    dead_id = METERS[4][0]
    server, port = await start_building(sims, clock)
    cfg = hub_config(
        tmp_path,
        site,
        influx_section(db)
        + mqtt_section(mosquitto)
        + write_registry(tmp_path, METERS)
        + """
[alerts]
tick_s = 5

[rules.community.meter_offline]
offline_minutes = 1
"""
        + modbus_source(
            "bldg7",
            port,
            METERS,
            poll_interval_s=15,
            timeout_s=0.2,
            retries=0,
            offline_after_failures=2,
        ),
    )
    try:
        async with platform(mosquitto, site) as seen, running(cfg, clock=clock) as hub:
            await wait_for(lambda: seen.opened("meter_offline"), timeout=20, message="offline")
            before = await count_by_meter(db)

            async def others_kept_reading() -> bool:
                now = await count_by_meter(db)
                return all(now.get(m, 0) >= before.get(m, 0) + 3 for m in before)

            await wait_for(others_kept_reading, timeout=15, message="healthy meters still read")
            source = hub.sources[0]
            assert source.offline_meters == {dead_id}  # type: ignore[attr-defined]
    finally:
        await server.stop()

    assert server.requests[4] >= 2  # it was asked, it never answered
    counts = await count_by_meter(db)
    assert set(counts) == {m for d, (m, _) in METERS.items() if d != 4}
    assert await query(db, f"SELECT * FROM water_meter WHERE meter_id = '{dead_id}'") == []
    offline = seen.opened("meter_offline")
    assert [a["subject"] for a in offline] == [f"meter:{dead_id}"]
    alert = offline[0]
    assert alert["data"]["meter_id"] == dead_id and alert["data"]["household"] == "7-2-202"
    assert (alert["grid"], alert["micro_grid"], alert["police_grid"]) == GRIDS["7-2-202"]
