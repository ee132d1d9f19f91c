"""A hub day with an open alert from every rule, in two phases, for the rule-state upgrade test.

Phase 1 opens an episode in each rule (community, maritime, source_silent); phase 2 carries on and
resolves them all. Between the two the engine's state is persisted (rule states and alert states,
as the outbox keeps them) and restored into a new engine.

Run as a script with the hub of another commit first on the path, it writes that hub's persisted
state after phase 1: tests/data/rule_state/v0_state.json was made so, by the hub of commit 89c8808
(rule states as untyped dicts, before typed state), with

    git worktree add --detach /tmp/old 89c8808 && python3 -m venv /tmp/old/.venv
    /tmp/old/.venv/bin/pip install -e /tmp/old
    /tmp/old/.venv/bin/python tests/rule_state_scenario.py tests/data/rule_state/v0_state.json

It uses only what both hubs have: Engine(rules, alerts), on_records, on_tick, snapshot, restore.

With `--outbox PATH` it writes phase 1 into an outbox file instead, as that hub's `hub run` leaves
it: each step committed (AlertBatch.fill into a Commit), then the hub's save at stop when it has
one (`Outbox.save_rule_state`). tests/data/rule_state/main_outbox.sqlite was made so, by the hub
of commit 6212552 (one JSON text per rule in the `rule_state` table), with
`git archive 6212552 | tar -x -C /tmp/base` and

    PYTHONPATH=/tmp/base python tests/rule_state_scenario.py --outbox \
        tests/data/rule_state/main_outbox.sqlite
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from hub.alerts import AlertManager
from hub.engine import AlertBatch, Engine
from hub.records import (
    DoorEvent,
    MeterAlarm,
    Record,
    VesselPosition,
    VesselStatic,
    WaterMeterReading,
)
from hub.registry.community import CommunityRegistry, CommunityRegistryConfig
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules.community import CommunityRulesConfig, build_community_rules
from hub.rules.core import SourceSilent
from hub.rules.maritime import MaritimeRulesConfig, build_maritime_rules

DATA = Path(__file__).parent / "data"
NS = 1_000_000_000
T0 = int(dt.datetime(2026, 6, 1, 6, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()) * NS
SEA = (30.0, 122.3)
RESTRICTED = (30.075, 122.44)  # in the sea grid and the cable zone
OUTSIDE = (30.3, 122.3)
STRANGER = "412000123"  # not whitelisted
FERRY = "413801234"  # whitelisted passenger ship
FISHER = "412401001"  # whitelisted, registry type fishing
JUMPER = "412000456"
PLACEHOLDER = "123456789"
PHASE1_MIN = 150
PHASE2_MIN = 100


class Scenario:
    def __init__(self) -> None:
        self.community = CommunityRegistry(
            CommunityRegistryConfig(
                households_csv=DATA / "community" / "households.csv",
                meters_csv=DATA / "community" / "meters.csv",
                doors_csv=DATA / "community" / "doors.csv",
            )
        )
        self.maritime = MaritimeRegistry(
            MaritimeRegistryConfig(
                vessels_csv=DATA / "maritime" / "vessels.csv",
                zones_geojson=DATA / "maritime" / "zones.geojson",
            )
        )
        self.alert_state: dict[str, Any] = {}
        self.changes: list[tuple[int, str, str, str, str]] = []

    def engine(self) -> Engine:
        cfg = CommunityRulesConfig.model_validate(
            {
                "elder_no_water": {"warn_hours": 2, "critical_hours": 4},
                "continuous_flow": {"hours": 1},
            }
        )
        rules = [
            SourceSilent({"meter-bus": 900.0, "door-bus": 60.0}),
            *build_community_rules(cfg, self.community),
            *build_maritime_rules(MaritimeRulesConfig(), self.maritime),
        ]
        return Engine(rules, AlertManager("site", 0))

    def _keep(self, minute: int, batch: AlertBatch) -> None:
        for key in batch.pruned:
            self.alert_state.pop(key, None)
        self.alert_state.update({k: json.loads(v) for k, v in batch.state.items()})
        self.changes += [(minute, a.rule, a.subject, a.state, a.message) for a in batch.alerts]

    def run(self, engine: Engine, first: int, last: int) -> None:
        for minute in range(first, last):
            now = T0 + minute * 60 * NS
            records = [self._tag(r) for r in records_at(minute, now)]
            self._keep(minute, engine.on_records(records, now))
            self._keep(minute, engine.on_tick(now))

    def _tag(self, record: Record) -> Record:
        if isinstance(record, (VesselPosition, VesselStatic)):
            return self.maritime.tag(record)
        return self.community.tag(record)

    def persisted(self, engine: Engine) -> dict[str, Any]:
        """What the outbox would hold: rule states and alert states, as JSON objects."""
        rules = {name: json.loads(text) for name, text in engine.snapshot().items()}
        return {"rule_state": rules, "alert_state": dict(self.alert_state)}


def records_at(minute: int, now: int) -> list[Record]:
    return _meters(minute, now) + _doors(minute, now) + _vessels(minute, now)


def _meters(minute: int, now: int) -> list[Record]:
    if minute % 10:
        return []
    phase2 = minute >= PHASE1_MIN
    elder_total = 100.0 + (0.02 * (minute - PHASE1_MIN) / 10 if phase2 else 0.0)
    out: list[Record] = [
        WaterMeterReading(meter_id="M-501", time_ns=now, total_m3=elder_total, flow_m3h=0.0, source="meter-bus"),
        WaterMeterReading(meter_id="M-502", time_ns=now, total_m3=50.0 + minute * 0.01, flow_m3h=0.0 if phase2 else 0.6,
            battery_v=3.6 if phase2 else 2.9, alarm_bits=0 if phase2 else int(MeterAlarm.TAMPER),
            source="meter-bus",
        ),
    ]  # fmt: skip
    if phase2:
        out.append(
            WaterMeterReading(meter_id="M-601", time_ns=now, total_m3=7.0, source="meter-bus")
        )
    return out


def _doors(minute: int, now: int) -> list[Record]:
    out: list[Record] = []
    if minute == 140:
        out.append(DoorEvent(door_id="D-3-2", time_ns=now, event="forced", building="3"))
    if minute == 145:
        out.append(DoorEvent(door_id="D-5", time_ns=now, event="held_open", building="5"))
    if 141 <= minute <= 145:
        out.append(
            DoorEvent(
                door_id="D-3-1",
                time_ns=now,
                event="denied",
                credential_hash=f"c{minute}",
                building="3",
            )
        )
    if minute == 170:
        out.append(
            DoorEvent(door_id="D-5", time_ns=now, event="open", building="5", source="door-bus")
        )
    return out


def _vessels(minute: int, now: int) -> list[Record]:
    phase2 = minute >= PHASE1_MIN
    out: list[Record] = []
    if minute == 0:
        out.append(VesselStatic(mmsi=STRANGER, time_ns=now, name="MYSTERY 9", ship_type=70))
    where = OUTSIDE if phase2 else RESTRICTED
    out.append(_pos(STRANGER, now, where, 8.0, 90.0))
    if minute < 120 or minute >= PHASE1_MIN + 5:
        out.append(_pos(FERRY, now, (SEA[0] + minute * 1e-4, SEA[1]), 12.0, 0.0))
    out.append(_pos(FISHER, now, SEA, 12.0 if phase2 else 3.0, 180.0))
    jump = 0.5 if minute >= 148 else 0.0  # 30 nm in a minute, then on from there
    out.append(_pos(JUMPER, now, (SEA[0] - 0.05 + jump + minute * 1e-4, SEA[1]), 6.0, 0.0))
    if minute < PHASE1_MIN:
        out.append(_pos(PLACEHOLDER, now, SEA, 5.0, 0.0))
    return out


def _pos(mmsi: str, now: int, where: tuple[float, float], sog: float, cog: float) -> Record:
    return VesselPosition(
        mmsi=mmsi, time_ns=now, lat=where[0], lon=where[1], sog_kn=sog, cog_deg=cog, msg_type=1
    )


async def write_outbox(path: Path) -> None:
    """Phase 1 through the outbox, as the hub commits it."""
    from hub.outbox import Commit, Outbox

    scenario = Scenario()
    engine = scenario.engine()
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    for minute in range(PHASE1_MIN):
        now = T0 + minute * 60 * NS
        records = [scenario._tag(r) for r in records_at(minute, now)]
        for batch in (engine.on_records(records, now), engine.on_tick(now)):
            scenario._keep(minute, batch)
            commit = Commit()
            batch.fill(commit, [])
            await outbox.commit(commit)
    if hasattr(outbox, "save_rule_state"):
        await outbox.save_rule_state(engine.snapshot())
    await outbox.close()


def main() -> None:
    if sys.argv[1] == "--outbox":
        path = Path(sys.argv[2])
        path.unlink(missing_ok=True)
        asyncio.run(write_outbox(path))
        print(f"phase 1 written to {path}")
        return
    scenario = Scenario()
    engine = scenario.engine()
    scenario.run(engine, 0, PHASE1_MIN)
    out = scenario.persisted(engine)
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(scenario.changes)} alert changes; state written to {sys.argv[1]}")


if __name__ == "__main__":
    main()
