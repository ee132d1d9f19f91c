"""Alert latency: a door-forced event published to a real mosquitto -> the hub's alert at a real
subscriber of the same broker, p50/p99, idle and while the hub ingests AIS over UDP.

    .venv/bin/python bench/bench_latency.py [--alerts 1000] [--ais-rate 5000]

The hub is `hub.app.Hub` in its own process (door_mqtt source, MQTT alert publisher, durable
outbox, every maritime rule, `influxdb.api = "none"`); the AIS load comes from a third process
(bench_udp.py --send). Each event forces a different door, so each raises one `door_forced`
alert; latency = the subscriber's receive time - the publisher's send time (one clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.doors import SIM_MQTT_MAPPING, SimEvent, mqtt_payload  # noqa: E402


def hub_source(broker_port: int) -> str:
    events = ", ".join(f'"{k}" = "{v}"' for k, v in SIM_MQTT_MAPPING["event_map"].items())  # type: ignore[union-attr]
    keys = "".join(f'{k} = "{v}"\n' for k, v in SIM_MQTT_MAPPING.items() if isinstance(v, str))
    return (
        f"[mqtt]\nenabled = true\nport = {broker_port}\n"
        # Every forced door is its own subject: lift storm control above the run's alert count.
        "[alerts]\nstorm_max_new_per_minute = 1000000\nstorm_max_open = 1000000\n"
        '[[sources]]\ntype = "door_mqtt"\nname = "doors"\ntopics = ["doors/+/events"]\n'
        f"[sources.mapping]\n{keys}event_map = {{ {events} }}\n"
        '[[sources]]\ntype = "nmea_udp"\nname = "ais"\nbind_host = "127.0.0.1"\nbind_port = 0\n'
    )


def child(workdir: Path, broker_port: int) -> None:
    from bench.bench_ais import _hub_config
    from hub.app import Hub

    cfg = _hub_config(workdir, hub_source(broker_port))

    async def run() -> None:
        hub = Hub(cfg)
        await hub.start()
        udp: Any = hub.sources[1]
        await asyncio.wait_for(udp.bound.wait(), 30)
        print(json.dumps({"udp_port": udp.port}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        report = {"ais_lines": udp.stats.messages}
        await hub.stop(flush_timeout_s=0)
        print(json.dumps(report), flush=True)

    asyncio.run(run())


async def measure(broker_port: int, alerts: int, run: str) -> list[float]:
    sent: dict[str, float] = {}
    got: list[float] = []
    async with (
        aiomqtt.Client("127.0.0.1", broker_port) as sub,
        aiomqtt.Client("127.0.0.1", broker_port) as pub,
    ):
        await sub.subscribe("hub/+/alerts/door_forced", qos=1)
        await asyncio.sleep(1.0)  # the hub's door source subscribes after it connected

        async def receive() -> None:
            async for message in sub.messages:
                now = time.perf_counter()
                payload = bytes(message.payload) if isinstance(message.payload, bytes) else b""
                for door in list(sent):
                    if door.encode() in payload:
                        got.append(now - sent.pop(door))
                        break
                if len(got) >= alerts:
                    return

        reader = asyncio.create_task(receive())
        for i in range(alerts):
            door = f"{run}-door-{i:05d}"
            event = SimEvent(door=door, event="forced", time_ms=int(time.time() * 1000))
            sent[door] = time.perf_counter()
            await pub.publish(f"doors/{door}/events", mqtt_payload(event), qos=1)
            await asyncio.sleep(0.01)  # 100 alerts/s: latency, not throughput
        try:
            await asyncio.wait_for(reader, 60)
        except TimeoutError:
            reader.cancel()
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--ais-rate", type=int, default=5000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--broker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.broker)
        return
    from bench.bench_ais import SCENES, scene_toml
    from bench.profiling import command
    from tests.services import Mosquitto

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as name:
        tmp = Path(name)
        (tmp / "scene.toml").write_text(scene_toml(SCENES[1], tmp, 3000), "utf-8")
        (tmp / "hub").mkdir()
        (tmp / "mqtt").mkdir()
        broker = Mosquitto(tmp / "mqtt")
        broker.start()
        hub = subprocess.Popen(
            command(__file__, "--child", str(tmp / "hub"), "--broker", str(broker.port)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.stdin is not None and hub.stdout is not None
            udp_port = json.loads(hub.stdout.readline())["udp_port"]
            idle = asyncio.run(measure(broker.port, args.alerts, "idle"))
            seconds = args.alerts / 100 + 15
            load = subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "bench_udp.py"), "--send",
                 str(udp_port), "--rate", str(args.ais_rate), "--seconds", str(seconds)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert load.stdout is not None
            load.stdout.readline()  # "ready": its datagrams are generated, sending starts
            loaded = asyncio.run(measure(broker.port, args.alerts, "load"))
            load.terminate()
            load.wait(30)
            hub.stdin.write("done\n")
            hub.stdin.flush()
            ais = json.loads(hub.stdout.readline())["ais_lines"]
            hub.wait(60)
        finally:
            if hub.poll() is None:
                hub.kill()
            broker.stop()
    print(f"door_forced alerts at a mosquitto subscriber; AIS load {args.ais_rate:,} msg/s UDP")
    print(f"{'case':28} {'alerts':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for title, values in (("idle", idle), (f"ingesting {args.ais_rate:,} AIS msg/s", loaded)):
        if len(values) < 2:
            print(f"{title:28} {len(values):>7} (too few alerts arrived)")
            continue
        q = statistics.quantiles(values, n=100)
        print(
            f"{title:28} {len(values):>7} {q[49] * 1000:>7.1f} {q[98] * 1000:>7.1f} "
            f"{max(values) * 1000:>7.1f}"
        )
    print(f"(the hub took in {ais:,} AIS lines over UDP meanwhile)")


if __name__ == "__main__":
    main()
