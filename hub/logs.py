"""Structured logging (JSON lines or key=value) with secret values redacted on the way out."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Never let this value reach a log line (defence in depth behind SecretStr)."""
    if len(value) >= 4:
        _SECRETS.add(value)


def _redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        if self.fmt == "json":
            doc = {
                "ts": ts,
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
            }
            return _redact(json.dumps(doc, ensure_ascii=False))
        return _redact(
            f"ts={ts} level={record.levelname.lower()} logger={record.name} msg={json.dumps(message, ensure_ascii=False)}"
        )


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pymodbus", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class ThrottledLog:
    """Logs the first of a repeated message, then at most one line per interval with the count.

    For places where input from the network is rejected: a flood of bad input must not become a
    flood of log lines. Messages are keyed on (level, template), so use %-style arguments, not
    f-strings. The number of distinct templates tracked is bounded.
    """

    __slots__ = ("_clock", "_interval_s", "_logger", "_max_keys", "_seen")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[tuple[int, str], list[float]] = {}  # key -> [window start, suppressed]

    def info(self, msg: str, *args: object) -> None:
        self._log(logging.INFO, msg, args)

    def warning(self, msg: str, *args: object) -> None:
        self._log(logging.WARNING, msg, args)

    def error(self, msg: str, *args: object) -> None:
        self._log(logging.ERROR, msg, args)

    def _log(self, level: int, msg: str, args: tuple[object, ...]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = self._clock()
        key = (level, msg)
        window = self._seen.get(key)
        if window is None:
            if len(self._seen) >= self._max_keys:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = [now, 0]
            self._logger.log(level, msg, *args)
            return
        if now - window[0] < self._interval_s:
            window[1] += 1
            return
        suppressed, elapsed = int(window[1]), now - window[0]
        window[0], window[1] = now, 0
        if suppressed:
            self._logger.log(
                level, msg + " (%d more like this in the last %.0f s)", *args, suppressed, elapsed
            )
        else:
            self._logger.log(level, msg, *args)
