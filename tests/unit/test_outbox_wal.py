"""The outbox file and its WAL stay within their bounds between transactions, however large one was."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from hub.outbox import Commit, Outbox, wal_checkpoint_pages


def reading(i: int) -> bytes:
    return f"ais,mmsi={i:05d} lat=30.0,lon=122.0 {1_700_000_000_000_000_000 + i}".encode()


def rule_state(vessels: int, start: int) -> str:
    """A maritime rule's state as the engine stores it: one JSON text with every vessel."""
    entries = {
        f"{start + i:09d}": {
            "seen": 1_700_000_000_000_000_000 + i,
            "lat": 30.0 + i / 1e5,
            "lon": 122.0 + i / 1e5,
            "sog": 12.5,
            "cog": 181.25,
            "zones": ["anch-1"],
        }
        for i in range(vessels)
    }
    return json.dumps({"v": entries, "s": {}})


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
        assert len(state) > 3 * limit
        batch = [reading(i) for i in range(step * 1000, step * 1000 + 1000)]
        await outbox.commit(Commit(readings=batch, rule_state=[("invalid_mmsi", state)]))
        assert wal_size(path) <= limit
        assert (await outbox.load_rule_state())["invalid_mmsi"] == json.loads(state)
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
        await outbox.commit(Commit(rule_state=[("invalid_mmsi", rule_state(10_000, 0))]))
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
    """A rule state that shrank (vessels evicted on a tick) and acknowledged points free pages
    with no budget drop in sight; the file must not keep them."""
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    empty = db_size(path)
    await outbox.commit(
        Commit(
            readings=[reading(i) for i in range(5000)],
            rule_state=[("invalid_mmsi", rule_state(10_000, 0))],
        )
    )
    assert db_size(path) > empty + 1024 * 1024
    await outbox.commit(Commit(rule_state=[("invalid_mmsi", rule_state(10, 0))]))
    await outbox.ack_points([i for i, _ in await outbox.peek_points(10_000)])
    assert outbox.stats.dropped == 0 and outbox.stats.rows == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert db_size(path) <= empty + 8 * 4096
    assert (await outbox.load_rule_state())["invalid_mmsi"] == json.loads(rule_state(10, 0))
    await outbox.close()


async def test_an_unchanged_rule_state_is_not_rewritten(tmp_path: Path) -> None:
    """The hub saves every rule's state every few seconds; megabytes of equal JSON must not
    become a transaction each time."""
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path=path, max_bytes=1024 * 1024)
    await outbox.open()
    states = {"invalid_mmsi": rule_state(10_000, 0), "ais_gap": "{}"}
    await outbox.save_rule_state(states)
    with contextlib.closing(sqlite3.connect(path)) as reader:
        version = reader.execute("PRAGMA data_version").fetchone()[0]
        await outbox.save_rule_state(states)
        await outbox.commit(Commit(rule_state=[("ais_gap", "{}")]))
        assert reader.execute("PRAGMA data_version").fetchone()[0] == version  # no commit
        await outbox.save_rule_state({**states, "ais_gap": '{"v": {}}'})
        assert reader.execute("PRAGMA data_version").fetchone()[0] != version
    assert await outbox.load_rule_state() == {
        "invalid_mmsi": json.loads(states["invalid_mmsi"]),
        "ais_gap": {"v": {}},
    }
    await outbox.close()
