"""door_http ingest through a real aiohttp server (TestServer) with a recording publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from drivers.door_http import DoorHttpConfig, DoorHttpSource
from drivers.sim_doors import SimEvent, isapi_body, post_http
from hub.clock import ManualClock
from hub.errors import ConfigError
from hub.records import DoorEvent, Record
from hub.source import SourceContext, salted_hash
from tests.util import wait_for

TOKEN = "door-token-0123456789"
CARD = "87654321"


class Ingest:
    def __init__(self, source: DoorHttpSource, url: str) -> None:
        self.source = source
        self.url = url
        self.records: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    async def post(
        self, body: bytes, content_type: str = "application/json", **headers: str
    ) -> tuple[int, dict[str, object]]:
        headers = {"Content-Type": content_type, **headers}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()


@pytest.fixture
async def ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ingest]:
    monkeypatch.setenv("TEST_DOOR_TOKEN", TOKEN)
    ctx = SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path, hash_salt="pepper")
    cfg = DoorHttpConfig(name="gate-a", token_env="TEST_DOOR_TOKEN", max_body_bytes=64 * 1024)
    source = cfg.build(ctx)
    assert isinstance(source, DoorHttpSource)
    [(method, path, handler)] = ctx.http_routes
    assert (method, path) == ("POST", "/ingest/doors/gate-a")
    app = web.Application()
    app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    harness = Ingest(source, str(server.make_url(path)))
    task = asyncio.create_task(source.run(harness.publish))
    await wait_for(lambda: source.stats.connected)
    yield harness
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.close()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


EVENT = SimEvent("2", "forced", 1_767_225_000_000, card=CARD)


@pytest.mark.parametrize("form", ["json", "xml", "multipart"])
async def test_isapi_forms_are_accepted(ingest: Ingest, form: str) -> None:
    body, content_type = isapi_body(EVENT, form)  # type: ignore[arg-type]
    status, reply = await ingest.post(body, content_type, **_auth())
    assert (status, reply) == (200, {"accepted": 1})
    [event] = ingest.records
    assert isinstance(event, DoorEvent)
    assert (event.door_id, event.event, event.source) == ("44:19:b6:00:00:01-2", "forced", "gate-a")
    assert event.credential_hash == salted_hash("pepper", CARD)
    assert ingest.source.stats.records == 1


async def test_x_hub_token_header_and_simulator_client(ingest: Ingest) -> None:
    body, content_type = isapi_body(EVENT, "json")
    status, _ = await ingest.post(body, content_type, **{"X-Hub-Token": TOKEN})
    assert status == 200
    statuses = await post_http(ingest.url, TOKEN, [SimEvent("1", "open", 1_767_225_000_000)], "xml")
    assert statuses == [200]
    assert [r.event for r in ingest.records if isinstance(r, DoorEvent)] == ["forced", "open"]


@pytest.mark.parametrize(
    "headers", [{}, _auth("wrong"), {"X-Hub-Token": ""}, {"Authorization": TOKEN}]
)
async def test_bad_token_is_401_and_counted(ingest: Ingest, headers: dict[str, str]) -> None:
    body, content_type = isapi_body(EVENT, "json")
    status, reply = await ingest.post(body, content_type, **headers)
    assert (status, reply) == (401, {"error": "unauthorised"})
    assert ingest.records == []
    assert ingest.source.stats.errors["unauthorised"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b"{broken", "application/json", "malformed"),
        (b"", "application/json", "malformed"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "application/xml", "malformed"),
        (b'{"eventType": "AccessControllerEvent"}', "application/json", "unmapped"),
        (
            b"--zz\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\r\n--zz--\r\n",
            "multipart/form-data; boundary=zz",
            "malformed",
        ),
    ],
)
async def test_malformed_body_is_400_and_counted(
    ingest: Ingest, body: bytes, content_type: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, reply = await ingest.post(body, content_type, **_auth())
    assert status == 400 and "error" in reply
    assert ingest.source.stats.errors[kind] == 1
    assert ingest.records == []


async def test_oversized_body_is_413(ingest: Ingest) -> None:
    status, _ = await ingest.post(b'{"x": "' + b"a" * 70_000 + b'"}', "application/json", **_auth())
    assert status == 413
    assert ingest.source.stats.errors["too_large"] == 1


async def test_heartbeat_accepted_with_zero_events(ingest: Ingest) -> None:
    status, reply = await ingest.post(b'{"eventType": "heartBeat"}', "application/json", **_auth())
    assert (status, reply) == (200, {"accepted": 0})
    assert ingest.source.ignored == 1


async def test_card_number_never_logged(ingest: Ingest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = f'{{"AccessControllerEvent": {{"cardNo": "{CARD}", "doorNo": 1, "subEventType": 999}}, "macAddress": "m"}}'
    status, reply = await ingest.post(bad.encode(), "application/json", **_auth())
    assert status == 400
    assert CARD not in caplog.text and CARD not in str(reply)


def test_missing_token_env_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_DOOR_TOKEN", raising=False)
    ctx = SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path)
    with pytest.raises(ConfigError, match="NO_SUCH_DOOR_TOKEN"):
        DoorHttpConfig(name="x", token_env="NO_SUCH_DOOR_TOKEN").build(ctx)
