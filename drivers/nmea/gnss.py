"""The gateway's own GNSS/compass: GGA, RMC, VTG and HDT sentences read with pynmea2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pynmea2

from hub.errors import ProtocolError

# (lat, lon, sog_kn, cog_deg, heading_deg) from one sentence; None where it says nothing.
Fix = tuple[float | None, float | None, float | None, float | None, float | None]


def _float(value: Any) -> float | None:
    return float(value) if value not in (None, "") else None


def _gga(msg: Any) -> Fix:
    if not msg.gps_qual or not msg.lat:  # quality 0: no fix
        return None, None, None, None, None
    return float(msg.latitude), float(msg.longitude), None, None, None


def _rmc(msg: Any) -> Fix:
    sog, cog = _float(msg.spd_over_grnd), _float(msg.true_course)
    if msg.status != "A" or not msg.lat:  # status V: receiver warning, position not valid
        return None, None, sog, cog, None
    return float(msg.latitude), float(msg.longitude), sog, cog, None


FIX_READERS: dict[str, Callable[[Any], Fix]] = {
    "GGA": _gga,
    "RMC": _rmc,
    "VTG": lambda m: (None, None, _float(m.spd_over_grnd_kts), _float(m.true_track), None),
    "HDT": lambda m: (None, None, None, None, _float(m.heading)),
}


def read_fix(kind: str, body: bytes) -> Fix:
    """Parse a checked $-sentence body (without '*hh') of one of FIX_READERS' kinds."""
    try:
        return FIX_READERS[kind](pynmea2.parse(body.decode("ascii"), check=False))
    except (pynmea2.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"${kind} does not parse: {exc!r}") from exc
