"""Every dashboard panel shows the right answer, not just "a series": semantic checks.

A fixed scenario with known answers is written into a real InfluxDB 1.6 through the hub's own
records and line-protocol encoder (`record_point`, `to_line`, `Alert.point`). Each panel's query
is taken from the committed JSON, its Grafana macros substituted as Grafana's InfluxDB datasource
does (`$timeFilter` -> `time >= <from>ms and time <= <to>ms`, `$__interval`, `$var` -> the
regex-escaped value or the variable's `allValue`), run, and the rows (after the panel's table
transformations and sort, emulated below) are compared with the expected values.

No Grafana server can be installed here, so the few transformations the tables use (merge,
groupBy/last, filterByValue, organize, sortBy) are applied by `transform` below, from the panel JSON.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hub.alerts import Alert
from hub.grafana import DEFAULT_DIR
from hub.records import (
    NO_GRID,
    DoorEvent,
    GridTags,
    HealthSample,
    Point,
    Record,
    VesselPosition,
    WaterMeterReading,
    record_point,
    to_line,
)
from tests.services import InfluxDB

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 60 * MIN
SITE = "dash"
G1, G2 = GridTags("G1", "G1-3", "P7"), GridTags("G2", "G2-1", "P8")
S1, S2 = GridTags("ZS-SEA-01", "", "ZS-PG-1"), GridTags("ZS-SEA-02", "", "ZS-PG-2")

# litres per hour of each meter: (meter, household, grid, L/h, base m3, offset, last reading #)
METERS = [
    ("M-A", "H-1", G1, 30.0, 10.0, 0, 17),
    ("M-B", "H-1", G1, 12.0, 20.0, MIN, 17),  # same household, reads one minute later
    ("M-C", "H-2", G1, 6.0, 2.0, 0, 8),  # stops after T0 + 80 min: the stalest meter
    ("M-D", "", G1, 100.0, 500.0, 0, 17),  # no household (e.g. a stairwell meter)
    ("M-E", "", G2, 50.0, 3.0, 0, 17),  # no household, other grid
]
# mmsi -> (registered, ais_class, grid of reports 0..5, grid of reports 6..11)
VESSELS = {
    "412000001": (True, "A", S1, S2),  # crosses from S1 into S2 at T0 + 2h30
    "412000002": (False, "A", S1, S1),  # the unregistered one
    "412000003": (True, "B", NO_GRID, NO_GRID),  # outside every sea grid
    "412000004": (True, "B", S2, S2),
}


@dataclass(slots=True, frozen=True)
class Scenario:
    t0: int  # an hour boundary three hours ago; the dashboard range is [t0, end]
    end: int  # the wall clock when the scenario was written

    def grafana(self, query: str, interval: str = "1h", **values: str) -> str:
        """The query as Grafana sends it, variables at All (allValue .*) unless given."""
        start_ms, end_ms = self.t0 // 1_000_000, self.end // 1_000_000
        query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
        query = query.replace("$__interval", interval)
        query = query.replace("$unacked_after", values.get("unacked_after", "30m"))
        for var in ("site", "grid", "source"):
            value = values.get(var)
            query = query.replace(f"${var}", re.escape(value) if value else ".*")
        return query


def meter_readings(t0: int) -> Iterator[Record]:
    for meter, household, grid, lph, base, offset, last in METERS:
        for i in range(last + 1):
            yield WaterMeterReading(
                meter_id=meter, time_ns=t0 + i * 10 * MIN + offset, total_m3=base + i * lph / 6 / 1000,
                battery_v=2.9 if meter == "M-C" and i == last else 3.6,
                household=household, grid=grid, source="modbus",
            )  # fmt: skip


def vessel_reports(t0: int) -> Iterator[Record]:
    for n, (mmsi, (registered, ais_class, first, second)) in enumerate(VESSELS.items()):
        for i in range(12):
            yield VesselPosition(
                mmsi=mmsi, time_ns=t0 + 2 * HOUR + i * 5 * MIN + n * NS, lat=30.0 + n / 10 + i / 1000,
                lon=122.2, sog_kn=5.0 + n, cog_deg=90.0, ais_class=ais_class,
                registered=registered, grid=first if i < 6 else second, source="ais",
            )  # fmt: skip


def door_events(t0: int) -> Iterator[Record]:
    events = ["open", "open", "denied", "forced", "open", "denied"]
    for i, event in enumerate(events):
        yield DoorEvent(
            door_id="D-1",
            time_ns=t0 + HOUR + i * 7 * MIN,
            event=event,
            building="3",
            grid=G1,
            source="doors",
        )


def health_samples(t0: int) -> Iterator[Record]:
    for source, last in (("hub", 179), ("ais", 179), ("modbus", 60)):
        for i in range(last + 1):
            yield HealthSample(
                time_ns=t0 + i * MIN, msgs=60 * i, errors=i // 30, source=source,
                lag_s=120.0 if (source, i) == ("hub", 150) else 5.0,
                outbox_rows=40 if (source, i) == ("hub", 150) else 0,
                dropped=10 if source == "hub" and i >= 100 else 0,
            )  # fmt: skip


# (alert id, rule, subject, grid, [(state, minutes after t0), ...])
ALERTS = [
    ("a1", "unregistered_vessel", "mmsi:412000002", S1, [("open", 125)]),
    ("a2", "ais_gap", "mmsi:412000004", S2, [("open", 130), ("resolved", 150)]),
    ("a3", "restricted_zone", "mmsi:412000001", S2, [("open", 150), ("acknowledged", 160)]),
    ("a4", "elder_no_water", "household:H-2", G1, [("open", 110), ("updated", 140)]),
    ("a5", "meter_offline", "meter:M-C", G1, [("open", 130)]),
    ("a6", "door_forced", "door:D-1", G1, [("open", 81), ("resolved", 95)]),
]


def alert_points(t0: int) -> Iterator[Point]:
    for alert_id, rule, subject, grid, changes in ALERTS:
        opened = t0 + changes[0][1] * MIN
        for seq, (state, minute) in enumerate(changes, start=1):
            updated = t0 + minute * MIN
            yield Alert(
                alert_id=alert_id, rule=rule, subject=subject, state=state, severity="warning", message=f"{rule} on {subject}", site=SITE, grid=grid,
                opened_ns=opened, updated_ns=updated, seq=seq,
            ).point()  # fmt: skip


# alert_response (contract in dashboards/README.md):
# (rule, grid, seconds to ack, seconds to resolve, the platform's verdict)
RESPONSES = [
    *[("door_forced", G1, a, r, v) for a, r, v in
      ((60, 300, "handled"), (120, 600, "false_alarm"), (180, 900, "false_alarm"),
       (240, 1200, ""), (600, 3000, ""))],
    ("meter_offline", G2, None, 1800, "handled"),
    ("meter_offline", G2, None, 3600, ""),
    ("meter_offline", G2, 30, 90, ""),
    ("source_silent", G1, 9999, 9999, "false_alarm"),  # a rule of neither board: counted nowhere
    ("unregistered_vessel", S1, 45, 100, "false_alarm"),
    ("ais_gap", S2, None, 500, ""),
]  # fmt: skip


def response_points(t0: int) -> Iterator[Point]:
    """Each alert's acknowledgement, resolution and feedback points, as the hub writes them."""
    for n, (rule, grid, ack_s, resolve_s, verdict) in enumerate(RESPONSES):
        events: list[tuple[str, dict[str, Any]]] = []
        if ack_s is not None:
            events.append(("acknowledged", {"seconds_to_ack": float(ack_s), "acknowledged_by": "w-17"}))  # fmt: skip
        events.append(("resolved", {"seconds_to_resolve": float(resolve_s),
                                    "resolved_unacknowledged": ack_s is None}))  # fmt: skip
        if verdict:
            events.append(("feedback", {"feedback": verdict, "feedback_by": "w-17",
                                        "false_alarm": int(verdict == "false_alarm")}))  # fmt: skip
        tags = {"site": SITE, "rule": rule, "severity": "warning", "grid": grid.grid,
                "micro_grid": grid.micro_grid, "police_grid": grid.police_grid, "subject": f"s{n}"}  # fmt: skip
        for i, (event, fields) in enumerate(events):
            at = t0 + 2 * HOUR + n * MIN + i * 10 * NS
            yield Point(measurement="alert_response", tags={**tags, "event": event}, fields={"alert_id": f"r{n}", **fields}, time_ns=at)  # fmt: skip


def recent_alert(end: int) -> Point:
    """Opened five minutes before the scenario's end: not yet 'unacknowledged for 30 min'."""
    at = end - 5 * MIN
    return Alert(
        alert_id="a7",
        rule="elder_no_water",
        subject="household:H-1",
        state="open",
        severity="warning",
        message="no water",
        site=SITE,
        grid=G1,
        opened_ns=at,
        updated_ns=at,
    ).point()


@pytest.fixture(scope="module")
def scenario(influxdb: InfluxDB) -> Iterator[tuple[Scenario, InfluxDB]]:
    db = influxdb.create_database("semantics")
    end = time.time_ns()
    t0 = (end // HOUR - 3) * HOUR
    records = [*meter_readings(t0), *vessel_reports(t0), *door_events(t0), *health_samples(t0)]
    points = [record_point(r, SITE) for r in records]
    points += [*alert_points(t0), *response_points(t0), recent_alert(end)]
    body = "\n".join(to_line(p) for p in points).encode()
    url = f"{db.url}/write?db={db.db}&precision=ns"
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as resp:
        assert resp.status == 204
    yield Scenario(t0, end), db


# --- the panels as committed


def panel(board: str, title: str) -> dict[str, Any]:
    found = json.loads((DEFAULT_DIR / f"{board}.json").read_text(encoding="utf-8"))["panels"]
    (match,) = [p for p in found if p["title"] == title]
    return dict(match)


def run(
    env: tuple[Scenario, InfluxDB], board: str, title: str, interval: str = "1h", **vars: str
) -> list[dict[str, Any]]:
    """The rows the panel shows: query (macros substituted), then its transformations/sort."""
    sc, db = env
    p = panel(board, title)
    frames = [
        [{("Time" if k == "time" else k): v for k, v in row.items()} for row in db.query(q)]
        for q in (sc.grafana(t["query"], interval, **vars) for t in p["targets"])
    ]
    steps = p.get("transformations", [])
    if steps and steps[0]["id"] == "joinByField":
        rows, steps = _join(frames, steps[0]["options"]), steps[1:]
    else:
        rows = [row for frame in frames for row in frame]  # one frame per target: merged
    rows = transform(rows, steps)
    for sort in reversed(p.get("options", {}).get("sortBy", [])):
        rows.sort(key=lambda r, f=sort["displayName"]: _sort_key(r[f]), reverse=sort["desc"])
    return rows


def transform(rows: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grafana's table transformations, as far as these dashboards use them."""
    for step in steps:
        kind, opts = step["id"], step["options"]
        if kind == "merge":
            continue  # `InfluxDB.query` already returns one table with the tags as columns
        if kind == "groupBy":
            rows = _group_by(rows, opts["fields"])
        elif kind == "filterByValue":
            assert (opts["type"], opts["match"]) == ("exclude", "any")
            rows = [r for r in rows if not any(_matches(r, f) for f in opts["filters"])]
        elif kind == "organize":
            rename, hide = opts.get("renameByName", {}), opts.get("excludeByName", {})
            rows = [{rename.get(k, k): v for k, v in r.items() if not hide.get(k)} for r in rows]
        elif kind == "sortBy":
            for sort in reversed(opts["sort"]):
                rows.sort(key=lambda r, f=sort["field"]: _sort_key(r[f]), reverse=sort.get("desc"))
        else:
            raise AssertionError(f"transformation {kind} not emulated")
    return rows


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)  # empty cells sort lowest


def _matches(row: dict[str, Any], test: dict[str, Any]) -> bool:
    kind, value = test["config"]["id"], row.get(test["fieldName"])
    if kind == "equal":
        return bool(value == test["config"]["options"]["value"])
    assert kind == "isNotNull", f"filter {kind} not emulated"
    return value is not None


def _join(frames: list[list[dict[str, Any]]], opts: dict[str, Any]) -> list[dict[str, Any]]:
    """joinByField, outer: one row per key value and per pair of rows sharing it."""
    assert opts["mode"] == "outer"
    key = opts["byField"]
    left, *others = frames
    rows = [dict(r) for r in left]
    for frame in others:
        joined, matched = [], set()
        for row in rows:
            partners = [r for r in frame if r[key] == row[key]]
            matched.update(id(r) for r in partners)
            joined += [{**p, **row} for p in partners] or [row]
        rows = joined + [dict(r) for r in frame if id(r) not in matched]
    return rows


def _group_by(rows: list[dict[str, Any]], fields: dict[str, Any]) -> list[dict[str, Any]]:
    keys = [name for name, f in fields.items() if f["operation"] == "groupby"]
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # InfluxDB returns them in time order: "last" is the newest
        out = groups.setdefault(tuple(row.get(k) for k in keys), {k: row.get(k) for k in keys})
        for name, f in fields.items():
            if f["operation"] == "aggregate":
                assert f["aggregations"] == ["last"]
                out[f"{name} (last)"] = row.get(name)
    return list(groups.values())


def by(rows: list[dict[str, Any]], key: str, value: str) -> dict[Any, Any]:
    return {r[key]: r[value] for r in rows}


Env = tuple[Scenario, InfluxDB]

# Every panel has a semantic check below; a new panel must get one (and be added here).
CHECKED = {
    "maritime": {
        "Vessels in the sea grid (latest position)", "Vessels per sea grid", "Unregistered vessels",
        "Vessels seen", "Open maritime alerts", "Vessels per grid over time",
        "Maritime alerts raised", "Vessels: last report",
    },
    "community": {
        "Water use per household", "Water use per grid", "Elder wellbeing alerts (open)",
        "Door events by type", "Open door and meter alerts", "Meters offline (open alerts)",
        "Last reading per meter (stalest first)",
    },
    "gateway_health": {
        "Messages per minute", "Errors per minute", "Forwarder lag", "Outbox rows",
        "Readings dropped (outbox full)", "Sources: last health sample",
    },
}  # fmt: skip
CLOSED_LOOP = {
    "Response times per grid", "Response times per rule",
    "Unacknowledged alerts older than $unacked_after", "Resolved without acknowledgement",
    "False alarms per rule",
}  # fmt: skip


@pytest.mark.parametrize("board", sorted(CHECKED))
def test_every_panel_has_a_semantic_check(board: str) -> None:
    model = json.loads((DEFAULT_DIR / f"{board}.json").read_text(encoding="utf-8"))
    expected = CHECKED[board] | (CLOSED_LOOP if board != "gateway_health" else set())
    assert {p["title"] for p in model["panels"]} == expected


# --- community


def test_water_use_per_household_differences_each_meter_then_sums(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "community", "Water use per household")
    got = {(r["household"], (r["Time"] - sc.t0) // HOUR): round(r["litres"], 6) for r in rows}
    # H-1 = M-A 30 L/h + M-B 12 L/h; H-2 = M-C's last hour (3 readings of 1 L) before it stopped;
    # the first hour has no previous reading to difference against; no row for household ""
    assert got == {("H-1", 1): 42.0, ("H-1", 2): 42.0, ("H-2", 1): 3.0}


def test_water_use_per_grid_sums_every_meter_of_the_grid(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "community", "Water use per grid")
    got = {(r["grid"], (r["Time"] - sc.t0) // HOUR): round(r["litres"], 6) for r in rows}
    assert got == {("G1", 1): 145.0, ("G1", 2): 142.0, ("G2", 1): 50.0, ("G2", 2): 50.0}
    only_g2 = run(scenario, "community", "Water use per grid", grid="G2")
    assert {r["grid"] for r in only_g2} == {"G2"}


def test_stalest_meter_is_first_with_its_real_last_reading(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "community", "Last reading per meter (stalest first)")
    assert rows[0]["meter_id"] == "M-C"
    assert rows[0]["Time"] == sc.t0 + 80 * MIN
    assert rows[0]["battery_v"] == 2.9 and rows[0]["total_m3"] == pytest.approx(2.008)
    last = {r["meter_id"]: r["Time"] - sc.t0 for r in rows}
    assert last == {"M-C": 80 * MIN, "M-A": 170 * MIN, "M-D": 170 * MIN,
                    "M-E": 170 * MIN, "M-B": 171 * MIN}  # fmt: skip
    assert by(rows, "meter_id", "household") == {
        "M-A": "H-1", "M-B": "H-1", "M-C": "H-2", "M-D": "", "M-E": ""
    }  # fmt: skip


def test_door_events_by_type(scenario: Env) -> None:
    rows = run(scenario, "community", "Door events by type", interval="10m")
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["event"]] = totals.get(r["event"], 0) + r["events"]
    assert totals == {"open": 3, "denied": 2, "forced": 1}


@pytest.mark.parametrize(
    ("board", "title", "expected"),
    [
        ("maritime", "Open maritime alerts",
         {("a1", "unregistered_vessel", "open"), ("a3", "restricted_zone", "acknowledged")}),
        ("community", "Elder wellbeing alerts (open)",
         {("a4", "elder_no_water", "updated"), ("a7", "elder_no_water", "open")}),
        ("community", "Meters offline (open alerts)", {("a5", "meter_offline", "open")}),
        ("community", "Open door and meter alerts", set()),  # a6 resolved: hidden
    ],
)  # fmt: skip
def test_open_alerts_by_rule(scenario: Env, board: str, title: str, expected: set[Any]) -> None:
    rows = run(scenario, board, title)
    assert {(r["alert_id"], r["rule"], r["state"]) for r in rows} == expected
    sc, _ = scenario
    updated = {r["alert_id"]: (r["updated"] - sc.t0) // MIN for r in rows if r["alert_id"] != "a7"}
    assert updated == {a[0]: a[4][-1][1] for a in ALERTS if a[0] in updated}


# --- the closed loop (alert_response): response times, unacknowledged, resolved unacknowledged


def _response_rows(scenario: Env, board: str, title: str, key: str) -> dict[str, tuple[Any, ...]]:
    cols = ("ack_median", "ack_p90", "resolve_median", "resolve_p90", "acknowledged", "resolved")
    return {r[key]: tuple(r[c] for c in cols) for r in run(scenario, board, title)}


def test_response_times_per_grid_and_rule(scenario: Env) -> None:
    # door_forced in G1: ack 60,120,180,240,600 s; resolve 300..3000 s. meter_offline in G2:
    # acknowledged once (30 s, resolved at 90 s), resolved twice with nobody acknowledging.
    # InfluxDB's percentile is nearest-rank: the 90th of five values is the fifth.
    door, meter = (180, 600, 900, 3000, 5, 5), (30, 30, 1800, 3600, 1, 3)
    assert _response_rows(scenario, "community", "Response times per grid", "grid") == {
        "G1": door, "G2": meter
    }  # fmt: skip
    assert _response_rows(scenario, "community", "Response times per rule", "rule") == {
        "door_forced": door, "meter_offline": meter
    }  # fmt: skip
    # InfluxQL count() of nothing is null: an empty cell
    unregistered, gap = (45, 45, 100, 100, 1, 1), (None, None, 500, 500, None, 1)
    maritime = _response_rows(scenario, "maritime", "Response times per rule", "rule")
    assert maritime == {"unregistered_vessel": unregistered, "ais_gap": gap}
    maritime = _response_rows(scenario, "maritime", "Response times per grid", "grid")
    assert maritime == {"ZS-SEA-01": unregistered, "ZS-SEA-02": gap}


def test_resolved_without_acknowledgement(scenario: Env) -> None:
    rows = run(scenario, "community", "Resolved without acknowledgement")
    assert {(r["rule"], r["grid"]): r["resolved_unacknowledged"] for r in rows} == {
        ("meter_offline", "G2"): 2
    }
    rows = run(scenario, "maritime", "Resolved without acknowledgement")
    assert {(r["rule"], r["grid"]): r["resolved_unacknowledged"] for r in rows} == {
        ("ais_gap", "ZS-SEA-02"): 1
    }


def test_false_alarms_per_rule(scenario: Env) -> None:
    rows = run(scenario, "community", "False alarms per rule")
    assert {r["rule"]: (r["false_alarms"], r["feedback"]) for r in rows} == {
        "door_forced": (2, 3), "meter_offline": (0, 1)
    }  # fmt: skip
    assert rows[0]["rule"] == "door_forced"  # most false alarms first
    rows = run(scenario, "maritime", "False alarms per rule")
    assert {r["rule"]: (r["false_alarms"], r["feedback"]) for r in rows} == {
        "unregistered_vessel": (1, 1)
    }


@pytest.mark.parametrize(
    ("board", "after", "expected"),
    [
        ("community", "30m", {"a4", "a5"}),  # a6 resolved; a7 opened only 5 min ago
        ("community", "1m", {"a4", "a5", "a7"}),
        ("maritime", "30m", {"a1"}),  # a2 resolved, a3 acknowledged
    ],
)
def test_unacknowledged_alerts_older_than(
    scenario: Env, board: str, after: str, expected: set[str]
) -> None:
    title = "Unacknowledged alerts older than $unacked_after"
    rows = run(scenario, board, title, unacked_after=after)
    assert {r["alert_id"] for r in rows} == expected
    assert all("closed" not in r for r in rows)


# --- maritime


def test_vessel_map_one_marker_per_mmsi_at_its_last_position(scenario: Env) -> None:
    rows = run(scenario, "maritime", "Vessels in the sea grid (latest position)")
    assert by(rows, "mmsi", "registered") == {
        "412000001": "true", "412000002": "false", "412000003": "true", "412000004": "true"
    }  # fmt: skip
    assert by(rows, "mmsi", "lat") == pytest.approx(
        {m: 30.0 + n / 10 + 11 / 1000 for n, m in enumerate(VESSELS)}
    )


def test_vessels_per_sea_grid_has_no_nameless_bar(scenario: Env) -> None:
    rows = run(scenario, "maritime", "Vessels per sea grid")
    assert by(rows, "grid", "vessels") == {"ZS-SEA-01": 2, "ZS-SEA-02": 2}


def test_vessel_counts(scenario: Env) -> None:
    (seen,) = run(scenario, "maritime", "Vessels seen")
    (unregistered,) = run(scenario, "maritime", "Unregistered vessels")
    assert (seen["vessels"], unregistered["unregistered"]) == (4, 1)
    (in_s2,) = run(scenario, "maritime", "Vessels seen", grid="ZS-SEA-02")
    assert in_s2["vessels"] == 2


def test_vessels_per_grid_over_time(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "maritime", "Vessels per grid over time", interval="30m")
    got = {(r["grid"], (r["Time"] - sc.t0) // MIN): r["vessels"] for r in rows if r["vessels"]}
    # 412000001 leaves S1 for S2 at t0 + 2h30
    assert got == {("ZS-SEA-01", 120): 2, ("ZS-SEA-02", 120): 1,
                   ("ZS-SEA-01", 150): 1, ("ZS-SEA-02", 150): 2}  # fmt: skip


def test_maritime_alerts_raised_per_rule(scenario: Env) -> None:
    rows = run(scenario, "maritime", "Maritime alerts raised")
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["rule"]] = totals.get(r["rule"], 0) + r["alerts"]
    assert totals == {"unregistered_vessel": 1, "ais_gap": 1, "restricted_zone": 1}


def test_vessels_last_report_one_row_per_mmsi(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "maritime", "Vessels: last report")
    assert sorted(r["mmsi"] for r in rows) == sorted(VESSELS)
    v1 = next(r for r in rows if r["mmsi"] == "412000001")
    assert (v1["grid"], v1["ais_class"], v1["registered"]) == ("ZS-SEA-02", "A", "true")
    assert v1["Time"] == sc.t0 + 2 * HOUR + 55 * MIN
    assert by(rows, "mmsi", "grid")["412000003"] is None  # outside every grid


# --- gateway health


def test_sources_stalest_first_with_their_last_sample(scenario: Env) -> None:
    sc, _ = scenario
    rows = run(scenario, "gateway_health", "Sources: last health sample")
    first = rows[0]
    assert first["source"] == "modbus"
    assert (first["Time"] - sc.t0, first["msgs"], first["errors"]) == (60 * MIN, 3600, 2)
    assert by(rows, "source", "Time") == {
        "modbus": sc.t0 + 60 * MIN, "ais": sc.t0 + 179 * MIN, "hub": sc.t0 + 179 * MIN
    }  # fmt: skip


def test_health_rates_and_hub_counters(scenario: Env) -> None:
    sc, _ = scenario

    def per_hour(title: str, field: str) -> dict[tuple[str, int], float]:
        rows = run(scenario, "gateway_health", title)
        return {(r["source"], (r["Time"] - sc.t0) // HOUR): round(r[field], 6) for r in rows}

    # 60 messages a minute; modbus stopped at t0 + 1h, so its second hour averages 1 a minute
    assert per_hour("Messages per minute", "msgs") == {
        ("hub", 1): 60.0, ("hub", 2): 60.0, ("ais", 1): 60.0, ("ais", 2): 60.0, ("modbus", 1): 1.0
    }  # fmt: skip
    errors = per_hour("Errors per minute", "errors")
    assert errors[("hub", 2)] == round(2 / 60, 6) and errors[("modbus", 1)] == round(1 / 60, 6)
    lag = run(scenario, "gateway_health", "Forwarder lag")
    assert max(r["lag_s"] for r in lag) == 120.0
    rows = run(scenario, "gateway_health", "Outbox rows")
    assert max(r["outbox_rows"] for r in rows) == 40
    dropped = run(scenario, "gateway_health", "Readings dropped (outbox full)")
    assert sum(r["dropped"] for r in dropped) == 10


# --- template variables


@pytest.mark.parametrize(
    ("board", "var", "expected"),
    [
        ("maritime", "grid", {"ZS-SEA-01", "ZS-SEA-02"}),
        ("community", "grid", {"G1", "G2"}),
        ("gateway_health", "source", {"hub", "ais", "modbus"}),
        ("community", "site", {SITE}),
    ],
)
def test_variables_list_the_scenario(
    scenario: Env, board: str, var: str, expected: set[str]
) -> None:
    sc, db = scenario
    model = json.loads((DEFAULT_DIR / f"{board}.json").read_text(encoding="utf-8"))
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == var]
    assert {r["value"] for r in db.query(sc.grafana(variable["query"]))} == expected
