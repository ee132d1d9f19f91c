"""Keyword-only constructors, checked by introspection: adding a field to a record or a parameter
to a service can never silently shift the arguments of an existing call site."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest

import drivers
import hub
import hub.records
from hub.app import Hub
from hub.forwarder import Forwarder
from hub.outbox import Outbox
from hub.pipeline import Pipeline
from hub.publishers import DeliveryLoop, MqttLink, WebhookPublisher
from hub.sinks import InfluxV1Sink, InfluxV2Sink, LocalSink

MAX_POSITIONAL_FIELDS = 3
# The decoder's per-line parse results are not records: built once per NMEA line from the
# tuple the line splitter returns, where keywords would cost as much as the parse itself.
HOT_PATH = {"drivers.nmea.decoder.Sentence", "drivers.nmea.decoder._Group"}
SERVICES = (
    Pipeline,
    InfluxV1Sink,
    InfluxV2Sink,
    LocalSink,
    Forwarder,
    Outbox,
    DeliveryLoop,
    MqttLink,
    WebhookPublisher,
)


def _positional_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init and not f.kw_only]


def _dataclasses(package: object) -> Iterator[type]:
    path = package.__path__  # type: ignore[attr-defined]
    for info in pkgutil.walk_packages(path, f"{package.__name__}."):  # type: ignore[attr-defined]
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and dataclasses.is_dataclass(obj)
                and obj.__module__ == module.__name__
                and f"{obj.__module__}.{obj.__qualname__}" not in HOT_PATH
            ):
                yield obj


def _wide(classes: Iterator[type]) -> list[type]:
    return [
        c
        for c in classes
        if len([f for f in dataclasses.fields(c) if f.init]) > MAX_POSITIONAL_FIELDS
    ]


def test_every_record_with_more_than_three_fields_is_keyword_only() -> None:
    records = _wide(
        obj
        for obj in vars(hub.records).values()
        if inspect.isclass(obj)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == "hub.records"
    )
    assert len(records) >= 9  # never pass vacuously: the eight record types and Point
    assert {c.__name__: _positional_fields(c) for c in records} == {c.__name__: [] for c in records}


@pytest.mark.parametrize("package", [hub, drivers], ids=["hub", "drivers"])
def test_every_wide_dataclass_is_keyword_only(package: object) -> None:
    wide = _wide(_dataclasses(package))
    assert len(wide) > 5
    positional = {f"{c.__module__}.{c.__qualname__}": _positional_fields(c) for c in wide}
    assert {name: fields for name, fields in positional.items() if fields} == {}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.__name__)
def test_service_constructors_take_keywords_only(service: type) -> None:
    params = list(inspect.signature(service.__init__).parameters.values())[1:]  # type: ignore[misc]
    assert params, f"{service.__name__} takes no arguments: nothing to check"
    assert [p.name for p in params if p.kind is not p.KEYWORD_ONLY] == []


def test_hub_takes_its_config_then_keywords_only() -> None:
    params = list(inspect.signature(Hub.__init__).parameters.values())[1:]
    assert params[0].name == "cfg" and params[0].kind is params[0].POSITIONAL_OR_KEYWORD
    assert [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY] == []


def test_a_positional_call_is_refused() -> None:
    with pytest.raises(TypeError):
        hub.records.WaterMeterReading("M-1", 1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Forwarder(None, None, None)  # type: ignore[arg-type, misc]
