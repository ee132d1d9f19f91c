"""Replay of recorded NMEA/AIS capture files (`hub replay x.nmea`) as batches of records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from drivers.nmea.decoder import NmeaDecoder
from hub.clock import Clock
from hub.records import Record
from hub.source import SourceStats

REPLAY_SUFFIXES = (".nmea", ".txt", ".log", ".ais")


class FileReplay:
    """Iterate a capture file as record batches; `stats`, `bytes_read`, `total_bytes` for progress.

    Lines without a tag block time get the clock's time when their batch is read.
    """

    def __init__(
        self, path: Path, source_name: str, clock: Clock, *, batch_lines: int = 2000
    ) -> None:
        self.path = path
        self.clock = clock
        self.batch_lines = batch_lines
        self.stats = SourceStats()
        self.decoder = NmeaDecoder(source_name, self.stats)
        self.total_bytes = path.stat().st_size
        self.bytes_read = 0

    def __iter__(self) -> Iterator[list[Record]]:
        with self.path.open("rb") as f:
            while True:
                lines = f.readlines(self.batch_lines * 80)  # readlines' hint is in bytes
                if not lines:
                    return
                self.bytes_read += sum(map(len, lines))
                records = self.decoder.feed_many(lines, self.clock.now_ns())
                self.stats.records += len(records)
                if records:
                    yield records


def iter_file_records(
    path: Path, source_name: str, clock: Clock, stats: SourceStats | None = None
) -> Iterator[list[Record]]:
    """Batches of records from an NMEA capture; counts go into `stats` when given."""
    replay = FileReplay(path, source_name, clock)
    if stats is not None:
        replay.stats = replay.decoder.stats = stats
    yield from replay
