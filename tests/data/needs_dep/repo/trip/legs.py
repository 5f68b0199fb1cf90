"""Distances of a trip: every leg to metres, summed, then to the unit asked for."""

from __future__ import annotations

from fxunits import convert

Leg = tuple[float, str]


def leg_in_metres(value: float, unit: str) -> float:
    return convert(value, unit, "m")


def total_distance(legs: list[Leg], unit: str = "km") -> float:
    """The trip's length in ``unit``."""
    metres = sum(leg_in_metres(value, leg_unit) for value, leg_unit in legs)
    return convert(metres, unit, "m")
