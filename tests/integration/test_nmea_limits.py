"""NMEA network sources stay bounded whatever connects: clients, pending fragments, accept() errors.

Issue 9: 300 TCP clients each holding partial multi-part fragments grew the hub by 155 MiB, every
failed accept() (EMFILE) was logged, and the UDP/TCP-server sources listened on 0.0.0.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
import resource
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from drivers.nmea import NmeaTcpServerConfig, NmeaUdpConfig
from drivers.nmea.sources import NmeaTcpServerSource, NmeaUdpSource
from hub.clock import SystemClock
from hub.records import Record, VesselStatic
from hub.source import Publish, Source, SourceContext
from tests.util import wait_for

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"
# The first fragment of a real two-part type 5 (ais_public.nmea, from pyais' fixtures).
FIRST = b"!AIVDM,2,1,1,A,55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp8,0*1C"
SECOND = b"!AIVDM,2,2,1,A,88888888880,2*25"


def tagged(group: int, part: int, line: bytes) -> bytes:
    tag = f"g:{part}-2-{group}".encode()
    return b"\\" + tag + b"*%02X\\" % functools.reduce(operator.xor, tag, 0) + line


class Collector:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


@pytest.fixture
def ctx(tmp_path: Path) -> SourceContext:
    return SourceContext(site="test", clock=SystemClock(), data_dir=tmp_path)


@contextlib.asynccontextmanager
async def running(source: Source, publish: Publish) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(publish))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.aclose()


def test_network_sources_bind_loopback_by_default() -> None:
    assert NmeaTcpServerConfig(name="t").bind_host == "127.0.0.1"
    assert NmeaUdpConfig(name="u").bind_host == "127.0.0.1"


async def test_udp_and_tcp_server_listen_on_loopback_only(ctx: SourceContext) -> None:
    tcp = NmeaTcpServerConfig(name="t", bind_port=0).build(ctx)
    udp = NmeaUdpConfig(name="u", bind_port=0).build(ctx)
    assert isinstance(tcp, NmeaTcpServerSource) and isinstance(udp, NmeaUdpSource)
    async with running(tcp, Collector()), running(udp, Collector()):
        await asyncio.wait_for(tcp.bound.wait(), 10)
        await asyncio.wait_for(udp.bound.wait(), 10)
        assert tcp.local_address == ("127.0.0.1", tcp.port)
        assert udp.local_address == ("127.0.0.1", udp.port)


async def test_300_clients_with_partial_fragments_stay_bounded(ctx: SourceContext) -> None:
    cfg = NmeaTcpServerConfig(name="ais-srv", bind_port=0, max_clients=8, max_pending_fragments=256)
    source = cfg.build(ctx)
    assert isinstance(source, NmeaTcpServerSource)
    publish = Collector()
    async with running(source, publish):
        await asyncio.wait_for(source.bound.wait(), 10)
        writers: list[asyncio.StreamWriter] = []
        for client in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", source.port)
            # Each client opens 200 messages and never sends their second fragment.
            lines = (tagged(client * 1000 + g, 1, FIRST) for g in range(200))
            writer.write(b"\r\n".join(lines) + b"\r\n")
            writers.append(writer)
        await wait_for(lambda: source.stats.errors["client_refused"] >= 300 - 8, timeout=60)
        await wait_for(lambda: source.stats.messages >= 8 * 200, timeout=60)
        assert source.clients <= 8
        assert source.decoder.pending_fragments <= 256
        # Every group beyond the bound was dropped and counted, none lost silently.
        assert source.decoder.pending_fragments + source.stats.errors["fragment_expired"] == (
            source.stats.messages
        )
        for writer in writers:
            writer.close()
        await wait_for(lambda: source.clients == 0, timeout=30)
        # The source still serves: a new client's complete message decodes.
        _, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(FIRST + b"\r\n" + SECOND + b"\r\n")
        await wait_for(lambda: any(isinstance(r, VesselStatic) for r in publish.records))
        writer.close()
    [static] = [r for r in publish.records if isinstance(r, VesselStatic)]
    assert static.mmsi == "351759000"


async def test_silent_clients_are_dropped_and_free_their_slot(ctx: SourceContext) -> None:
    cfg = NmeaTcpServerConfig(name="ais-srv", bind_port=0, max_clients=2, client_idle_timeout_s=0.3)
    source = cfg.build(ctx)
    assert isinstance(source, NmeaTcpServerSource)
    async with running(source, Collector()):
        await asyncio.wait_for(source.bound.wait(), 10)
        idle = [await asyncio.open_connection("127.0.0.1", source.port) for _ in range(2)]
        await wait_for(lambda: source.stats.errors["client_idle"] == 2)
        assert source.clients == 0
        for _, writer in idle:
            writer.close()


async def test_accept_failures_are_counted_and_logged_once(
    ctx: SourceContext, caplog: pytest.LogCaptureFixture
) -> None:
    source = NmeaTcpServerConfig(name="ais-srv", bind_port=0, max_clients=64).build(ctx)
    assert isinstance(source, NmeaTcpServerSource)
    publish = Collector()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    caplog.set_level(logging.INFO, logger="drivers.nmea.sources")
    async with running(source, publish):
        await asyncio.wait_for(source.bound.wait(), 10)
        # Connected clients wait in the listen backlog until accepted (they fill any fd holes).
        clients = [socket.create_connection(("127.0.0.1", source.port)) for _ in range(6)]
        try:
            with socket.socket() as probe:
                lowest_free = probe.fileno()  # every fd below it is open
            # New descriptors must be below the soft limit: from now on accept() gets EMFILE.
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            await wait_for(lambda: source.stats.errors["accept_failed"] >= 3, timeout=30)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await wait_for(lambda: source.clients == 6, timeout=30)  # accepted once fds are back
        for sock in clients:
            sock.sendall(FIRST + b"\r\n" + SECOND + b"\r\n")
        await wait_for(lambda: len(publish.records) == 6, timeout=30)
        for sock in clients:
            sock.close()
    lines = [r for r in caplog.records if "accept() failed" in r.getMessage()]
    assert len(lines) == 1 and "Too many open files" in lines[0].getMessage()
