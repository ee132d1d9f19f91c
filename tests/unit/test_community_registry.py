"""Community registry: CSV parsing, bad rows, reload, platform updates, privacy."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.records import DoorEvent, GridTags, WaterMeterReading, record_point, to_line
from hub.registry.community import CommunityRegistry, CommunityRegistryConfig

DATA = Path(__file__).parent.parent / "data" / "community"
SECRETS = ("ZHANG_SECRET_NAME", "LI_SECRET_NAME", "NO_ID_SECRET", "13912345678", "13987654321")
NS = 1_000_000_000


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp()) * NS


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for kind in ("households", "meters", "doors"):
        out[kind] = tmp_path / f"{kind}.csv"
        shutil.copy(DATA / f"{kind}.csv", out[kind])
    return out


def _registry(files: dict[str, Path]) -> CommunityRegistry:
    cfg = CommunityRegistryConfig(
        households_csv=files["households"], meters_csv=files["meters"], doors_csv=files["doors"]
    )
    return CommunityRegistry(cfg, hash_salt="salt")


def test_parses_rows_and_counts_bad_ones(files: dict[str, Path]) -> None:
    registry = _registry(files)
    assert sorted(registry.households) == ["3-2-501", "3-2-502", "3-2-601", "5-1-301"]
    assert registry.bad_rows == {"households": 3, "meters": 1, "doors": 0}
    elder = registry.household("3-2-501")
    assert elder is not None and elder.is_solitary_elder
    assert elder.grid == GridTags("G-03", "G-03-2", "PG-07")
    assert registry.household("3-2-502").is_solitary_elder is False  # type: ignore[union-attr]
    assert registry.household("5-1-301").is_solitary_elder is True  # type: ignore[union-attr]
    assert [h.household_id for h in registry.elders()] == ["3-2-501", "3-2-601", "5-1-301"]
    assert registry.meters["M-301"].device_id == "00000000000012"


def test_missing_required_column_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "households.csv"
    bad.write_text("household_id,building\n3-2-501,3\n")
    with pytest.raises(ConfigError, match="is_solitary_elder"):
        CommunityRegistry(CommunityRegistryConfig(households_csv=bad))


def test_empty_config_is_valid_and_tags_nothing() -> None:
    registry = CommunityRegistry(CommunityRegistryConfig())
    reading = WaterMeterReading(meter_id="M-1", time_ns=1, total_m3=1.0)
    assert registry.tag(reading) == reading
    assert registry.reload_if_changed() is False
    assert registry.unknown_ids["meter"] == 1


def test_tags_readings_and_doors(files: dict[str, Path]) -> None:
    registry = _registry(files)
    reading = registry.tag(WaterMeterReading(meter_id="M-501", time_ns=1, total_m3=12.5))
    assert isinstance(reading, WaterMeterReading)
    assert reading.household == "3-2-501"
    assert reading.grid == GridTags("G-03", "G-03-2", "PG-07")
    door = registry.tag(DoorEvent(door_id="D-5", time_ns=1, event="open"))
    assert isinstance(door, DoorEvent)
    assert door.building == "5" and door.grid.micro_grid == "G-05-1"


def test_unknown_ids_are_counted_and_passed_through(files: dict[str, Path]) -> None:
    registry = _registry(files)
    reading = WaterMeterReading(meter_id="M-NOPE", time_ns=1, total_m3=1.0)
    assert registry.tag(reading) is reading
    orphan = registry.tag(WaterMeterReading(meter_id="M-ORPHAN", time_ns=1, total_m3=1.0))
    assert isinstance(orphan, WaterMeterReading) and orphan.household == "0-0-000"
    assert orphan.grid == GridTags()
    door = DoorEvent(door_id="D-NOPE", time_ns=1, event="open")
    assert registry.tag(door) is door
    assert registry.unknown_ids == {"meter": 1, "household": 1, "door": 1}


def test_queries(files: dict[str, Path]) -> None:
    registry = _registry(files)
    assert registry.household_of_meter("M-601").household_id == "3-2-601"  # type: ignore[union-attr]
    assert registry.household_of_meter("M-NOPE") is None
    assert [d.door_id for d in registry.doors_of_household("3-2-501")] == ["D-3-2"]
    assert [d.door_id for d in registry.doors_of_household("5-1-301")] == ["D-5"]
    assert registry.doors_of_household("nobody") == []
    # away_until 2026-12-01 is inclusive, in local time (UTC+8)
    assert registry.is_away("3-2-601", _ns("2026-12-01T23:30:00+08:00"))
    assert not registry.is_away("3-2-601", _ns("2026-12-02T00:10:00+08:00"))
    assert not registry.is_away("3-2-501", _ns("2026-12-01T12:00:00+08:00"))


def test_reload_on_change_and_keep_old_data_on_bad_file(files: dict[str, Path]) -> None:
    registry = _registry(files)
    assert registry.reload_if_changed() is False
    text = files["meters"].read_text() + "M-NEW,3-2-502,bus-b,1,generic\n"
    files["meters"].write_text(text)
    os.utime(files["meters"], ns=(1, 2_000_000_000_000_000_000))
    assert registry.reload_if_changed() is True
    assert registry.household_of_meter("M-NEW").household_id == "3-2-502"  # type: ignore[union-attr]
    files["meters"].write_text("nonsense\n1\n")
    with pytest.raises(ConfigError):
        registry.reload_if_changed()
    assert "M-NEW" in registry.meters


def test_apply_update_full_table_and_single_household(files: dict[str, Path]) -> None:
    registry = _registry(files)
    registry.apply_update("household", {"household_id": "3-2-501", "away_until": "2026-12-01"})
    updated = registry.household("3-2-501")
    assert (
        updated is not None
        and updated.is_solitary_elder
        and str(updated.away_until) == "2026-12-01"
    )
    assert updated.grid.grid == "G-03"  # untouched fields kept
    registry.apply_update("household", {"household_id": "7-1-101", "is_solitary_elder": True})
    assert registry.household("7-1-101").is_solitary_elder  # type: ignore[union-attr]
    registry.apply_update("doors", [{"door_id": "D-9", "building": "9", "grid": "G-09"}])
    assert list(registry.doors) == ["D-9"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("households", {"household_id": "x"}),
        ("households", [{"household_id": "x", "is_solitary_elder": "perhaps"}]),
        ("meters", [{"meter_id": "", "household_id": "x"}]),
        ("doors", ["not an object"]),
        ("household", {"household_id": "3-2-501", "away_until": "soon"}),
        ("household", {"away_until": "2026-12-01"}),
        ("household", [1, 2]),
        ("vessels", []),
    ],
)
def test_apply_update_bad_payload_leaves_registry_unchanged(
    files: dict[str, Path], kind: str, payload: object
) -> None:
    registry = _registry(files)
    before = (dict(registry.households), dict(registry.meters), dict(registry.doors))
    with pytest.raises(ConfigError):
        registry.apply_update(kind, payload)
    assert (registry.households, registry.meters, registry.doors) == before


def test_names_and_phones_never_reach_records_or_logs(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = _registry(files)
    registry.apply_update(
        "households",
        [
            {
                "household_id": "1-1-101",
                "is_solitary_elder": "yes",
                "name": "ZHANG_SECRET_NAME",
                "phone": "13912345678",
            }
        ],
    )
    with pytest.raises(ConfigError) as bad:
        registry.apply_update(
            "household", {"household_id": "1-1-101", "phone": "13987654321", "away_until": "x"}
        )
    reading = registry.tag(WaterMeterReading(meter_id="M-501", time_ns=1, total_m3=1.0))
    line = to_line(record_point(reading, "site"))
    dumped = repr(registry.households) + repr(vars(registry)) + line + str(bad.value)
    for secret in SECRETS:
        assert secret not in caplog.text
        assert secret not in dumped
    assert "row(s) skipped" in caplog.text  # the bad rows were reported, without their content
