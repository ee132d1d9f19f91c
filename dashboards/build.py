"""Generate the Grafana dashboards (maritime, community, gateway health) as JSON.

The dashboards are written with Grafana's typed builder (`grafana-foundation-sdk`, the
`dashboards` extra) and the generated JSON is committed next to this file:

    python -m dashboards.build           # rewrite dashboards/*.json
    python -m dashboards.build --check   # exit 1 if a committed file differs

Queries are raw InfluxQL so the boards work on InfluxDB 1.x, 2.x (DBRP) and 3.x. Two rules keep
them truthful (see tests/integration/test_dashboard_semantics.py):
- counters (total_m3, dropped) are differenced per meter/series and only then summed;
- a "last" table uses ONE selector per query (`last(x), y, z`): with several selectors InfluxDB
  stamps every row with the start of the range instead of the time of the last point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, geomap, stat, table
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

HERE = Path(__file__).resolve().parent
DS = dm.DataSourceRef(type_val="influxdb", uid="${datasource}")
SITE = '"site" =~ /^$site$/'
GRID = '"grid" =~ /^$grid$/'
SOURCE = '"source" =~ /^$source$/'
IN_A_GRID = "\"grid\" != ''"  # no tag: outside every grid (counted apart, never a nameless bar)
MARITIME_RULES = (
    "unregistered_vessel|invalid_mmsi|ais_gap|position_jump|restricted_zone|fishing_moratorium"
)
DOOR_METER_RULES = (
    "door_forced|door_held_open|door_denied_repeatedly|continuous_flow|meter_low_battery|"
    "meter_tamper"
)

COMMUNITY_RULES = f"elder_no_water|meter_offline|{DOOR_METER_RULES}"


# --- InfluxQL target (the SDK ships no InfluxDB query type; this is its JSON model)


class InfluxQL(cogvariants.Dataquery):
    def __init__(self, query: str, result_format: str, alias: str | None, ref: str) -> None:
        self.query, self.result_format, self.alias, self.ref = query, result_format, alias, ref

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref,
            "datasource": DS,
            "rawQuery": True,
            "query": query_text(self.query),
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self, query: str, *, table: bool = False, alias: str | None = None, ref: str = "A"
    ) -> None:
        self._q = InfluxQL(query, "table" if table else "time_series", alias, ref)

    def build(self) -> cogvariants.Dataquery:
        return self._q


def query_text(query: str) -> str:
    """One line: the queries are written over several lines here for reading."""
    return " ".join(query.split())


# --- small typed helpers


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def value_map(**colours: tuple[str, str | None]) -> dm.ValueMap:
    options = {
        key: dm.ValueMappingResult(color=colour, text=text, index=i)
        for i, (key, (colour, text)) in enumerate(colours.items())
    }
    return dm.ValueMap(options=options)


def prop(id_: str, value: Any) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_, value=value)


def fixed_colour(colour: str) -> dm.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": colour})


def reduce_last() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def legend(placement: str = "bottom", calcs: list[str] | None = None) -> common.VizLegendOptions:
    table_mode = calcs is not None
    return (
        common.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.TABLE if table_mode else cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement(placement))
        .show_legend(True)
        .calcs(calcs or [])
    )


def tooltip(sort: str = "desc") -> common.VizTooltipOptions:
    return common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder(sort))


def series(title: str, query: str, alias: str, *, bars: bool = False) -> ts.Panel:
    return (
        ts.Panel()
        .title(title)
        .datasource(DS)
        .with_target(Query(query, alias=alias))
        .min(0)
        .draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
        .legend(legend())
        .tooltip(tooltip())
    )


def stacked() -> common.StackingConfig:
    return common.StackingConfig().mode(cm.StackingMode.NORMAL).group("A")


def grid_table(title: str, query: str, sort_by: str, desc: bool) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .datasource(DS)
        .with_target(Query(query, table=True))
        .align(cm.FieldTextAlignment.AUTO)
        .filterable(True)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .sort_by([common.TableSortByFieldState().display_name(sort_by).desc(desc)])
    )


def at(panel: Any, x: int, y: int, w: int, h: int) -> Any:
    return panel.grid_pos(dm.GridPos(x=x, y=y, w=w, h=h))


# --- alerts: the `alert` measurement holds every state change; keep the last row per alert_id

ALERT_COLUMNS = ("state", "severity", "rule", "grid", "subject", "message")


def open_alerts(title: str, rules: str, description: str) -> table.Panel:
    query = f"""SELECT "alert_id", "state", "message", "subject", "severity", "rule", "grid"
        FROM "alert" WHERE $timeFilter AND {SITE} AND "rule" =~ /^({rules})$/"""
    last = {"operation": "aggregate", "aggregations": ["last"]}
    fields: dict[str, Any] = {"alert_id": {"operation": "groupby", "aggregations": []}}
    fields |= {name: last for name in ("Time", *ALERT_COLUMNS)}
    order = ("Time", "severity", "rule", "grid", "subject", "message", "state")
    resolved = {
        "fieldName": "state (last)",
        "config": {"id": "equal", "options": {"value": "resolved"}},
    }
    steps = [
        dm.DataTransformerConfig(id_val="groupBy", options={"fields": fields}),
        dm.DataTransformerConfig(
            id_val="filterByValue",
            options={"type": "exclude", "match": "any", "filters": [resolved]},
        ),
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "renameByName": {f"{c} (last)": "updated" if c == "Time" else c for c in order},
                "indexByName": {
                    **{f"{c} (last)": i for i, c in enumerate(order)},
                    "alert_id": len(order),
                },
            },
        ),
        dm.DataTransformerConfig(
            id_val="sortBy", options={"sort": [{"field": "updated", "desc": True}]}
        ),
    ]
    severity = value_map(critical=("red", None), warning=("orange", None), info=("blue", None))
    return (
        grid_table(title, query, "updated", True)
        .description(description)
        .override_by_name(
            "severity",
            [
                prop("custom.cellOptions", {"type": "color-background"}),
                prop("mappings", [severity]),
            ],
        )
        .transformations(steps)
    )


# --- the closed loop: how fast each grid acknowledges and resolves (measurement alert_response)

# What the hub writes when an alert is acknowledged, resolves or gets the platform's feedback
# (the contract these panels read; dashboards/README.md): tags site, rule, severity, grid,
# micro_grid, police_grid, subject, event (acknowledged | resolved | feedback); seconds_to_ack
# only on the acknowledgement, seconds_to_resolve and resolved_unacknowledged (bool) only on the
# resolution, false_alarm (0 or 1) on feedback, so each alert counts once.
UNACKED_VAR = "unacked_after"


def response_times(title: str, rules: str, by: str) -> table.Panel:
    ack, resolve = '"seconds_to_ack"', '"seconds_to_resolve"'
    query = f"""SELECT median({ack}) AS "ack_median", percentile({ack}, 90) AS "ack_p90",
        median({resolve}) AS "resolve_median", percentile({resolve}, 90) AS "resolve_p90",
        count({ack}) AS "acknowledged", count({resolve}) AS "resolved"
        FROM "alert_response" WHERE $timeFilter AND {SITE} AND "rule" =~ /^({rules})$/
        GROUP BY "{by}" """
    panel = grid_table(title, query, "ack_p90", True).description(
        f"Per {by} over the range: median and 90th percentile of the seconds from opening to "
        "acknowledgement and to resolution, and how many were acknowledged / resolved."
    )
    return panel.override_by_regexp("^(ack|resolve)_", [prop("unit", "s"), prop("decimals", 0)])


def resolved_unacknowledged(rules: str) -> table.Panel:
    query = f"""SELECT count("seconds_to_resolve") AS "resolved_unacknowledged"
        FROM "alert_response" WHERE $timeFilter AND {SITE} AND "rule" =~ /^({rules})$/
        AND "resolved_unacknowledged" = true
        GROUP BY "rule", "grid" """
    return grid_table(
        "Resolved without acknowledgement", query, "resolved_unacknowledged", True
    ).description("Alerts that resolved on their own before anyone acknowledged them.")


def unacknowledged(rules: str) -> table.Panel:
    """Opened more than $unacked_after ago and neither acknowledged nor resolved since.

    InfluxQL ignores a time condition inside OR, so the two halves are two queries joined on
    alert_id in Grafana: opened long ago (A) minus those closed since (B)."""
    opened = f"""SELECT "alert_id", "subject", "severity", "rule", "grid", "message" FROM "alert"
        WHERE $timeFilter AND time < now() - ${UNACKED_VAR} AND {SITE}
        AND "rule" =~ /^({rules})$/ AND "state" = 'open'"""
    closed = f"""SELECT "alert_id", "state" AS "closed" FROM "alert" WHERE $timeFilter AND {SITE}
        AND "rule" =~ /^({rules})$/ AND "state" =~ /^(acknowledged|resolved)$/"""
    steps = [
        dm.DataTransformerConfig(
            id_val="joinByField", options={"byField": "alert_id", "mode": "outer"}
        ),
        dm.DataTransformerConfig(
            id_val="filterByValue",
            options={
                "type": "exclude",
                "match": "any",
                "filters": [{"fieldName": "closed", "config": {"id": "isNotNull", "options": {}}}],
            },
        ),
        dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"closed": True}}),
    ]
    return (
        table.Panel()
        .title(f"Unacknowledged alerts older than ${UNACKED_VAR}")
        .description(
            "Opened within the range, more than the chosen age ago, and neither acknowledged nor resolved since."
        )
        .datasource(DS)
        .targets([Query(opened, table=True), Query(closed, table=True, ref="B")])
        .filterable(True)
        .cell_height(cm.TableCellHeight.SM)
        .transformations(steps)
    )


def false_alarms(rules: str) -> table.Panel:
    query = f"""SELECT sum("false_alarm") AS "false_alarms", count("false_alarm") AS "feedback"
        FROM "alert_response" WHERE $timeFilter AND {SITE} AND "rule" =~ /^({rules})$/
        AND "event" = 'feedback' GROUP BY "rule" """
    return grid_table("False alarms per rule", query, "false_alarms", True).description(
        "Alerts the platform marked false_alarm, out of all feedback given, per rule: "
        "the figure to tune each rule's thresholds by."
    )


def closed_loop(rules: str, y: int) -> list[Any]:
    return [
        at(response_times("Response times per grid", rules, "grid"), 0, y, 12, 8),
        at(response_times("Response times per rule", rules, "rule"), 12, y, 12, 8),
        at(unacknowledged(rules), 0, y + 8, 10, 8),
        at(resolved_unacknowledged(rules), 10, y + 8, 7, 8),
        at(false_alarms(rules), 17, y + 8, 7, 8),
    ]


def unacked_variable() -> dashboard.CustomVariable:
    return (
        dashboard.CustomVariable(UNACKED_VAR)
        .label("Unacknowledged after")
        .values("15m,30m,1h,2h")
        .current(dm.VariableOption(selected=True, text="30m", value="30m"))
    )


# --- variables and the board frame


def variables(measurement: str, second: str, label: str) -> list[Any]:
    site = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "site"'
    other = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{second}" WHERE {SITE}'
    out: list[Any] = [
        dashboard.DatasourceVariable("datasource").label("InfluxDB").type("influxdb"),
    ]
    for name, lab, query in (("site", "Site", site), (second, label, other)):
        out.append(
            dashboard.QueryVariable(name)
            .label(lab)
            .datasource(DS)
            .query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return out


def board(uid: str, title: str, description: str, tags: list[str], hours: str) -> Any:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["harbourgrid", *tags])
        .timezone("browser")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time(f"now-{hours}", "now")
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .link(
            dashboard.DashboardLink("Harbourgrid")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["harbourgrid"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


# --- maritime

VESSELS = f'FROM "vessel_position" WHERE $timeFilter AND {SITE} AND {GRID}'


def vessel_map() -> geomap.Panel:
    query = f"""SELECT last("lat") AS "lat", "lon", "sog_kn", "registered" {VESSELS}
        GROUP BY "mmsi" """
    style = {
        "size": {"fixed": 6, "min": 4, "max": 12, "field": "sog_kn"},
        "color": {"field": "registered", "fixed": "green"},
        "symbol": {"mode": "fixed", "fixed": "img/icons/marker/triangle.svg"},
        "opacity": 0.9,
        "text": {"mode": "field", "field": "mmsi", "fixed": ""},
        "textConfig": {
            "fontSize": 10,
            "offsetY": -12,
            "textAlign": "center",
            "textBaseline": "bottom",
        },
    }
    layer = (
        common.MapLayerOptions()
        .type("markers")
        .name("Vessels")
        .tooltip(True)
        .location(
            common.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .config({"showLegend": True, "style": style})
    )
    registered = value_map(false=("red", "UNREGISTERED"), true=("green", "registered"))
    return (
        geomap.Panel()
        .title("Vessels in the sea grid (latest position)")
        .description(
            "Last reported position per MMSI in the time range. Red: MMSI not on the vessel whitelist."
        )
        .datasource(DS)
        .with_target(Query(query, table=True))
        .thresholds(thresholds((None, "green")))
        .override_by_name("registered", [prop("mappings", [registered]), fixed_colour("green")])
        .override_by_name("sog_kn", [prop("unit", "velocityknot"), prop("decimals", 1)])
        .view(
            geomap.MapViewConfig()
            .id("fit")
            .all_layers(True)
            .lat(30.0)  # type: ignore[arg-type]  # the SDK types lat/lon as int
            .lon(122.2)  # type: ignore[arg-type]
            .zoom(9)
            .padding(10)
        )
        .controls(
            geomap.ControlsOptions()
            .show_zoom(True)
            .mouse_wheel_zoom(True)
            .show_attribution(True)
            .show_scale(True)
        )
        .basemap(common.MapLayerOptions().type("default").name("Basemap").config({}))
        .layers([layer])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
    )


def count_vessels(title: str, where: str, alias: str) -> stat.Panel:
    query = f"""SELECT count("lat") AS "{alias}" FROM (SELECT last("lat") AS "lat" {VESSELS}
        {where} GROUP BY "mmsi")"""
    return (
        stat.Panel()
        .title(title)
        .datasource(DS)
        .with_target(Query(query))
        .decimals(0)
        .no_value("0")
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE)
        .reduce_options(reduce_last())
    )


def maritime() -> Any:
    per_grid = f"""SELECT count("lat") AS "vessels" FROM (SELECT last("lat") AS "lat" {VESSELS}
        AND {IN_A_GRID} GROUP BY "mmsi", "grid") GROUP BY "grid" """
    over_time = f"""SELECT count("lat") AS "vessels" FROM (SELECT last("lat") AS "lat" {VESSELS}
        AND {IN_A_GRID} GROUP BY time($__interval), "mmsi", "grid") WHERE $timeFilter
        GROUP BY time($__interval), "grid" fill(0)"""
    raised = f"""SELECT count("alert_id") AS "alerts" FROM "alert" WHERE $timeFilter AND {SITE}
        AND "state" = 'open' AND "rule" =~ /^({MARITIME_RULES})$/
        GROUP BY time($__interval), "rule" fill(0)"""
    last_report = f"""SELECT last("lat") AS "lat", "lon", "sog_kn", "cog_deg", "nav_status",
        "registered", "ais_class", "grid" {VESSELS} GROUP BY "mmsi" """
    yes_no = value_map(false=("red", "no"), true=("green", "yes"))
    panels = [
        at(vessel_map(), 0, 0, 16, 14),
        at(
            bargauge.Panel()
            .title("Vessels per sea grid")
            .description(
                "Distinct MMSIs that reported a position in each sea grid during the time range (a vessel that crossed grids counts in each). Positions outside every grid are not shown here; they count in 'Vessels seen'."
            )
            .datasource(DS)
            .with_target(Query(per_grid, alias="$tag_grid"))
            .unit("none")
            .decimals(0)
            .min(0)
            .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .show_unfilled(True)
            .reduce_options(reduce_last()),
            16,
            0,
            8,
            7,
        ),
        at(
            count_vessels("Unregistered vessels", "AND \"registered\" = 'false'", "unregistered")
            .description("MMSIs not on the whitelist that reported a position in the time range.")
            .color_mode(cm.BigValueColorMode.BACKGROUND)
            .thresholds(thresholds((None, "green"), (1, "red"))),
            16,
            7,
            4,
            7,
        ),
        at(
            count_vessels("Vessels seen", "", "vessels")
            .color_mode(cm.BigValueColorMode.VALUE)
            .color_scheme(
                dashboard.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue")
            ),
            20,
            7,
            4,
            7,
        ),
        at(
            open_alerts(
                "Open maritime alerts",
                MARITIME_RULES,
                "Latest state of every maritime alert raised in the time range; resolved ones are hidden.",
            ),
            0,
            14,
            24,
            9,
        ),
        at(
            series("Vessels per grid over time", over_time, "$tag_grid")
            .description("Distinct MMSIs reporting in each sea grid per interval.")
            .decimals(0)
            .line_interpolation(cm.LineInterpolation.STEP_AFTER)
            .fill_opacity(10)
            .stacking(stacked())
            .legend(legend("right", ["max", "lastNotNull"])),
            0,
            23,
            16,
            8,
        ),
        at(
            series("Maritime alerts raised", raised, "$tag_rule", bars=True)
            .decimals(0)
            .fill_opacity(60)
            .stacking(stacked()),
            16,
            23,
            8,
            8,
        ),
        at(
            grid_table("Vessels: last report", last_report, "Time", True)
            .description("One row per MMSI; the time column is its last report.")
            .override_by_name(
                "registered",
                [prop("custom.cellOptions", {"type": "color-text"}), prop("mappings", [yes_no])],
            )
            .override_by_name("sog_kn", [prop("unit", "velocityknot"), prop("decimals", 1)]),
            0,
            31,
            24,
            9,
        ),
    ]
    out = board(
        "harbourgrid-maritime",
        "Harbourgrid — maritime",
        "Live vessel map of the sea grid, unregistered vessels, counts per grid, open alerts.",
        ["maritime", "ais"],
        "1h",
    ).refresh("30s")
    out = out.variables([*variables("vessel_position", "grid", "Sea grid"), unacked_variable()])
    for panel in [*panels, *closed_loop(MARITIME_RULES, 40)]:
        out = out.with_panel(panel)
    return out


# --- community

METERS = f'FROM "water_meter" WHERE $timeFilter AND {SITE} AND {GRID}'


def litres(group: str, where: str = "") -> str:
    """Litres per interval: each meter's total differenced on its own, then summed per group."""
    return f"""SELECT sum("litres") AS "litres" FROM (SELECT
        non_negative_difference(last("total_m3")) * 1000 AS "litres" {METERS}
        GROUP BY time($__interval), "meter_id", "{group}") WHERE $timeFilter {where}
        GROUP BY time($__interval), "{group}" fill(none)"""


def community() -> Any:
    doors = f"""SELECT sum("count") AS "events" FROM "door_event" WHERE $timeFilter AND {SITE}
        AND {GRID} GROUP BY time($__interval), "event" fill(0)"""
    stalest = f"""SELECT last("total_m3") AS "total_m3", "battery_v" {METERS}
        GROUP BY "meter_id", "household", "grid" """
    door_colours = {
        "forced": "red",
        "alarm": "dark-red",
        "held_open": "orange",
        "denied": "yellow",
        "open": "green",
    }
    events = series("Door events by type", doors, "$tag_event", bars=True)
    for name, colour in door_colours.items():
        events = events.override_by_name(name, [fixed_colour(colour)])
    battery = thresholds((None, "red"), (3.0, "orange"), (3.3, "green"))
    panels = [
        at(
            series(
                "Water use per household",
                litres("household", "AND \"household\" != ''"),
                "$tag_household",
                bars=True,
            )
            .description(
                "Litres per interval: increase of each meter's total (total_m3), summed per household. Meters linked to no household are left out here and counted in 'Water use per grid'."
            )
            .unit("litre")
            .fill_opacity(50)
            .stacking(stacked())
            .legend(legend("right", ["sum"]).sort_by("Total").sort_desc(True)),
            0,
            0,
            16,
            9,
        ),
        at(
            series("Water use per grid", litres("grid"), "$tag_grid")
            .description("Litres per interval summed over the meters of each grid.")
            .unit("litre")
            .fill_opacity(15),
            16,
            0,
            8,
            9,
        ),
        at(
            open_alerts(
                "Elder wellbeing alerts (open)",
                "elder_no_water",
                "Solitary elders whose water use stopped; resolved alerts are hidden. Evidence is in the alert payload on the platform.",
            ),
            0,
            9,
            24,
            8,
        ),
        at(events.decimals(0).fill_opacity(60).stacking(stacked()), 0, 17, 12, 8),
        at(open_alerts("Open door and meter alerts", DOOR_METER_RULES, ""), 12, 17, 12, 8),
        at(open_alerts("Meters offline (open alerts)", "meter_offline", ""), 0, 25, 12, 8),
        at(
            grid_table("Last reading per meter (stalest first)", stalest, "Time", False)
            .description(
                "The time column is each meter's last reading in the range; meters at the top went quiet first."
            )
            .override_by_name(
                "battery_v",
                [
                    prop("unit", "volt"),
                    prop("custom.cellOptions", {"type": "color-text"}),
                    prop("thresholds", battery.build()),
                ],
            )
            .override_by_name("total_m3", [prop("unit", "m3"), prop("decimals", 3)]),
            12,
            25,
            12,
            8,
        ),
    ]
    out = board(
        "harbourgrid-community",
        "Harbourgrid — community",
        "Water use per household and grid, elder wellbeing alerts, door events, meters offline.",
        ["community", "water", "doors"],
        "24h",
    ).refresh("1m")
    out = out.variables([*variables("water_meter", "grid", "Grid"), unacked_variable()])
    for panel in [*panels, *closed_loop(COMMUNITY_RULES, 33)]:
        out = out.with_panel(panel)
    return out


# --- gateway health

HEALTH = f'FROM "hub_health" WHERE $timeFilter AND {SITE}'


def gateway_health() -> Any:
    def rate(field: str) -> str:
        return f"""SELECT non_negative_derivative(last("{field}"), 1m) AS "{field}" {HEALTH}
            AND {SOURCE} GROUP BY time($__interval), "site", "source" fill(none)"""

    def hub_only(expr: str, alias: str) -> str:
        return f"""SELECT {expr} AS "{alias}" {HEALTH} AND "source" = 'hub'
            GROUP BY time($__interval), "site" fill(none)"""

    last = f"""SELECT last("msgs") AS "msgs", "errors", "lag_s", "outbox_rows", "dropped"
        {HEALTH} AND {SOURCE} GROUP BY "site", "source" """
    panels = [
        at(
            series("Messages per minute", rate("msgs"), "$tag_site/$tag_source")
            .description("Messages received per source (the hub's own row counts records in).")
            .unit("short")
            .fill_opacity(10),
            0,
            0,
            12,
            8,
        ),
        at(
            series("Errors per minute", rate("errors"), "$tag_site/$tag_source", bars=True)
            .description("Bad frames, checksum errors, refused requests per source.")
            .unit("short")
            .fill_opacity(60)
            .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC)),
            12,
            0,
            12,
            8,
        ),
        at(
            series("Forwarder lag", hub_only('max("lag_s")', "lag_s"), "$tag_site")
            .description(
                "Age of the oldest row waiting in the outbox: grows while InfluxDB is unreachable."
            )
            .unit("s")
            .fill_opacity(10)
            .thresholds(thresholds((None, "green"), (300, "red")))
            .thresholds_style(
                common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
            )
            .tooltip(tooltip("none")),
            0,
            8,
            8,
            8,
        ),
        at(
            series("Outbox rows", hub_only('max("outbox_rows")', "outbox_rows"), "$tag_site")
            .unit("short")
            .fill_opacity(10)
            .tooltip(tooltip("none")),
            8,
            8,
            8,
            8,
        ),
        at(
            series(
                "Readings dropped (outbox full)",
                hub_only('non_negative_difference(last("dropped"))', "dropped"),
                "$tag_site",
                bars=True,
            )
            .description(
                "Oldest readings dropped because the outbox hit its byte budget. Alerts are never dropped."
            )
            .unit("short")
            .fill_opacity(70)
            .color_scheme(dashboard.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("red"))
            .tooltip(tooltip("none")),
            16,
            8,
            8,
            8,
        ),
        at(
            grid_table("Sources: last health sample", last, "Time", False)
            .description(
                "Counters since the hub started; the time column is the last sample, stalest first (a gateway or source that stopped reporting is at the top)."
            )
            .override_by_name(
                "errors",
                [
                    prop("custom.cellOptions", {"type": "color-text"}),
                    prop("thresholds", thresholds((None, "green"), (1, "orange")).build()),
                ],
            )
            .override_by_name("lag_s", [prop("unit", "s")]),
            0,
            16,
            24,
            8,
        ),
    ]
    out = board(
        "harbourgrid-gateway-health",
        "Harbourgrid — gateway health",
        "Per-source message and error rates, forwarder lag, outbox size and drops.",
        ["health"],
        "6h",
    ).refresh("1m")
    out = out.variables(variables("hub_health", "source", "Source"))
    for panel in panels:
        out = out.with_panel(panel)
    return out


# --- output

BOARDS = {"maritime": maritime, "community": community, "gateway_health": gateway_health}


def render(name: str) -> str:
    """The committed JSON text of one dashboard: `id` null so imports never clash."""
    model = json.loads(json.dumps(BOARDS[name]().build(), cls=JSONEncoder))
    model["id"] = None
    for i, panel in enumerate(model["panels"], start=1):
        panel["id"] = i
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name in BOARDS:
        path, text = args.out / f"{name}.json", render(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python -m dashboards.build): {', '.join(stale)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
