"""Durable store-and-forward: readings, alert deliveries and rule state in one SQLite WAL file.

Rule state is kept per rule as a header (`rule_header`) plus one row per entry (`rule_entry`:
a vessel, a meter, a door), written with the step that changed it; the `rule_state` table of
earlier versions (one JSON text per rule) is still read, and replaced on the first save.

All SQLite work runs on one dedicated thread, so the event loop never blocks on disk and the
connection is used from a single thread. A batch is acknowledged only after its transaction
committed. The byte budget counts stored line-protocol bytes, alert delivery payloads and dead
letters; when it is exceeded the oldest *readings* are dropped and counted; only when no reading
is left are the oldest dead letters, then alert points, then alert deliveries dropped (counted
apart), so the budget is a hard bound. Freed pages go back to the file system (incremental vacuum) and the WAL is trimmed to
its limit after every operation, so the files stay within a stated factor of the budget (README). Each point
row keeps the wall-clock time it was queued, so the forwarder's lag is the age of the oldest unsent
row. Dead letters can be listed, requeued and purged (`DeadLetters`, behind `hub dead-letters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hub.logs import ThrottledLog
from hub.outbox_thread import Lane, OutboxThread

T = TypeVar("T")
_log = ThrottledLog(logging.getLogger("hub.outbox"))

KIND_READING = 0
KIND_ALERT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    line BLOB NOT NULL,
    queued_ns INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    kind INTEGER
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_dest ON deliveries(destination, id);
CREATE TABLE IF NOT EXISTS alert_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rule_state (rule TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rule_header (rule TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rule_entry (
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (rule, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_SAVE_HEADER = "INSERT OR REPLACE INTO rule_header(rule, value) VALUES (?, ?)"
_SAVE_ENTRY = "INSERT OR REPLACE INTO rule_entry(rule, key, value) VALUES (?, ?, ?)"
_DELETE_ENTRY = "DELETE FROM rule_entry WHERE rule=? AND key=?"


def _prepare(db: sqlite3.Connection) -> None:
    """Create the schema, and add the columns that outboxes of earlier versions lack."""
    db.executescript(_SCHEMA)
    # An index on (kind, id) doubled the cost of every insert and delete for the budget's sake;
    # the budget walks points in id order instead (readings are nearly all of them).
    db.execute("DROP INDEX IF EXISTS points_kind")
    columns = {row[1] for row in db.execute("PRAGMA table_info(points)")}
    if "queued_ns" not in columns:
        db.execute("ALTER TABLE points ADD COLUMN queued_ns INTEGER NOT NULL DEFAULT 0")
        db.execute("UPDATE points SET queued_ns=?", (time.time_ns(),))
    columns = {row[1] for row in db.execute("PRAGMA table_info(dead_letter)")}
    if "kind" not in columns:
        db.execute("ALTER TABLE dead_letter ADD COLUMN kind INTEGER")


@dataclass(slots=True, kw_only=True)
class Commit:
    """Everything one pipeline step makes durable in a single transaction."""

    readings: Sequence[bytes] = ()
    alert_points: Sequence[bytes] = ()
    deliveries: Sequence[tuple[str, bytes]] = ()  # (destination, payload)
    alert_state: Sequence[tuple[str, str]] = ()  # (key, json)
    pruned_state: Sequence[str] = ()  # alert_state keys to delete
    rule_state: Sequence[tuple[str, str]] = ()  # (rule, json): header of a changed rule state
    rule_entries: Sequence[tuple[str, str, str | None]] = ()  # (rule, key, json; None: delete)

    def extend(self, later: Commit) -> None:
        """Add a later step's changes, with the effect of committing it after this one."""
        self.readings = [*self.readings, *later.readings]
        self.alert_points = [*self.alert_points, *later.alert_points]
        self.deliveries = [*self.deliveries, *later.deliveries]
        pruned = set(later.pruned_state)
        state = {key: value for key, value in self.alert_state if key not in pruned}
        state.update(later.alert_state)
        self.alert_state = list(state.items())
        self.pruned_state = [k for k in self.pruned_state if k not in state] + [*pruned]
        self.rule_state = list({**dict(self.rule_state), **dict(later.rule_state)}.items())
        if later.rule_entries:
            entries = {(r, k): v for r, k, v in self.rule_entries}
            entries.update(((r, k), v) for r, k, v in later.rule_entries)
            self.rule_entries = [(r, k, v) for (r, k), v in entries.items()]


@dataclass(slots=True, frozen=True, kw_only=True)
class StoredState:
    """A rule state as stored in the current layout: its header and its entries by key."""

    header: Any
    entries: dict[str, Any]


@dataclass(slots=True, frozen=True, kw_only=True)
class PointBatch:
    """Consecutive points as one request body: every row with an id in first_id..last_id.
    Point ids only grow (AUTOINCREMENT since the first schema), so no row enters the range
    later, and acknowledging the batch deletes the range."""

    first_id: int
    last_id: int
    count: int
    size: int  # line-protocol bytes, as the budget counts them
    body: bytes  # the lines joined by b"\n"


@dataclass(slots=True, kw_only=True)
class OutboxStats:
    rows: int = 0
    bytes: int = 0  # line-protocol bytes of stored points
    delivery_bytes: int = 0  # payload bytes of queued alert deliveries
    dropped: int = 0  # readings dropped by the budget
    dropped_alert_points: int = 0
    dropped_deliveries: int = 0
    dead_letters: int = 0
    dead_letter_bytes: int = 0  # payload bytes in the dead-letter table, counted in the budget
    dropped_dead_letters: int = 0
    forwarded: int = 0
    deliveries: int = 0
    oldest_queued_ns: int = 0  # wall-clock time the oldest unsent point was queued; 0: none
    wal_truncations: int = 0  # WAL checkpointed and truncated after an oversized transaction


class Outbox:
    def __init__(self, *, path: Path, max_bytes: int, fsync: bool = True) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.stats = OutboxStats()
        self._thread = OutboxThread()
        # Deliveries sent but not yet deleted: deleted in the next transaction that runs.
        self._delivered: list[int] = []
        self._delivered_lock = threading.Lock()
        self._delivered_timer: asyncio.TimerHandle | None = None
        self._db: sqlite3.Connection | None = None
        self._fsync = fsync
        self._wal_path = path.with_name(path.name + "-wal")
        self._wal_limit = wal_checkpoint_pages(max_bytes) * 4096
        self.new_points = asyncio.Event()
        self._delivery_events: dict[str, asyncio.Event] = {}

    def delivery_event(self, destination: str) -> asyncio.Event:
        """Set whenever a delivery for `destination` was committed."""
        return self._delivery_events.setdefault(destination, asyncio.Event())

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
        )
        _use_incremental_vacuum(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint_pages(self.max_bytes)}")
        db.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
        db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        _prepare(db)
        self._db = db
        rows, size = db.execute(
            "SELECT count(*), coalesce(sum(length(line)), 0) FROM points"
        ).fetchone()
        self.stats.rows, self.stats.bytes = int(rows), int(size)
        self.stats.dropped = self._counter("dropped")
        self._count_dead_letters()
        count, size = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM deliveries"
        ).fetchone()
        self.stats.deliveries, self.stats.delivery_bytes = int(count), int(size)
        self.stats.dropped_alert_points = self._counter("dropped_alert_points")
        self.stats.dropped_deliveries = self._counter("dropped_deliveries")
        self.stats.dropped_dead_letters = self._counter("dropped_dead_letters")
        self._update_oldest()

    def _count_dead_letters(self) -> None:
        count, size = self.db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM dead_letter"
        ).fetchone()
        self.stats.dead_letters, self.stats.dead_letter_bytes = int(count), int(size)

    def _update_oldest(self) -> None:
        row = self.db.execute("SELECT queued_ns FROM points ORDER BY id LIMIT 1").fetchone()
        self.stats.oldest_queued_ns = int(row[0]) if row else 0

    def lag_s(self, now_ns: int | None = None) -> float:
        """Age of the oldest point not yet acknowledged by the sink (0 when none waits)."""
        oldest = self.stats.oldest_queued_ns
        if not oldest:
            return 0.0
        return max(0.0, ((time.time_ns() if now_ns is None else now_ns) - oldest) / 1e9)

    async def close(self) -> None:
        if self._delivered_timer is not None:
            self._delivered_timer.cancel()
            self._delivered_timer = None
        if self._db is not None:
            await self._run(self._close)
        self._thread.shutdown()

    def _close(self) -> None:
        self._flush_delivered()
        db, self._db = self.db, None
        db.close()

    async def _run(
        self,
        fn: Callable[..., T],
        *args: Any,
        lane: Lane = Lane.ORDERED,
        keys: frozenset[str] = frozenset(),
    ) -> T:
        future = self._thread.submit(lambda: self._then_trim(fn, *args), lane, keys)
        result: T = await asyncio.wrap_future(future)
        return result

    def _then_trim(self, fn: Callable[..., T], *args: Any) -> T:
        result = fn(*args)
        if self._db is not None:
            self._trim()
        return result

    def _trim(self) -> None:
        """On the outbox thread, after each operation: give free pages back and bound the WAL.

        The operation itself is durable by now, so trimming must never fail it: busy_timeout 0,
        and another process's reader or writer (`hub doctor`, `hub dead-letters`) only defers
        the trim to the next operation instead of stalling the queue."""
        db = self.db
        db.execute("PRAGMA busy_timeout=0")
        try:
            self._return_free_pages(db)
            self._bound_wal(db)
        except sqlite3.OperationalError as exc:  # SQLITE_BUSY / LOCKED
            _log.info("outbox trim deferred: %s", exc)
        finally:
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")

    def _return_free_pages(self, db: sqlite3.Connection) -> None:
        """After any operation that freed pages (budget drops, acks, a rule state that shrank),
        not only after budget drops: between operations the file holds live pages only."""
        if db.execute("PRAGMA freelist_count").fetchone()[0]:
            # executescript steps the pragma to the end; execute() would free one page only.
            db.executescript("PRAGMA incremental_vacuum;")

    def _bound_wal(self, db: sqlite3.Connection) -> None:
        """A transaction larger than the WAL limit (a group commit carrying a big rule state)
        leaves the WAL that large: SQLite trims it only when the *next* writer restarts it.
        Checkpoint and truncate it now, so between transactions it stays within the limit."""
        try:
            size = self._wal_path.stat().st_size
        except FileNotFoundError:
            return
        if size > self._wal_limit:
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            self.stats.wal_truncations += 1 - int(busy)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error (runs on the outbox thread)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    # --- writing -------------------------------------------------------------------------------

    async def commit(self, batch: Commit, *, lane: Lane = Lane.ORDERED) -> None:
        """Make a batch durable; returns only after the transaction committed. An urgent
        commit runs before queued bulk commits whose alert and rule state it does not share."""
        await self._run(self._commit, batch, lane=lane, keys=state_keys(batch))
        if batch.readings or batch.alert_points:
            self.new_points.set()
        for destination in {dest for dest, _ in batch.deliveries}:
            self.delivery_event(destination).set()

    def _commit(self, batch: Commit) -> None:
        now_ns = time.time_ns()
        delivered = self._take_delivered()
        with self._transaction() as db:
            self._delete_deliveries(db, delivered)
            points = [(KIND_READING, line, now_ns) for line in batch.readings]
            points += [(KIND_ALERT, line, now_ns) for line in batch.alert_points]
            db.executemany("INSERT INTO points(kind, line, queued_ns) VALUES (?, ?, ?)", points)
            db.executemany(
                "INSERT INTO deliveries(destination, payload) VALUES (?, ?)", batch.deliveries
            )
            db.executemany(
                "INSERT OR REPLACE INTO alert_state(key, value) VALUES (?, ?)",
                batch.alert_state,
            )
            db.executemany(
                "DELETE FROM alert_state WHERE key=?", [(k,) for k in batch.pruned_state]
            )
            _write_rule_state(db, batch.rule_state, batch.rule_entries)
            added = sum(len(line) for _, line, _ in points)
            added_deliveries = sum(len(payload) for _, payload in batch.deliveries)
            total = self.stats.bytes + self.stats.delivery_bytes + self.stats.dead_letter_bytes
            total += added + added_deliveries
            drops = self._enforce_budget(total)
        self._forget_delivered(delivered)
        st = self.stats
        st.rows += len(points)
        st.bytes += added
        st.deliveries += len(batch.deliveries)
        st.delivery_bytes += added_deliveries
        for counter, rows, freed in drops:
            if counter == "dropped_deliveries":
                st.deliveries -= rows
                st.delivery_bytes -= freed
            elif counter == "dropped_dead_letters":
                st.dead_letters -= rows
                st.dead_letter_bytes -= freed
            else:
                st.rows -= rows
                st.bytes -= freed
            setattr(st, counter, getattr(st, counter) + rows)
            if counter not in ("dropped", "dropped_dead_letters"):
                _log.error("outbox budget full with no reading left: %s += %d", counter, rows)
        if points and (drops or not st.oldest_queued_ns):
            self._update_oldest()

    def _enforce_budget(self, total_bytes: int) -> list[tuple[str, int, int]]:
        """Inside the open transaction: while points, deliveries and dead letters exceed the
        budget, drop the oldest readings, then (none left) the oldest dead letters, then the
        oldest alert points, then the oldest deliveries, freeing 10% headroom at once.
        Returns (counter, rows, bytes freed) each."""
        if total_bytes <= self.max_bytes:
            return []
        excess = total_bytes - int(self.max_bytes * 0.9)
        drops = []
        for table, kind, counter in _DROP_ORDER:
            if excess <= 0:
                break
            rows, freed = self._drop_oldest(table, kind, excess)
            if rows:
                excess -= freed
                drops.append((counter, rows, freed))
                self._count(counter, rows)
        return drops

    def _drop_oldest(self, table: str, kind: int | None, excess: int) -> tuple[int, int]:
        """Delete the oldest rows of `table` (points of `kind`) until `excess` bytes are freed."""
        column = "line" if table == "points" else "payload"
        where, args = ("WHERE kind=?", (kind,)) if table == "points" else ("", ())
        cursor = self.db.execute(
            f"SELECT id, length({column}) FROM {table} {where} ORDER BY id", args
        )
        last_id, freed, rows = None, 0, 0
        for row_id, size in cursor:
            if freed >= excess:
                break
            last_id, freed, rows = row_id, freed + int(size), rows + 1
        if last_id is not None:
            cond = "kind=? AND id<=?" if table == "points" else "id<=?"
            self.db.execute(f"DELETE FROM {table} WHERE {cond}", (*args, last_id))
        return rows, freed

    def _count(self, name: str, amount: int) -> None:
        if amount:
            self.db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, amount),
            )

    # --- forwarding ----------------------------------------------------------------------------

    async def peek_points(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest `limit` points, in insertion order."""
        return await self._run(self._peek_points, limit, lane=Lane.BULK)

    def _peek_points(self, limit: int) -> list[tuple[int, bytes]]:
        rows = self.db.execute("SELECT id, line FROM points ORDER BY id LIMIT ?", (limit,))
        points = [(int(i), bytes(line)) for i, line in rows]
        if len(points) < limit:  # the whole table: resync (`hub dead-letters` changes rows)
            self.stats.rows, self.stats.bytes = len(points), sum(len(p) for _, p in points)
            self._count_dead_letters()
            self._update_oldest()
        return points

    async def peek_batch(self, limit: int, after_id: int = 0) -> PointBatch:
        """The oldest `limit` points after `after_id` as one request body (`PointBatch`)."""
        return await self._run(self._peek_batch, limit, after_id)

    def _peek_batch(self, limit: int, after_id: int) -> PointBatch:
        first, last, count = self.db.execute(
            "SELECT min(id), max(id), count(*) FROM "
            "(SELECT id FROM points WHERE id > ? ORDER BY id LIMIT ?)",
            (after_id, limit),
        ).fetchone()
        if not count:
            lines: list[bytes] = []
            first = last = after_id
        else:  # the rows of the range now: another process may have added rows after it
            lines = [
                line
                for (line,) in self.db.execute(
                    "SELECT line FROM points WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
                )
            ]
        body = b"\n".join(lines)
        size = len(body) - max(0, len(lines) - 1)
        if after_id == 0 and len(lines) < limit:  # the whole table: resync (`hub dead-letters`)
            self.stats.rows, self.stats.bytes = len(lines), size
            self._count_dead_letters()
            self._update_oldest()
        return PointBatch(first_id=first, last_id=last, count=len(lines), size=size, body=body)

    async def points_between(self, first_id: int, last_id: int) -> list[tuple[int, bytes]]:
        """The points of a batch one by one, to find the one a sink refuses."""
        return await self._run(
            lambda: [
                (int(i), bytes(line))
                for i, line in self.db.execute(
                    "SELECT id, line FROM points WHERE id BETWEEN ? AND ? ORDER BY id",
                    (first_id, last_id),
                )
            ]
        )

    async def ack_batch(self, batch: PointBatch) -> None:
        """Delete a batch that the sink acknowledged."""
        await self._run(self._delete_batch, batch)

    def _delete_batch(self, batch: PointBatch) -> None:
        """One range delete, its freed pages given back in the same transaction. Without fsync:
        an ack lost in a crash only sends the batch again (InfluxDB keeps one copy of a point
        written twice), and the next fsynced commit makes it durable anyway."""
        db = self.db
        if self._fsync:
            db.execute("PRAGMA synchronous=NORMAL")
        changes = db.total_changes
        try:
            # executescript runs the pragma to the end (execute() frees one page per call).
            db.executescript(
                f"BEGIN IMMEDIATE; DELETE FROM points WHERE id BETWEEN {int(batch.first_id)} "
                f"AND {int(batch.last_id)}; PRAGMA incremental_vacuum; COMMIT;"
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            if self._fsync:
                db.execute("PRAGMA synchronous=FULL")
        deleted = db.total_changes - changes
        self.stats.forwarded += deleted
        if deleted == batch.count:
            self.stats.rows -= deleted
            self.stats.bytes -= batch.size
        else:  # the budget dropped some of them meanwhile: count again
            rows, size = db.execute(
                "SELECT count(*), coalesce(sum(length(line)), 0) FROM points"
            ).fetchone()
            self.stats.rows, self.stats.bytes = int(rows), int(size)
        self._update_oldest()

    async def ack_points(self, ids: Iterable[int]) -> None:
        """Delete points that the sink acknowledged."""
        await self._run(self._delete_points, list(ids), lane=Lane.BULK)

    def _delete_points(self, ids: list[int]) -> None:
        with self._transaction() as db:
            size = 0
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                size += int(
                    db.execute(
                        f"SELECT coalesce(sum(length(line)), 0) FROM points WHERE id IN ({marks})",
                        chunk,
                    ).fetchone()[0]
                )
                deleted = db.execute(f"DELETE FROM points WHERE id IN ({marks})", chunk).rowcount
                self.stats.rows -= deleted
                self.stats.forwarded += deleted
        self.stats.bytes -= size
        self._update_oldest()

    async def dead_letter(
        self, destination: str, ids: Sequence[int], reason: str, now_ns: int
    ) -> None:
        """Move points a sink refused for good into the dead-letter table."""
        await self._run(self._dead_letter_points, destination, list(ids), reason, now_ns)

    def _dead_letter_points(
        self, destination: str, ids: list[int], reason: str, now_ns: int
    ) -> None:
        with self._transaction() as db:
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT line, kind FROM points WHERE id IN ({marks})", chunk
                ).fetchall()
                db.executemany(
                    "INSERT INTO dead_letter(destination, payload, reason, at_ns, kind) "
                    "VALUES (?,?,?,?,?)",
                    [(destination, r[0], reason[:500], now_ns, r[1]) for r in rows],
                )
                self.stats.bytes -= sum(len(r[0]) for r in rows)
                self.stats.rows -= db.execute(
                    f"DELETE FROM points WHERE id IN ({marks})", chunk
                ).rowcount
                self.stats.dead_letters += len(rows)
                self.stats.dead_letter_bytes += sum(len(r[0]) for r in rows)
        self._update_oldest()

    # --- alert deliveries ----------------------------------------------------------------------

    async def peek_deliveries(
        self, destination: str, limit: int, *, after: int = 0
    ) -> list[tuple[int, bytes]]:
        """The oldest `limit` deliveries with an id above `after`. Urgent on the outbox thread:
        the peek that starts an alert's delivery does not wait behind bulk commits."""
        return await self._run(self._peek_deliveries, destination, limit, after, lane=Lane.URGENT)

    def _peek_deliveries(self, destination: str, limit: int, after: int) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT id, payload FROM deliveries WHERE destination=? AND id>? ORDER BY id LIMIT ?",
            (destination, after, limit),
        )
        return [(int(i), bytes(p)) for i, p in rows]

    async def ack_delivery(self, delivery_id: int) -> None:
        await self._run(self._ack_deliveries, [delivery_id])

    async def ack_deliveries(self, delivery_ids: Sequence[int]) -> None:
        """Delete deliveries that were sent, in one transaction."""
        await self._run(self._ack_deliveries, list(delivery_ids))

    def _ack_deliveries(self, delivery_ids: list[int]) -> None:
        with self._transaction() as db:
            self._delete_deliveries(db, delivery_ids)

    def _delete_deliveries(self, db: sqlite3.Connection, delivery_ids: list[int]) -> None:
        for delivery_id in delivery_ids:
            for (size,) in db.execute(
                "DELETE FROM deliveries WHERE id=? RETURNING length(payload)", (delivery_id,)
            ).fetchall():
                self.stats.deliveries -= 1
                self.stats.delivery_bytes -= int(size)

    def ack_deliveries_soon(self, delivery_ids: Sequence[int]) -> None:
        """Delete sent deliveries with the next transaction on the outbox thread (an ingest
        commit), or in one of their own after DELIVERED_FLUSH_S as bulk work, so a sent alert
        costs no fsync of its own. Peek with `after` to skip them meanwhile; a crash before
        that transaction sends them again (at least once, as with any send-then-delete)."""
        with self._delivered_lock:
            self._delivered.extend(delivery_ids)
        if self._delivered_timer is None:
            loop = asyncio.get_running_loop()
            self._delivered_timer = loop.call_later(DELIVERED_FLUSH_S, self._flush_delivered_soon)

    def _flush_delivered_soon(self) -> None:
        self._delivered_timer = None
        if self._take_delivered() and self._db is not None:
            flush = asyncio.ensure_future(self._run(self._flush_delivered, lane=Lane.BULK))
            flush.add_done_callback(self._delivered_flushed)

    def _delivered_flushed(self, flush: asyncio.Future[None]) -> None:
        if not flush.cancelled() and flush.exception() is not None:
            _log.error("deleting sent alert deliveries failed: %r", flush.exception())

    def _flush_delivered(self) -> None:
        ids = self._take_delivered()
        if ids:
            with self._transaction() as db:
                self._delete_deliveries(db, ids)
            self._forget_delivered(ids)

    def _take_delivered(self) -> list[int]:
        with self._delivered_lock:
            return list(self._delivered)

    def _forget_delivered(self, ids: list[int]) -> None:
        """After the transaction that deleted them committed (the loop only appends)."""
        with self._delivered_lock:
            del self._delivered[: len(ids)]

    async def dead_letter_delivery(
        self, destination: str, delivery_id: int, reason: str, now_ns: int
    ) -> None:
        await self._run(self._dead_letter_delivery, destination, delivery_id, reason, now_ns)

    def _dead_letter_delivery(
        self, destination: str, delivery_id: int, reason: str, now_ns: int
    ) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT payload FROM deliveries WHERE id=?", (delivery_id,)).fetchone()
            if row:
                db.execute(
                    "INSERT INTO dead_letter(destination, payload, reason, at_ns) VALUES (?,?,?,?)",
                    (destination, row[0], reason[:500], now_ns),
                )
                db.execute("DELETE FROM deliveries WHERE id=?", (delivery_id,))
                self.stats.deliveries -= 1
                self.stats.delivery_bytes -= len(row[0])
                self.stats.dead_letters += 1
                self.stats.dead_letter_bytes += len(row[0])

    # --- state ---------------------------------------------------------------------------------

    async def load_alert_state(self) -> dict[str, Any]:
        rows = await self._run(
            lambda: self.db.execute("SELECT key, value FROM alert_state").fetchall()
        )
        return {k: json.loads(v) for k, v in rows}

    async def load_rule_state(self) -> dict[str, Any]:
        """Each rule's stored state: a `StoredState` for the current layout, or the parsed
        JSON of an earlier version's single text (rules without a header of their own)."""
        return await self._run(self._load_rule_state)

    def _load_rule_state(self) -> dict[str, Any]:
        db = self.db
        states: dict[str, Any] = {
            rule: _parse(value) for rule, value in db.execute("SELECT rule, value FROM rule_state")
        }
        for rule, value in db.execute("SELECT rule, value FROM rule_header"):
            states[rule] = StoredState(header=_parse(value), entries={})
        for rule, key, value in db.execute("SELECT rule, key, value FROM rule_entry"):
            stored = states.get(rule)
            if isinstance(stored, StoredState):
                stored.entries[key] = _parse(value)
        return states

    async def replace_rule_state(
        self,
        headers: Sequence[tuple[str, str]],
        entries: Sequence[tuple[str, str, str | None]],
        old_rows: Sequence[str] = (),
    ) -> None:
        """Store the whole state of the rules in `headers` in one transaction: their stored
        entries are replaced by `entries`, and the earlier layout's rows named in `old_rows`
        deleted (an upgrade, or a state that could not be read)."""

        def replace() -> None:
            with self._transaction() as db:
                db.executemany("DELETE FROM rule_entry WHERE rule=?", [(r,) for r, _ in headers])
                db.executemany("DELETE FROM rule_state WHERE rule=?", [(r,) for r in old_rows])
                _write_rule_state(db, headers, entries)

        await self._run(replace)

    async def file_sizes(self) -> dict[str, int]:
        """Bytes on disk of the outbox file and its WAL, taken between two operations."""

        def sizes() -> dict[str, int]:
            paths = {"outbox": self.path, "wal": self._wal_path}
            return {k: p.stat().st_size if p.exists() else 0 for k, p in paths.items()}

        return await self._run(sizes)

    async def dead_letter_rows(self) -> list[tuple[str, bytes, str]]:
        return await self._run(
            lambda: [
                (str(d), bytes(p), str(r))
                for d, p, r in self.db.execute(
                    "SELECT destination, payload, reason FROM dead_letter ORDER BY id"
                )
            ]
        )


# Sent deliveries are deleted with the next commit, or after this long in a transaction of
# their own: the longest a SIGKILL can make the hub send an alert again.
DELIVERED_FLUSH_S = 1.0
_BUSY_TIMEOUT_MS = 5000  # sqlite3.connect's default, set explicitly to restore it


def wal_checkpoint_pages(max_bytes: int) -> int:
    """WAL pages between checkpoints, and the WAL's size limit between transactions: a quarter
    of the budget, at least 100 and at most SQLite's default of 1000 pages of 4 KiB."""
    return max(100, min(1000, max_bytes // (4 * 4096)))


# What the budget drops, in this order: (table, point kind, counter name).
_DROP_ORDER: tuple[tuple[str, int | None, str], ...] = (
    ("points", KIND_READING, "dropped"),
    ("dead_letter", None, "dropped_dead_letters"),
    ("points", KIND_ALERT, "dropped_alert_points"),
    ("deliveries", None, "dropped_deliveries"),
)


def _use_incremental_vacuum(db: sqlite3.Connection) -> None:
    """Freed pages return to the file system only with auto_vacuum; a file made before it was
    set is converted once (VACUUM rewrites it)."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        db.execute("VACUUM")


@dataclass(slots=True, frozen=True, kw_only=True)
class DeadLetter:
    id: int
    destination: str
    payload: bytes
    reason: str
    at_ns: int


class DeadLetters:
    """The dead-letter table of an outbox file, for `hub dead-letters` (running hub or not).

    Requeued points go back into the points table (the forwarder picks them up within seconds),
    requeued alert deliveries into the deliveries table of their destination."""

    def __init__(self, path: Path, point_sinks: Sequence[str] = ("influxdb", "local")) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        _prepare(self.db)
        self.point_sinks = tuple(point_sinks)

    def close(self) -> None:
        self.db.close()

    def _where(self, destination: str | None, since_ns: int | None) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1=1"]
        args: list[Any] = []
        if destination:
            clauses.append("destination=?")
            args.append(destination)
        if since_ns is not None:
            clauses.append("at_ns>=?")
            args.append(since_ns)
        return " AND ".join(clauses), args

    def entries(
        self, destination: str | None = None, since_ns: int | None = None
    ) -> list[DeadLetter]:
        where, args = self._where(destination, since_ns)
        rows = self.db.execute(
            f"SELECT id, destination, payload, reason, at_ns FROM dead_letter WHERE {where} "
            "ORDER BY id",
            args,
        )
        return [
            DeadLetter(id=int(i), destination=str(d), payload=bytes(p), reason=str(r), at_ns=int(a))
            for i, d, p, r, a in rows
        ]

    def requeue(self, destination: str | None = None, since_ns: int | None = None) -> int:
        where, args = self._where(destination, since_ns)
        marks = ",".join("?" * len(self.point_sinks))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO points(kind, line, queued_ns) SELECT coalesce(kind, CASE WHEN "
                f"substr(payload, 1, 6) = CAST('alert,' AS BLOB) THEN {KIND_ALERT} ELSE "
                f"{KIND_READING} END), payload, ? FROM dead_letter WHERE {where} "
                f"AND destination IN ({marks}) ORDER BY id",
                [time.time_ns(), *args, *self.point_sinks],
            )
            self.db.execute(
                "INSERT INTO deliveries(destination, payload) SELECT destination, payload "
                f"FROM dead_letter WHERE {where} AND destination NOT IN ({marks}) ORDER BY id",
                [*args, *self.point_sinks],
            )
            moved = self.db.execute(f"DELETE FROM dead_letter WHERE {where}", args).rowcount
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return int(moved)

    def purge(self, destination: str | None = None, since_ns: int | None = None) -> int:
        where, args = self._where(destination, since_ns)
        return int(self.db.execute(f"DELETE FROM dead_letter WHERE {where}", args).rowcount)


def _parse(text: str) -> Any:
    """A stored JSON text; a damaged one is returned as the text itself, which no state class
    reads, so that rule starts afresh with a warning instead of the hub failing to start."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _write_rule_state(
    db: sqlite3.Connection,
    headers: Sequence[tuple[str, str]],
    entries: Sequence[tuple[str, str, str | None]],
) -> None:
    db.executemany(_SAVE_HEADER, headers)
    if entries:
        db.executemany(_SAVE_ENTRY, [e for e in entries if e[2] is not None])
        db.executemany(_DELETE_ENTRY, [(r, k) for r, k, v in entries if v is None])


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def state_keys(batch: Commit) -> frozenset[str]:
    """The alert and rule state a commit writes: what an urgent commit must not overtake."""
    keys = {key for key, _ in batch.alert_state}
    keys.update(batch.pruned_state)
    keys.update(f"rule:{rule}" for rule, _ in batch.rule_state)
    keys.update(f"rule:{rule}" for rule, _, _ in batch.rule_entries)
    return frozenset(keys)
