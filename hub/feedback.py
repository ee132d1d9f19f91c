"""Feedback from the platform on an alert (handled / false alarm), parsed and checked at the edge.

The same document arrives on MQTT `hub/{site}/feedback` and on HTTP
`POST /api/v1/alerts/{alert_id}/feedback` (hub/schemas/feedback.schema.json). Only ids are kept:
`by` is a worker id and `note_id` the platform's id of its free-text note, never the note itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FEEDBACK_SCHEMA_ID = "harbourgrid.feedback/1"
MAX_FEEDBACK_BYTES = 4096
VERDICTS = ("handled", "false_alarm")
ALERT_ID = re.compile(r"[0-9a-f]{20}")
# A worker id or note id: letters, digits and . _ : @ - only, at most 64 characters. A name with
# a space, a phone number with `+` or spaces, or any non-ASCII name does not pass.
OPAQUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_KEY = re.compile(r"[a-z_]{1,40}")


@dataclass(slots=True, frozen=True, kw_only=True)
class Feedback:
    alert_id: str
    verdict: str  # handled | false_alarm
    by: str  # worker id
    note_id: str = ""


def is_worker_id(value: str) -> bool:
    return OPAQUE_ID.fullmatch(value) is not None


def parse_feedback(payload: bytes, alert_id: str | None = None) -> Feedback:
    """A feedback document → Feedback; ValueError says what is wrong. Over HTTP the alert id is
    in the path (`alert_id`) and may be left out of the body; if both are given they must agree.
    The size is checked before the JSON is parsed."""
    if len(payload) > MAX_FEEDBACK_BYTES:
        raise ValueError(f"feedback is {len(payload)} bytes, more than {MAX_FEEDBACK_BYTES}")
    try:
        doc: Any = json.loads(payload)
    except ValueError as exc:
        raise ValueError(f"feedback is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("feedback must be a JSON object")
    if doc.get("schema") != FEEDBACK_SCHEMA_ID:
        raise ValueError(f"feedback schema must be {FEEDBACK_SCHEMA_ID!r}")
    unknown = sorted(set(doc) - {"schema", "alert_id", "verdict", "note_id", "by"})
    if unknown:
        shown = [k if _KEY.fullmatch(k) else "?" for k in unknown[:5]]  # a key may be a name
        raise ValueError(f"feedback has unknown keys: {', '.join(shown)}")
    body_id = doc.get("alert_id", alert_id)
    if alert_id is not None and body_id != alert_id:
        raise ValueError("feedback alert_id differs from the one in the path")
    if not isinstance(body_id, str) or not ALERT_ID.fullmatch(body_id):
        raise ValueError("feedback alert_id must be 20 lowercase hex digits")
    verdict = doc.get("verdict")
    if verdict not in VERDICTS:
        raise ValueError(f"feedback verdict must be one of {', '.join(VERDICTS)}")
    by, note_id = doc.get("by"), doc.get("note_id", "")
    if not isinstance(by, str) or not is_worker_id(by):
        raise ValueError("feedback by must be a worker id ([A-Za-z0-9._:@-], at most 64)")
    if not isinstance(note_id, str) or (note_id and not OPAQUE_ID.fullmatch(note_id)):
        raise ValueError("feedback note_id must be an id ([A-Za-z0-9._:@-], at most 64)")
    return Feedback(alert_id=body_id, verdict=verdict, by=by, note_id=note_id)
