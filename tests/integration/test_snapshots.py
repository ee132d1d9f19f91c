"""Hub.status() / Hub.counters(): detached, read-only copies, and what the surfaces show."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest

from tests.hubtest import running
from tests.integration.test_http_edges import AUTH, TOKEN, _raise_household_alert, http_config
from tests.util import wait_for


async def test_snapshots_are_detached_copies_the_surfaces_agree_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        before, counted_before = hub.status(), hub.counters()
        await _raise_household_alert(http, base)  # a low-battery reading and a vessel
        await wait_for(lambda: hub.status().open_alerts, message="low-battery alert")
        await wait_for(lambda: hub.status().vessel_count == 1, message="vessel in the table")
        status, counters = hub.status(), hub.counters()
        async with http.get(f"{base}/api/status", headers=AUTH) as resp:
            shown = await resp.json()
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()

    # Taken before the records came, the first snapshots did not change under the reader.
    assert (before.open_alerts, before.vessel_count, counted_before.records_in) == ((), 0, 0)
    assert dict(counted_before.alert_changes) == {}
    (alert,) = status.open_alerts
    assert (alert.rule, alert.severity) == ("meter_low_battery", "critical")
    assert counters.records_in == 2 and dict(counters.alert_changes) == {"open": 1}

    assert shown["alert_counts"] == {"critical": 1} and shown["vessel_count"] == 1
    assert [a["alert_id"] for a in shown["alerts"]] == [alert.alert_id]
    assert shown["outbox"]["rows"] == status.outbox.rows == health["outbox_rows"]
    assert f"hub_records_total {float(counters.records_in)}" in metrics.splitlines()
    assert (
        'hub_alerts_open{rule="meter_low_battery",severity="critical",state="open"} 1.0'
        in metrics.splitlines()
    )

    with pytest.raises(dataclasses.FrozenInstanceError):
        status.vessel_count = 7  # type: ignore[misc]
    with pytest.raises(TypeError):
        counters.alert_changes["open"] = 7  # type: ignore[index]
