"""Request/response over a serial port for CJ/T 188 (pyserial-asyncio-fast, never blocks the loop)."""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from drivers.cjt188.frame import Frame, parse_frame, split_frame
from hub.errors import DeviceUnreachable


class SerialSettings(Protocol):
    @property
    def serial_port(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def parity(self) -> Literal["N", "E", "O"]: ...
    @property
    def stopbits(self) -> Literal[1, 2]: ...
    @property
    def timeout_s(self) -> float: ...


class SerialLink:
    """Request/response over a serial port with pyserial-asyncio-fast (never blocks the loop)."""

    def __init__(self, cfg: SerialSettings) -> None:
        self.cfg = cfg
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = b""

    async def open(self) -> None:
        import serial
        import serial_asyncio_fast

        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.cfg.serial_port,
                baudrate=self.cfg.baudrate,
                parity=self.cfg.parity,
                stopbits=self.cfg.stopbits,
                bytesize=8,
            )
        except (OSError, serial.SerialException) as exc:
            raise DeviceUnreachable(f"cannot open {self.cfg.serial_port}: {exc}") from exc

    async def exchange(self, request: bytes, address: str) -> Frame:
        """Send a request, return the first valid reply frame from `address`.

        Frames from other addresses are skipped; a corrupt frame raises ProtocolError.
        """
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._buffer = b""  # a late answer to an earlier request is stale now
        self._writer.write(request)
        await self._writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.timeout_s
        while True:
            raw, self._buffer = split_frame(self._buffer)
            if raw is not None:
                frame = parse_frame(raw)
                if frame.address == address and frame.control & 0x80:
                    return frame
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeviceUnreachable(f"no reply from meter {address}")
            try:
                chunk = await asyncio.wait_for(self._reader.read(256), remaining)
            except TimeoutError:
                raise DeviceUnreachable(f"no reply from meter {address}") from None
            if not chunk:
                await self.close()
                raise DeviceUnreachable(f"serial port {self.cfg.serial_port} closed")
            self._buffer += chunk

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
