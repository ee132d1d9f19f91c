"""Benchmark zone lookups (STRtree + prepared polygons vs a naive scan) and the maritime rules."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.clock import NS_PER_S
from hub.records import VesselPosition
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules.maritime import MaritimeRulesConfig, build_maritime_rules

CELLS = 30  # CELLS x CELLS sea-grid cells, each a 24-vertex polygon, plus restricted zones
LOOKUPS = 50_000
RECORDS = 50_000
VESSELS = 3_000
BATCH = 2_000


def zone_doc() -> dict[str, Any]:
    features = []
    for i in range(CELLS):
        for j in range(CELLS):
            cx, cy = 122.0 + i * 0.02 + 0.01, 29.7 + j * 0.02 + 0.01
            cell = shapely.Point(cx, cy).buffer(0.0141, quad_segs=6)  # circle covering the cell
            features.append(feature(f"c{i}-{j}", "sea_grid", cell))
            if (i + j) % 7 == 0:
                features.append(
                    feature(f"r{i}-{j}", "restricted", shapely.Point(cx, cy).buffer(0.004))
                )
    return {"type": "FeatureCollection", "features": features}


def feature(zid: str, kind: str, geom: Any) -> dict[str, Any]:
    props = {"id": zid, "kind": kind, "grid": zid}
    return {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(geom)}


def random_points(n: int, rng: random.Random) -> list[tuple[float, float]]:
    span = CELLS * 0.02
    return [(29.7 + rng.random() * span, 122.0 + rng.random() * span) for _ in range(n)]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def bench_lookups(reg: MaritimeRegistry, points: list[tuple[float, float]]) -> float:
    start = time.perf_counter()
    hits_tree = sum(len(reg.zones_at(lat, lon)) for lat, lon in points)
    tree_s = time.perf_counter() - start
    raw = [shapely.from_wkb(shapely.to_wkb(z.geometry)) for z in reg.zones]  # unprepared copies
    sample = points[: max(1, len(points) // 50)]
    start = time.perf_counter()
    hits_naive = sum(sum(g.contains(shapely.Point(lon, lat)) for g in raw) for lat, lon in sample)
    naive_s = (time.perf_counter() - start) * len(points) / len(sample)
    per_lookup = hits_tree / len(points)
    print(f"zones: {len(reg.zones)}  lookups: {len(points)}  hits/lookup: {per_lookup:.2f}")
    print(f"  STRtree + prepared: {rate(len(points), tree_s)}")
    print(
        f"  naive scan (baseline, same run): {rate(len(points), naive_s)}  "
        f"(sample hits/lookup {hits_naive / len(sample):.2f})"
    )
    print(f"  ratio: {naive_s / tree_s:.0f}x faster than the naive scan")
    return tree_s


def bench_rules(reg: MaritimeRegistry, rng: random.Random) -> None:
    rules = build_maritime_rules(MaritimeRulesConfig(), reg)
    states: dict[str, Any] = {r.name: r.state_class() for r in rules}
    mmsis = [f"412{n:06d}" for n in range(VESSELS)]
    points = random_points(VESSELS, rng)
    now = 1_780_000_000 * NS_PER_S
    records = []
    for k in range(RECORDS):
        v = k % VESSELS
        lat, lon = points[v]
        lat += (k // VESSELS) * 0.0002
        now += NS_PER_S // 20
        records.append(
            VesselPosition(
                mmsi=mmsis[v], time_ns=now, lat=lat, lon=lon, sog_kn=3.0, cog_deg=0.0, msg_type=1
            )
        )
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):  # the engine's order: tag a batch, then rule by rule
        batch = [reg.tag(rec) for rec in records[i : i + BATCH]]
        for rule in rules:
            state = states[rule.name]
            for rec in batch:
                rule.on_record(state, rec, rec.time_ns)
    records_s = time.perf_counter() - start
    start = time.perf_counter()
    for rule in rules:
        rule.on_tick(states[rule.name], now)
    tick_s = time.perf_counter() - start
    state_bytes = sum(len(json.dumps(s.to_json())) for s in states.values())
    print(
        f"tag + {len(rules)} rule group(s), {VESSELS} vessels, batches of {BATCH}: "
        f"{rate(RECORDS, records_s)} positions; one tick {tick_s * 1000:.1f} ms; "
        f"rule state {state_bytes / 1e6:.1f} MB as JSON"
    )


def main() -> None:
    rng = random.Random(7)
    reg = MaritimeRegistry(MaritimeRegistryConfig())
    reg.apply_update("zones", zone_doc())
    bench_lookups(reg, random_points(LOOKUPS, rng))
    bench_rules(reg, rng)


if __name__ == "__main__":
    main()
