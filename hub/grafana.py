"""Load the Grafana dashboards in dashboards/ and push them to a Grafana server over its HTTP API."""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests.exceptions
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from hub.errors import ConfigError, HubError

log = logging.getLogger("hub.grafana")

# dashboards/ next to the hub package in a source checkout.
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "dashboards"
DATASOURCE_VAR = "${datasource}"


class GrafanaError(HubError):
    """Grafana answered with an error the push cannot get past."""


class GrafanaUnreachable(GrafanaError):
    """No answer from Grafana: connection refused, DNS, TLS or timeout."""


class GrafanaAuthError(GrafanaError):
    """Grafana refused the credentials (401) or their permissions (403)."""


@dataclass(slots=True, frozen=True, kw_only=True)
class Pushed:
    title: str
    uid: str
    url: str
    folder_uid: str


def default_dir() -> Path:
    """The checkout's dashboards/, else the installed ones: install.sh puts them beside the
    virtualenvs (/opt/harbourgrid/dashboards next to /opt/harbourgrid/venv-<version>)."""
    installed = Path(sys.prefix).resolve().parent / "dashboards"
    return DEFAULT_DIR if DEFAULT_DIR.is_dir() or not installed.is_dir() else installed


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """Every *.json dashboard in `directory`, sorted by file name; ConfigError when invalid."""
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: no such dashboards directory (pass DIR, e.g. /opt/harbourgrid/dashboards)"
        )
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConfigError(f"{directory}: no *.json dashboards")
    return [_load_one(path) for path in files]


def _load_one(path: Path) -> dict[str, Any]:
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON dashboard: {exc}") from exc
    if not isinstance(dashboard, dict) or not dashboard.get("uid") or "panels" not in dashboard:
        raise ConfigError(f"{path}: a dashboard needs a 'uid' and 'panels'")
    return dashboard


def with_datasource(dashboard: dict[str, Any], uid: str) -> dict[str, Any]:
    """A copy whose `${datasource}` references all name the datasource `uid`."""
    out = copy.deepcopy(dashboard)
    _replace_ds(out, uid)
    for var in out.get("templating", {}).get("list", []):
        if var.get("type") == "datasource" and var.get("name") == "datasource":
            var["current"] = {"selected": True, "text": uid, "value": uid}
    return out


def _replace_ds(node: Any, uid: str) -> None:
    if isinstance(node, dict):
        if node.get("uid") == DATASOURCE_VAR and node.get("type") == "influxdb":
            node["uid"] = uid
        for value in node.values():
            _replace_ds(value, uid)
    elif isinstance(node, list):
        for value in node:
            _replace_ds(value, uid)


def iter_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel or variable title, raw InfluxQL) of every query in a dashboard, rows included."""
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("query"):
                yield str(panel.get("title", "")), str(target["query"])
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query
            yield f"${var.get('name')}", str(text)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def redact_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def push_dashboards(
    url: str,
    token: str | None,
    dashboards: list[dict[str, Any]],
    folder: str,
    timeout_s: float = 10.0,
) -> list[Pushed]:
    """Create `folder` when missing and create or overwrite each dashboard in it."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Grafana URL must start with http:// or https://: {redact_url(url)}")
    # grafana-client's element methods are untyped: use the API object as Any.
    api: Any = GrafanaApi.from_url(url, credential=token or None, timeout=timeout_s)
    where = redact_url(url)
    try:
        folder_uid = _ensure_folder(api, folder)
        return [_push_one(api, dashboard, folder_uid) for dashboard in dashboards]
    except GrafanaUnauthorizedError as exc:
        raise GrafanaAuthError(
            f"Grafana at {where} refused the credentials (401 Unauthorized): "
            "check the service-account token"
        ) from exc
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise GrafanaAuthError(
                f"Grafana at {where}: 403 Forbidden — the token needs the Editor role"
            ) from exc
        raise GrafanaError(f"Grafana at {where}: {exc.message}") from exc
    except GrafanaTimeoutError as exc:
        raise GrafanaUnreachable(f"Grafana at {where}: no answer within {timeout_s:g} s") from exc
    except (niquests.exceptions.RequestException, GrafanaException) as exc:
        if isinstance(exc, GrafanaException) and exc.status_code:
            raise GrafanaError(f"Grafana at {where}: {exc.message}") from exc
        raise GrafanaUnreachable(f"Grafana at {where} is unreachable: {_reason(exc)}") from exc


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _reason(exc: Exception) -> str:
    """The OS-level reason (connection refused, unknown host) out of the wrapped error text."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    if "NameResolutionError" in text or "Failed to resolve" in text:
        return "host name does not resolve"
    return type(exc).__name__


def _ensure_folder(api: Any, title: str) -> str:
    for folder in api.folder.get_all_folders():
        if folder.get("title") == title:
            return str(folder["uid"])
    created = api.folder.create_folder(title)
    log.info("created Grafana folder %r (uid %s)", title, created.get("uid"))
    return str(created["uid"])


def _push_one(api: Any, dashboard: dict[str, Any], folder_uid: str) -> Pushed:
    body = {**dashboard, "id": None}
    answer = api.dashboard.update_dashboard(
        {
            "dashboard": body,
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "pushed by hub dashboards push",
        }
    )
    pushed = Pushed(
        title=str(dashboard.get("title", "")),
        uid=str(answer.get("uid", dashboard["uid"])),
        url=str(answer.get("url", "")),
        folder_uid=folder_uid,
    )
    log.info("pushed dashboard %r (uid %s)", pushed.title, pushed.uid)
    return pushed
