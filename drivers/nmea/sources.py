"""NMEA transports (serial, TCP client, TCP server, UDP) feeding the decoder, batching records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import serial
import serial_asyncio_fast

from drivers.nmea.decoder import NmeaDecoder
from hub.clock import Clock
from hub.errors import DeviceUnreachable
from hub.logs import ThrottledLog
from hub.records import Record
from hub.source import Publish, Source

log = logging.getLogger(__name__)
rejected = ThrottledLog(log)  # refused clients and failed accept() calls, however many

MAX_PARTIAL_LINE = 4096  # a "line" longer than this without a newline is garbage
READ_CHUNK = 65536
# Datagrams are decoded UDP_CHUNK at a time until UDP_SLICE_S has passed, then the event loop
# runs other work (a door event, the socket reader): a fixed count of 1000 took 100–300 ms on a
# loaded gateway, which a door alert then waited for.
UDP_CHUNK = 32
UDP_SLICE_S = 0.002
ACCEPT_RETRY_S = 0.5  # after accept() failed (EMFILE: out of descriptors), as asyncio does


class _NmeaSource(Source):
    """Shared part: decode chunks of bytes, batch records, publish with backpressure."""

    kind = "nmea"

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        batch_max_records: int = 500,
        batch_max_s: float = 0.05,
        max_pending_fragments: int = 1024,
    ) -> None:
        super().__init__(name)
        self.clock = clock
        # One decoder per source: its bound on pending multi-part fragments holds for the whole
        # source, however many peers feed it (each peer's fragments are keyed apart).
        self.decoder = NmeaDecoder(name, self.stats, max_fragments=max_pending_fragments)
        self.batch_max_records = batch_max_records
        self.batch_max_s = batch_max_s
        self._pending: list[Record] = []
        self._publish_lock = asyncio.Lock()

    async def _flush(self, publish: Publish) -> None:
        async with self._publish_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            await publish(batch)
            self.stats.records += len(batch)

    async def _flusher(self, publish: Publish) -> None:
        """Publish what waits for longer than batch_max_s even when the feed goes quiet."""
        while True:
            await asyncio.sleep(self.batch_max_s)
            await self._flush(publish)

    async def _ingest(
        self, lines: Sequence[bytes], publish: Publish, decoder: NmeaDecoder, sender: str = ""
    ) -> None:
        now_ns = self.clock.now_ns()
        self.stats.last_message_ns = now_ns
        self._pending.extend(decoder.feed_many(lines, now_ns, sender))
        if len(self._pending) >= self.batch_max_records:
            await self._flush(publish)

    async def _read_stream(
        self,
        reader: asyncio.StreamReader,
        publish: Publish,
        decoder: NmeaDecoder,
        idle_timeout_s: float | None = None,
        sender: str = "",
    ) -> None:
        """Read newline-separated sentences until EOF (or silence longer than idle_timeout_s)."""
        partial = b""
        while True:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await reader.read(READ_CHUNK)
            if not chunk:
                return
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            if len(partial) > MAX_PARTIAL_LINE:
                self.stats.error("framing")
                partial = b""
            await self._ingest(lines, publish, decoder, sender)

    async def _with_flusher(self, publish: Publish, body: Any) -> None:
        flusher = asyncio.create_task(self._flusher(publish), name=f"{self.name}-flush")
        try:
            await body
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self.stats.connected = False
        await self._flush(publish)


class NmeaSerialSource(_NmeaSource):
    def __init__(self, name: str, clock: Clock, port: str, baudrate: int) -> None:
        super().__init__(name, clock)
        self.port = port
        self.baudrate = baudrate
        self._writer: asyncio.StreamWriter | None = None

    async def run(self, publish: Publish) -> None:
        try:
            reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate
            )
        except (OSError, serial.SerialException) as exc:
            raise DeviceUnreachable(f"cannot open {self.port}: {exc}") from exc
        self.stats.connected = True
        try:
            await self._with_flusher(publish, self._read_stream(reader, publish, self.decoder))
        except (OSError, serial.SerialException) as exc:
            raise DeviceUnreachable(f"{self.port} failed: {exc}") from exc
        finally:
            await self.aclose()
        raise DeviceUnreachable(f"{self.port} closed")

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class NmeaTcpSource(_NmeaSource):
    """TCP client of an AIS server (AIS-catcher, rtl-ais, a port's feed); reconnects forever."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        host: str,
        port: int,
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        idle_timeout_s: float | None,
    ) -> None:
        super().__init__(name, clock)
        self.host, self.port = host, port
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self.idle_timeout_s = idle_timeout_s
        self.reconnects = 0
        self._writer: asyncio.StreamWriter | None = None

    async def run(self, publish: Publish) -> None:
        flusher = asyncio.create_task(self._flusher(publish), name=f"{self.name}-flush")
        delay = self.backoff_min_s
        try:
            while True:
                got_data = await self._session(publish)
                self.reconnects += 1
                delay = self.backoff_min_s if got_data else min(delay * 2, self.backoff_max_s)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _session(self, publish: Publish) -> bool:
        """One connection; True if it delivered data (so the next attempt starts fast)."""
        before = self.stats.messages
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout=10.0
            )
            self.stats.connected = True
            log.info("%s: connected to %s:%d", self.name, self.host, self.port)
            await self._read_stream(reader, publish, self.decoder, self.idle_timeout_s)
            self.stats.error("disconnected")
            self.stats.last_error = f"{self.host}:{self.port}: connection closed"
        except (OSError, TimeoutError) as exc:
            self.stats.error("connect_failed" if not self.stats.connected else "disconnected")
            self.stats.last_error = f"{self.host}:{self.port}: {exc or type(exc).__name__}"[:200]
            if self.reconnects == 0 or self.stats.connected:
                log.warning("%s: %s:%d: %s; retrying", self.name, self.host, self.port, exc)
        finally:
            self.stats.connected = False
            await self.aclose()
            await self._flush(publish)
        return self.stats.messages > before

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class NmeaTcpServerSource(_NmeaSource):
    """Listens for receivers pushing NMEA over TCP.

    Bounded whatever connects: at most `max_clients` at once (more are closed at once and
    counted), a client silent for `client_idle_timeout_s` is dropped, and all clients share the
    source's decoder, so pending multi-part fragments are bounded per source, not per client.
    """

    def __init__(
        self,
        name: str,
        clock: Clock,
        bind_host: str,
        bind_port: int,
        *,
        max_clients: int = 16,
        client_idle_timeout_s: float | None = 300.0,
        max_pending_fragments: int = 1024,
    ) -> None:
        super().__init__(name, clock, max_pending_fragments=max_pending_fragments)
        self.bind_host, self.bind_port = bind_host, bind_port
        self.max_clients = max_clients
        self.client_idle_timeout_s = client_idle_timeout_s
        self.clients = 0
        self.bound = asyncio.Event()
        self._listener: socket.socket | None = None
        self._client_tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful when configured as 0)."""
        return self.local_address[1]

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind_host, self.bind_port))
            sock.listen(max(self.max_clients, 16))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def run(self, publish: Publish) -> None:
        try:
            self._listener = self._listen()
        except OSError as exc:
            raise DeviceUnreachable(f"cannot listen on {self.bind_host}:{self.bind_port}") from exc
        self.stats.connected = True
        self.bound.set()
        try:
            await self._with_flusher(publish, self._accept_loop(self._listener, publish))
        finally:
            for task in self._client_tasks:
                task.cancel()
            await asyncio.gather(*self._client_tasks, return_exceptions=True)
            await self.aclose()

    async def _accept_loop(self, listener: socket.socket, publish: Publish) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: the connection waits in the backlog
                self.stats.error("accept_failed")
                rejected.warning("%s: accept() failed: %s; retrying", self.name, exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            if self.clients >= self.max_clients:
                conn.close()
                self.stats.error("client_refused")
                rejected.warning(
                    "%s: refused a client: %d connected (max_clients)", self.name, self.clients
                )
                continue
            self.clients += 1
            task = asyncio.create_task(self._serve_client(conn, f"{peer[0]}:{peer[1]}", publish))
            self._client_tasks.add(task)
            task.add_done_callback(self._client_tasks.discard)

    async def _serve_client(self, conn: socket.socket, sender: str, publish: Publish) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            await self._read_stream(
                reader, publish, self.decoder, self.client_idle_timeout_s, sender
            )
        except TimeoutError:
            self.stats.error("client_idle")
            rejected.info(
                "%s: dropped a client silent for %.0f s", self.name, self.client_idle_timeout_s
            )
        except OSError as exc:
            rejected.info("%s: client dropped: %s", self.name, exc)
        finally:
            self.clients -= 1
            if writer is not None:
                writer.close()
            else:
                conn.close()
            await self._flush(publish)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None


class NmeaUdpSource(_NmeaSource):
    """Receives NMEA datagrams; a large SO_RCVBUF and batch reads keep bursts from being dropped."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        bind_host: str,
        bind_port: int,
        rcvbuf: int,
        *,
        max_pending_fragments: int = 1024,
    ) -> None:
        super().__init__(name, clock, max_pending_fragments=max_pending_fragments)
        self.bind_host, self.bind_port = bind_host, bind_port
        self.rcvbuf_requested = rcvbuf
        self.rcvbuf_bytes = 0  # what the kernel granted
        self.kernel_drops = 0
        self.bound = asyncio.Event()
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        return self.local_address[1]

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _open(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN.
            force = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux value; absent from typeshed
            sock.setsockopt(socket.SOL_SOCKET, force, self.rcvbuf_requested)
        except (OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_requested)
        # Linux reports twice the size asked for (it counts bookkeeping overhead).
        self.rcvbuf_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.bind((self.bind_host, self.bind_port))
        sock.setblocking(False)
        if self.rcvbuf_bytes < self.rcvbuf_requested:
            log.warning(
                "%s: kernel granted SO_RCVBUF %d < %d; raise net.core.rmem_max",
                self.name,
                self.rcvbuf_bytes,
                self.rcvbuf_requested,
            )
        return sock

    async def run(self, publish: Publish) -> None:
        try:
            self._sock = self._open()
        except OSError as exc:
            raise DeviceUnreachable(f"cannot bind UDP {self.bind_host}:{self.bind_port}") from exc
        self.stats.connected = True
        self.bound.set()
        drops = asyncio.create_task(self._watch_drops(), name=f"{self.name}-drops")
        try:
            await self._with_flusher(publish, self._receive(self._sock, publish))
        finally:
            drops.cancel()
            await self.aclose()

    async def _receive(self, sock: socket.socket, publish: Publish) -> None:
        """Drain the socket on every loop wakeup into a queue bounded by the granted SO_RCVBUF (in
        payload bytes), and decode from that queue in slices: a slow decode or a stalled outbox
        no longer leaves datagrams in the kernel, where each costs ~1 KiB of buffer."""
        loop = asyncio.get_running_loop()
        queue = _DatagramQueue(sock, max(self.rcvbuf_bytes, self.rcvbuf_requested))
        loop.add_reader(sock.fileno(), queue.drain)
        try:
            while True:
                await queue.ready.wait()
                deadline = time.perf_counter() + UDP_SLICE_S
                while queue.ready.is_set() and time.perf_counter() < deadline:
                    await self._decode_chunk(queue.take(UDP_CHUNK), publish)
                if queue.paused and queue.size <= queue.max_bytes // 2:
                    queue.paused = False
                    loop.add_reader(sock.fileno(), queue.drain)
                await asyncio.sleep(0)  # let the reader and other work run between slices
        finally:
            loop.remove_reader(sock.fileno())

    async def _decode_chunk(self, datagrams: list[tuple[bytes, Any]], publish: Publish) -> None:
        by_sender: dict[Any, list[bytes]] = {}
        for data, peer in datagrams:
            by_sender.setdefault(peer, []).extend(data.split(b"\n"))
        # Fragments are reassembled per sending station: two receivers forwarding to one port
        # reuse the same sequence ids.
        for peer, lines in by_sender.items():
            await self._ingest(lines, publish, self.decoder, f"{peer[0]}:{peer[1]}")

    async def _watch_drops(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.check_kernel_drops()

    def check_kernel_drops(self) -> int:
        """Read this socket's `drops` column from /proc/net/udp[6]; count increases as errors."""
        if self._sock is None:
            return self.kernel_drops
        drops = udp_socket_drops(os.fstat(self._sock.fileno()).st_ino)
        if drops is not None and drops > self.kernel_drops:
            self.stats.error("kernel_drop", drops - self.kernel_drops)
            log.warning("%s: kernel dropped %d datagrams", self.name, drops - self.kernel_drops)
            self.kernel_drops = drops
        return self.kernel_drops

    async def aclose(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _DatagramQueue:
    """Datagrams read from a non-blocking socket, at most `max_bytes` of payload queued; when
    full, reading pauses (the kernel queues, then drops and counts) until half is consumed."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self.sock = sock
        self.max_bytes = max_bytes
        self.size = 0
        self.paused = False
        self.ready = asyncio.Event()
        self._items: deque[tuple[bytes, Any]] = deque()

    def drain(self) -> None:
        recvfrom, items = self.sock.recvfrom, self._items
        size = self.size
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while size < self.max_bytes:
                data, peer = recvfrom(65535)
                items.append((data, peer))
                size += len(data)
        self.size = size
        if items:
            self.ready.set()
        if size >= self.max_bytes and not self.paused:
            self.paused = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def take(self, limit: int) -> list[tuple[bytes, Any]]:
        items = self._items
        taken = [items.popleft() for _ in range(min(limit, len(items)))]
        self.size -= sum(len(data) for data, _ in taken)
        if not items:
            self.ready.clear()
        return taken


def udp_socket_drops(inode: int) -> int | None:
    """The kernel's drop counter for the UDP socket with this inode, None where Linux hides it."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if len(cols) >= 13 and cols[9] == str(inode):
                        return int(cols[12])
        except OSError:
            continue
    return None
