"""Register reads over pymodbus 3 (TCP or RTU); exception replies are values, not raises."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hub.errors import DeviceUnreachable, ProtocolError

if TYPE_CHECKING:
    from drivers.modbus_meter.poller import ModbusBusConfig


@dataclass(slots=True, frozen=True)
class ExceptionReply:
    """A Modbus exception response: the device answered, but not with data."""

    code: int


class BusUnreachable(DeviceUnreachable):
    """The bus itself (TCP gateway, serial port) is not reachable: no meter can be asked."""


class RegisterReader(Protocol):
    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        """One request; `timeout_s` (at most the bus's own) overrides the bus's timeout."""
        ...

    async def close(self) -> None: ...


def rtu_silence_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """The silence a Modbus RTU master keeps between a reply and its next request.

    Modbus over serial line v1.02, 2.5.1.1: frames are separated by at least 3.5 character times;
    above 19200 baud a fixed 1.75 ms is recommended. A character is start + data + parity + stop bits
    (8N1: 10 bits, so 3.65 ms at 9600 baud).
    """
    if baudrate > 19200:
        return 0.00175
    return 3.5 * rtu_char_s(baudrate, bytesize, parity, stopbits)


def rtu_char_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """One character on the line: start + data + parity + stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


def rtu_read_wire_s(char_s: float, count: int) -> float:
    """Line time of a register read: the 8-byte request, the reply (address, function, byte count,
    2 bytes per register, CRC) and the 3.5-character silence before the request."""
    return (8 + 5 + 2 * count + 3.5) * char_s


class BusSilence:
    """Keeps a serial bus quiet for `silence_s` after the last frame before the next request.

    Measured against the wall clock, not the hub's Clock: it is a property of the wire.
    """

    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self._quiet_until = 0.0

    async def wait(self) -> None:
        # asyncio's timers fire no earlier than their deadline (to the monotonic clock's resolution)
        if (left := self._quiet_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def frame_ended(self) -> None:
        """Call when a reply was received or given up on (a late reply may still be on the bus)."""
        self._quiet_until = time.monotonic() + self.silence_s


class PymodbusReader:
    """RegisterReader over pymodbus 3 async clients; one request at a time, no internal retries."""

    def __init__(self, cfg: ModbusBusConfig) -> None:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        # pymodbus logs an ERROR per unanswered request; the poller logs state changes instead.
        pymodbus_log = logging.getLogger("pymodbus.logging")
        if pymodbus_log.level == logging.NOTSET:
            pymodbus_log.setLevel(logging.CRITICAL)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        # TCP (and RTU-over-TCP gateways) pace their own serial side; only a local line needs it.
        self._silence = BusSilence(
            0.0
            if cfg.transport == "tcp"
            else rtu_silence_s(cfg.baudrate, cfg.bytesize, cfg.parity, cfg.stopbits)
        )
        if cfg.transport == "tcp":
            self._client = AsyncModbusTcpClient(
                cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0
            )
        else:
            self._client = AsyncModbusSerialClient(
                cfg.serial_port,
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                timeout=cfg.timeout_s,
                retries=0,
                reconnect_delay=0,
            )

    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        from pymodbus.exceptions import ConnectionException, ModbusException

        if not self._client.connected and not await self._client.connect():
            raise BusUnreachable("cannot open the Modbus bus")
        await self._silence.wait()
        if function == 3:
            pending = self._client.read_holding_registers(address, count=count, device_id=device_id)
        else:
            pending = self._client.read_input_registers(address, count=count, device_id=device_id)
        try:
            # A shorter timeout than the client's own cancels pymodbus's wait (no extra task).
            async with asyncio.timeout(timeout_s):
                reply = await pending
        except TimeoutError as exc:
            raise DeviceUnreachable(f"no reply within {timeout_s:.3f} s") from exc
        except ConnectionException as exc:
            raise BusUnreachable(str(exc)) from exc
        except ModbusException as exc:
            raise DeviceUnreachable(str(exc)) from exc
        finally:
            self._silence.frame_ended()
        if reply.isError():
            return ExceptionReply(int(getattr(reply, "exception_code", 0)))
        registers = list(reply.registers)
        if len(registers) != count:
            raise ProtocolError(f"asked {count} registers, got {len(registers)}")
        return registers

    async def close(self) -> None:
        self._client.close()
