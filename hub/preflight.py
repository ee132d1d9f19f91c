"""`hub check-config`: finds, all at once, what `hub run` would otherwise only hit at start-up.

Each problem names the config file, the line and the key it comes from, so that a config which
passes here does not send `hub run` into a restart loop (exit 2) under systemd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from hub.clock import SystemClock
from hub.config import HubConfig, env_secret, key_line, named_secrets
from hub.errors import ConfigError
from hub.registry.community import CommunityRegistry, CommunityRegistryConfig
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.source import SourceContext

COMMUNITY_FILES = ("households_csv", "meters_csv", "doors_csv")
MARITIME_FILES = ("vessels_csv", "zones_geojson")


@dataclass(slots=True)
class Findings:
    problems: list[str] = field(default_factory=list)  # `hub run` would refuse to start
    warnings: list[str] = field(default_factory=list)  # it starts, but skips something


def preflight(cfg: HubConfig, path: Path) -> Findings:
    found = Findings()
    _check_secrets(cfg, path, found)
    _check_sources(cfg, path, found)
    _check_registry(cfg, path, found)
    return found


def _where(path: Path, loc: tuple[str | int, ...]) -> str:
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return f"{path}{key_line(path, loc)}: {key}"


def _check_secrets(cfg: HubConfig, path: Path, found: Findings) -> None:
    for loc, env_name in named_secrets(cfg):
        try:
            env_secret(env_name, ".".join(loc))
        except ConfigError as exc:
            found.problems.append(f"{path}{key_line(path, loc)}: {exc}")


def _check_sources(cfg: HubConfig, path: Path, found: Findings) -> None:
    ctx = SourceContext(site=cfg.hub.site, clock=SystemClock(), data_dir=cfg.hub.data_dir)
    for index, source in enumerate(cfg.sources):
        try:
            source.build(ctx)  # building opens nothing; it checks what validation cannot
        except ConfigError as exc:
            found.problems.append(f"{_where(path, ('sources', index))} ({source.name}): {exc}")


def _check_registry(cfg: HubConfig, path: Path, found: Findings) -> None:
    """Each registry file on its own, so a problem names the key that points at it."""
    community, maritime = cfg.registry.community, cfg.registry.maritime
    for key in COMMUNITY_FILES:
        file = getattr(community, key)
        only = CommunityRegistryConfig(utc_offset_hours=community.utc_offset_hours, **{key: file})
        _check_file(path, ("registry", "community", key), file, found, partial(_community, only))
    for key in MARITIME_FILES:
        file = getattr(maritime, key)
        only_m = MaritimeRegistryConfig(sea_grid_id=maritime.sea_grid_id, **{key: file})
        _check_file(path, ("registry", "maritime", key), file, found, partial(_maritime, only_m))


def _community(cfg: CommunityRegistryConfig) -> int:
    """Load like the hub does; the number of rows it would skip."""
    return sum(CommunityRegistry(cfg).bad_rows.values())


def _maritime(cfg: MaritimeRegistryConfig) -> int:
    return len(MaritimeRegistry(cfg).problems)


def _check_file(
    path: Path,
    loc: tuple[str, ...],
    file: Path | None,
    found: Findings,
    load: Callable[[], int],
) -> None:
    if file is None:
        return
    where = _where(path, loc)
    if not file.is_file():
        found.problems.append(f"{where}: {file}: no such file")
        return
    try:
        bad = load()
    except ConfigError as exc:
        found.problems.append(f"{where}: {exc}")
        return
    if bad:
        found.warnings.append(f"{where}: {file}: {bad} invalid row(s) will be skipped")
