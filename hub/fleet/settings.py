"""The `[fleet]` config section."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class FleetSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Presence (retained hub/{site}/status + last will) needs only mqtt.enabled.
    status_interval_s: float = Field(default=60.0, ge=1)
    # Remote configuration and upgrades are accepted only when this is on and keys are installed.
    remote_control: bool = False
    trusted_keys_dir: Path = Path("/etc/harbourgrid/trusted_keys")
    # A new config must bring the hub up with MQTT connected within this, else it is rolled back.
    apply_timeout_s: float = Field(default=120.0, gt=0)
    upgrade_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(default=600.0, gt=0)
    # Empty (the default): hand the verified bundle over to the root-side installer
    # (deploy/harbourgrid-upgrade.path runs `hub fleet install-request`, which verifies again).
    # Otherwise an argv run by the hub itself; {bundle_dir}, {bundle}, {version} expand.
    install_command: list[str] = []
