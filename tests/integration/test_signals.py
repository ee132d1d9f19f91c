"""SIGTERM at any moment stops `hub run` and `hub demo` cleanly (issue 9 item 15)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.util import wait_for_sync


def test_sigterm_during_startup_stops_the_hub_cleanly(tmp_path: Path) -> None:
    """An InfluxDB that accepts the connection and never answers holds `hub run` in its start-up
    check; a SIGTERM that arrives there must give a clean stop (exit 0), not a kill."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(60)
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        f"""
[hub]
site = "sig"
data_dir = "{tmp_path / "data"}"
[http]
port = 0
[influxdb]
api = "v1"
url = "http://127.0.0.1:{silent.getsockname()[1]}"
database = "hub"
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        conn, _ = silent.accept()  # the hub is inside its start-up check now
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        conn.close()
    finally:
        silent.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


def _socat_children_of(workdir: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "socat" in cmdline and workdir in cmdline:
            pids.append(int(entry.name))
    return pids


def test_sigterm_stops_the_demo_and_cleans_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    workdir = ""
    try:
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"serial pty (\S+)/ttyHub", line)
            if found:
                workdir = found.group(1)
            if "alerts print below" in line:
                break
        assert workdir, "".join(lines)
        assert Path(workdir).is_dir()
        assert _socat_children_of(workdir)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "demo finished" in output
    assert "Traceback" not in output
    assert not Path(workdir).exists()
    wait_for_sync(lambda: not _socat_children_of(workdir), timeout=10, message="socat gone")
