"""Strategies: how a run is laid out over processes and devices."""

from engineering.strategies.single import SingleDeviceStrategy

__all__ = ["SingleDeviceStrategy"]
