"""Register reads over pymodbus 3 (TCP or RTU); exception replies are values, not raises."""

from __future__ import annotations

import logging
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
        self, function: int, address: int, count: int, device_id: int
    ) -> list[int] | ExceptionReply: ...

    async def close(self) -> None: ...


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
        self, function: int, address: int, count: int, device_id: int
    ) -> list[int] | ExceptionReply:
        from pymodbus.exceptions import ConnectionException, ModbusException

        if not self._client.connected and not await self._client.connect():
            raise BusUnreachable("cannot open the Modbus bus")
        try:
            if function == 3:
                reply = await self._client.read_holding_registers(
                    address, count=count, device_id=device_id
                )
            else:
                reply = await self._client.read_input_registers(
                    address, count=count, device_id=device_id
                )
        except ConnectionException as exc:
            raise BusUnreachable(str(exc)) from exc
        except ModbusException as exc:
            raise DeviceUnreachable(str(exc)) from exc
        if reply.isError():
            return ExceptionReply(int(getattr(reply, "exception_code", 0)))
        registers = list(reply.registers)
        if len(registers) != count:
            raise ProtocolError(f"asked {count} registers, got {len(registers)}")
        return registers

    async def close(self) -> None:
        self._client.close()
