"""Harbourgrid hub: collects meters, doors and AIS into InfluxDB and raises governance alerts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harbourgrid-hub")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
