"""The `hub` command: run, check-config, doctor, demo, replay, dead-letters, dashboards."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hub import __version__
from hub.config import HubConfig, load_config
from hub.errors import ConfigError, HubError
from hub.fleet import cli as fleet_cli
from hub.logs import setup_logging

log = logging.getLogger("hub.cli")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"hub: configuration error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HubError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Harbourgrid IoT sensor hub")
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the hub")
    run.add_argument("--config", "-c", required=True, type=Path)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path)
    check.add_argument("--connect", action="store_true", help="also try to reach InfluxDB and MQTT")
    check.set_defaults(func=cmd_check_config)

    doctor = sub.add_parser("doctor", help="say what is wrong with this gateway's setup")
    doctor.add_argument("--config", "-c", required=True, type=Path)
    doctor.set_defaults(func=cmd_doctor)

    modbus = sub.add_parser("modbus", help="Modbus meter tools")
    modbus_sub = modbus.add_subparsers(dest="modbus_command", required=True)
    probe = modbus_sub.add_parser(
        "probe", help="read each meter under both register address bases, say which is plausible"
    )
    probe.add_argument("--config", "-c", required=True, type=Path)
    probe.add_argument("--source", help="only this modbus source (bus)")
    probe.add_argument("--meter", action="append", default=[], help="only this meter id")
    probe.set_defaults(func=cmd_modbus_probe)

    demo = sub.add_parser("demo", help="run simulators through the hub, print alerts")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    demo.add_argument("--speed", type=float, default=120.0, help="clock acceleration factor")
    demo.add_argument("--port", type=int, default=8080, help="status page port (0: any free)")
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="feed a recorded file through the pipeline and flush")
    replay.add_argument("--config", "-c", required=True, type=Path)
    replay.add_argument("input", type=Path, help=".nmea/.txt/.log (NMEA 0183) or .jsonl (records)")
    replay.add_argument("--batch", type=int, default=2000)
    replay.set_defaults(func=cmd_replay)

    _dead_letter_parser(sub)

    dashboards = sub.add_parser("dashboards", help="Grafana dashboards")
    dash_sub = dashboards.add_subparsers(dest="dashboards_command", required=True)
    push = dash_sub.add_parser("push", help="create or overwrite the dashboards in Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--token-env", default="GRAFANA_TOKEN", help="env var with the API token")
    push.add_argument("--folder", default="Harbourgrid", help="Grafana folder (created if missing)")
    push.add_argument("--datasource-uid", default="", help="InfluxDB datasource uid to pin")
    push.add_argument("dir", nargs="?", type=Path, default=None, help="dashboards directory")
    push.set_defaults(func=cmd_dashboards_push)
    fleet_cli.add_parser(sub)
    return parser


def _dead_letter_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", required=True, type=Path)
    common.add_argument("--destination", help="only this sink or publisher (influxdb, mqtt ...)")
    common.add_argument(
        "--since", type=_since_ns, help="only items refused since T (ISO 8601, or 30m, 2h, 7d ago)"
    )
    dead = sub.add_parser("dead-letters", help="list, requeue or purge items refused for good")
    actions = dead.add_subparsers(dest="dead_letters_command", required=True)
    for name, text in (
        ("list", "show the dead letters"),
        ("requeue", "put them back in the outbox, to be sent again"),
        ("purge", "delete them"),
    ):
        actions.add_parser(name, parents=[common], help=text).set_defaults(func=cmd_dead_letters)


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since_ns(text: str) -> int:
    import datetime as dt
    import time

    if text[-1:] in _UNITS_S and text[:-1].replace(".", "", 1).isdigit():
        return time.time_ns() - int(float(text[:-1]) * _UNITS_S[text[-1]] * 1e9)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an ISO 8601 time (2026-12-01T08:00Z) or an age (30m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1e9)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """Dead letters live in the outbox file; this works whether or not the hub is running."""
    import datetime as dt

    from hub.outbox import DeadLetters

    cfg = load_config(args.config)
    path = cfg.hub.data_dir / "outbox.sqlite"
    if not path.exists():
        raise HubError(f"{path}: no outbox yet (the hub has not run with this data_dir)")
    store = DeadLetters(path)
    try:
        if args.dead_letters_command == "list":
            items = store.entries(args.destination, args.since)
            for item in items:
                at = dt.datetime.fromtimestamp(item.at_ns / 1e9, dt.UTC).isoformat(
                    timespec="seconds"
                )
                payload = item.payload.decode(errors="replace").replace("\n", "\\n")
                print(f"{item.id}\t{at}\t{item.destination}\t{item.reason}\t{payload[:300]}")
            print(f"{len(items)} dead letter(s)", file=sys.stderr)
        elif args.dead_letters_command == "requeue":
            moved = store.requeue(args.destination, args.since)
            print(f"requeued {moved} dead letter(s); the hub sends them with its next batch")
        else:
            print(f"purged {store.purge(args.destination, args.since)} dead letter(s)")
    finally:
        store.close()
    return EXIT_OK


def _setup_logs(cfg: HubConfig, level: str | None = None) -> None:
    setup_logging(level or cfg.hub.log_level, cfg.hub.log_format)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    from hub.preflight import preflight

    found = preflight(cfg, args.config)  # secrets, sources, registry files: all, not the first
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if found.problems:
        raise ConfigError("\n".join(found.problems))
    print(
        f"{args.config}: ok — site {cfg.hub.site}, {len(cfg.sources)} source(s), "
        f"influxdb api={cfg.influxdb.api}, mqtt={'on' if cfg.mqtt.enabled else 'off'}, "
        f"webhook={'on' if cfg.webhook.enabled else 'off'}"
    )
    if args.connect:
        from hub.doctor import check_connections

        problems = asyncio.run(check_connections(cfg))
        for problem in problems:
            print(f"connection check failed: {problem}", file=sys.stderr)
        return EXIT_UNREACHABLE if problems else EXIT_OK
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every check on one line, OK or FAIL; exit 0 only when all pass."""
    from hub.app import read_secrets
    from hub.doctor import Check, check_connections, local_checks, registry_checks

    cfg = load_config(args.config)
    checks = [Check(True, f"config {args.config}", f"site {cfg.hub.site}")]
    try:
        read_secrets(cfg)
        checks.append(Check(True, "secrets from the environment"))
    except ConfigError as exc:
        checks.append(Check(False, "secrets from the environment", str(exc)))
    checks += local_checks(cfg) + registry_checks(cfg)
    unreachable = asyncio.run(check_connections(cfg))
    checks += [Check(False, "connection", problem) for problem in unreachable]
    if not unreachable:
        checks.append(Check(True, "InfluxDB / MQTT reachable (where configured)"))
    for check in checks:
        detail = f" — {check.detail}" if check.detail else ""
        print(f"{'OK  ' if check.ok else 'FAIL'}  {check.what}{detail}")
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} ok, {failed} failing")
    return EXIT_OK if failed == 0 else EXIT_ERROR


def cmd_modbus_probe(args: argparse.Namespace) -> int:
    """One line per meter; exit 0 only when every meter reads plausibly at its declared base."""
    from hub.wiring import tool

    probe_sources = tool("modbus_probe")
    cfg = load_config(args.config)
    setup_logging("warning", "kv")
    results = asyncio.run(probe_sources(cfg.sources, args.source, args.meter))
    for result in results:
        print(f"{'OK  ' if result.ok else 'FAIL'}  {result.summary()}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_ERROR


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    _setup_logs(cfg, args.log_level)
    return asyncio.run(_run(cfg, args.config))


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM/SIGINT, installed before anything starts: a stop that arrives
    while the hub is still starting is honoured once it has started, never a kill mid-way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run(cfg: HubConfig, config_path: Path) -> int:
    from hub.doctor import check_connections
    from hub.fleet.supervisor import run_supervised

    stop = _stop_on_signals()
    for problem in await check_connections(cfg, mqtt=False):
        log.warning(
            "%s — the hub starts anyway and buffers in the outbox until it is reachable", problem
        )
    # Restarts in-process when a signed remote config is applied (hub/fleet/supervisor.py).
    return await run_supervised(config_path, cfg, stop)


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging("warning", "kv")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_demo(args))
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from hub.wiring import demo_runner

    run_demo = demo_runner()
    return await run_demo(args.duration, args.speed, args.port, stop=_stop_on_signals())


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    _setup_logs(cfg)
    if not args.input.exists():
        raise HubError(f"{args.input}: no such file")
    from hub.replay import replay

    return asyncio.run(replay(cfg, args.input, args.batch))


def cmd_dashboards_push(args: argparse.Namespace) -> int:
    import os

    from hub.grafana import (
        GrafanaAuthError,
        GrafanaUnreachable,
        default_dir,
        load_dashboards,
        push_dashboards,
        with_datasource,
    )

    setup_logging("warning", "kv")
    dashboards = load_dashboards(args.dir or default_dir())
    if args.datasource_uid:
        dashboards = [with_datasource(d, args.datasource_uid) for d in dashboards]
    token = os.environ.get(args.token_env, "")
    try:
        pushed = push_dashboards(args.url, token, dashboards, args.folder)
    except GrafanaAuthError as exc:
        print(f"hub: {exc} (token from ${args.token_env})", file=sys.stderr)
        return EXIT_CONFIG
    except GrafanaUnreachable as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    for item in pushed:
        print(f"pushed {item.title!r} (uid {item.uid}) to folder {args.folder!r}: {item.url}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
