"""The status page's map, rendered by headless Chromium against a running hub.

Scenario: three zones (sea grid, restricted, an anchorage in two parts) and five map entries
(a registered vessel with a heading, an unregistered one with only a course, one not heard for
longer than the stale threshold, an AIS base station, a SAR aircraft), MQTT and webhook
destinations that are down, and an AIS feed that cannot connect.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from hub.config import HubConfig
from tests.hubtest import config, running
from tests.util import free_port, wait_for

TOKEN = "map-token-9041"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NS = 1_000_000_000


def _box(zone_id: str, kind: str, name: str, *boxes: tuple[float, float, float, float]) -> dict:
    polys = [[[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] for x0, y0, x1, y1 in boxes]
    geometry = (
        {"type": "Polygon", "coordinates": polys[0]}
        if len(polys) == 1
        else {"type": "MultiPolygon", "coordinates": polys}
    )
    props = {"id": zone_id, "kind": kind, "name": name}
    return {"type": "Feature", "properties": props, "geometry": geometry}


ZONES = {
    "type": "FeatureCollection",
    "features": [
        _box("sea-01", "sea_grid", "Sea grid 01", (122.1, 29.8, 122.6, 30.2)),
        _box("rz-cable", "restricted", "Cable area", (122.4, 30.05, 122.48, 30.1)),
        _box("anc-n", "anchorage", "North anchorage", (122.15, 30.1, 122.22, 30.15),
             (122.25, 30.12, 122.3, 30.16)),
    ],
}  # fmt: skip
REGISTERED, UNREGISTERED, STALE, BASE, SAR = (
    "412000001", "412000002", "412000003", "004130001", "111413001",
)  # fmt: skip


def _records(now_ns: int) -> list[dict]:
    stale_ns = now_ns - 40 * 60 * NS  # the stale threshold is ais_gap.gap_minutes (15)
    return [
        {"measurement": "vessel_static", "mmsi": REGISTERED, "name": "ZHE DAI YU 1"},
        {"measurement": "vessel_position", "mmsi": REGISTERED, "lat": 30.0, "lon": 122.3,
         "sog_kn": 8.5, "cog_deg": 40.0, "heading_deg": 45.0},
        {"measurement": "vessel_position", "mmsi": UNREGISTERED, "lat": 29.9, "lon": 122.45,
         "sog_kn": 3.0, "cog_deg": 200.0},
        {"measurement": "vessel_position", "mmsi": STALE, "lat": 30.15, "lon": 122.5,
         "sog_kn": 0.0, "time_ns": stale_ns},
        {"measurement": "ais_base_station", "mmsi": BASE, "lat": 29.95, "lon": 122.15},
        {"measurement": "sar_aircraft", "mmsi": SAR, "lat": 30.05, "lon": 122.2,
         "altitude_m": 300.0, "sog_kn": 110.0, "cog_deg": 90.0},
    ]  # fmt: skip


def _config(tmp_path: Path) -> tuple[HubConfig, str]:
    (tmp_path / "zones.geojson").write_text(json.dumps(ZONES))
    (tmp_path / "vessels.csv").write_text(f"mmsi,name\n{REGISTERED},ZHE DAI YU 1\n")
    port = free_port()
    cfg = config(
        tmp_path,
        f"""
[registry.maritime]
vessels_csv = "{tmp_path}/vessels.csv"
zones_geojson = "{tmp_path}/zones.geojson"
[rules.maritime.unregistered_vessel]
dwell_minutes = 0
[alerts]
tick_s = 0.1
[influxdb]
api = "none"
[mqtt]
enabled = true
port = {free_port()}
[webhook]
enabled = true
url = "http://127.0.0.1:{free_port()}/alerts"
secret_env = "MAP_WEBHOOK_SECRET"
[[sources]]
type = "nmea_tcp"
name = "ais-feed"
port = {free_port()}
""",
    )
    http = {"enabled": True, "port": port, "token_env": "MAP_HTTP_TOKEN"}
    return cfg.model_copy(
        update={"http": cfg.http.model_copy(update=http)}
    ), f"http://127.0.0.1:{port}"


class Dom(HTMLParser):
    """Every element's tag and attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def _chromium(tmp: Path, *args: str) -> list[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: make test installs it")
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tempfile.mkdtemp(dir=tmp)}",
        "--virtual-time-budget=4000", "--window-size=1500,1600", *args,
    ]  # fmt: skip


async def _run(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return out.decode()


async def _rendered(tmp: Path, url: str, done: str, timeout: float = 120) -> Dom:
    """The DOM once it contains `done`, rendering again until it does (a loaded machine may
    need more than one run for the page's fetches)."""
    deadline = time.monotonic() + timeout
    while True:
        dom = await _run(_chromium(tmp, "--dump-dom", url))
        if done in dom:
            return Dom(dom)
        assert time.monotonic() < deadline, f"page never showed {done!r}:\n{dom[-3000:]}"


def _local(iso: str, hours: float) -> str:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(
        timezone(timedelta(hours=hours))
    )
    return t.strftime("%Y-%m-%d %H:%M:%S")


async def test_status_page_draws_zones_and_markers_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAP_HTTP_TOKEN", TOKEN)
    monkeypatch.setenv("MAP_WEBHOOK_SECRET", "webhook-secret-55")
    cfg, base = _config(tmp_path)
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        data = "\n".join(json.dumps(r) for r in _records(hub.clock.now_ns()))
        async with http.post(f"{base}/api/v1/ingest", data=data, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: hub.status().vessel_count == 5, message="five map entries")
        await wait_for(lambda: all(p.last_error for p in hub.status().publishers), timeout=30)
        await wait_for(lambda: hub.status().sources[0].last_error, timeout=30)
        async with http.get(f"{base}/api/zones") as resp:
            assert resp.status == 401  # zones, like vessels, need the token
        async with http.get(f"{base}/api/zones", headers=AUTH) as resp:
            geojson = await resp.json()
        async with http.get(f"{base}/api/status", headers=AUTH) as resp:
            status = await resp.json()
        async with http.get(f"{base}/") as resp:
            page = await resp.text()
        for external in ("http:", "https:", "src=", "href=", "url(", "@import", "//cdn"):
            assert external not in page, external  # everything inline, nothing fetched elsewhere

        anonymous = await _rendered(tmp_path, f"{base}/", "details need the token")
        refused = await _rendered(tmp_path, f"{base}/#token=guess", "token refused")
        dom = await _rendered(tmp_path, f"{base}/#token={TOKEN}", 'data-map="drawn"')
        shot = tmp_path / "status_map.png"
        await _run(_chromium(tmp_path, f"--screenshot={shot}", f"{base}/#token={TOKEN}"))

    for page in (anonymous, refused):  # counts and health only
        assert not page.having("g", "marker") and not page.having("path", "zone")
        assert REGISTERED not in "".join(page.text) and "Cable area" not in "".join(page.text)
    assert [f["properties"] for f in geojson["features"]] == [
        {"id": "sea-01", "kind": "sea_grid", "name": "Sea grid 01", "grid": "sea"},
        {"id": "rz-cable", "kind": "restricted", "name": "Cable area", "grid": ""},
        {"id": "anc-n", "kind": "anchorage", "name": "North anchorage", "grid": ""},
    ]
    assert geojson["features"][2]["geometry"]["type"] == "MultiPolygon"

    zones = {a["data-zone-id"]: a["class"] for a in dom.having("path", "zone")}
    assert zones == {
        "sea-01": "zone zone-sea_grid",
        "rz-cable": "zone zone-restricted",
        "anc-n": "zone zone-anchorage",
    }
    anchorage = next(a for a in dom.having("path", "zone") if a["data-zone-id"] == "anc-n")
    assert anchorage["d"].count("M") == 2  # one path, both parts of the MultiPolygon

    markers = {a["data-mmsi"]: a for a in dom.having("g", "marker")}
    assert sorted(markers) == sorted([REGISTERED, UNREGISTERED, STALE, BASE, SAR])
    styles = {m: a["data-style"] for m, a in markers.items()}
    assert styles == {
        REGISTERED: "registered", UNREGISTERED: "unregistered", STALE: "stale",
        BASE: "ais_base_station", SAR: "sar_aircraft",
    }  # fmt: skip
    assert "stale" in markers[STALE]["class"].split()
    assert not any("stale" in markers[m]["class"].split() for m in (REGISTERED, UNREGISTERED))
    assert "kind-ais_base_station" in markers[BASE]["class"]
    assert "kind-sar_aircraft" in markers[SAR]["class"]
    assert markers[REGISTERED]["transform"].endswith("rotate(45)")  # heading before course
    assert markers[UNREGISTERED]["transform"].endswith("rotate(200)")  # else course
    assert markers[SAR]["transform"].endswith("rotate(90)")

    # the legend's swatch for each style has the colour its markers are drawn in
    legend = {
        a["data-style"]: fill
        for (tag, a), (_, swatch) in zip(dom.elements, dom.elements[2:], strict=False)
        if tag == "span" and "data-style" in a and (fill := swatch.get("fill"))
    }
    assert len(set(legend.values())) == 5
    for a in markers.values():
        assert a["fill"] == legend[a["data-style"]], a

    text = " ".join(dom.text)
    assert f"ZHE DAI YU 1 — MMSI {REGISTERED}" in text  # the marker's hover title
    assert any(a.get("id") == "scale-bar" for _, a in dom.elements)
    assert "UTC+08:00" in text
    seen = next(v["last_seen"] for v in status["vessels"] if v["mmsi"] == REGISTERED)
    assert f"last seen {_local(seen, 8.0)}" in text
    rows = {a["data-destination"] for _, a in dom.elements if "data-destination" in a}
    assert rows == {"mqtt", "webhook"}
    shown = {p["destination"]: p for p in status["publishers"]}
    assert not shown["mqtt"]["connected"] and shown["mqtt"]["last_error"] in text
    assert not shown["webhook"]["connected"] and shown["webhook"]["last_error"] in text
    (feed,) = status["sources"]
    assert not feed["connected"] and "Connect call failed" in feed["last_error"]
    assert feed["last_error"] in text

    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    print(f"status map screenshot: {shot}")


async def test_stale_is_the_ais_gap_threshold_and_fixes_of_every_kind_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAP_HTTP_TOKEN", TOKEN)
    cfg, base = _config(tmp_path)
    cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"enabled": False})})
    cfg = cfg.model_copy(update={"webhook": cfg.webhook.model_copy(update={"enabled": False})})
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        now_ns = hub.clock.now_ns()
        gap_ns = 15 * 60 * NS
        records = [
            {"measurement": "vessel_position", "mmsi": "412000011", "lat": 30.0, "lon": 122.3,
             "time_ns": now_ns - gap_ns + 60 * NS},
            {"measurement": "vessel_position", "mmsi": "412000012", "lat": 30.0, "lon": 122.3,
             "time_ns": now_ns - gap_ns - 60 * NS},
            {"measurement": "vessel_static", "mmsi": "412000013", "name": "NO FIX YET"},
            {"measurement": "sar_aircraft", "mmsi": SAR, "lat": 30.0, "lon": 122.2,
             "altitude_m": 1200.0},
        ]  # fmt: skip
        data = "\n".join(json.dumps(r) for r in records)
        async with http.post(f"{base}/api/v1/ingest", data=data, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: hub.status().vessel_count == 4, message="four table entries")
        async with http.get(f"{base}/api/status", headers=AUTH) as resp:
            status = await resp.json()
    assert status["stale_after_s"] == 15 * 60 and status["utc_offset_hours"] == 8
    shown = {v["mmsi"]: v for v in status["vessels"]}
    assert sorted(shown) == ["111413001", "412000011", "412000012"]  # the static has no fix
    assert shown["412000011"]["stale"] is False and shown["412000012"]["stale"] is True
    assert shown[SAR]["kind"] == "sar_aircraft" and shown[SAR]["altitude_m"] == 1200.0
