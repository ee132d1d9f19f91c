"""Maritime registry: whitelist CSV, zones GeoJSON, tagging, reload and platform pushes."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hub.errors import ConfigError
from hub.records import NO_GRID, GridTags, VesselPosition, VesselStatic, WaterMeterReading
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.source import salted_hash

DATA = Path(__file__).parent.parent / "data" / "maritime"
DEPLOY = Path(__file__).parent.parent.parent / "deploy" / "registry"
SEA = (30.0, 122.3)
RESTRICTED = (30.075, 122.44)
ANCHORAGE = (29.91, 122.24)
OUTSIDE = (30.3, 122.3)
SALT = "test-salt"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    csv_path, zones_path = tmp_path / "vessels.csv", tmp_path / "zones.geojson"
    shutil.copy(DATA / "vessels.csv", csv_path)
    shutil.copy(DATA / "zones.geojson", zones_path)
    return csv_path, zones_path


def make(files: tuple[Path, Path], **extra: Any) -> MaritimeRegistry:
    cfg = MaritimeRegistryConfig(vessels_csv=files[0], zones_geojson=files[1], **extra)
    return MaritimeRegistry(cfg, hash_salt=SALT)


def bump(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward so a same-second rewrite is seen."""
    stat = path.stat()
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_empty_config_is_valid_and_tags_nothing() -> None:
    reg = MaritimeRegistry(MaritimeRegistryConfig())
    rec = VesselPosition(mmsi="412401001", time_ns=1, lat=SEA[0], lon=SEA[1])
    assert reg.tag(rec) == rec
    assert reg.zones == () and reg.zones_at(*SEA) == [] and not reg.reload_if_changed()


def test_csv_loads_good_rows_and_counts_bad_ones(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hub.registry.maritime"):
        reg = make(files)
    assert reg.vessel_count == 4
    assert reg.is_registered("412401001") and not reg.is_registered("412000000")
    vessel = reg.vessel("412401001")
    assert vessel is not None
    assert vessel.name == "ZHEDAIYU 01001" and vessel.vessel_type == "fishing"
    assert vessel.permits == ("fishing", "coastal") and vessel.home_port == "Shenjiamen"
    assert vessel.owner_hash == salted_hash(SALT, "Test Owner One")
    assert len(reg.problems) == 2
    assert reg.problems[0].startswith("vessels.csv line 5: mmsi")
    assert "duplicate mmsi 412401001" in reg.problems[1]
    # owners are personal: never in a message or a log line
    text = caplog.text + " ".join(reg.problems)
    assert "2 bad rows skipped" in caplog.text
    assert "Owner" not in text


def test_missing_file_at_start_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match=r"nope\.csv"):
        MaritimeRegistry(MaritimeRegistryConfig(vessels_csv=missing))
    with pytest.raises(ConfigError, match=r"zones\.geojson"):
        MaritimeRegistry(MaritimeRegistryConfig(zones_geojson=tmp_path / "zones.geojson"))


def test_csv_without_mmsi_column_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("name,owner\nA,B\n")
    with pytest.raises(ConfigError, match="mmsi"):
        MaritimeRegistry(MaritimeRegistryConfig(vessels_csv=path))


def test_zone_lookups(files: tuple[Path, Path]) -> None:
    reg = make(files)
    assert [z.id for z in reg.zones_at(*RESTRICTED)] == ["sea-zs-01", "rz-cable-01"]
    assert [z.id for z in reg.zones_at(*ANCHORAGE)] == ["sea-zs-01", "anch-01"]
    assert reg.zones_at(*OUTSIDE) == []
    sea = reg.sea_grid_at(*SEA)
    assert sea is not None and sea.id == "sea-zs-01"
    assert sea.tags == GridTags("ZS-SEA-01", "", "ZS-PG-SEA-1")
    restricted = reg.zone("rz-cable-01")
    assert restricted is not None and restricted.allowed_mmsi == frozenset({"413777001"})
    assert restricted.tags.micro_grid == "ZS-SEA-01-R1"
    # the boundary counts as inside
    assert reg.sea_grid_at(29.80, 122.30) is not None
    assert reg.sea_grid_at(29.7999, 122.30) is None


def test_nested_sea_grids_pick_the_smallest(tmp_path: Path) -> None:
    def square(zid: str, x0: float, y0: float, size: float, grid: str = "") -> dict[str, Any]:
        ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
        props = {"id": zid, "kind": "sea_grid", **({"grid": grid} if grid else {})}
        return {"type": "Feature", "properties": props,
                "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip

    squares = [square("big", 122.0, 29.5, 1.0), square("small", 122.2, 29.9, 0.2, "G2")]
    doc = {"type": "FeatureCollection", "features": squares}
    path = tmp_path / "z.geojson"
    path.write_text(json.dumps(doc))
    reg = MaritimeRegistry(MaritimeRegistryConfig(zones_geojson=path, sea_grid_id="SEA-X"))
    small = reg.sea_grid_at(30.0, 122.3)
    big = reg.sea_grid_at(29.6, 122.1)
    assert small is not None and small.id == "small" and small.tags.grid == "G2"
    assert big is not None and big.id == "big" and big.tags.grid == "SEA-X"


def test_tag_position_static_and_other_records(files: tuple[Path, Path]) -> None:
    reg = make(files)
    inside = reg.tag(VesselPosition(mmsi="412401001", time_ns=1, lat=SEA[0], lon=SEA[1]))
    assert isinstance(inside, VesselPosition)
    assert inside.registered and inside.grid.grid == "ZS-SEA-01"
    stranger = reg.tag(VesselPosition(mmsi="412000123", time_ns=2, lat=OUTSIDE[0], lon=OUTSIDE[1]))
    assert isinstance(stranger, VesselPosition)
    assert not stranger.registered and stranger.grid == NO_GRID
    no_fix = reg.tag(VesselPosition(mmsi="413801234", time_ns=3))
    assert isinstance(no_fix, VesselPosition) and no_fix.registered and no_fix.grid == NO_GRID
    static = reg.tag(VesselStatic(mmsi="412401001", time_ns=4, name="ZHEDAIYU 01001"))
    assert static.grid.grid == "ZS-SEA-01"  # remembered from its last position
    unknown_static = reg.tag(VesselStatic(mmsi="412999999", time_ns=5))
    assert unknown_static.grid == NO_GRID
    meter = WaterMeterReading(meter_id="M-1", time_ns=6, total_m3=1.0)
    assert reg.tag(meter) is meter


def test_reload_on_change_and_bad_reload_keeps_old(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    reg = make(files)
    assert not reg.reload_if_changed()
    bump(files[0], "mmsi,name\n412555555,NEW ONE\n")
    assert reg.reload_if_changed()
    assert reg.vessel_count == 1 and reg.is_registered("412555555") and reg.problems == []
    bump(files[1], '{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    with caplog.at_level(logging.ERROR, logger="hub.registry.maritime"):
        assert not reg.reload_if_changed()
        assert not reg.reload_if_changed()  # the same broken file is reported once
    assert caplog.text.count("reload failed") == 1
    assert len(reg.zones) == 3
    files[1].unlink()
    assert not reg.reload_if_changed()
    assert len(reg.zones) == 3


def test_push_vessels_vessel_and_zones(files: tuple[Path, Path]) -> None:
    reg = make(files)
    reg.apply_update("vessels", [{"mmsi": 412111111, "name": "A", "permits": "x;y"}])
    assert reg.vessel_count == 1
    vessel = reg.vessel("412111111")
    assert vessel is not None and vessel.permits == ("x", "y")
    reg.apply_update("vessel", json.dumps({"mmsi": "412222222", "owner": "Somebody"}).encode())
    assert reg.is_registered("412222222")
    reg.apply_update("vessel", {"mmsi": "412111111", "deleted": True})
    assert not reg.is_registered("412111111") and reg.vessel_count == 1
    doc = json.loads((DEPLOY / "zones.example.geojson").read_text())
    doc["features"] = doc["features"][:1]
    reg.apply_update("zones", doc)
    assert [z.id for z in reg.zones] == ["sea-zs-01"]
    assert reg.zones_at(*RESTRICTED)[0].id == "sea-zs-01"


def fc(props: dict[str, Any], geometry: Any) -> dict[str, Any]:
    feature = {"type": "Feature", "properties": props, "geometry": geometry}
    return {"type": "FeatureCollection", "features": [feature]}


def poly(*ring: tuple[float, float]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}


RZ = {"id": "a", "kind": "restricted"}
UNIT = poly((0, 0), (1, 0), (1, 1), (0, 0))


@pytest.mark.parametrize(
    ("kind", "payload", "match"),
    [
        ("vessels", {"not": "a list"}, "list"),
        ("vessels", [{"mmsi": "412111111"}, {"mmsi": "12"}], r"vessels\[1\].*mmsi"),
        ("vessels", [{"mmsi": "412111111", "colour": "red"}], "colour"),
        ("vessel", {"name": "no mmsi"}, "mmsi"),
        ("vessel", ["x"], "object"),
        ("vessel", {"mmsi": "x", "deleted": True}, "9-digit"),
        ("vessel", b"{not json", "not JSON"),
        ("zones", {"type": "Feature"}, "FeatureCollection"),
        ("zones", {"type": "FeatureCollection", "features": {}}, "list"),
        ("zones", fc({"id": "a", "kind": "lake"}, UNIT), "kind"),
        ("zones", fc(RZ, {"type": "Point", "coordinates": [122, 30]}), "Polygon"),
        ("zones", fc(RZ, poly((0, 0), (1, 1), (1, 0), (0, 1), (0, 0))), "invalid polygon"),
        ("zones", fc(RZ, poly((30, 122), (30.1, 122), (30.1, 122.1), (30, 122))), "lon, lat"),
        ("zones", fc({**RZ, "allowed_mmsi": ["123"]}, UNIT), "allowed_mmsi"),
        ("zones", fc(RZ, {"type": "Polygon", "coordinates": "oops"}), "bad geometry"),
        ("zones", fc(RZ, None), "bad geometry"),
        ("whatever", {}, "unknown maritime registry update"),
    ],
)
def test_bad_push_is_rejected_and_leaves_registry_unchanged(
    files: tuple[Path, Path], kind: str, payload: Any, match: str
) -> None:
    reg = make(files)
    with pytest.raises(ConfigError, match=match):
        reg.apply_update(kind, payload)
    assert reg.vessel_count == 4 and len(reg.zones) == 3


def test_bad_push_never_echoes_personal_values(files: tuple[Path, Path]) -> None:
    reg = make(files)
    with pytest.raises(ConfigError) as info:
        reg.apply_update("vessel", {"mmsi": "412111111", "owner": ["Secret Person"]})
    assert "owner" in str(info.value) and "Secret Person" not in str(info.value)


def test_duplicate_zone_ids_rejected(files: tuple[Path, Path]) -> None:
    doc = json.loads(files[1].read_text())
    doc["features"].append(doc["features"][0])
    reg = make(files)
    with pytest.raises(ConfigError, match="duplicate zone id 'sea-zs-01'"):
        reg.apply_update("zones", doc)


def test_deploy_examples_load() -> None:
    cfg = MaritimeRegistryConfig(
        vessels_csv=DEPLOY / "vessels.example.csv", zones_geojson=DEPLOY / "zones.example.geojson"
    )
    reg = MaritimeRegistry(cfg)
    assert reg.vessel_count >= 5 and reg.problems == []
    assert {z.kind for z in reg.zones} == {"sea_grid", "restricted", "anchorage"}


def test_many_lookups_use_the_tree(tmp_path: Path) -> None:
    """A 40x40 grid of cells: every lookup finds exactly its own cell."""
    features = []
    for i in range(40):
        for j in range(40):
            x0, y0 = 120 + i * 0.05, 28 + j * 0.05
            ring = [[x0, y0], [x0 + 0.05, y0], [x0 + 0.05, y0 + 0.05], [x0, y0 + 0.05], [x0, y0]]
            features.append({"type": "Feature",
                             "properties": {"id": f"c{i}-{j}", "kind": "sea_grid"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})  # fmt: skip
    reg = MaritimeRegistry(MaritimeRegistryConfig())
    reg.apply_update("zones", {"type": "FeatureCollection", "features": features})
    for i in range(0, 40, 3):
        for j in range(0, 40, 7):
            zones = reg.zones_at(28 + j * 0.05 + 0.025, 120 + i * 0.05 + 0.025)
            assert [z.id for z in zones] == [f"c{i}-{j}"]


def test_partial_vessel_push_keeps_other_fields(files: tuple[Path, Path]) -> None:
    reg = make(files)
    reg.apply_update("vessel", {"mmsi": "412401001", "permits": ["coastal"]})
    vessel = reg.vessel("412401001")
    assert vessel is not None and vessel.permits == ("coastal",)
    assert vessel.name == "ZHEDAIYU 01001" and vessel.vessel_type == "fishing"
    assert vessel.owner_hash == salted_hash(SALT, "Test Owner One")
    reg.apply_update("vessel", {"mmsi": "412401001", "owner": "New Owner"})
    vessel = reg.vessel("412401001")
    assert vessel is not None and vessel.owner_hash == salted_hash(SALT, "New Owner")
    assert vessel.permits == ("coastal",)
