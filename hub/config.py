"""The hub's one TOML config file, validated once into typed, frozen objects.

Secrets never live in the file: it names environment variables (`token_env = "HUB_INFLUX_TOKEN"`)
whose values are read here into pydantic SecretStr, which prints as '**********'.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from hub.errors import ConfigError
from hub.fleet.settings import FleetSection
from hub.registry import DEFAULT_MAX_PUSH_BYTES
from hub.registry.community import CommunityRegistryConfig
from hub.registry.maritime import MaritimeRegistryConfig
from hub.rules.community.config import CommunityRulesConfig
from hub.rules.maritime.config import MaritimeRulesConfig
from hub.source import SourceConfig
from hub.wiring import SOURCE_TYPES, config_model


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def env_secret(env_name: str, what: str) -> SecretStr:
    """Read a secret from the environment variable the config names; ConfigError if it is
    unset, empty or only whitespace (an empty HMAC key or token is no secret at all)."""
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"{what}: environment variable {env_name} is not set")
    if not value.strip():
        raise ConfigError(f"{what}: environment variable {env_name} is empty")
    return SecretStr(value)


def optional_secret(env_name: str) -> SecretStr | None:
    return env_secret(env_name, env_name) if env_name else None


class HubSection(Section):
    site: str = Field(default="site-1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    data_dir: Path = Path("var")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "kv"] = "kv"
    # Salt for hashing card numbers and personal ids. Empty: a per-install salt file in data_dir.
    hash_salt_env: str = ""
    health_interval_s: float = Field(default=60.0, gt=0)
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)


class HttpSection(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Bearer token for the ingest and registry endpoints and for the status page's details
    # (alerts, vessels); empty: those endpoints are disabled and the page shows counts only.
    token_env: str = ""
    # POSTs (ingest, registry pushes, door events) handled at once; more get 503 + Retry-After.
    max_concurrent_ingest: int = Field(default=4, ge=1, le=256)


class OutboxSection(Section):
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    write_batch: int = Field(default=2000, ge=1)
    queue_batches: int = Field(default=256, ge=1)


class InfluxSection(Section):
    # v2: influxdb-client (InfluxDB 2.x/3.x, 1.8+ compat); v1: plain /write (InfluxDB 1.x);
    # local: an SQLite file in data_dir (the demo's store); none: readings stay in the outbox.
    api: Literal["v1", "v2", "local", "none"] = "local"
    url: str = "http://127.0.0.1:8086"
    database: str = "hub"
    retention_policy: str = ""
    username: str = ""
    password_env: str = ""
    org: str = ""
    bucket: str = "hub"
    token_env: str = ""
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _remote_needs_url(self) -> InfluxSection:
        if self.api in ("v1", "v2") and not re.match(r"^https?://", self.url):
            raise ValueError(f"url must start with http:// or https:// for api={self.api}")
        return self


class MqttSection(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = ""
    password_env: str = ""
    client_id: str = ""
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str = "hub"
    keepalive_s: int = Field(default=30, ge=5)
    publish_timeout_s: float = Field(default=10.0, gt=0)


class WebhookSection(Section):
    enabled: bool = False
    url: str = ""
    secret_env: str = "HUB_WEBHOOK_SECRET"
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _needs_url(self) -> WebhookSection:
        if self.enabled and not re.match(r"^https?://", self.url):
            raise ValueError("url must be set (http:// or https://) when the webhook is enabled")
        return self


class AlertsSection(Section):
    # An acknowledged alert that resolves is not raised again for the same subject within this.
    cooldown_minutes: float = Field(default=30.0, ge=0)
    tick_s: float = Field(default=5.0, gt=0)
    # Storm control, per rule: past either limit new subjects fold into one alert_storm alert.
    storm_max_new_per_minute: int = Field(default=100, ge=1)
    storm_max_open: int = Field(default=500, ge=1)
    storm_samples: int = Field(default=10, ge=0, le=100)
    storm_update_s: float = Field(default=60.0, gt=0)


class SourceSilentConfig(Section):
    enabled: bool = True
    default_timeout_s: float | None = Field(default=None, gt=0)


class RulesSection(Section):
    source_silent: SourceSilentConfig = SourceSilentConfig()
    community: CommunityRulesConfig = CommunityRulesConfig()
    maritime: MaritimeRulesConfig = MaritimeRulesConfig()


class RegistrySection(Section):
    community: CommunityRegistryConfig = CommunityRegistryConfig()
    maritime: MaritimeRegistryConfig = MaritimeRegistryConfig()
    reload_check_s: float = Field(default=5.0, gt=0)
    # A pushed registry body (MQTT or HTTP) larger than this is refused before it is parsed.
    max_push_bytes: int = Field(default=DEFAULT_MAX_PUSH_BYTES, ge=1024, le=64 * 1024 * 1024)


class HubConfig(Section):
    hub: HubSection = HubSection()
    http: HttpSection = HttpSection()
    outbox: OutboxSection = OutboxSection()
    influxdb: InfluxSection = InfluxSection()
    mqtt: MqttSection = MqttSection()
    webhook: WebhookSection = WebhookSection()
    alerts: AlertsSection = AlertsSection()
    rules: RulesSection = RulesSection()
    registry: RegistrySection = RegistrySection()
    fleet: FleetSection = FleetSection()
    # Validated per entry against the driver's own model (drivers/registry.py), not here.
    sources: list[SourceConfig] = []


def named_secrets(cfg: HubConfig) -> list[tuple[tuple[str, str], str]]:
    """(config key, environment variable) of every secret this config requires."""
    keys: list[tuple[tuple[str, str], str]] = [
        (("influxdb", "password_env"), cfg.influxdb.password_env),
        (("influxdb", "token_env"), cfg.influxdb.token_env),
        (("mqtt", "password_env"), cfg.mqtt.password_env),
        (("http", "token_env"), cfg.http.token_env),
        (("hub", "hash_salt_env"), cfg.hub.hash_salt_env),
    ]
    if cfg.webhook.enabled:
        keys.append((("webhook", "secret_env"), cfg.webhook.secret_env))
    return [(key, env) for key, env in keys if env]


# --- loading -----------------------------------------------------------------------------------


def load_config(path: str | Path) -> HubConfig:
    """Read, validate and resolve a config file; ConfigError names the file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> HubConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    raw_sources = raw.pop("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(f"{path}: 'sources' must be an array of tables ([[sources]])")
    problems: list[str] = []  # every bad entry is reported, not only the first
    sources: list[SourceConfig] = []
    for index, raw_source in enumerate(raw_sources):
        try:
            sources.append(_validate_source(index, raw_source, text, path))
        except ConfigError as exc:
            problems.append(str(exc))
    try:
        config = HubConfig.model_validate(raw)
    except ValidationError as exc:
        problems.insert(0, _describe(exc, text, path, ()))
    problems += _duplicate_names(raw_sources, text, path)
    if problems:
        raise ConfigError("\n".join(problems))
    config = config.model_copy(update={"sources": sources})
    resolved = _resolve_paths(config, path.parent.resolve())
    assert isinstance(resolved, HubConfig)
    return resolved


def _validate_source(index: int, raw: Any, text: str, path: Path) -> SourceConfig:
    loc: tuple[str | int, ...] = ("sources", index)
    if not isinstance(raw, dict) or "type" not in raw:
        line = _line_of(text, loc)
        raise ConfigError(f"{path}{line}: sources[{index}].type: missing (one of {_known()})")
    kind = raw["type"]
    if kind not in SOURCE_TYPES:
        line = _line_of(text, (*loc, "type"))
        raise ConfigError(
            f"{path}{line}: sources[{index}].type: unknown source type {kind!r} (known: {_known()})"
        )
    model = config_model(kind)
    try:
        source = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, text, path, loc)) from exc
    assert isinstance(source, SourceConfig)
    return source


def _duplicate_names(raw_sources: list[Any], text: str, path: Path) -> list[str]:
    names = [s.get("name") if isinstance(s, dict) else None for s in raw_sources]
    problems = []
    for index, name in enumerate(names):
        first = names.index(name)
        if name is not None and first != index:
            line = _line_of(text, ("sources", index, "name"))
            problems.append(
                f"{path}{line}: sources[{index}].name: {name!r} is already the name of "
                f"sources[{first}] (line {_line_of(text, ('sources', first, 'name'))[1:]}); "
                "names must be unique"
            )
    return problems


def key_line(path: Path, loc: tuple[str | int, ...]) -> str:
    """':LINE' of the key at `loc` in the config file ('' when it cannot be found)."""
    try:
        return _line_of(path.read_text(encoding="utf-8"), loc)
    except OSError:
        return ""


def _known() -> str:
    return ", ".join(sorted(SOURCE_TYPES))


def _describe(exc: ValidationError, text: str, path: Path, prefix: tuple[str | int, ...]) -> str:
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        key = _dotted(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see deploy/hub.example.toml)"
        lines.append(f"{path}{_line_of(text, loc)}: {key}: {msg}")
    return "\n".join(lines)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _line_of(text: str, loc: tuple[Any, ...]) -> str:
    """Best-effort ':LINE' of the key at `loc` in the TOML text ('' when not found)."""
    want = tuple(p for p in loc if not isinstance(p, int))
    want_index = next((p for p in loc if isinstance(p, int)), None)
    table: tuple[str, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    index: int | None = None
    best = ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = tuple(p.strip().strip('"') for p in header.group(2).split("."))
            if header.group(1) == "[[":
                array_counts[table] = array_counts.get(table, -1) + 1
                index = array_counts[table]
            if table == want[: len(table)] and (want_index is None or index == want_index):
                best = best or f":{lineno}"
                if table == want:
                    best = f":{lineno}"
            continue
        key = _KEY.match(line)
        matches_key = key is not None and (*table, key.group(1)) == want[: len(table) + 1]
        if matches_key and (want_index is None or index == want_index):
            return f":{lineno}"
    return best


def _resolve_paths(model: BaseModel, base: Path) -> BaseModel:
    """Make every relative Path in the config relative to the config file's directory."""
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            updates[name] = base / value
        elif isinstance(value, BaseModel):
            updates[name] = _resolve_paths(value, base)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [_resolve_paths(v, base) for v in value]
    return model.model_copy(update=updates)
