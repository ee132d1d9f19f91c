"""Real services for integration tests: mosquitto, InfluxDB 1.6, VictoriaMetrics, socat ptys.

Each runs from its Debian package on a free loopback port in a temporary directory. When a binary
is missing the fixture fails (never skips): `make test` installs them.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.util import free_port, wait_for_sync


def require(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make test`, which installs it")
    return path


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Service:
    """A child process that can be stopped and started again on the same port and data dir."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.workdir / "service.log", "ab")  # noqa: SIM115 - child owns it
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_for_sync(
            lambda: self.ready() or self._died(), timeout=30, message=f"{type(self).__name__}"
        )
        if self._died():
            raise RuntimeError(
                f"{self.command()[0]} exited: {(self.workdir / 'service.log').read_text()[-2000:]}"
            )

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Mosquitto(Service):
    def __init__(self, workdir: Path, persistence: bool = False) -> None:
        super().__init__(workdir)
        self.port = free_port()
        # Run as ourselves: started as root, mosquitto would switch to a user that cannot
        # write the persistence file into our temp dir.
        conf = f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        if persistence:  # keeps sessions and queued QoS 1 messages across a restart
            conf += f"persistence true\npersistence_location {workdir}/\n"
        else:
            conf += "persistence false\n"
        (workdir / "mosq.conf").write_text(conf)

    def command(self) -> list[str]:
        return [require("mosquitto"), "-c", str(self.workdir / "mosq.conf")]

    def ready(self) -> bool:
        import socket

        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


class InfluxDB(Service):
    def __init__(self, workdir: Path, db: str = "hub") -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.db = db
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "influx.conf").write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[ifql]
  enabled = false
"""
        )

    def command(self) -> list[str]:
        return [require("influxd"), "-config", str(self.workdir / "influx.conf")]

    def ready(self) -> bool:
        return _http_status(f"{self.url}/ping") == 204

    def start(self) -> None:
        super().start()
        self.raw_query(f'CREATE DATABASE "{self.db}"')

    def raw_query(self, q: str, db: str | None = None) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL and return rows as dicts (with the series' tags merged in)."""
        result = self.raw_query(q, db=self.db)["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        rows: list[dict[str, Any]] = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags", {}))
                rows.append(row)
        return rows

    def create_database(self, name: str) -> InfluxDB:
        """A view of this server on another (new) database, so tests do not share data."""
        self.raw_query(f'CREATE DATABASE "{name}"')
        view = InfluxDB.__new__(InfluxDB)
        view.__dict__.update(self.__dict__)
        view.db = name
        return view


class VictoriaMetrics(Service):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            require("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir}/vm",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        return _http_status(f"{self.url}/health") == 200

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching a selector, one dict per series (metric labels, values, timestamps).

        New samples become searchable about a second after a forced flush: poll with wait_for."""
        _http_status(f"{self.url}/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as resp:
            return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


class PtyPair:
    """Two connected pseudo-terminals made by socat: a serial cable for tests."""

    def __init__(self, workdir: Path) -> None:
        self.a = str(workdir / "ttyA")
        self.b = str(workdir / "ttyB")
        self.proc = subprocess.Popen(
            [
                require("socat"),
                f"pty,raw,echo=0,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_sync(lambda: os.path.exists(self.a) and os.path.exists(self.b), timeout=10)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
