"""Who sees what on the local HTTP server, and what one client can make it hold in memory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import pytest

from hub.config import HubConfig
from tests.hubtest import config, running
from tests.services import Mosquitto
from tests.util import free_port, wait_for

TOKEN = "status-token-4711"
HOUSEHOLDS = (
    "household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until\n"
    "7-3-1102,7,3,1102,G-07,G-07-3,PG-02,yes,\n"
)
METERS = "meter_id,household_id\nWM-1102,7-3-1102\n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def http_config(tmp_path: Path, extra: str = "", token: bool = True) -> tuple[HubConfig, str]:
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    (tmp_path / "meters.csv").write_text(METERS)
    port = free_port()
    cfg = config(
        tmp_path,
        f"""
[influxdb]
api = "none"
[registry.community]
households_csv = "{tmp_path}/households.csv"
meters_csv = "{tmp_path}/meters.csv"
{extra}
""",
    )
    http = {"enabled": True, "port": port, "token_env": "EDGES_HTTP_TOKEN" if token else ""}
    cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update=http)})
    return cfg, f"http://127.0.0.1:{port}"


async def _raise_household_alert(http: aiohttp.ClientSession, base: str) -> None:
    body = [
        {"measurement": "water_meter", "meter_id": "WM-1102", "total_m3": 3.0, "battery_v": 2.5},
        {"measurement": "vessel_position", "mmsi": "412345678", "lat": 30.0, "lon": 122.3},
    ]
    data = "\n".join(json.dumps(b) for b in body)
    async with http.post(f"{base}/api/v1/ingest", data=data, headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()


async def test_status_without_token_shows_only_counts_and_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        await _raise_household_alert(http, base)
        await wait_for(lambda: hub.status().open_alerts, message="low-battery alert")
        await wait_for(lambda: hub.status().vessel_count == 1, message="vessel in the table")

        async with http.get(f"{base}/api/status") as resp:
            assert resp.status == 200
            anonymous = await resp.text()
        summary = json.loads(anonymous)
        assert summary["detail"] is False
        assert summary["alert_counts"] == {"critical": 1} and summary["vessel_count"] == 1
        assert summary["outbox"]["rows"] >= 0 and summary["sources"] == []
        for secret in ("7-3-1102", "WM-1102", "battery low", "412345678", "G-07"):
            assert secret not in anonymous, secret

        async with http.get(f"{base}/api/status", headers=AUTH) as resp:
            assert resp.status == 200
            full = await resp.json()
        assert full["detail"] is True
        (alert,) = full["alerts"]
        assert alert["data"]["household"] == "7-3-1102" and "battery low" in alert["message"]
        assert [v["mmsi"] for v in full["vessels"]] == ["412345678"]

        wrong = {"Authorization": "Bearer guess"}
        async with http.get(f"{base}/api/status", headers=wrong) as resp:
            assert resp.status == 401 and "412345678" not in await resp.text()
        async with http.get(f"{base}/api/vessels") as resp:
            assert resp.status == 401 and "412345678" not in await resp.text()
        async with http.get(f"{base}/api/vessels", headers=AUTH) as resp:
            assert resp.status == 200 and (await resp.json())["count"] == 1
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        assert "7-3-1102" not in metrics and "412345678" not in metrics
        async with http.get(f"{base}/") as resp:
            page = await resp.text()
        assert "sessionStorage" in page and "Authorization" in page


async def test_without_a_configured_token_nobody_sees_details(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, base = http_config(tmp_path, token=False)
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        await hub.pipeline.publish([])
        async with http.get(f"{base}/api/status", headers={"Authorization": "Bearer "}) as resp:
            assert resp.status == 403
        async with http.get(f"{base}/api/status") as resp:
            assert resp.status == 200 and (await resp.json())["detail"] is False
        async with http.get(f"{base}/api/vessels") as resp:
            assert resp.status == 403


async def test_process_metrics_on_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    async with running(cfg), aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("process_")
    }
    assert values["process_resident_memory_bytes"] > 10 * 2**20
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] >= 3 and values["process_max_fds"] > 0


async def test_too_big_registry_push_over_http_is_refused_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path, "[registry]\nmax_push_bytes = 65536\n")
    url = f"{base}/api/v1/registry/community/households"
    row = {"household_id": "9-9-9", "is_solitary_elder": "no", "building": "9" * 60}
    big = json.dumps([row] * 2000).encode()  # ~200 KB: over the 64 KiB limit
    assert len(big) > 65536

    async def chunks() -> object:  # no Content-Length: the cap must hold while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        async with http.post(url, data=big, headers=AUTH) as resp:
            assert resp.status == 413, await resp.text()
        async with http.post(url, data=chunks(), headers=AUTH) as resp:
            assert resp.status == 413, await resp.text()
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'hub_registry_pushes_refused_total{reason="too_large",via="http"} 2.0' in text
        part = hub.registry.parts["community"]
        assert part.household("7-3-1102") is not None  # the file's table is untouched
        for deep in (b"[" * 30_000, b'{"a":' * 10_000):  # refused as not JSON, not a 500
            async with http.post(url, data=deep, headers=AUTH) as resp:
                assert resp.status == 400, await resp.text()
            ingest = f"{base}/api/v1/ingest"
            async with http.post(ingest, data=deep, headers=AUTH) as resp:
                assert resp.status == 400 and "not JSON" in await resp.text()
        small = json.dumps([row]).encode()
        async with http.post(url, data=small, headers=AUTH) as resp:
            assert resp.status == 200
        assert part.household("9-9-9") is not None


async def test_concurrent_posts_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two slots: two POSTs whose bodies are still arriving hold them; a third gets 503."""
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"max_concurrent_ingest": 2})})
    release = asyncio.Event()
    line = json.dumps({"measurement": "water_meter", "meter_id": "WM-1102", "total_m3": 4.0})

    async def slow_body() -> object:
        yield (line + "\n").encode()
        await release.wait()
        yield (line + "\n").encode()

    async with running(cfg), aiohttp.ClientSession() as http:

        async def slow_post() -> int:
            async with http.post(f"{base}/api/v1/ingest", data=slow_body(), headers=AUTH) as r:
                return r.status

        held = [asyncio.create_task(slow_post()) for _ in range(2)]

        async def in_progress() -> float:
            async with http.get(f"{base}/metrics") as resp:  # GETs are never held back
                text = await resp.text()
            line = next(x for x in text.splitlines() if x.startswith("hub_http_posts_in_progress"))
            return float(line.split()[-1])

        async def two_held() -> bool:
            return await in_progress() == 2.0

        await wait_for(two_held, message="two POSTs in progress")

        async def third() -> tuple[int, str]:
            async with http.post(f"{base}/api/v1/ingest", data=line, headers=AUTH) as resp:
                return resp.status, resp.headers.get("Retry-After", "")

        assert await third() == (503, "1")
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200  # GETs are never held back
        release.set()
        assert await asyncio.gather(*held) == [200, 200]
        assert (await third())[0] == 200  # slots are free again
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        refused_line = next(
            x for x in text.splitlines() if x.startswith("hub_http_busy_refused_total{")
        )
        assert 'route="/api/v1/ingest"' in refused_line and float(refused_line.split()[-1]) >= 1


async def test_ingest_refuses_oversized_parts_without_parsing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    url = f"{base}/api/v1/ingest"
    ok = {"measurement": "water_meter", "meter_id": "WM-1102", "total_m3": 1.0}
    async with running(cfg), aiohttp.ClientSession() as http:
        long_id = json.dumps({**ok, "meter_id": "M" * 129})
        async with http.post(url, data=long_id, headers=AUTH) as resp:
            assert resp.status == 400
            assert "meter_id: longer than 128 characters" in await resp.text()
        long_line = json.dumps({**ok, "pad": [0] * 40_000})  # 120 KB on one line
        async with http.post(url, data=long_line, headers=AUTH) as resp:
            assert resp.status == 400 and "line longer than 65536 bytes" in await resp.text()
        many = "\n".join([json.dumps(ok)] * 20_001)
        async with http.post(url, data=many, headers=AUTH) as resp:
            assert resp.status == 413 and "more than 20000 records" in await resp.text()
        big_array = json.dumps([{}] * 400_000)  # 1.6 MB of empty objects: ~40 MB parsed
        async with http.post(url, data=big_array, headers=AUTH) as resp:
            assert resp.status == 413 and "send JSON lines" in await resp.text()
        async with http.post(url, data=json.dumps([ok] * 100), headers=AUTH) as resp:
            assert resp.status == 200 and (await resp.json()) == {"accepted": 100}


async def test_clients_leaving_mid_body_are_counted_not_logged_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    port = int(base.rsplit(":", 1)[1])
    head = (
        f"POST /api/v1/ingest HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    async with running(cfg), aiohttp.ClientSession() as http:

        async def aborted() -> float:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            line = next(x for x in text.splitlines() if x.startswith("hub_http_posts_aborted"))
            return float(line.split()[-1])

        for _ in range(20):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + b'{"measurement": "water_meter"')
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        async def all_counted() -> bool:
            return await aborted() == 20.0

        await wait_for(all_counted, message="20 abandoned POSTs counted")
    server_errors = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server_errors == []
    lines = [r for r in caplog.records if "before sending its whole body" in r.getMessage()]
    assert len(lines) == 1


def test_status_page_asks_for_the_token_and_then_shows_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headless Chromium: without a token the page shows counts and the token form; with the
    token in sessionStorage (as the form stores it) it shows the household's alert."""
    import shutil
    import subprocess
    import threading

    from aiohttp import web

    from hub.app import Hub

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: make test installs it")
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    cfg, base = http_config(tmp_path)
    ready, done = threading.Event(), threading.Event()

    async def login(request: web.Request) -> web.Response:  # what the form's submit stores
        script = f'sessionStorage.setItem("hub-token", "{TOKEN}"); location.replace("/");'
        return web.Response(text=f"<script>{script}</script>", content_type="text/html")

    async def serve() -> None:
        hub = Hub(cfg)
        hub.ctx.http_routes.append(("GET", "/test-login", login))
        await hub.start()
        try:
            async with aiohttp.ClientSession() as http:
                await _raise_household_alert(http, base)
            await wait_for(lambda: hub.status().open_alerts, message="alert")
            ready.set()
            await asyncio.to_thread(done.wait)
        finally:
            await hub.stop(flush_timeout_s=0)

    def dump(url: str, profile: str) -> str:
        return subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / profile}", "--virtual-time-budget=5000",
                "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    try:
        assert ready.wait(30)
        anonymous = dump(f"{base}/", "anon")
        with_token = dump(f"{base}/test-login", "token")
    finally:
        done.set()
        thread.join(30)
    assert "critical: 1" in anonymous and '<form id="login">' in anonymous
    assert "battery low" not in anonymous and "G-07" not in anonymous
    assert "battery low" in with_token and "G-07" in with_token
    assert '<form id="login" hidden=""' in with_token


async def test_publisher_up_gauge_follows_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGES_HTTP_TOKEN", TOKEN)
    broker = Mosquitto(tmp_path / "mq")
    broker.start()
    cfg, base = http_config(
        tmp_path, f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
    )

    async def gauge(http: aiohttp.ClientSession) -> str:
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        return next(
            line.split(" ")[1]
            for line in text.splitlines()
            if line.startswith('hub_publisher_up{destination="mqtt"}')
        )

    try:
        async with running(cfg), aiohttp.ClientSession() as http:
            await wait_for(lambda: _is(gauge(http), "1.0"), timeout=30, message="mqtt up")
            broker.stop()
            await wait_for(lambda: _is(gauge(http), "0.0"), timeout=30, message="mqtt down")
    finally:
        broker.stop()


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
