"""The pipelined forwarder: one request in flight, the next batch read and encoded meanwhile,
acknowledged batches deleted behind it; a failed batch is sent again exactly, an accepted one never
(only a crash between the answer and the delete sends it twice)."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

from hub.clock import SystemClock
from hub.errors import BatchTooLarge, SinkError
from hub.forwarder import Forwarder
from hub.outbox import Commit, Outbox
from tests.util import wait_for

BATCH = 100


class BodySink:
    """A gzip body sink that records each request's lines; request numbers in `fail` (1-based)
    fail transiently after the server stored them (`stored_then_fail`) or before; a request with
    a b'HUGE' line is too large. `gate`, while clear, holds every request in flight; each request
    takes `round_trip_s` at least, as over a network."""

    name = "influxdb"

    def __init__(self, fail: frozenset[int] = frozenset(), stored_then_fail: bool = False) -> None:
        self.fail = fail
        self.stored_then_fail = stored_then_fail
        self.requests: list[list[bytes]] = []
        self.stored: list[bytes] = []
        self.encoded = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.round_trip_s = 0.0

    def encode(self, body: bytes) -> bytes:
        self.encoded += 1
        return gzip.compress(body, compresslevel=1)

    async def send(self, payload: bytes) -> None:
        lines = gzip.decompress(payload).split(b"\n")
        self.requests.append(lines)
        await self.gate.wait()
        await asyncio.sleep(self.round_trip_s)
        failing = len(self.requests) in self.fail
        if failing and not self.stored_then_fail:
            raise SinkError("HTTP 503: busy")
        if any(b"HUGE" in line for line in lines):
            raise BatchTooLarge("HTTP 413: Request Entity Too Large")
        self.stored.extend(lines)
        if failing:
            raise SinkError("cannot reach InfluxDB: ServerDisconnectedError")

    async def write(self, lines: list[bytes]) -> None:
        await self.send(self.encode(b"\n".join(lines)))

    async def aclose(self) -> None:
        return None


def line(i: int, tag: str = "ok") -> bytes:
    return f"m,t={tag} v={i}i {1_700_000_000_000_000_000 + i}".encode()


async def filled(tmp_path: Path, lines: list[bytes]) -> Outbox:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    await outbox.commit(Commit(readings=lines))
    return outbox


def forwarder(outbox: Outbox, sink: BodySink) -> Forwarder:
    return Forwarder(
        outbox=outbox, sink=sink, clock=SystemClock(), batch_size=BATCH, flush_interval_s=0.01,
        retry_initial_s=0.01, retry_max_s=0.05,
    )  # fmt: skip


async def drain(outbox: Outbox, sink: BodySink) -> Forwarder:
    fwd = forwarder(outbox, sink)
    task = asyncio.create_task(fwd.run())
    try:
        await wait_for(lambda: outbox.stats.rows == 0, timeout=20, message="outbox drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return fwd


async def test_the_2nd_of_3_batches_fails_and_is_sent_again_exactly(tmp_path: Path) -> None:
    lines = [line(i) for i in range(3 * BATCH)]
    outbox = await filled(tmp_path, lines)
    sink = BodySink(fail=frozenset({2}))
    fwd = await drain(outbox, sink)
    first, second, third = lines[:BATCH], lines[BATCH : 2 * BATCH], lines[2 * BATCH :]
    assert sink.requests == [first, second, second, third]
    assert sink.stored == lines  # each once, in outbox order
    assert (fwd.errors, fwd.written, outbox.stats.forwarded) == (1, 300, 300)
    assert outbox.stats.bytes == 0 and fwd.status().up
    await outbox.close()


async def test_the_next_batch_is_read_and_encoded_while_one_is_in_flight(
    tmp_path: Path,
) -> None:
    lines = [line(i) for i in range(3 * BATCH)]
    outbox = await filled(tmp_path, lines)
    sink = BodySink()
    sink.gate.clear()
    fwd = forwarder(outbox, sink)
    task = asyncio.create_task(fwd.run())
    try:
        await wait_for(lambda: sink.encoded == 2, message="second batch encoded")
        assert sink.requests == [lines[:BATCH]]  # one request in flight, nothing acked yet
        assert outbox.stats.rows == 300
        sink.gate.set()
        await wait_for(lambda: outbox.stats.rows == 0, message="outbox drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sink.stored == lines and len(sink.requests) == 3
    await outbox.close()


async def test_a_batch_too_large_in_the_pipeline_is_split_and_the_rest_flows(
    tmp_path: Path,
) -> None:
    lines = [line(i) for i in range(3 * BATCH)]
    lines[150] = line(150, "HUGE")
    outbox = await filled(tmp_path, lines)
    sink = BodySink()
    fwd = await drain(outbox, sink)
    assert sink.stored == lines[:150] + lines[151:]  # each once, in order
    assert [p for _, p, _ in await outbox.dead_letter_rows()] == [lines[150]]
    assert fwd.written == 299 and outbox.stats.forwarded == 299
    assert outbox.stats.bytes == 0 and outbox.stats.dead_letters == 1
    await outbox.close()


async def test_a_lost_answer_sends_that_batch_again_and_loses_nothing(tmp_path: Path) -> None:
    """The server stored the 2nd batch but its answer never came: the batch stays in the outbox
    and goes again (InfluxDB keeps one copy of an identical point)."""
    lines = [line(i) for i in range(3 * BATCH)]
    outbox = await filled(tmp_path, lines)
    sink = BodySink(fail=frozenset({2}), stored_then_fail=True)
    await drain(outbox, sink)
    second = lines[BATCH : 2 * BATCH]
    assert sink.stored == lines[:BATCH] + second + second + lines[2 * BATCH :]
    await outbox.close()


async def test_a_crash_between_the_answer_and_the_delete_resends_but_never_loses(
    tmp_path: Path,
) -> None:
    """The forwarder dies while a batch it has sent is still in flight or not yet deleted; an
    outbox reopened from the file sends every point again that was not deleted, none is lost."""
    lines = [line(i) for i in range(5 * BATCH)]
    outbox = await filled(tmp_path, lines)
    sink = BodySink()
    fwd = forwarder(outbox, sink)
    task = asyncio.create_task(fwd.run())
    await wait_for(lambda: len(sink.stored) >= 2 * BATCH, message="two batches stored")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    before = list(sink.stored)
    assert before == lines[: len(before)]
    await outbox.close()
    reopened = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await reopened.open()
    deleted = len(lines) - reopened.stats.rows
    assert deleted <= len(before)  # only what the sink stored was deleted
    await drain(reopened, sink)
    assert sink.stored[len(before) :] == lines[deleted:]  # the rest, from the first not deleted
    await reopened.close()


async def test_a_partial_tail_after_full_batches_follows_without_a_repeat(tmp_path: Path) -> None:
    """The forwarder goes back to the head for the partial batch: the deletes still queued for
    the full batches before it must come first."""
    lines = [line(i) for i in range(2 * BATCH + 50)]
    outbox = await filled(tmp_path, lines)
    sink = BodySink()
    sink.round_trip_s = 0.05  # the partial batch is read before the 2nd request is answered
    await drain(outbox, sink)
    assert sink.requests == [lines[:BATCH], lines[BATCH : 2 * BATCH], lines[2 * BATCH :]]
    await outbox.close()
