"""The local HTTP server: health, Prometheus metrics, status page, token-protected ingest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.hubtest import config, running
from tests.util import free_port

TOKEN = "ingest-token-0123"


@pytest.fixture
def http_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, str]:
    monkeypatch.setenv("TEST_HTTP_TOKEN", TOKEN)
    port = free_port()
    cfg = config(
        tmp_path,
        """
[influxdb]
api = "none"
[[sources]]
type = "simulated_meters"
name = "sim"
interval_s = 0.05
""",
    )
    cfg = cfg.model_copy(
        update={
            "http": cfg.http.model_copy(
                update={"enabled": True, "port": port, "token_env": "TEST_HTTP_TOKEN"}
            )
        }
    )
    from hub.app import read_secrets  # noqa: F401 - the Hub reads the token itself

    return cfg, f"http://127.0.0.1:{port}"


async def test_health_metrics_status_and_ingest(http_cfg: tuple[object, str]) -> None:
    cfg, base = http_cfg
    async with running(cfg) as hub, aiohttp.ClientSession() as http:  # type: ignore[arg-type]
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        body = [
            {"measurement": "water_meter", "meter_id": "H-1", "total_m3": 1.5},
            {"measurement": "door_event", "door_id": "D-9", "event": "forced"},
            {"measurement": "vessel_position", "mmsi": "412000001", "lat": 30.0, "lon": 122.3},
        ]
        data = "\n".join(json.dumps(b) for b in body)
        async with http.post(f"{base}/api/v1/ingest", data=data) as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{base}/api/v1/ingest", data=data, headers=auth) as resp:
            assert resp.status == 200 and (await resp.json()) == {"accepted": 3}
        async with http.get(f"{base}/api/vessels", headers=auth) as resp:
            vessels = await resp.json()
        assert vessels["count"] == 1 and vessels["vessels"][0]["mmsi"] == "412000001"
        assert vessels["vessels"][0]["lat"] == 30.0
        rows = await hub.outbox.peek_points(10_000)
        assert any(b"meter_id=H-1" in line and b"total_m3=1.5" in line for _, line in rows)
        bad = '{"measurement": "water_meter", "meter_id": "H-1", "total_m3": "lots"}\n{oops'
        async with http.post(f"{base}/api/v1/ingest", data=bad, headers=auth) as resp:
            errors = (await resp.json())["errors"]
            assert resp.status == 400 and len(errors) == 2
            assert "total_m3: expected float" in errors[0] and "not JSON" in errors[1]
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'hub_source_messages_total{source="sim"}' in text
        assert "hub_outbox_rows " in text and "hub_records_total " in text
        assert "hub_outbox_commit_failures_total 0.0" in text
        async with http.get(f"{base}/api/status") as resp:
            status = await resp.json()
        assert status["sources"][0]["name"] == "sim" and status["outbox"]["rows"] >= 2
        async with http.get(f"{base}/") as resp:
            assert resp.status == 200 and "Harbourgrid hub" in await resp.text()


def test_status_page_renders_in_headless_chromium(
    http_cfg: tuple[object, str], tmp_path: Path
) -> None:
    """Renders the page in a real browser and reads the DOM it built from /api/status."""
    import asyncio
    import threading

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: make test installs it")
    cfg, base = http_cfg
    ready = threading.Event()
    done = threading.Event()

    async def serve() -> None:
        async with running(cfg):  # type: ignore[arg-type]
            ready.set()
            await asyncio.to_thread(done.wait)

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    try:
        assert ready.wait(20)
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'chrome'}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"{base}/",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    finally:
        done.set()
        thread.join(20)
    assert "<td>sim</td>" in dom  # the sources table was filled from /api/status
    assert "hub clock" in dom
