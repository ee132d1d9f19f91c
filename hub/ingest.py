"""JSON records in: the local ingest endpoint and `hub replay` of .jsonl files.

One JSON object per record: {"measurement": "water_meter", "meter_id": "M-1", "total_m3": 12.5,
"time_ns": 1767225600000000000}. Unknown measurements or fields, and wrong types, are errors.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from hub.errors import FrameError, ProtocolError
from hub.records import RECORD_TYPES, GridTags, Record

_BY_MEASUREMENT = {cls.measurement: cls for cls in RECORD_TYPES}  # type: ignore[attr-defined]
MAX_TEXT_CHARS = 128  # ids, names, events: anything longer is not a record of ours
MAX_LINE_BYTES = 64 * 1024  # refused before parsing: parsed JSON is many times its size


def _allowed(cls: type) -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, ...]] = {}
    for f in dataclasses.fields(cls):
        if f.name == "grid":
            continue
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        out[f.name] = tuple(a for a in args if a is not type(None))
    return out


_FIELDS = {name: _allowed(cls) for name, cls in _BY_MEASUREMENT.items()}


def record_from_json(doc: Any, source: str, now_ns: int) -> Record:
    if not isinstance(doc, dict):
        raise FrameError("record must be a JSON object")
    name = doc.get("measurement")
    if name not in _BY_MEASUREMENT:
        raise ProtocolError(f"unknown measurement {name!r} (known: {sorted(_BY_MEASUREMENT)})")
    allowed = _FIELDS[name]
    kwargs: dict[str, Any] = {"source": source, "time_ns": now_ns}
    for key, value in doc.items():
        if key == "measurement":
            continue
        if key not in allowed:
            raise ProtocolError(f"{name}: unknown field {key!r}")
        types_ok = allowed[key]
        if float in types_ok and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is not None and not isinstance(value, types_ok):
            raise ProtocolError(f"{name}.{key}: expected {'/'.join(t.__name__ for t in types_ok)}")
        if isinstance(value, bool) and bool not in types_ok:
            raise ProtocolError(f"{name}.{key}: booleans are not allowed here")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise ProtocolError(f"{name}.{key}: longer than {MAX_TEXT_CHARS} characters")
        kwargs[key] = value
    kwargs["source"] = source
    try:
        record: Record = _BY_MEASUREMENT[name](**kwargs, grid=GridTags())
    except TypeError as exc:
        raise ProtocolError(f"{name}: {exc}") from exc
    return record


def records_from_lines(
    lines: Iterable[bytes], source: str, now_ns: int
) -> Iterator[Record | ProtocolError]:
    """Parse JSON lines; yields a record or the error for each non-empty line."""
    for line in lines:
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            yield FrameError(f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            yield record_from_json(json.loads(line), source, now_ns)
        except ValueError as exc:
            yield FrameError(f"not JSON: {exc}")
        except RecursionError:
            yield FrameError("not JSON: nested too deeply")
        except ProtocolError as exc:
            yield exc
