"""The line-protocol encoder fuzzed against real InfluxDB 1.6: what is written is read back.

Tag and field strings come from an alphabet of every character line protocol treats specially
(backslash, comma, equals, space, quotes, newline, tab) plus multi-byte text. A string field
must read back unchanged; a tag must read back unchanged whenever line protocol can carry it
(InfluxDB cannot store a tag ending in a backslash or a newline) and otherwise exactly as
`stored_tag` documents. No write may be refused.
"""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.records import (
    Point,
    VesselStatic,
    encode_record,
    stored_field_key,
    stored_measurement,
    stored_tag,
    to_line,
)
from tests.services import InfluxDB

ALPHABET = st.sampled_from(list("ab Z0\\\\,=\"'\n\t\r#é中{}"))
TEXT = st.text(ALPHABET, min_size=1, max_size=12)
KEYS = TEXT.filter(lambda k: k != "time" and k.strip() == k and "\n" not in k)
T0 = 1_700_000_000 * 10**9
_clock = itertools.count()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write(db: InfluxDB, line: str) -> None:
    request = urllib.request.Request(
        f"{db.url}/write?db={db.db}&precision=ns", data=line.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 204
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"InfluxDB refused {line!r}: {exc.read()!r}") from exc


def representable(text: str, specials: str = ",= ") -> bool:
    """Line protocol can carry `text` as it is: no newline, no backslash before a special
    character or at the end (independent of the encoder's own rule)."""
    if "\n" in text or text.endswith("\\"):
        return False
    return not any(text[i] == "\\" and text[i + 1] in specials for i in range(len(text) - 1))


def test_tag_and_field_strings_read_back(influxdb: InfluxDB) -> None:
    db = influxdb.create_database("fuzz_values")

    @FUZZ
    @given(a=TEXT, b=TEXT, s=st.text(ALPHABET, max_size=20))
    def check(a: str, b: str, s: str) -> None:
        t = T0 + next(_clock)
        write(
            db,
            to_line(
                Point(measurement="fuzz", tags={"a": a, "b": b}, fields={"s": s, "n": 1}, time_ns=t)
            ),
        )
        (row,) = db.query(f"SELECT * FROM fuzz WHERE time = {t}")
        assert row["s"] == s
        assert (row["a"], row["b"]) == (stored_tag(a), stored_tag(b))
        for original in (a, b):
            if representable(original):
                assert stored_tag(original) == original

    check()


def test_compiled_record_lines_read_back(influxdb: InfluxDB) -> None:
    """The per-class compiled encoder (the ingest path) writes lines InfluxDB reads back."""
    db = influxdb.create_database("fuzz_records")

    @FUZZ
    @given(mmsi=TEXT, source=TEXT, name=st.text(ALPHABET, max_size=20))
    def check(mmsi: str, source: str, name: str) -> None:
        t = T0 + next(_clock)
        record = VesselStatic(mmsi=mmsi, time_ns=t, name=name, imo=7, length_m=12.5, source=source)
        write(db, encode_record(record, "site 1").line.decode())
        (row,) = db.query(f"SELECT * FROM vessel_static WHERE time = {t}")
        assert (row["name"], row["imo"], row["length_m"]) == (name, 7, 12.5)
        assert (row["mmsi"], row["source"], row["site"]) == (
            stored_tag(mmsi), stored_tag(source), "site 1",
        )  # fmt: skip

    check()


def test_trailing_backslash_tag_is_stored(influxdb: InfluxDB) -> None:
    """The defect of issue 9 item 5: a tag value ending in `\\` was refused and dead-lettered."""
    db = influxdb.create_database("fuzz_trailing")
    for i, value in enumerate(["door\\", "a\\,b", "x\\\\", "sp\\ ace", "eq\\=", "mid\\dle"]):
        write(
            db,
            to_line(
                Point(measurement="m", tags={"door_id": value}, fields={"n": i}, time_ns=T0 + i)
            ),
        )
    rows = db.query("SELECT * FROM m ORDER BY time")
    assert [r["door_id"] for r in rows] == [
        "door＼", "a＼,b", "x\\＼", "sp＼ ace", "eq＼=", "mid\\dle",
    ]  # fmt: skip


def test_keys_and_measurements_read_back(influxdb: InfluxDB) -> None:
    db = influxdb.create_database("fuzz_keys")

    @FUZZ
    @given(tag_key=KEYS, field_key=KEYS, measurement=KEYS)
    def check(tag_key: str, field_key: str, measurement: str) -> None:
        t = T0 + next(_clock)
        write(
            db,
            to_line(
                Point(
                    measurement=measurement, tags={tag_key: "v"}, fields={field_key: 7}, time_ns=t
                )
            ),
        )
        name = stored_measurement(measurement)
        assert name in {r["name"] for r in db.query("SHOW MEASUREMENTS")}
        assert stored_field_key(field_key) in _keys(db, "SHOW FIELD KEYS", name)
        assert stored_tag(tag_key) in _keys(db, "SHOW TAG KEYS", name)
        if representable(measurement, ',= "') and not measurement.startswith("#"):
            assert name == measurement
        if representable(tag_key):
            assert stored_tag(tag_key) == tag_key

    check()


def _keys(db: InfluxDB, statement: str, measurement: str) -> set[str]:
    """Keys of one measurement from a database-wide SHOW (no InfluxQL quoting of odd names)."""
    result = db.raw_query(statement, db.db)["results"][0]
    return {v[0] for s in result["series"] if s["name"] == measurement for v in s["values"]}
