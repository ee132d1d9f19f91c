"""Generate a deterministic synthetic AIS/NMEA capture of a Zhoushan sea-grid traffic scene.

Usage: python bench/make_ais_capture.py OUT.nmea [--messages 60000] [--vessels 3000] [--seed 7]

Vessels drift around 30.0N 122.3E; the mix covers AIS types 1/2/3, 5 (two sentences), 18, 19,
21, 24A/B and 27, a few $-sentences (GGA/RMC/VTG/HDT) of the gateway itself, "not available"
sentinels, and IEC 61162-450 tag blocks (s: source, c: unix time) on a share of the lines.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import operator
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyais import encode_dict

CENTER_LAT = 30.0
CENTER_LON = 122.3
START_UNIX_S = 1_780_000_000  # 2026-05-28, inside the fishing moratorium season
Fields = dict[str, str | int | float | bytes | bool]  # what pyais.encode_dict takes
NAMES = ("ZHE DAI YU", "HAI XUN", "MIN SHI", "DONG HAI", "ZHOU YU", "NING BO", "XIN HAI")


@dataclass(slots=True)
class Vessel:
    mmsi: int
    ais_class: str  # "A", "B", "AtoN"
    lat: float
    lon: float
    sog: float
    cog: float
    name: str
    ship_type: int
    last_s: int = 0  # scene time of its last report


def _checksum(body: str) -> str:
    return f"{functools.reduce(operator.xor, body.encode(), 0):02X}"


def tag_block(source: str, unix_s: int) -> str:
    body = f"s:{source},c:{unix_s}"
    return f"\\{body}*{_checksum(body)}\\"


def make_fleet(rng: random.Random, count: int) -> list[Vessel]:
    fleet = []
    for i in range(count):
        roll = rng.random()
        ais_class = "A" if roll < 0.65 else ("B" if roll < 0.95 else "AtoN")
        mid = 992 if ais_class == "AtoN" else rng.choice((412, 413, 414))
        fleet.append(
            Vessel(
                mmsi=mid * 1_000_000 + 100_000 + i,
                ais_class=ais_class,
                lat=CENTER_LAT + rng.uniform(-0.3, 0.3),
                lon=CENTER_LON + rng.uniform(-0.3, 0.3),
                sog=0.0 if ais_class == "AtoN" else round(rng.uniform(0, 14), 1),
                cog=round(rng.uniform(0, 359.9), 1),
                name=f"{rng.choice(NAMES)} {i:05d}"[:20],
                ship_type=rng.choice((30, 30, 52, 60, 70, 80)),
            )
        )
    return fleet


def _move(v: Vessel, rng: random.Random, unix_s: int) -> None:
    """Sail the vessel at its SOG/COG for the scene time since its last report, plus GNSS noise;
    it turns back at the edge of the scene."""
    nm = v.sog * max(unix_s - v.last_s, 0) / 3600 if v.last_s else 0.0
    v.last_s = unix_s
    lat = v.lat + nm / 60 * math.cos(math.radians(v.cog)) + rng.uniform(-2e-5, 2e-5)
    lon = v.lon + nm / 60 * math.sin(math.radians(v.cog)) / math.cos(math.radians(v.lat))
    lon += rng.uniform(-2e-5, 2e-5)
    if not (29.5 <= lat <= 30.5 and 121.8 <= lon <= 122.8):
        v.cog = round((v.cog + 180) % 360, 1)
    v.lat, v.lon = min(max(lat, 29.5), 30.5), min(max(lon, 121.8), 122.8)


def _position(v: Vessel, rng: random.Random) -> Fields:
    """A position report for the vessel's class; ~3% carry "not available" sentinels."""
    sentinel = rng.random() < 0.03
    lat, lon = (91.0, 181.0) if sentinel else (round(v.lat, 5), round(v.lon, 5))
    if v.ais_class == "AtoN":
        return {"type": 21, "mmsi": v.mmsi, "lat": lat, "lon": lon, "name": v.name, "aid_type": 1}
    if v.ais_class == "B":
        if rng.random() < 0.05:
            return {
                "type": 27,
                "mmsi": v.mmsi,
                # ITU-R M.1371 msg 27 carries positions in 1/10 minute steps.
                "lat": round(v.lat * 600) / 600,
                "lon": round(v.lon * 600) / 600,
                "speed": 63 if sentinel else int(v.sog),
                "course": 511 if sentinel else int(v.cog),
                "status": 0,
            }
        return {
            "type": 18,
            "mmsi": v.mmsi,
            "lat": lat,
            "lon": lon,
            "speed": 102.3 if sentinel else v.sog,
            "course": 360.0 if sentinel else v.cog,
            "heading": 511 if sentinel else int(v.cog),
        }
    msg_type = rng.choice((1, 1, 1, 2, 3))
    return {
        "type": msg_type,
        "msg_type": msg_type,
        "mmsi": v.mmsi,
        "lat": lat,
        "lon": lon,
        "speed": 102.3 if sentinel else v.sog,
        "course": 360.0 if sentinel else v.cog,
        "heading": 511 if sentinel else int(v.cog),
        "status": 7 if v.ship_type == 30 else 0,
        "turn": 0,
    }


def _static(v: Vessel, rng: random.Random) -> list[Fields]:
    dims = {"to_bow": 20, "to_stern": 15, "to_port": 4, "to_starboard": 5}
    if v.ais_class == "AtoN":
        return [{"type": 21, "mmsi": v.mmsi, "lat": v.lat, "lon": v.lon, "name": v.name}]
    if v.ais_class == "B":
        if rng.random() < 0.2:
            return [
                {
                    "type": 19,
                    "mmsi": v.mmsi,
                    "lat": round(v.lat, 5),
                    "lon": round(v.lon, 5),
                    "speed": v.sog,
                    "course": v.cog,
                    "heading": 511,
                    "shipname": v.name,
                    "ship_type": v.ship_type,
                    **dims,
                }
            ]
        return [
            {"type": 24, "partno": 0, "mmsi": v.mmsi, "shipname": v.name},
            {
                "type": 24,
                "partno": 1,
                "mmsi": v.mmsi,
                "ship_type": v.ship_type,
                "callsign": f"B{v.mmsi % 10000:04d}",
                **dims,
            },
        ]
    return [
        {
            "type": 5,
            "mmsi": v.mmsi,
            "imo": 9_000_000 + v.mmsi % 1_000_000,
            "ais_version": 0,
            "callsign": f"BZ{v.mmsi % 10000:04d}",
            "shipname": v.name,
            "ship_type": v.ship_type,
            "destination": "ZHOUSHAN",
            "draught": 4.2,
            **dims,
        }
    ]


def _gateway_sentences(unix_s: int) -> list[str]:
    hhmmss = f"{(unix_s // 3600) % 24:02d}{(unix_s // 60) % 60:02d}{unix_s % 60:02d}"
    bodies = [
        f"GPGGA,{hhmmss}.00,3000.1200,N,12218.0000,E,1,08,0.9,12.0,M,9.0,M,,",
        f"GPRMC,{hhmmss}.00,A,3000.1200,N,12218.0000,E,0.0,0.0,280526,,,A",
        "GPVTG,0.0,T,,M,0.0,N,0.0,K,A",
        "HEHDT,123.4,T",
    ]
    return [f"${b}*{_checksum(b)}" for b in bodies]


def generate(
    messages: int, vessels: int = 3000, seed: int = 7, tag_share: float = 0.3
) -> Iterator[str]:
    """Yield NMEA lines (without line ends) carrying about `messages` AIS messages.

    `tag_share` of the messages carry a tag block with the scene time; the others are stamped
    with the receive time on ingest, so a vessel alternating between the two appears to jump.
    """
    rng = random.Random(seed)
    fleet = make_fleet(rng, vessels)
    seq = 0
    produced = 0
    while produced < messages:
        unix_s = START_UNIX_S + produced // 50  # about 50 messages per second of scene time
        v = rng.choice(fleet)
        _move(v, rng, unix_s)
        payloads = _static(v, rng) if rng.random() < 0.12 else [_position(v, rng)]
        channel = rng.choice("AB")
        tag = tag_block("zs01", unix_s) if rng.random() < tag_share else ""
        for data in payloads:
            seq = (seq + 1) % 10
            for line in encode_dict(
                data, talker_id="AI", sentence_type="VDM", radio_channel=channel, seq_id=seq
            ):
                yield tag + line
            produced += 1
        if produced % 500 == 0:
            yield from _gateway_sentences(unix_s)


def write_whitelist(path: Path, vessels: int = 3000, seed: int = 7) -> None:
    """A whitelist CSV naming every vessel of the scene (none of them fishing boats)."""
    rows = ["mmsi,name,owner,home_port,type,permits"]
    for v in make_fleet(random.Random(seed), vessels):
        rows.append(f"{v.mmsi},{v.name},,Zhoushan,cargo,")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_sea_grid(path: Path) -> None:
    """One sea-grid zone covering the whole scene."""
    ring = [[121.7, 29.4], [122.9, 29.4], [122.9, 30.6], [121.7, 30.6], [121.7, 29.4]]
    feature = {
        "type": "Feature",
        "properties": {"id": "zs-sea", "kind": "sea_grid", "grid": "ZS-01"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}), "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--vessels", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with args.out.open("w", encoding="ascii", newline="\r\n") as out:
        for line in generate(args.messages, args.vessels, args.seed):
            out.write(line + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
