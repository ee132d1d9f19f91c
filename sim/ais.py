"""A small AIS traffic scene sent as !AIVDM over UDP: for the demo and tests.

Positions move with the given clock, so an accelerated clock makes vessels sail faster.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from dataclasses import dataclass

from pyais import encode_dict

from hub.clock import NS_PER_S, Clock

log = logging.getLogger("sim.ais")


@dataclass(slots=True)
class SimVessel:
    mmsi: int
    name: str
    lat: float
    lon: float
    sog_kn: float
    cog_deg: float
    ship_type: int = 70
    msg_type: int = 1  # 1 (class A) or 18 (class B)
    dark_after_s: float | None = None  # stops transmitting after this much clock time
    callsign: str = ""

    def advance(self, seconds: float) -> None:
        """Dead reckoning on a flat-earth approximation (fine over minutes)."""
        nm = self.sog_kn * seconds / 3600
        self.lat += nm / 60 * math.cos(math.radians(self.cog_deg))
        self.lon += (
            nm / 60 * math.sin(math.radians(self.cog_deg)) / math.cos(math.radians(self.lat))
        )

    def position_lines(self) -> list[str]:
        msg: dict[str, str | int | float | bytes | bool] = {
            "type": self.msg_type,
            "mmsi": self.mmsi,
            "lat": round(self.lat, 5),
            "lon": round(self.lon, 5),
            "speed": self.sog_kn,
            "course": self.cog_deg,
            "heading": round(self.cog_deg) % 360,
        }
        if self.msg_type == 1:
            msg["status"] = 0
        return list(encode_dict(msg, talker_id="AI", radio_channel="A"))

    def static_lines(self) -> list[str]:
        msg: dict[str, str | int | float | bytes | bool] = {
            "type": 5,
            "mmsi": self.mmsi,
            "shipname": self.name,
            "callsign": self.callsign or f"B{self.mmsi % 10000:04d}",
            "ship_type": self.ship_type,
            "to_bow": 30,
            "to_stern": 10,
            "to_port": 5,
            "to_starboard": 5,
            "ais_version": 0,
        }
        return list(encode_dict(msg, talker_id="AI", radio_channel="A"))


class AisUdpScene:
    """Sends each vessel's position every `report_s` of clock time, static data now and then."""

    def __init__(
        self, vessels: list[SimVessel], clock: Clock, host: str, port: int, report_s: float = 60.0
    ) -> None:
        self.vessels = vessels
        self.clock = clock
        self.target = (host, port)
        self.report_s = report_s
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ais-scene")
        self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        started_ns = self.clock.now_ns()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            rounds = 0
            while True:
                elapsed_s = (self.clock.now_ns() - started_ns) / NS_PER_S
                for vessel in self.vessels:
                    if vessel.dark_after_s is not None and elapsed_s > vessel.dark_after_s:
                        continue
                    lines = vessel.position_lines()
                    if rounds % 6 == 0:
                        lines += vessel.static_lines()
                    for line in lines:
                        sock.sendto(line.encode() + b"\r\n", self.target)
                        self.sent += 1
                    vessel.advance(self.report_s)
                rounds += 1
                await self.clock.sleep(self.report_s)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("AIS scene stopped: %r", task.exception())


def zhoushan_scene() -> list[SimVessel]:
    """Inside the example sea grid ZS-SEA-01 (29.8–30.2 N, 122.1–122.6 E)."""
    return [
        # Not on the whitelist, loitering in the sea grid: unregistered_vessel after 10 min.
        SimVessel(412999001, "HAI XING 88", 30.02, 122.30, 1.2, 45.0, ship_type=70),
        # Whitelisted ferry under way that switches its transponder off: ais_gap after 15 min.
        SimVessel(
            413801234, "ZHOUSHAN FERRY 3", 29.95, 122.22, 12.0, 80.0, ship_type=60, dark_after_s=300
        ),
        # Whitelisted fishing vessel going about its business: no alert.
        SimVessel(412401001, "ZHEDAIYU 01001", 29.90, 122.45, 8.0, 200.0, ship_type=30),
        # Whitelisted tug steaming into the submarine cable area: restricted_zone.
        SimVessel(413456780, "DONGHAI TUG 7", 30.075, 122.38, 6.0, 90.0, ship_type=52),
    ]
