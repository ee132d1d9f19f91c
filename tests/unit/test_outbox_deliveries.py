"""Sent alert deliveries are deleted with the next transaction, and never peeked again."""

from __future__ import annotations

from pathlib import Path

from hub.outbox import Commit, Outbox


async def test_sent_deliveries_ride_on_the_next_commit_and_are_not_sent_twice(
    tmp_path: Path,
) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**7)
    await outbox.open()
    try:
        await outbox.commit(Commit(deliveries=[("mqtt", b"a1"), ("mqtt", b"a2")]))
        sent = await outbox.peek_deliveries("mqtt", 10)
        assert [p for _, p in sent] == [b"a1", b"a2"]
        outbox.ack_deliveries_soon([i for i, _ in sent])
        assert outbox.stats.deliveries == 2  # not deleted yet: no transaction ran
        await outbox.commit(Commit(deliveries=[("mqtt", b"a3")]))
        assert outbox.stats.deliveries == 1
        after = sent[-1][0]
        assert [p for _, p in await outbox.peek_deliveries("mqtt", 10, after=after)] == [b"a3"]
        assert [p for _, p in await outbox.peek_deliveries("mqtt", 10)] == [b"a3"]
    finally:
        await outbox.close()


async def test_sent_deliveries_are_deleted_on_close_without_another_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=10**7)
    await outbox.open()
    await outbox.commit(Commit(deliveries=[("mqtt", b"a1")]))
    outbox.ack_deliveries_soon([i for i, _ in await outbox.peek_deliveries("mqtt", 10)])
    await outbox.close()
    reopened = Outbox(path=path, max_bytes=10**7)
    await reopened.open()
    try:
        assert await reopened.peek_deliveries("mqtt", 10) == []
    finally:
        await reopened.close()
