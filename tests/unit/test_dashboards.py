"""Dashboards are valid Grafana JSON whose InfluxQL names only what the hub writes, and runs.

The queries are run for real against InfluxDB 1.6 after writing points through a running hub.
The deploy files (systemd unit, install script) are checked here too.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hub.alerts import Alert
from hub.grafana import DATASOURCE_VAR, DEFAULT_DIR, iter_queries, load_dashboards
from hub.records import (
    RECORD_TYPES,
    GridTags,
    record_point,
)

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(DEFAULT_DIR.glob("*.json"))
NS = 1_000_000_000
MARITIME = ROOT / "tests" / "data" / "maritime"


def test_the_three_dashboards_exist() -> None:
    assert {p.name for p in FILES} == {"maritime.json", "community.json", "gateway_health.json"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    assert board["id"] is None
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "influxdb"
    for panel in board["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_VAR}
        for target in panel["targets"]:
            assert target["rawQuery"] is True and target["query"].startswith("SELECT")
            assert target["datasource"]["uid"] == DATASOURCE_VAR
            assert "$timeFilter" in target["query"], f"{panel['title']}: no time filter"


def test_dashboard_uids_are_unique() -> None:
    uids = [b["uid"] for b in load_dashboards(DEFAULT_DIR)]
    assert len(uids) == len(set(uids)) == 3


def test_maritime_map_colours_unregistered_vessels() -> None:
    board = json.loads((DEFAULT_DIR / "maritime.json").read_text())
    (geomap,) = [p for p in board["panels"] if p["type"] == "geomap"]
    query = geomap["targets"][0]["query"]
    assert 'FROM "vessel_position"' in query and query.endswith('GROUP BY "mmsi"')
    assert '"registered"' in query.split("FROM")[0]  # the tag of the last point, not a group
    (layer,) = geomap["options"]["layers"]
    assert layer["config"]["style"]["color"]["field"] == "registered"
    (override,) = [
        o for o in geomap["fieldConfig"]["overrides"] if o["matcher"]["options"] == "registered"
    ]
    mapping = override["properties"][0]["value"][0]["options"]
    assert mapping["false"]["color"] == "red"


# --- what the hub writes: measurement -> tag and field names, from the record classes


def _dummy(field: dataclasses.Field[Any]) -> Any:
    return {"str": "x", "int": 1, "float": 1.0, "bool": True}.get(str(field.type))


def hub_schema() -> dict[str, tuple[set[str], set[str]]]:
    """measurement -> (tags, fields) as written, from hub/records.py and the alert point."""
    schema: dict[str, tuple[set[str], set[str]]] = {}
    for cls in RECORD_TYPES:
        required = {
            f.name: _dummy(f)
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        record = cls(**required, grid=GridTags("g", "m", "p"))
        point = record_point(record, "site")
        schema[point.measurement] = (set(point.tags), set(record.fields()))
    alert = Alert(
        alert_id="a",
        rule="r",
        subject="s",
        state="open",
        severity="warning",
        message="m",
        site="site",
        grid=GridTags("g", "m", "p"),
        opened_ns=1,
        updated_ns=1,
    )
    point = alert.point()
    schema[point.measurement] = (set(point.tags), set(point.fields))
    schema.setdefault("alert_response", ALERT_RESPONSE)
    return schema


# The closed-loop panels read `alert_response`, written on acknowledgement and resolution
# (contract in dashboards/README.md); until the hub writes it, the contract stands in for it.
ALERT_RESPONSE = (
    {"site", "rule", "severity", "grid", "micro_grid", "police_grid", "subject", "event"},
    {"alert_id", "reopened", "seconds_to_ack", "acknowledged_by", "seconds_to_resolve",
     "resolved_unacknowledged", "feedback", "false_alarm", "feedback_by", "note_id"},
)  # fmt: skip


KEYWORDS = {
    "select", "from", "where", "group", "by", "and", "or", "as", "fill", "none", "null",
    "order", "asc", "desc", "limit", "slimit", "show", "tag", "values", "with", "key", "time",
    "now", "true", "false", "previous", "linear",
}  # fmt: skip

TOKEN = re.compile(
    r"""'(?:[^'\\]|\\.)*'            # string literal
      | /(?:[^/\\]|\\.)*/           # regex literal
      | "(?P<quoted>[^"]+)"         # quoted identifier
      | (?P<word>[A-Za-z_]\w*)      # identifier, keyword or function
      | \d+(?:\.\d+)?[a-z]*         # number or duration
      | \S""",
    re.VERBOSE,
)


def references(query: str) -> tuple[set[str], set[str]]:
    """(measurements after FROM, other identifiers) of an InfluxQL query; aliases excluded."""
    tokens = [(m.group(0), m.group("quoted") or m.group("word")) for m in TOKEN.finditer(query)]
    measurements, names, aliases = set(), set(), set()
    for i, (raw, name) in enumerate(tokens):
        if name is None:
            continue
        prev = tokens[i - 1][0].lower() if i else ""
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        if prev == "from":
            measurements.add(name)
        elif prev == "as":
            aliases.add(name)
        elif raw == name and (name.lower() in KEYWORDS or nxt == "("):
            continue  # an unquoted keyword or a function call
        else:
            names.add(name)
    return measurements, names - aliases


def substitute(query: str) -> str:
    """What Grafana does to the template variables, with every variable set to 'All'."""
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1m")
        .replace("$site", ".*")
        .replace("$grid", ".*")
        .replace("$source", ".*")
        .replace("$unacked_after", "30m")
    )


ALL_QUERIES = [
    pytest.param(q, id=f"{p.stem}:{title}")
    for p in FILES
    for title, q in iter_queries(json.loads(p.read_text()))
]


def test_reference_parser_sees_fields_tags_and_aliases() -> None:
    q = 'SELECT count("lat") AS "n" FROM (SELECT last(lat) AS lat FROM "vessel_position" '
    q += "WHERE time > now() - 1h AND \"site\" =~ /^.*$/ AND registered = 'false' GROUP BY mmsi)"
    measurements, names = references(q)
    assert measurements == {"vessel_position"}
    assert names == {"site", "registered", "mmsi"}  # lat is an alias here as well as a field


@pytest.mark.parametrize("query", ALL_QUERIES)
def test_query_names_only_what_the_hub_writes(query: str) -> None:
    schema = hub_schema()
    measurements, names = references(substitute(query))
    assert measurements, f"no measurement in {query}"
    unknown = measurements - set(schema)
    assert not unknown, f"measurements the hub never writes: {unknown}"
    known = set().union(*(schema[m][0] | schema[m][1] for m in measurements))
    assert names <= known, f"not written by the hub: {names - known} in {query}"


def test_schema_matches_the_readme_table() -> None:
    schema = hub_schema()
    assert schema["vessel_position"][0] >= {"site", "source", "grid", "mmsi", "registered"}
    assert {"alert_id", "state", "message"} <= schema["alert"][1]
    assert {"rule", "severity", "grid"} <= schema["alert"][0]
    assert schema["hub_health"][1] == {"msgs", "errors", "lag_s", "outbox_rows", "dropped"}


# --- the committed JSON is what dashboards/build.py generates (semantic checks of every query
# against InfluxDB: tests/integration/test_dashboard_semantics.py)


def test_committed_json_is_what_the_builder_generates() -> None:
    from dashboards import build  # the SDK is in the [test] extra: no skip

    for name in build.BOARDS:
        committed = (DEFAULT_DIR / f"{name}.json").read_bytes()
        assert committed == build.render(name).encode("utf-8"), (
            f"{name}.json differs from the builder: run python -m dashboards.build"
        )


def test_build_check_flags_a_hand_edited_file(tmp_path: Path) -> None:
    from dashboards import build  # the SDK is in the [test] extra: no skip

    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    edited = tmp_path / "community.json"
    edited.write_text(edited.read_text().replace('"now-24h"', '"now-7d"'))
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


# --- deploy files


def test_systemd_unit_is_hardened() -> None:
    unit = (ROOT / "deploy" / "harbourgrid-hub.service").read_text()
    keys = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in unit.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert keys["User"] == "harbourgrid" and keys["StateDirectory"] == "harbourgrid"
    assert keys["EnvironmentFile"] == "/etc/harbourgrid/hub.env"
    assert keys["ExecStartPre"].endswith("hub check-config /etc/harbourgrid/hub.toml")
    assert keys["ExecStart"].endswith("hub run --config /etc/harbourgrid/hub.toml")
    assert keys["Restart"] == "always" and keys["NoNewPrivileges"] == "yes"
    assert keys["ProtectSystem"] == "strict" and "/var/lib/harbourgrid" in keys["ReadWritePaths"]
    assert keys["SupplementaryGroups"] == "dialout"


def test_env_example_names_the_config_secrets() -> None:
    env = (ROOT / "deploy" / "harbourgrid-hub.env.example").read_text()
    example = (ROOT / "deploy" / "hub.example.toml").read_text()
    for name in set(re.findall(r'_env = "(HUB_[A-Z_]+)"', example)):
        assert re.search(rf"^#?\s*{name}=", env, re.M), f"{name} missing from the env example"


def test_install_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "deploy" / "install.sh")], check=True)


def _dry_run(prefix: Path, *extra: str) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "install.sh"), "--dry-run", "--prefix", str(prefix), *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout


def test_install_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "harbourgrid_hub-1.2.3-py3-none-any.whl").write_bytes(b"")  # never opened
    out = _dry_run(prefix, "--offline", str(wheels))
    assert f"{prefix}/opt/harbourgrid/venv-1.2.3" in out
    assert "--no-index --find-links" in out and str(wheels) in out
    assert "useradd" in out and "systemctl enable" in out
    assert f"{prefix}/etc/harbourgrid/hub.toml" in out
    assert not prefix.exists(), "a dry run must not create anything"


def test_install_remote_config_adds_the_fleet_drop_in(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "harbourgrid_hub-1.2.3-py3-none-any.whl").write_bytes(b"")
    out = _dry_run(tmp_path / "root", "--offline", str(wheels), "--remote-config")
    assert "harbourgrid-hub.service.d/fleet.conf" in out
    assert "systemctl enable harbourgrid-hub.service harbourgrid-upgrade.path" in out


def test_install_dry_run_keeps_an_existing_config(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    (prefix / "etc" / "harbourgrid").mkdir(parents=True)
    (prefix / "etc" / "harbourgrid" / "hub.toml").write_text("[hub]\n")
    (prefix / "etc" / "harbourgrid" / "hub.env").write_text("")
    out = _dry_run(prefix)
    assert "keeping existing" in out and "pip install" in out
    assert (prefix / "etc" / "harbourgrid" / "hub.toml").read_text() == "[hub]\n"
