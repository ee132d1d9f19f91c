"""Where readings go: InfluxDB v1 `/write`, InfluxDB v2 API (influxdb-client), or a local file.

A sink's `write` returns only when the server acknowledged the batch (HTTP 2xx). InfluxDB's
answers are sorted by `classify_influx`: PointRejected when it names a bad point, BatchTooLarge
for 413, SinkRefused when it refuses the request as a whole (wrong credentials, database or
bucket missing), and SinkError for anything worth retrying (5xx, 408/429, connection trouble).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import re
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from hub.errors import BatchTooLarge, PointRejected, SinkError, SinkRefused, SinkRejected

if TYPE_CHECKING:
    import aiohttp

RETRYABLE_STATUS = {408, 429}


class Sink(Protocol):
    name: str

    async def write(self, lines: list[bytes]) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BodySink(Protocol):
    """A sink that also takes a whole request body (lines joined by b"\n"), so the forwarder
    can encode the next batch in a worker thread while the current one is in flight."""

    def encode(self, body: bytes) -> bytes:
        """The request payload (compressed, if the sink compresses); CPU only, thread-safe."""
        ...

    async def send(self, payload: bytes) -> None: ...


def classify(status: int, body: str, retry_after: str | None = None) -> SinkError:
    message = f"HTTP {status}: {body.strip()[:300]}"
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        return SinkRejected(message)
    error = SinkError(message)
    error.retry_after_s = _retry_after(retry_after)  # type: ignore[attr-defined]
    return error


# What InfluxDB (1.x models/points.go and coordinator, 2.x) says when one point is at fault.
_POINT_FAULT = re.compile(
    r"field type conflict|unable to parse|invalid (field|tag|number|boolean|timestamp|point)"
    r"|missing (tag|field|fields|measurement)|bad timestamp|out of range|beyond retention"
    r"|time outside range|conflicts with|duplicate tags|unbalanced quotes",
    re.IGNORECASE,
)


def classify_influx(status: int, body: str, retry_after: str | None = None) -> SinkError:
    """The error for a non-2xx InfluxDB write answer (see the module docstring)."""
    message = f"HTTP {status}: {body.strip()[:300]}"
    if status == 413:
        return BatchTooLarge(message)
    if status in (400, 422) and _POINT_FAULT.search(body):
        return PointRejected(message)
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        return SinkRefused(message)
    error = SinkError(message)
    error.retry_after_s = _retry_after(retry_after)  # type: ignore[attr-defined]
    return error


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth (none without a username)."""
    if not username:
        return {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class InfluxV1Sink:
    """InfluxDB 1.x `/write` with precision=ns, optional basic auth, gzip."""

    name = "influxdb"

    def __init__(
        self,
        *,
        url: str,
        database: str,
        retention_policy: str = "",
        username: str = "",
        password: str = "",
        gzip_body: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self.write_url = f"{url.rstrip('/')}/write?{urlencode(params)}"
        self.auth_headers = basic_auth(username, password)
        self.gzip = gzip_body
        import aiohttp  # only a hub that writes to InfluxDB loads an HTTP client (RSS)

        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def write(self, lines: list[bytes]) -> None:
        await self.send(self.encode(b"\n".join(lines)))

    def encode(self, body: bytes) -> bytes:
        return gzip.compress(body, compresslevel=1) if self.gzip else body

    async def send(self, payload: bytes) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Content-Type": "text/plain; charset=utf-8", **self.auth_headers}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self.write_url, data=payload, headers=headers) as resp:
                if resp.status // 100 == 2:
                    return
                raise classify_influx(
                    resp.status, await resp.text(), resp.headers.get("Retry-After")
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SinkError(f"cannot reach InfluxDB: {exc.__class__.__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class InfluxV2Sink:
    """InfluxDB 2.x / 3.x / 1.8+ through influxdb-client's async write API."""

    name = "influxdb"

    def __init__(
        self,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str = "",
        gzip_body: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.url, self.org, self.bucket, self.token = url, org, bucket, token
        self.gzip = gzip_body
        self.timeout_ms = int(timeout_s * 1000)
        self._client: Any = None

    async def write(self, lines: list[bytes]) -> None:
        await self.send(b"\n".join(lines))

    def encode(self, body: bytes) -> bytes:
        return body  # influxdb-client compresses it (enable_gzip)

    async def send(self, payload: bytes) -> None:
        import aiohttp
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self.url,
                token=self.token,
                org=self.org,
                enable_gzip=self.gzip,
                timeout=self.timeout_ms,
            )
        client = self._client
        body = payload.decode()
        try:
            ok = await client.write_api().write(
                bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as exc:
            raise classify_influx(
                int(exc.status or 0),
                str(exc.body or exc.reason),
                _header(exc.headers, "Retry-After"),
            ) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkError(f"cannot reach InfluxDB: {exc.__class__.__name__}: {exc}") from exc
        if ok is False:
            raise SinkError("InfluxDB did not confirm the write")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


class LocalSink:
    """An SQLite file of line-protocol rows: the demo's store when no InfluxDB is configured."""

    name = "local"

    def __init__(self, *, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS points (measurement TEXT, time_ns INTEGER, line TEXT)"
        )
        # An insert runs in a worker thread that a cancelled write does not stop: closing the
        # connection under it crashes the process, so close and insert exclude each other.
        self._lock = threading.Lock()
        self._closed = False

    async def write(self, lines: list[bytes]) -> None:
        rows = []
        for raw in lines:
            line = raw.decode()
            rows.append((line.split(",", 1)[0].split(" ", 1)[0], int(line.rsplit(" ", 1)[1]), line))
        await asyncio.to_thread(self._insert, rows)

    def _insert(self, rows: list[tuple[str, int, str]]) -> None:
        with self._lock:
            if self._closed:
                raise SinkError("the local store is closed")
            # isolation_level=None is autocommit: without BEGIN every row is its own transaction.
            self.db.execute("BEGIN")
            try:
                self.db.executemany("INSERT INTO points VALUES (?, ?, ?)", rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self.db.close()
