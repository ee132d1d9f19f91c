"""door_http ingest through a real aiohttp server (TestServer) with a recording publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from drivers.door_http import DoorHttpConfig, DoorHttpSource, event_parts
from hub.clock import ManualClock
from hub.errors import ConfigError, FrameError
from hub.records import DoorEvent, Record
from hub.source import SourceContext, salted_hash
from sim.doors import SimEvent, isapi_body, post_http
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
        self, body: Any, content_type: str = "application/json", **headers: str
    ) -> tuple[int, dict[str, object]]:
        headers = {"Content-Type": content_type, **headers}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def _serve(tmp_path: Path, **options: Any) -> AsyncIterator[Ingest]:
    ctx = SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path, hash_salt="pepper")
    cfg = DoorHttpConfig(name="gate-a", token_env="TEST_DOOR_TOKEN", **options)
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
    try:
        yield harness
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


@pytest.fixture
async def ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ingest]:
    monkeypatch.setenv("TEST_DOOR_TOKEN", TOKEN)
    async with _serve(tmp_path, max_body_bytes=64 * 1024) as harness:
        yield harness


@pytest.fixture
async def big_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ingest]:
    """The shipped body limit (2 MiB) and two request slots."""
    monkeypatch.setenv("TEST_DOOR_TOKEN", TOKEN)
    async with _serve(tmp_path, max_concurrent_requests=2) as harness:
        yield harness


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


# --- real Hikvision pushes ----------------------------------------------------------------------

DATA = Path(__file__).parent.parent / "data" / "doors"
K1T502 = (DATA / "hikvision_ds-k1t502_lock_open.json").read_bytes()


def _k1t502(major: int, minor: int, **access: object) -> bytes:
    """The real DS-K1T502 push (pergolafabio/Hikvision-Addons#177) with other codes put in."""
    document = json.loads(K1T502)
    document["AccessControllerEvent"].update(majorEventType=major, subEventType=minor, **access)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("name", "content_type", "kind"),
    [
        ("hikvision_ds-k1t502_lock_open.json", "application/json", "ignored_code"),
        ("hikvision_camera_vmd.xml", "application/xml", "camera_event"),
        (
            "hikvision_camera_duration_alertstream.txt",
            "multipart/mixed; boundary=boundary",
            "camera_event",
        ),
    ],
)
async def test_real_pushes_that_store_nothing_are_200_and_counted(
    ingest: Ingest, name: str, content_type: str, kind: str
) -> None:
    status, reply = await ingest.post((DATA / name).read_bytes(), content_type, **_auth())
    assert (status, reply) == (200, {"accepted": 0})
    assert ingest.source.stats.counts == {kind: 1}
    assert ingest.source.stats.errors == {}
    assert ingest.records == []


@pytest.mark.parametrize(
    ("major", "minor", "event"),
    [(5, 23, "open"), (3, 1024, "open"), (5, 38, "open"), (5, 39, "denied"), (5, 75, "open"),
     (5, 76, "denied"), (5, 1, "open"), (5, 9, "denied"), (1, 1028, "alarm"), (5, 26, "closed")],
)  # fmt: skip
async def test_understood_codes_become_door_events(
    ingest: Ingest, major: int, minor: int, event: str
) -> None:
    status, reply = await ingest.post(_k1t502(major, minor, cardNo=CARD), **_auth())
    assert (status, reply) == (200, {"accepted": 1})
    [record] = ingest.records
    assert isinstance(record, DoorEvent)
    assert (record.door_id, record.event) == ("whatever-1", event)
    assert (record.vendor_major, record.vendor_minor) == (major, minor)


@pytest.mark.parametrize(
    ("major", "minor"), [(2, 1028), (3, 1028), (2, 1030), (3, 1030), (5, 21), (5, 22)]
)
async def test_routine_codes_are_never_alarms(ingest: Ingest, major: int, minor: int) -> None:
    status, reply = await ingest.post(_k1t502(major, minor), **_auth())
    assert (status, reply) == (200, {"accepted": 0})
    assert ingest.source.stats.counts == {"ignored_code": 1}


async def test_unknown_code_is_stored_as_unknown_and_counted_not_an_error(
    ingest: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, reply = await ingest.post(_k1t502(5, 4321, cardNo=CARD), **_auth())
    assert (status, reply) == (200, {"accepted": 1})
    [record] = ingest.records
    assert isinstance(record, DoorEvent)
    assert (record.event, record.vendor_major, record.vendor_minor) == ("unknown", 5, 4321)
    assert ingest.source.stats.counts == {"unknown_code": 1}
    assert ingest.source.stats.errors == {}
    assert CARD not in caplog.text


async def test_configured_door_ids_map_a_device_without_mac(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DOOR_TOKEN", TOKEN)
    async with _serve(tmp_path, door_ids={"whatever-1": "D-3-2"}) as harness:
        assert (await harness.post(_k1t502(5, 76), **_auth()))[0] == 200
    [record] = harness.records
    assert isinstance(record, DoorEvent) and (record.door_id, record.event) == ("D-3-2", "denied")


# --- hostile bodies (issue 9 items 8 and 9) -----------------------------------------------------

LAUGHS = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(2, 10)).replace(
        "&lol1;", "&lol;"
    )
    + "]><lolz>&lol9;</lolz>"
)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8"])
async def test_billion_laughs_is_refused_in_any_encoding(ingest: Ingest, encoding: str) -> None:
    body = LAUGHS.replace("UTF-16", encoding.upper()[:6]).encode(encoding)
    status, reply = await ingest.post(body, "application/xml", **_auth())
    assert status == 400 and reply["error"]
    assert ingest.source.stats.errors["malformed"] == 1


async def test_quadratic_blowup_in_utf16_is_refused(big_ingest: Ingest) -> None:
    entity = "a" * 20_000
    text = (
        f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "{entity}">]>'
        f"<EventNotificationAlert>{'&a;' * 300_000}</EventNotificationAlert>"
    )
    body = text.encode("utf-16")
    assert 1_800_000 < len(body) < 2 * 1024 * 1024
    status, reply = await big_ingest.post(body, "application/xml", **_auth())
    assert status == 400 and "DTD" in str(reply["error"])


async def test_many_part_multipart_is_refused_before_mime_parsing(big_ingest: Ingest) -> None:
    event = _k1t502(5, 1)
    filler = b"--b\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 100 + b"\r\n"
    body = b"--b\r\nContent-Type: application/json\r\n\r\n" + event + b"\r\n"
    body += filler * 15_000 + b"--b--\r\n"
    assert len(body) > 1_900_000
    status, reply = await big_ingest.post(body, "multipart/form-data; boundary=b", **_auth())
    assert (status, reply) == (400, {"error": "multipart body with more than 16 parts"})
    # A push with an event part and a few pictures is still read.
    ok = (
        b"--b\r\nContent-Type: application/json\r\n\r\n"
        + event
        + b"\r\n"
        + filler * 3
        + b"--b--\r\n"
    )
    assert (await big_ingest.post(ok, "multipart/form-data; boundary=b", **_auth()))[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        json.dumps({"AccessControllerEvent": {"cardNo": "1" * 5_000}}).encode(),
        json.dumps(list(range(6_000))).encode(),
        b"[" + b"{}," * 690_000 + b"{}]",  # refused before json.loads builds 690,000 dicts
        b"<a>" * 40 + b"</a>" * 40,
        b"<a>" + b"x" * 5_000 + b"</a>",
    ],
    ids=[
        "deep-array",
        "deep-object",
        "long-field",
        "many-nodes",
        "many-objects",
        "deep-xml",
        "long-xml-text",
    ],
)
async def test_oversized_documents_are_400_not_500(big_ingest: Ingest, body: bytes) -> None:
    status, reply = await big_ingest.post(body, "application/json", **_auth())
    assert status == 400 and reply["error"]
    assert big_ingest.source.stats.errors["malformed"] == 1


async def test_requests_beyond_the_concurrency_bound_get_503(big_ingest: Ingest) -> None:
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"eventType": '
        await release.wait()
        yield b'"heartBeat"}'

    held = [asyncio.create_task(big_ingest.post(slow_body(), **_auth())) for _ in range(2)]
    await wait_for(lambda: big_ingest.source.stats.messages == 2, message="two requests held")
    status, reply = await big_ingest.post(b'{"eventType": "heartBeat"}', **_auth())
    assert (status, reply) == (503, {"error": "busy"})
    release.set()
    assert [status for status, _ in await asyncio.gather(*held)] == [200, 200]
    assert (await big_ingest.post(b'{"eventType": "heartBeat"}', **_auth()))[0] == 200
    assert big_ingest.source.stats.errors["busy"] == 1


def test_multipart_split_follows_rfc2046_delimiters() -> None:
    # A delimiter counts only at a line start: "--b" inside the picture does not split it.
    body = (
        b"preamble\r\n--b\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8--b\xd9 x--b\r\n"
        b'--b\r\nContent-Disposition: form-data; name="e"\r\n\r\n{"a": 1}\r\n--b--\r\nepilogue'
    )
    assert event_parts(body, "multipart/form-data; boundary=b") == [b'{"a": 1}']
    lf_only = b'--b\nContent-Type: application/xml\n\n<x/>\n--b\n\n{"b": 2}\n--b--\n'
    assert event_parts(lf_only, 'multipart/mixed; boundary="b"') == [b"<x/>", b'{"b": 2}']
    for bad in (b"no delimiter", b"--b\r\nContent-Type: text/plain"):
        with pytest.raises(FrameError):
            event_parts(bad, "multipart/form-data; boundary=b")
    with pytest.raises(FrameError, match="boundary"):
        event_parts(body, "multipart/form-data")


async def test_mapping_vendor_reads_other_pushes_through_dotted_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DOOR_TOKEN", TOKEN)
    mapping = {
        "door_id": "d",
        "event": "e",
        "event_map": {"7": "forced"},
        "ignore_when": {"e": "hb"},
    }
    async with _serve(tmp_path, vendor="mapping", mapping=mapping) as harness:
        for body in (b'{"d": "D-1", "e": 7}', b'{"d": "D-1", "e": "hb"}'):
            assert (await harness.post(body, **_auth()))[0] == 200
        assert (await harness.post(b'{"d": "D-1", "e": 8}', **_auth()))[0] == 400
    [record] = harness.records
    assert isinstance(record, DoorEvent) and (record.door_id, record.event) == ("D-1", "forced")
    assert harness.source.stats.counts == {"ignored": 1}
    assert harness.source.stats.errors == {"unmapped": 1}


def test_mapping_vendor_needs_a_mapping() -> None:
    with pytest.raises(ValidationError, match="needs a"):
        DoorHttpConfig(name="x", vendor="mapping")
