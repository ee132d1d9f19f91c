"""`hub fleet …`: the platform-side tools — keys, signing, and a table of gateways."""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from hub.errors import HubError
from hub.fleet.documents import build_config_payload, build_manifest_payload
from hub.fleet.presence import format_table, gateway_row

# The crypto and MQTT libraries are imported by the commands that use them: `hub run` builds
# this parser too, and a running hub should not carry them for nothing (RSS).

MAX_GATEWAYS = 100_000


def add_parser(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="platform-side fleet tools (keys, signing, status)")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)

    keygen = fleet_sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    keygen.add_argument("--dir", type=Path, default=Path("."), help="where NAME.key/.pub go")
    keygen.add_argument("--name", default="platform")
    keygen.set_defaults(func=cmd_keygen)

    config = fleet_sub.add_parser("sign-config", help="sign DIR/hub.toml + registry files")
    config.add_argument("dir", type=Path)
    config.add_argument("--key", type=Path, required=True, help="private key (PEM)")
    config.add_argument("--site", required=True)
    config.add_argument("--version", type=int, required=True, help="must grow with every push")
    config.add_argument("--out", "-o", type=Path, help="write here instead of stdout")
    config.add_argument("--env-file", type=Path, help="NAME=VALUE secrets to seal to the gateway")
    config.add_argument("--gateway-key", help="the gateway's env_public_key (from its status)")
    config.set_defaults(func=cmd_sign_config)

    upgrade = fleet_sub.add_parser("sign-upgrade", help="sign an upgrade manifest for a bundle")
    upgrade.add_argument("bundle", type=Path)
    upgrade.add_argument("--url", required=True, help="where gateways download the bundle")
    upgrade.add_argument("--key", type=Path, required=True)
    upgrade.add_argument("--version", required=True, help="hub version inside the bundle")
    upgrade.add_argument("--allow-downgrade", action="store_true")
    upgrade.add_argument("--site", action="append", default=[], help="limit to site (repeat)")
    upgrade.add_argument("--out", "-o", type=Path)
    upgrade.set_defaults(func=cmd_sign_upgrade)

    request = fleet_sub.add_parser(
        "install-request", help="(root, on a gateway) verify and install a handed-over bundle"
    )
    request.add_argument("request", type=Path)
    request.add_argument("--trusted-keys", type=Path, default=Path("/etc/harbourgrid/trusted_keys"))
    request.set_defaults(func=cmd_install_request)

    status = fleet_sub.add_parser("status", help="table of gateways from retained status topics")
    status.add_argument("--broker", required=True, help="host or host:port")
    status.add_argument("--prefix", default="hub")
    status.add_argument("--username", default="")
    status.add_argument("--password-env", default="", help="env var holding the password")
    status.add_argument("--ca-file", type=Path, help="use TLS, trusting this CA")
    status.add_argument("--wait", type=float, default=3.0, help="longest time to collect, s")
    status.add_argument("--json", action="store_true", help="print the documents as JSON lines")
    status.set_defaults(func=cmd_status)


def _emit(data: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(data + b"\n")
    else:
        out.write_bytes(data)


def cmd_keygen(args: argparse.Namespace) -> int:
    from hub.fleet.signing import generate_keypair

    key_path, pub_path = generate_keypair(args.dir, args.name)
    print(f"private key {key_path} (keep it off the gateways), public key {pub_path}")
    print("install the .pub on each gateway in /etc/harbourgrid/trusted_keys/")
    return 0


def cmd_sign_config(args: argparse.Namespace) -> int:
    from hub.fleet.sealed import aad, parse_env, seal
    from hub.fleet.signing import key_id, load_private_key, sign_envelope

    key = load_private_key(args.key)
    env = None
    if args.env_file is not None:
        if not args.gateway_key:
            raise HubError("--env-file needs --gateway-key (env_public_key in the gateway status)")
        text = args.env_file.read_text(encoding="utf-8")
        parse_env(text)  # refuse to seal what the gateway would reject
        env = seal(args.gateway_key, text.encode(), aad(args.site, args.version))
    payload = build_config_payload(args.dir, args.site, args.version, env)
    _emit(sign_envelope(key, payload), args.out)
    print(
        f"signed config v{args.version} for {args.site} with key {key_id(key.public_key())}; "
        f"publish to hub/{args.site}/config/set",
        file=sys.stderr,
    )
    return 0


def cmd_sign_upgrade(args: argparse.Namespace) -> int:
    from hub.fleet.signing import load_private_key, sign_envelope

    key = load_private_key(args.key)
    payload = build_manifest_payload(
        args.bundle,
        args.url,
        args.version,
        allow_downgrade=args.allow_downgrade,
        sites=args.site,
    )
    _emit(sign_envelope(key, payload), args.out)
    print(f"signed upgrade manifest for {args.version}", file=sys.stderr)
    return 0


def cmd_install_request(args: argparse.Namespace) -> int:
    from hub.fleet.signing import load_trusted_keys
    from hub.fleet.upgrade import run_install_request

    if not args.request.exists():
        return 0  # the path unit fired for a request another run already took
    return run_install_request(args.request, load_trusted_keys(args.trusted_keys))


def cmd_status(args: argparse.Namespace) -> int:
    import os

    host, _, port = args.broker.partition(":")
    password = os.environ.get(args.password_env) if args.password_env else None
    tls = ssl.create_default_context(cafile=str(args.ca_file)) if args.ca_file else None
    default_port = 8883 if tls else 1883
    docs = asyncio.run(
        collect_status(
            host, int(port or default_port), args.prefix, args.username, password, args.wait, tls
        )
    )
    if args.json:
        for doc in docs:
            print(json.dumps(doc))
        return 0
    rows = [gateway_row(doc, time.time()) for doc in docs]
    print(format_table(rows))
    stale = sum(r.stale for r in rows)
    offline = sum(r.state != "online" for r in rows)
    print(f"{len(rows)} gateway(s), {offline} offline, {stale} stale")
    return 0


async def collect_status(
    host: str,
    port: int,
    prefix: str,
    username: str,
    password: str | None,
    wait_s: float,
    tls: ssl.SSLContext | None = None,
) -> list[dict[str, Any]]:
    """Retained status documents, one per site; stops when the broker goes quiet or at wait_s."""
    import aiomqtt

    found: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(
        host, port, username=username or None, password=password, tls_context=tls
    ) as client:
        await client.subscribe(f"{prefix}/+/status", qos=1)
        deadline = time.monotonic() + wait_s
        while len(found) < MAX_GATEWAYS:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                # Retained messages come right after the SUBACK; a short silence means all came.
                message = await asyncio.wait_for(anext(client.messages), min(left, 1.0))
            except TimeoutError:
                break
            try:
                doc = json.loads(bytes(message.payload) if message.payload else b"")
            except (TypeError, ValueError):
                continue
            if isinstance(doc, dict):
                found[str(message.topic)] = doc
    return list(found.values())
