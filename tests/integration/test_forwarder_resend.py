"""A batch sent again after its answer was lost is one copy in a real InfluxDB 1.6: the reason a
crash between a 2xx and the outbox delete may re-send but never doubles a point."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.clock import SystemClock
from hub.errors import SinkError
from hub.forwarder import Forwarder
from hub.outbox import Commit, Outbox
from hub.sinks import InfluxV1Sink
from tests.services import InfluxDB
from tests.util import wait_for

T0_NS = 1_700_000_000_000_000_000


class LostAnswerSink(InfluxV1Sink):
    """InfluxDB stores the 2nd request, but its answer is lost on the way back."""

    def __init__(self, *, url: str, database: str) -> None:
        super().__init__(url=url, database=database)
        self.requests = 0

    async def send(self, payload: bytes) -> None:
        self.requests += 1
        await super().send(payload)
        if self.requests == 2:
            raise SinkError("cannot reach InfluxDB: ServerDisconnectedError")


async def test_a_batch_sent_twice_is_stored_once(influxdb: InfluxDB, tmp_path: Path) -> None:
    db = influxdb.create_database("resend")
    lines = [
        f"water_meter,meter_id=M{i % 7} total_m3={i / 10},flow_lpm={i % 13}i {T0_NS + i}".encode()
        for i in range(3000)
    ]
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    await outbox.commit(Commit(readings=lines))
    sink = LostAnswerSink(url=db.url, database=db.db)
    fwd = Forwarder(
        outbox=outbox, sink=sink, clock=SystemClock(), batch_size=1000, flush_interval_s=0.01,
        retry_initial_s=0.01, retry_max_s=0.05,
    )  # fmt: skip
    task = asyncio.create_task(fwd.run())
    try:
        await wait_for(lambda: outbox.stats.rows == 0, timeout=60, message="outbox drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sink.aclose()
        await outbox.close()
    assert sink.requests == 4 and fwd.errors == 1  # the 2nd batch went twice
    rows = db.query("SELECT total_m3, flow_lpm, meter_id FROM water_meter ORDER BY time")
    assert [(r["time"], r["meter_id"], r["total_m3"], r["flow_lpm"]) for r in rows] == [
        (T0_NS + i, f"M{i % 7}", i / 10, i % 13) for i in range(3000)
    ]
