"""Normalise once: the pipeline looks up a position's zones once, and the rules and the vessel
table act on that one answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.alerts import AlertManager
from hub.clock import ManualClock
from hub.engine import Engine
from hub.outbox import Outbox
from hub.pipeline import Pipeline
from hub.records import VesselPosition
from hub.registry import Registry
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig, Zone, ZoneSet
from hub.rules.maritime import MaritimeRulesConfig, build_maritime_rules
from hub.vessels import VesselTable

DATA = Path(__file__).parent.parent / "data" / "maritime"
RESTRICTED = (30.075, 122.44)  # inside the sea grid and the cable zone
OUTSIDE = (30.3, 122.3)
STRANGER = "412000123"  # valid Chinese MMSI, not whitelisted
FERRY = "413801234"  # whitelisted passenger ship


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[float, float]]]:
    """Every position a ZoneSet was asked about (`at` and `sea_grid_at` go through `lookup`)."""
    seen: list[tuple[float, float]] = []
    real_lookup = ZoneSet.lookup

    def counting_lookup(self: ZoneSet, lat: float, lon: float) -> tuple[Zone, ...]:
        seen.append((lat, lon))
        return real_lookup(self, lat, lon)

    monkeypatch.setattr(ZoneSet, "lookup", counting_lookup)
    yield seen


async def test_one_zone_lookup_per_position_through_tagger_rules_and_vessel_table(
    tmp_path: Path, lookups: list[tuple[float, float]]
) -> None:
    maritime = MaritimeRegistry(
        MaritimeRegistryConfig(
            vessels_csv=DATA / "vessels.csv", zones_geojson=DATA / "zones.geojson"
        )
    )
    clock = ManualClock()
    engine = Engine(build_maritime_rules(MaritimeRulesConfig(), maritime), AlertManager("s", 600))
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**7)
    await outbox.open()
    vessels = VesselTable()
    pipeline = Pipeline(
        site="s",
        clock=clock,
        registry=Registry([maritime]),
        engine=engine,
        outbox=outbox,
        destinations=[],
        vessels=vessels,
    )
    writer = asyncio.create_task(pipeline.run())
    opened: list[tuple[str, str]] = []
    engine.listeners.append(lambda a: opened.append((a.rule, a.state)))
    positions = 0
    try:
        for minute in range(15):
            clock.advance(60)
            where = RESTRICTED if minute < 12 else OUTSIDE
            batch = [
                VesselPosition(
                    mmsi=mmsi,
                    time_ns=clock.now_ns(),
                    lat=where[0],
                    lon=where[1],
                    sog_kn=8.0,
                    cog_deg=90.0,
                    msg_type=1,
                )
                for mmsi in (STRANGER, FERRY)
            ]
            await pipeline.publish(batch)
            positions += len(batch)
    finally:
        writer.cancel()
        await outbox.close()
    assert engine.rule_errors == {}
    # The tagger's lookup is the only one: signals reuse it for their sea grid, too.
    assert len(lookups) == positions
    assert ("unregistered_vessel", "open") in opened
    assert ("restricted_zone", "open") in opened
    stranger, ferry = vessels.get(STRANGER), vessels.get(FERRY)
    assert stranger is not None and ferry is not None
    assert stranger.zones == ferry.zones == ()  # both last heard outside every zone
    assert set(stranger.dwell_s) == {"sea-zs-01", "rz-cable-01"}
    assert stranger.to_json()["registered"] is False and ferry.to_json()["registered"] is True
