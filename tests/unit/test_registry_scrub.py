"""Registry pushes are scrubbed of personal fields before they are applied or stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.registry import Registry
from hub.registry.community import CommunityRegistry, CommunityRegistryConfig
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig, parse_vessels_csv
from hub.source import salted_hash

SALT = "unit-salt"


def registry(tmp_path: Path) -> tuple[Registry, CommunityRegistry, MaritimeRegistry]:
    community = CommunityRegistry(CommunityRegistryConfig(), SALT)
    maritime = MaritimeRegistry(MaritimeRegistryConfig(), SALT)
    return Registry([community, maritime], tmp_path / "pushes.jsonl"), community, maritime


def stored(tmp_path: Path) -> str:
    return (tmp_path / "pushes.jsonl").read_text()


def test_vessel_owner_is_hashed_like_the_csv_reader_and_kept_or_cleared(tmp_path: Path) -> None:
    reg, _, maritime = registry(tmp_path)
    reg.apply_update("maritime", "vessel", {"mmsi": "412000111", "owner": " Sun Li "})
    csv_vessels, _ = parse_vessels_csv("mmsi,owner\n412000111,Sun Li\n", SALT, "csv")
    vessel = maritime.vessel("412000111")
    assert vessel is not None and vessel.owner_hash == csv_vessels["412000111"].owner_hash
    assert vessel.owner_hash == salted_hash(SALT, "Sun Li")
    reg.apply_update("maritime", "vessel", {"mmsi": "412000111", "home_port": "Dinghai"})
    vessel = maritime.vessel("412000111")
    assert vessel is not None and vessel.owner_hash == salted_hash(SALT, "Sun Li")
    assert "Sun Li" not in stored(tmp_path)
    reg.apply_update("maritime", "vessel", {"mmsi": "412000111", "owner": ""})
    vessel = maritime.vessel("412000111")
    assert vessel is not None and vessel.owner_hash == "" and vessel.home_port == "Dinghai"


def test_a_refused_push_stores_nothing(tmp_path: Path) -> None:
    reg, _, _ = registry(tmp_path)
    with pytest.raises(ConfigError):
        reg.apply_update("maritime", "vessel", {"mmsi": "412000111", "owner": 12345})
    with pytest.raises(ConfigError):
        reg.apply_update("maritime", "vessel", {"mmsi": "412000111", "owner_hash": "Sun Li"})
    assert not (tmp_path / "pushes.jsonl").exists()


def test_community_rows_keep_only_the_columns_the_parsers_read(tmp_path: Path) -> None:
    reg, community, _ = registry(tmp_path)
    rows = [
        {
            "Household_ID": "1-1-101",
            "IS_SOLITARY_ELDER": "yes",
            "NAME": "Ma Lan",
            "emergency_contact": "Ma Jun 13900001111",
            "notes": "deaf in one ear",
        }
    ]
    reg.apply_update("community", "households", rows)
    household = community.household("1-1-101")
    assert household is not None and household.is_solitary_elder
    (entry,) = [json.loads(line) for line in stored(tmp_path).splitlines()]
    assert entry == [
        "community",
        "households",
        [{"household_id": "1-1-101", "is_solitary_elder": "yes"}],
    ]


def test_zone_properties_nobody_reads_are_dropped(tmp_path: Path) -> None:
    reg, _, maritime = registry(tmp_path)
    square = [[[122.0, 30.0], [122.1, 30.0], [122.1, 30.1], [122.0, 30.1], [122.0, 30.0]]]
    zones = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": "r-1", "kind": "restricted", "warden": "Qian Bo 139"},
                "geometry": {"type": "Polygon", "coordinates": square},
            }
        ],
    }
    reg.apply_update("maritime", "zones", zones)
    assert maritime.zone("r-1") is not None
    assert "Qian Bo" not in stored(tmp_path)
