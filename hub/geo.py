"""Small spherical-earth helpers in nautical miles and degrees (WGS84 lat/lon, no projection)."""

from __future__ import annotations

import math

EARTH_RADIUS_NM = 3440.065  # mean earth radius, 6371.0088 km


def distance_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance between two positions."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_NM * math.asin(min(1.0, math.sqrt(a)))


def destination(lat: float, lon: float, bearing_deg: float, dist_nm: float) -> tuple[float, float]:
    """The position reached from (lat, lon) after `dist_nm` on the initial bearing; (lat, lon)."""
    p1, l1 = math.radians(lat), math.radians(lon)
    theta, delta = math.radians(bearing_deg), dist_nm / EARTH_RADIUS_NM
    p2 = math.asin(
        math.sin(p1) * math.cos(delta) + math.cos(p1) * math.sin(delta) * math.cos(theta)
    )
    l2 = l1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(p1),
        math.cos(delta) - math.sin(p1) * math.sin(p2),
    )
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0
