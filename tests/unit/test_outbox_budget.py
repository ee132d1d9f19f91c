"""The outbox byte budget counts readings, alert points and alert deliveries, and is a hard bound."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from hub.outbox import Commit, Outbox


def line(i: int, tag: str) -> bytes:
    return f"m,t={tag} v={i}i {1_700_000_000_000_000_000 + i}".encode()


def payload(i: int) -> bytes:
    return b'{"alert_id": "%020d", "seq": 1, "message": "%s"}' % (i, b"x" * 200)


async def test_deliveries_count_and_readings_go_first(tmp_path: Path) -> None:
    budget = 64 * 1024
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=budget)
    await outbox.open()
    for start in range(0, 2000, 200):
        await outbox.commit(Commit(readings=[line(i, "r") for i in range(start, start + 200)]))
    deliveries = [("mqtt", payload(i)) for i in range(100)]  # ~25 KiB of alert payloads
    await outbox.commit(
        Commit(alert_points=[line(i, "a") for i in range(100)], deliveries=deliveries)
    )
    st = outbox.stats
    assert st.bytes + st.delivery_bytes <= budget
    assert st.dropped > 0 and st.dropped_alert_points == 0 and st.dropped_deliveries == 0
    assert [p for _, p in await outbox.peek_deliveries("mqtt", 1000)] == [p for _, p in deliveries]
    await outbox.close()


async def test_alerts_alone_past_the_budget_drop_oldest_points_then_deliveries(
    tmp_path: Path,
) -> None:
    budget = 64 * 1024
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=budget)
    await outbox.open()
    for start in range(0, 1000, 50):
        await outbox.commit(
            Commit(
                alert_points=[line(i, "a") for i in range(start, start + 50)],
                deliveries=[("mqtt", payload(i)) for i in range(start, start + 50)],
            )
        )
        st = outbox.stats
        assert st.bytes + st.delivery_bytes <= budget  # a hard bound after every commit
    assert st.dropped_alert_points > 0
    kept = await outbox.peek_deliveries("mqtt", 10_000)
    assert kept[-1][1] == payload(999)  # the newest survive, the oldest went, counted
    assert len(kept) + st.dropped_deliveries == 1000
    points = await outbox.peek_points(10_000)
    assert len(points) + st.dropped_alert_points == 1000
    await outbox.close()
    reopened = Outbox(path=tmp_path / "o.sqlite", max_bytes=budget)
    await reopened.open()
    again = reopened.stats
    assert (again.deliveries, again.delivery_bytes) == (st.deliveries, st.delivery_bytes)
    assert (again.dropped_alert_points, again.dropped_deliveries) == (
        st.dropped_alert_points,
        st.dropped_deliveries,
    )
    await reopened.close()


async def test_file_from_an_older_hub_is_converted_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as old:  # as an older hub left it
        old.execute("PRAGMA journal_mode=WAL")
        old.execute(
            "CREATE TABLE points (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER, line BLOB)"
        )
        old.executemany(
            "INSERT INTO points(kind, line) VALUES (0, ?)", [(line(i, "r"),) for i in range(300)]
        )
        old.commit()
        assert old.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    outbox = Outbox(path=path, max_bytes=8 * 1024)
    await outbox.open()
    assert outbox.stats.rows == 300  # nothing lost in the conversion
    await outbox.commit(Commit(readings=[line(i, "r") for i in range(300, 400)]))
    assert outbox.stats.bytes <= 8 * 1024
    await outbox.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # freed pages returned


async def test_dead_letters_count_in_the_budget_after_readings(tmp_path: Path) -> None:
    """Points refused for good stay in the file until `hub dead-letters` re-sends or purges
    them; they count in `max_bytes` too, so a sink refusing everything cannot grow the file
    past the budget. Readings make room first, then the oldest dead letters."""
    budget = 64 * 1024
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=budget)
    await outbox.open()
    for start in range(0, 3000, 100):
        st = outbox.stats
        before = st.dropped_dead_letters
        await outbox.commit(Commit(readings=[line(i, "r") for i in range(start, start + 100)]))
        if st.dropped_dead_letters > before:
            assert st.rows == 0  # no reading was left when a dead letter had to go
        ids = [i for i, _ in await outbox.peek_points(100)]
        await outbox.dead_letter("influxdb", ids, "unable to parse", now_ns=start)
        assert st.bytes + st.delivery_bytes + st.dead_letter_bytes <= budget
    assert st.dropped_dead_letters > 0
    kept = [bytes(p) for _, p, _ in await outbox.dead_letter_rows()]
    assert len(kept) + st.dropped + st.dropped_dead_letters == 3000  # each counted once
    assert kept == sorted(kept, key=lambda p: int(p.split(b"v=")[1].split(b"i")[0]))
    await outbox.close()
    reopened = Outbox(path=tmp_path / "o.sqlite", max_bytes=budget)
    await reopened.open()
    assert reopened.stats.dead_letter_bytes == sum(map(len, kept))
    assert reopened.stats.dropped_dead_letters == st.dropped_dead_letters
    await reopened.close()
