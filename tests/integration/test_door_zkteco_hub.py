"""door_zkteco on the hub's real HTTP server: a terminal's ADMS conversation, records in the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from drivers.door_zkteco import ZktecoPushConfig, ZktecoPushSource
from hub.clock import ManualClock
from hub.config import parse_config
from hub.records import DoorEvent, Record
from hub.source import SourceContext, salted_hash
from tests.hubtest import running
from tests.util import wait_for

DATA = Path(__file__).parent.parent / "data" / "doors"
SN = "BOCK200961014"  # the terminal of the saifulcoder/adms-server-ZKTeco capture
SALT = "zk-test-salt"

CONFIG = """
[hub]
site = "zk-it"
data_dir = "{data}"
utc_offset_hours = 7
hash_salt_env = "IT_ZK_SALT"
health_interval_s = 3600

[http]
port = 0

[influxdb]
api = "none"

[[sources]]
type = "door_zkteco"
name = "zk"
devices = {{ "{sn}" = "zk-gate-1" }}
"""


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str]:
    async with http.post(url, data=body, headers={"Content-Type": "text/plain"}) as resp:
        return resp.status, await resp.text()


async def test_terminal_conversation_stores_hashed_attlog_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_ZK_SALT", SALT)
    text = CONFIG.format(data=tmp_path / "data", sn=SN)
    (tmp_path / "hub.toml").write_text(text)
    cfg = parse_config(text, tmp_path / "hub.toml")
    async with running(cfg) as hub, aiohttp.ClientSession() as http:
        base = hub.http_url.rstrip("/") + "/iclock"
        source = next(s for s in hub.sources if isinstance(s, ZktecoPushSource))
        await wait_for(lambda: source.stats.connected)
        # The initialisation request exactly as the capture's terminal sends it.
        status, reply = await _get(
            http,
            f"{base}/cdata?SN={SN}&options=all&language=69&pushver=2.4.0"
            "&DeviceType=middle%20east&PushOptionsFlag=1",
        )
        assert status == 200
        assert reply.splitlines()[0] == f"GET OPTION FROM: {SN}"
        assert "TimeZone=7" in reply.splitlines()
        body = (DATA / "zkteco_saifulcoder_attlog.body").read_bytes()
        assert await _post(http, f"{base}/cdata?SN={SN}&table=ATTLOG&Stamp=9999", body) == (
            200,
            "OK:3",
        )
        assert await _get(http, f"{base}/getrequest?SN={SN}") == (200, "OK")
        assert await _get(http, f"{base}/ping?sn={SN}") == (200, "OK")
        assert await _post(http, f"{base}/devicecmd?SN={SN}", b"ID=1&Return=0&CMD=INFO") == (
            200,
            "OK",
        )
        oplog = b"OPLOG 13\t0\t2024-03-12 11:03:28\t0\t0\t0\t0\r\nOPLOG 0\t0\t2024-03-12 11:03:48\t0\t0\t0\t0\r\n"
        assert await _post(http, f"{base}/cdata?SN={SN}&table=OPERLOG&Stamp=9999", oplog) == (
            200,
            "OK:2",
        )
        mixed = b"9\tnot a time\t0\t1\r\n4\t2024-07-28 10:41:31\t9\t1\t\t0\t0\t\r\n"
        assert await _post(http, f"{base}/cdata?SN={SN}&table=ATTLOG", mixed) == (200, "OK:2")
        status, _ = await _post(http, f"{base}/cdata?SN=OTHER1&table=ATTLOG", body)
        assert status == 403
        assert (await _get(http, f"{base}/getrequest?SN=OTHER1"))[0] == 403
        rows = [line for _, line in await hub.outbox.peek_points(10_000)]
        metrics = (await _get(http, hub.http_url.rstrip("/") + "/metrics"))[1]
    [counted] = [
        line
        for line in metrics.splitlines()
        if line.startswith("hub_source_inputs_total{") and 'kind="unknown_code"' in line
    ]
    assert 'source="zk"' in counted and counted.endswith(" 1.0")
    doors = [line.decode() for line in rows if line.startswith(b"door_event,")]
    assert len(doors) == 4
    assert all("door_id=zk-gate-1" in line for line in doors)
    assert sum("event=open" in line for line in doors) == 3
    assert sum("event=unknown" in line for line in doors) == 1
    pin_1 = salted_hash(SALT, "1")
    assert sum(f'credential_hash="{pin_1}"' in line for line in doors) == 2
    # 2024-07-28 01:25:24 at UTC+7 is 2024-07-27 18:25:24Z.
    assert any(line.endswith(" 1722104724000000000") for line in doors)
    assert source.stats.records == 4 and source.stats.counts["unknown_code"] == 1
    assert source.stats.errors["malformed"] == 1
    assert source.stats.errors["unknown_device"] == 2
    assert source.stats.counts["ignored"] == 1


class _FailingOnce:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.failures = 1

    async def publish(self, records: Sequence[Record]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("outbox commit failed")
        self.records.extend(records)


async def test_no_ok_before_the_commit_so_the_terminal_resends(tmp_path: Path) -> None:
    ctx = SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path, hash_salt=SALT)
    cfg = ZktecoPushConfig.model_validate(
        {"name": "zk", "devices": {SN: "zk-gate-1"}, "allowed_networks": ["127.0.0.0/8"]}
    )
    source = cfg.build(ctx)
    assert isinstance(source, ZktecoPushSource)
    app = web.Application()
    for method, path, handler in ctx.http_routes:
        app.router.add_route(method, path, handler)
    sink = _FailingOnce()
    body = (DATA / "zkteco_push_protocol_attlog_example.body").read_bytes()
    url = f"/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=9999"
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(url, data=body)
        assert resp.status == 503  # the source is not running yet: not accepted
        task = asyncio.create_task(source.run(sink.publish))
        await wait_for(lambda: source.stats.connected)
        resp = await client.post(url, data=body)
        assert resp.status == 500 and "OK" not in await resp.text()
        resp = await client.post(url, data=body)
        assert (resp.status, await resp.text()) == (200, "OK:9")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    events = [r for r in sink.records if isinstance(r, DoorEvent)]
    assert len(events) == 9
    assert {e.credential_hash for e in events} == {
        salted_hash(SALT, "1452"),
        salted_hash(SALT, "8965"),
    }
    assert {(e.door_id, e.event) for e in events} == {("zk-gate-1", "open")}
