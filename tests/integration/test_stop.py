"""Hub.stop finishes and saves its state even while the MQTT client is stuck connecting."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from hub.app import Hub
from tests.hubtest import config
from tests.util import wait_for


async def test_stop_while_mqtt_is_connecting_to_a_silent_broker(tmp_path: Path) -> None:
    silent = socket.socket()  # accepts the TCP connection, never sends a CONNACK
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.setblocking(False)
    accepted: list[socket.socket] = []
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {silent.getsockname()[1]}
""",
    )
    hub = Hub(cfg)
    await hub.start()
    try:

        def connection_arrived() -> bool:
            try:
                accepted.append(silent.accept()[0])
            except BlockingIOError:
                return False
            return True

        await wait_for(connection_arrived, timeout=30, message="hub connecting to the broker")
        await asyncio.wait_for(hub.stop(flush_timeout_s=0), 60)
    finally:
        for conn in accepted:
            conn.close()
        silent.close()
    assert not hub.mqtt or not hub.mqtt.connected
