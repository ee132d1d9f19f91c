"""Harbourgrid hub: collects meters, doors and AIS into InfluxDB and raises governance alerts."""

__version__ = "0.1.0"
