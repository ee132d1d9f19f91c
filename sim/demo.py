"""`hub demo`: simulators through the real pipeline on an accelerated clock; alerts on the console.

Needs no external service: readings go to a local SQLite store (data_dir/store.sqlite), and
alerts are printed as they are raised besides going through the durable alert outbox. Scenes:
- foundation: two simulated meter sources, one of which stops → `source_silent`;
- community: a Modbus TCP building of meters (pymodbus server) where a solitary elder stops using
  water, and a door controller pushing ISAPI-style events over HTTP (forced door, bad cards);
- a CJ/T 188 meter on a serial pty pair when socat is installed;
- maritime: AIS traffic over UDP in the Zhoushan sea grid, where an unregistered vessel loiters,
  a registered ferry goes dark and a tug steams into a submarine cable area.
Thresholds are shortened so that every alert shows within a minute of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hub.alerts import Alert
from hub.app import Hub
from hub.clock import NS_PER_S, AcceleratedClock, Clock, backdated_start_ns
from hub.config import parse_config

DOOR_TOKEN_ENV = "HUB_DEMO_DOOR_TOKEN"

BASE_CONFIG = """
[hub]
site = "demo-harbour"
data_dir = "{data_dir}"
health_interval_s = 600

[http]
port = {port}
token_env = "{door_token_env}"

[influxdb]
api = "local"

[alerts]
tick_s = 30

[registry.community]
households_csv = "households.csv"
meters_csv = "meters.csv"
doors_csv = "doors.csv"

[registry.maritime]
vessels_csv = "vessels.csv"
zones_geojson = "zones.geojson"

[rules.community.elder_no_water]
warn_hours = 1.0        # demo only: 12 h by default
critical_hours = 2.0    # demo only: 24 h by default

[[sources]]
type = "simulated_meters"
name = "meters-a"
meters = 4
interval_s = 300
silent_timeout_s = 1200

[[sources]]
type = "simulated_meters"
name = "meters-b"
prefix = "B-"
meters = 2
interval_s = 300
stop_after_s = 600
silent_timeout_s = 1200

[[sources]]
type = "modbus"
name = "building-3"
host = "127.0.0.1"
port = {modbus_port}
poll_interval_s = 300
timeout_s = 0.5
meters = [
  {{ meter_id = "M-3-2-501", device_id = 1 }},
  {{ meter_id = "M-3-2-502", device_id = 2 }},
  {{ meter_id = "M-3-2-601", device_id = 3 }},
  {{ meter_id = "M-3-1-101", device_id = 4 }},
]

[[sources]]
type = "door_http"
name = "doors-3"
token_env = "{door_token_env}"

[[sources]]
type = "nmea_udp"
name = "ais-udp"
bind_host = "127.0.0.1"
bind_port = {ais_port}
"""

CJT188_SOURCE = """
[[sources]]
type = "cjt188"
name = "cjt188-line"
serial_port = "{port}"
parity = "N"            # ptys refuse parity E; a real RS-485 line keeps the standard's 8E1
poll_interval_s = 300
meters = [{{ meter_id = "M-5-1-101", address = "11223344556677" }}]
"""

HOUSEHOLDS = """household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until
3-2-501,3,2,501,G-03,G-03-2,PG-07,yes,
3-2-502,3,2,502,G-03,G-03-2,PG-07,no,
3-2-601,3,2,601,G-03,G-03-2,PG-07,yes,2099-12-31
3-1-101,3,1,101,G-03,G-03-1,PG-07,no,
5-1-101,5,1,101,G-05,G-05-1,PG-08,no,
"""
METERS = """meter_id,household_id,bus,device_id,profile
M-3-2-501,3-2-501,building-3,1,generic
M-3-2-502,3-2-502,building-3,2,generic
M-3-2-601,3-2-601,building-3,3,generic
M-3-1-101,3-1-101,building-3,4,generic
M-5-1-101,5-1-101,cjt188-line,0,
"""
# An ISAPI controller names a door by its MAC address and door number.
DOORS = """door_id,building,unit,grid,micro_grid,police_grid,household_id
{mac}-1,3,2,G-03,G-03-2,PG-07,
"""

VESSELS = """mmsi,name,owner,home_port,type,permits
412401001,ZHEDAIYU 01001,Owner 0001,Shenjiamen,fishing,fishing
413801234,ZHOUSHAN FERRY 3,Ferry Co 01,Dinghai,passenger,passenger
413456780,DONGHAI TUG 7,Tug Co 01,Dinghai,tug,harbour
"""


def _zone(
    zid: str, kind: str, box: tuple[float, float, float, float], **props: Any
) -> dict[str, Any]:
    lon0, lat0, lon1, lat1 = box
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {
        "type": "Feature",
        "properties": {"id": zid, "kind": kind, "grid": "ZS-SEA-01", **props},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


ZONES = {
    "type": "FeatureCollection",
    "features": [
        _zone("sea-zs-01", "sea_grid", (122.1, 29.8, 122.6, 30.2), police_grid="ZS-PG-SEA-1"),
        _zone("rz-cable-01", "restricted", (122.4, 30.05, 122.48, 30.1), micro_grid="ZS-SEA-01-R1"),
    ],
}

COLOURS = {"critical": "\033[31;1m", "warning": "\033[33;1m", "info": "\033[36m"}


def format_alert(alert: Alert, utc_offset_h: float = 8.0, colour: bool = False) -> str:
    tz = timezone(timedelta(hours=utc_offset_h))
    at = datetime.fromtimestamp(alert.updated_ns / 1e9, tz=UTC).astimezone(tz)
    where = "/".join(x for x in (alert.grid.grid, alert.grid.micro_grid) if x) or alert.site
    sev = alert.severity.upper()
    if colour:
        sev = f"{COLOURS.get(alert.severity, '')}{sev}\033[0m"
    return (
        f"[{at:%Y-%m-%d %H:%M}] {sev:<8} {alert.state:<12} {alert.rule} ({where}): {alert.message}"
    )


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


@dataclass
class Simulators:
    """The demo's devices, started before the hub and stopped after it."""

    clock: Clock
    workdir: Path
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_config: str = ""
    modbus_port: int = 0
    ais_port: int = 0

    async def start(self) -> None:
        from sim.meters import ModbusMeterServer, building

        self.modbus_port = _free_port()
        self.ais_port = _free_udp_port()
        # Device 1 is the solitary elder of 3-2-501: no water drawn from the start.
        server = ModbusMeterServer(building(4, elder_device_id=1), clock=self.clock)
        await server.start_tcp("127.0.0.1", self.modbus_port)
        self.stops.append(server.stop)
        self.notes.append(f"Modbus TCP building of 4 meters on 127.0.0.1:{self.modbus_port}")
        self.notes.append(
            f"AIS traffic of 4 vessels as !AIVDM over UDP to 127.0.0.1:{self.ais_port}"
        )
        await self._start_cjt188()

    async def _start_cjt188(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            self.notes.append(
                "CJ/T 188 meter skipped: socat is not installed (apt-get install socat)"
            )
            return
        from sim.meters import Cjt188MeterSim, Cjt188Simulator, MeterSim

        a, b = self.workdir / "ttyHub", self.workdir / "ttyMeter"
        proc = subprocess.Popen(  # noqa: ASYNC220 - starts a long-lived helper, returns at once
            [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def stop_socat() -> None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)

        self.stops.append(stop_socat)
        for _ in range(200):
            if a.exists() and b.exists():
                break
            await asyncio.sleep(0.01)
        sim = Cjt188Simulator([Cjt188MeterSim("11223344556677", MeterSim(0))], clock=self.clock)
        await sim.start(str(b), parity="N")
        self.stops.append(sim.stop)
        self.extra_config += CJT188_SOURCE.format(port=a)
        self.notes.append(f"CJ/T 188 meter on serial pty {a}")

    async def after_hub_start(self, hub: Hub) -> None:
        from sim.doors import post_http, scenario

        url = f"{hub.http_url.rstrip('/')}/ingest/doors/doors-3"
        start_ms = hub.clock.now_ns() // 1_000_000
        # Two residents come home, then a forced door, a held door and five bad cards in a row.
        await post_http(url, os.environ[DOOR_TOKEN_ENV], scenario("1", start_ms))

        from sim.ais import AisUdpScene, zhoushan_scene

        ais = AisUdpScene(zhoushan_scene(), self.clock, "127.0.0.1", self.ais_port)
        ais.start()
        self.stops.append(ais.stop)

    async def stop(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                await stop()


# An open-ended demo starts this far back: the community dashboard's default range (24 h), which
# a x120 clock covers in 12 real minutes before it slows to real time.
DEMO_BACKFILL_S = 24 * 3600.0


def demo_clock(duration_s: float | None, speed: float) -> AcceleratedClock:
    """The demo's clock, started in the past so that its data ends at "now" and never lands
    in the future (where Grafana's default time ranges would not show it)."""
    start_ns = backdated_start_ns(duration_s, speed, DEMO_BACKFILL_S)
    return AcceleratedClock(speed, start_ns, catch_up=True)


def _port_or_free(port: int) -> int:
    """`port` if nothing listens there yet, else 0 (any free port): the demo must start."""
    if port == 0:
        return 0
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            print(f"port {port} is taken; the status page takes a free port instead", flush=True)
            return 0
    return port


async def run_demo(
    duration_s: float | None, speed: float, port: int, *, stop: asyncio.Event
) -> int:
    """Run until `stop` is set or `duration_s` passed; simulators, socat and the temp dir are
    cleaned up however it ends."""
    os.environ.setdefault(DOOR_TOKEN_ENV, "demo-door-token")
    port = _port_or_free(port)
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as tmp:
        workdir = Path(tmp)
        _write_registry(workdir)
        clock = demo_clock(duration_s, speed)
        sims = Simulators(clock, workdir)
        try:
            await sims.start()
            hub = await _start_hub(sims, workdir, port, speed)
            try:
                await sims.after_hub_start(hub)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_s)
            finally:
                await hub.stop(flush_timeout_s=2)
        finally:
            await sims.stop()
        _summary(hub)
    return 0


async def _start_hub(sims: Simulators, workdir: Path, port: int, speed: float) -> Hub:
    text = BASE_CONFIG.format(
        data_dir=workdir / "data",
        port=port,
        modbus_port=sims.modbus_port,
        door_token_env=DOOR_TOKEN_ENV,
        ais_port=sims.ais_port,
    )
    cfg = parse_config(text + sims.extra_config, workdir / "demo.toml")
    hub = Hub(cfg, clock=sims.clock)
    colour = sys.stdout.isatty()
    started = time.monotonic()

    def show(alert: Alert) -> None:
        elapsed = time.monotonic() - started
        line = format_alert(alert, cfg.hub.utc_offset_hours, colour)
        print(f"{elapsed:5.1f}s  {line}", flush=True)

    hub.engine.listeners.append(show)
    await hub.start()
    _banner(hub, speed, sims.notes)
    return hub


def _write_registry(workdir: Path) -> None:
    from sim.doors import ISAPI_MAC

    (workdir / "households.csv").write_text(HOUSEHOLDS)
    (workdir / "meters.csv").write_text(METERS)
    (workdir / "doors.csv").write_text(DOORS.format(mac=ISAPI_MAC))
    (workdir / "vessels.csv").write_text(VESSELS)
    (workdir / "zones.geojson").write_text(json.dumps(ZONES))


def _banner(hub: Hub, speed: float, notes: list[str]) -> None:
    lines = [
        f"Harbourgrid demo: site {hub.cfg.hub.site}, clock x{speed:g} "
        f"(1 real second = {speed / 60:g} simulated minutes)",
        f"clock {(time.time_ns() - hub.clock.now_ns()) / NS_PER_S / 3600:.2f} h behind now: it "
        "catches up as the run ends (then runs at real time), so no data is in the future",
        f"status page: {hub.http_url}   metrics: {hub.http_url}metrics",
        f"  (alert details on the page need the token in ${DOOR_TOKEN_ENV}, "
        "by default 'demo-door-token')",
        f"sources: {', '.join(s.name for s in hub.sources)}",
        *(f"  - {note}" for note in notes),
        "alerts print below as they are raised (Ctrl-C to stop):",
    ]
    print("\n".join(lines), flush=True)


def _summary(hub: Hub) -> None:
    status, counters = hub.status(), hub.counters()
    written = status.sink.written if status.sink else 0
    changes: dict[str, Any] = dict(counters.alert_changes)
    print(
        f"demo finished: {counters.records_in} records, {written} stored in the local store, "
        f"alert changes {changes}, outbox rows left {status.outbox.rows}",
        flush=True,
    )
