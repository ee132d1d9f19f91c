"""Property tests: any stream of vessel records keeps every maritime rule sane and bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.clock import NS_PER_S
from hub.errors import ConfigError
from hub.records import VesselPosition, VesselStatic
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules import SEVERITIES
from hub.rules.maritime import (
    MaritimeRules,
    MaritimeRulesConfig,
    MaritimeState,
    build_maritime_rules,
)

DATA = Path(__file__).parent.parent / "data" / "maritime"
REGISTRY = MaritimeRegistry(
    MaritimeRegistryConfig(vessels_csv=DATA / "vessels.csv", zones_geojson=DATA / "zones.geojson")
)
CFG = MaritimeRulesConfig(max_vessels=10, vessel_expiry_minutes=30)
T0 = 1_780_000_000 * NS_PER_S  # 2026-05-28, inside the closed season

mmsis = st.one_of(
    st.sampled_from(["412401001", "413801234", "412000123", "994121234", "000000000"]),
    st.text(max_size=11),
    st.integers(0, 999_999_999).map(lambda n: f"{n:09d}"),
)
floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
lats = st.one_of(floats, st.floats(29.7, 30.3))
lons = st.one_of(floats, st.floats(122.0, 122.7))
positions = st.builds(
    VesselPosition, mmsi=mmsis, time_ns=st.integers(-(10**12), 2 * T0), lat=lats, lon=lons,
    sog_kn=floats, cog_deg=floats, msg_type=st.integers(0, 27),
    ais_class=st.sampled_from(["A", "B", "AtoN", "base", ""]),
)  # fmt: skip
statics = st.builds(
    VesselStatic, mmsi=mmsis, time_ns=st.integers(0, 2 * T0),
    name=st.one_of(st.none(), st.text(max_size=20)),
    ship_type=st.one_of(st.none(), st.integers(0, 99)),
)  # fmt: skip
steps = st.lists(
    st.tuples(st.integers(0, 20 * 60), st.one_of(positions, statics, st.just("tick"))),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_any_record_stream_keeps_rules_sane(stream: list[tuple[int, Any]]) -> None:
    (group,) = build_maritime_rules(CFG, REGISTRY)
    assert isinstance(group, MaritimeRules)
    names = {r.name for r in group.rules}
    state = MaritimeState()
    now = T0
    for advance_s, item in stream:
        now += advance_s * NS_PER_S
        if item == "tick":
            signals = group.on_tick(state, now)
            assert len(state) <= CFG.max_vessels
        else:
            signals = group.on_record(state, item, now)
        for sig in signals:
            assert sig.rule in names and sig.severity in SEVERITIES
            json.dumps(sig.data, allow_nan=False)
        saved = json.loads(json.dumps(state.to_json(), allow_nan=False))
        assert MaritimeState.from_json(saved) == state
        state = MaritimeState.from_json(saved)
        assert len(state) <= 2 * CFG.max_vessels + 1
    assert group.errors == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
vessel_like = st.fixed_dictionaries(
    {"mmsi": st.one_of(st.text(max_size=10), st.integers(), st.just("412555555"))},
    optional={"name": json_values, "owner": json_values, "permits": json_values, "x": json_values},
)
feature_like = st.fixed_dictionaries(
    {"type": st.just("Feature"), "properties": json_values, "geometry": json_values}
)
payloads = st.one_of(
    json_values,
    st.binary(max_size=40),
    vessel_like,
    st.lists(vessel_like, max_size=3),
    st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.lists(feature_like, max_size=3)}
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["vessels", "vessel", "zones", "other"]), payloads)
def test_random_pushes_raise_only_config_error(kind: str, payload: Any) -> None:
    reg = MaritimeRegistry(
        MaritimeRegistryConfig(
            vessels_csv=DATA / "vessels.csv", zones_geojson=DATA / "zones.geojson"
        )
    )
    before = (reg.vessel_count, len(reg.zones))
    try:
        reg.apply_update(kind, payload)
    except ConfigError:
        assert (reg.vessel_count, len(reg.zones)) == before
