"""Structured logging (JSON lines or key=value) with secret values redacted on the way out."""

from __future__ import annotations

import json
import logging
import sys
import time

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
