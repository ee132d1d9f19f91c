"""`hub dashboards push` against a stand-in Grafana.

No Grafana server can be installed on this machine (see /work/shared/TESTING.md), so these tests
run the real grafana-client over real HTTP against a small aiohttp server implementing the
endpoints it calls: GET/POST /api/folders and POST /api/dashboards/db, with a bearer-token check
that answers 401 like Grafana does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.cli import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE
from hub.grafana import DATASOURCE_VAR, DEFAULT_DIR, load_dashboards
from tests.util import free_port

TOKEN = "glsa_test-token-0123456789"


@dataclass
class FakeGrafana:
    url: str = ""
    folders: list[dict[str, Any]] = field(default_factory=list)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth_headers: list[str] = field(default_factory=list)
    folders_created: int = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/folders", self._list_folders)
        app.router.add_post("/api/folders", self._create_folder)
        app.router.add_post("/api/dashboards/db", self._save_dashboard)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        self.auth_headers.append(header)
        if header != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _list_folders(self, request: web.Request) -> web.Response:
        return web.json_response(self.folders)

    async def _create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        folder = {"id": len(self.folders) + 1, "uid": f"f{len(self.folders) + 1}", **body}
        self.folders.append(folder)
        self.folders_created += 1
        return web.json_response(folder)

    async def _save_dashboard(self, request: web.Request) -> web.Response:
        body = await request.json()
        board = body["dashboard"]
        if not body.get("overwrite") and board["uid"] in self.dashboards:
            return web.json_response({"message": "version-mismatch"}, status=412)
        self.dashboards[board["uid"]] = body
        return web.json_response(
            {"id": 1, "uid": board["uid"], "url": f"/d/{board['uid']}/x", "status": "success"}
        )


@pytest.fixture
async def grafana() -> AsyncIterator[FakeGrafana]:
    fake = FakeGrafana()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


async def hub_cli(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    """Run `hub dashboards push ARGS` as a separate process; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_TOKEN"}
    if token is not None:
        env["GRAFANA_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "dashboards",
        "push",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_push_creates_folder_and_pins_the_datasource(grafana: FakeGrafana) -> None:
    code, out, err = await hub_cli("--url", grafana.url, "--datasource-uid", "influx-main")
    assert code == EXIT_OK, err
    assert [f["title"] for f in grafana.folders] == ["Harbourgrid"]
    expected = {d["uid"] for d in load_dashboards(DEFAULT_DIR)}
    assert set(grafana.dashboards) == expected
    for body in grafana.dashboards.values():
        assert body["folderUid"] == "f1" and body["overwrite"] is True
        board = body["dashboard"]
        assert board["id"] is None
        assert DATASOURCE_VAR not in json.dumps(board), "datasource variable left in place"
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "influxdb", "uid": "influx-main"}
            assert all(t["datasource"]["uid"] == "influx-main" for t in panel["targets"])
        (ds_var,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert ds_var["current"]["value"] == "influx-main"
    assert set(grafana.auth_headers) == {f"Bearer {TOKEN}"}
    assert "pushed 'Harbourgrid — maritime'" in out
    assert TOKEN not in out + err


async def test_push_again_reuses_the_folder_and_overwrites(grafana: FakeGrafana) -> None:
    for _ in range(2):
        code, _out, err = await hub_cli("--url", grafana.url, "--folder", "Sea grid")
        assert code == EXIT_OK, err
    assert grafana.folders_created == 1 and len(grafana.dashboards) == 3
    board = grafana.dashboards["harbourgrid-maritime"]["dashboard"]
    # Without --datasource-uid the dashboards keep their datasource picker.
    assert board["panels"][0]["datasource"]["uid"] == DATASOURCE_VAR


async def test_push_a_directory_of_one_dashboard(grafana: FakeGrafana, tmp_path: Path) -> None:
    (tmp_path / "only.json").write_text((DEFAULT_DIR / "gateway_health.json").read_text())
    code, _out, err = await hub_cli("--url", grafana.url, str(tmp_path))
    assert code == EXIT_OK, err
    assert list(grafana.dashboards) == ["harbourgrid-gateway-health"]


async def test_wrong_token_is_a_clear_error(grafana: FakeGrafana) -> None:
    code, _out, err = await hub_cli("--url", grafana.url, token="wrong-secret-value")
    assert code == EXIT_CONFIG
    assert "401" in err and "GRAFANA_TOKEN" in err and grafana.url in err
    assert "wrong-secret-value" not in err
    assert "Traceback" not in err
    assert grafana.dashboards == {}


async def test_missing_token_is_refused_by_grafana(grafana: FakeGrafana) -> None:
    code, _out, err = await hub_cli("--url", grafana.url, "--token-env", "NO_SUCH_VAR", token=None)
    assert code == EXIT_CONFIG and "NO_SUCH_VAR" in err
    assert grafana.auth_headers == [""]


async def test_unreachable_grafana_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _out, err = await hub_cli("--url", url)
    assert code == EXIT_UNREACHABLE
    assert "unreachable" in err and url in err and "Traceback" not in err


async def test_bad_dashboard_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    code, _out, err = await hub_cli("--url", "http://127.0.0.1:9", str(tmp_path))
    assert code == EXIT_CONFIG and "broken.json" in err
