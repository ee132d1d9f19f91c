"""MID table and MMSI format classification (ITU-R M.585-9, ITU MID table)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.mid import MID_COUNTRY, MmsiKind, country_of, mid_of, mmsi_kind


def test_table_covers_the_itu_range_and_known_allocations() -> None:
    assert min(MID_COUNTRY) == 201 and max(MID_COUNTRY) == 775
    assert len(MID_COUNTRY) > 280
    assert all(200 < mid < 800 for mid in MID_COUNTRY)
    assert {MID_COUNTRY[m] for m in (412, 413, 414)} == {"China"}
    assert MID_COUNTRY[477] == "Hong Kong (China)"
    assert MID_COUNTRY[538] == "Marshall Islands"
    assert all(MID_COUNTRY[m] == "Panama" for m in (351, 357, 370, 374))
    assert MID_COUNTRY[636] == MID_COUNTRY[637] == "Liberia"
    assert 217 not in MID_COUNTRY and 400 not in MID_COUNTRY and 780 not in MID_COUNTRY


@pytest.mark.parametrize(
    ("mmsi", "kind", "mid"),
    [
        ("412345678", MmsiKind.SHIP, 412),
        ("004123456", MmsiKind.COAST, 412),
        ("041234567", MmsiKind.GROUP, 412),
        ("111412123", MmsiKind.SAR_AIRCRAFT, 412),
        ("841234567", MmsiKind.HANDHELD, 412),
        ("984123456", MmsiKind.CRAFT_ASSOCIATED, 412),
        ("994123456", MmsiKind.ATON, 412),
        ("970011234", MmsiKind.SART, None),
        ("972011234", MmsiKind.MOB, None),
        ("974011234", MmsiKind.EPIRB, None),
        ("123456789", MmsiKind.UNASSIGNED, None),
        ("912345678", MmsiKind.UNASSIGNED, None),
        ("41234567", MmsiKind.MALFORMED, None),
        ("4123456789", MmsiKind.MALFORMED, None),
        ("41234567a", MmsiKind.MALFORMED, None),
        ("４１２３４５６７８", MmsiKind.MALFORMED, None),  # full-width digits are not ASCII
        ("", MmsiKind.MALFORMED, None),
    ],
)
def test_mmsi_kind_and_mid(mmsi: str, kind: MmsiKind, mid: int | None) -> None:
    assert mmsi_kind(mmsi) is kind
    assert mid_of(mmsi) == mid


def test_country_of() -> None:
    assert country_of("412345678") == "China"
    assert country_of("994123456") == "China"
    assert country_of("200123456") is None  # MID 200 is not allocated
    assert country_of("970011234") is None


@given(st.text(max_size=12))
def test_any_text_classifies_without_raising(text: str) -> None:
    kind = mmsi_kind(text)
    mid = mid_of(text)
    assert (mid is not None) == kind.has_mid
