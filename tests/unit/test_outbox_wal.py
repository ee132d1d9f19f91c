"""The outbox file and its WAL stay within their bounds between transactions, however large one was."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from hub.outbox import Commit, Outbox, StoredState, wal_checkpoint_pages


def reading(i: int) -> bytes:
    return f"ais,mmsi={i:05d} lat=30.0,lon=122.0 {1_700_000_000_000_000_000 + i}".encode()


def rule_state(vessels: int, start: int) -> list[tuple[str, str, str | None]]:
    """Vessel entries of the maritime state as the engine commits them, one per MMSI (a storm
    of new MMSIs makes one commit carry thousands)."""
    return [
        (
            "maritime",
            f"{start + i:09d}",
            json.dumps(
                {
                    "heard_ns": 1_700_000_000_000_000_000 + i,
                    "fix": {"lat": 30.0 + i / 1e5, "lon": 122.0 + i / 1e5, "sog_kn": 12.5},
                    "invalid": {"problems": ["unassigned_prefix"], "active": True},
                }
            ),
        )
        for i in range(vessels)
    ]


def stored(entries: list[tuple[str, str, str | None]]) -> dict[str, object]:
    return {key: json.loads(value) for _, key, value in entries if value is not None}


def db_size(path: Path) -> int:
    """The database's size as of its last commit (its newest pages may still be in the WAL)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_a_commit_larger_than_the_wal_limit_leaves_the_wal_within_it(
    tmp_path: Path,
) -> None:
    """Each commit rewrites a ~2 MB rule state (as a storm of new MMSIs does): the WAL must hold
    the whole transaction while it commits, but not keep that size afterwards."""
    budget = 1024 * 1024
    limit = wal_checkpoint_pages(budget) * 4096
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=budget)
    await outbox.open()
    for step in range(6):
        state = rule_state(10_000, step * 1000)
        assert sum(len(value or "") for _, _, value in state) > 3 * limit
        batch = [reading(i) for i in range(step * 1000, step * 1000 + 1000)]
        header = [("maritime", '{"version":1}')]
        await outbox.commit(Commit(readings=batch, rule_state=header, rule_entries=state))
        assert wal_size(path) <= limit
        loaded = (await outbox.load_rule_state())["maritime"]
        assert isinstance(loaded, StoredState) and loaded.header == {"version": 1}
        assert stored(state).items() <= loaded.entries.items()
    assert outbox.stats.wal_truncations > 0
    await outbox.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 6000


async def test_a_reader_in_another_process_defers_the_truncation_without_failing(
    tmp_path: Path,
) -> None:
    """`hub doctor` or `hub dead-letters` reading the file pins the WAL: commits still succeed,
    and the first operation after the reader left truncates it."""
    budget = 1024 * 1024
    limit = wal_checkpoint_pages(budget) * 4096
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=budget)
    await outbox.open()
    await outbox.commit(Commit(readings=[reading(0)]))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == 1
        await outbox.commit(Commit(rule_entries=rule_state(10_000, 0)))
        assert wal_size(path) > limit  # pinned by the reader's snapshot
        assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == 1
        reader.execute("COMMIT")
    await outbox.commit(Commit(readings=[reading(1)]))
    assert wal_size(path) <= limit
    assert [p for _, p in await outbox.peek_points(10)] == [reading(0), reading(1)]
    await outbox.close()


async def test_pages_freed_without_a_budget_drop_go_back_to_the_file_system(
    tmp_path: Path,
) -> None:
    """A rule state that shrank (vessels evicted on a tick: their entries deleted) and
    acknowledged points free pages with no budget drop in sight; the file must not keep them."""
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    empty = db_size(path)
    await outbox.commit(
        Commit(
            readings=[reading(i) for i in range(5000)],
            rule_state=[("maritime", '{"version":1}')],
            rule_entries=rule_state(10_000, 0),
        )
    )
    assert db_size(path) > empty + 1024 * 1024
    evicted = [(rule, key, None) for rule, key, _ in rule_state(10_000, 0)[10:]]
    await outbox.commit(Commit(rule_entries=evicted))
    await outbox.ack_points([i for i, _ in await outbox.peek_points(10_000)])
    assert outbox.stats.dropped == 0 and outbox.stats.rows == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert db_size(path) <= empty + 8 * 4096
    loaded = (await outbox.load_rule_state())["maritime"]
    assert isinstance(loaded, StoredState) and loaded.entries == stored(rule_state(10, 0))
    await outbox.close()
