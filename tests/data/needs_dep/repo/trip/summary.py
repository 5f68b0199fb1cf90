"""One line about a trip, for the itinerary page."""

from __future__ import annotations

from trip.legs import Leg, total_distance


def describe(name: str, legs: list[Leg], unit: str = "km") -> str:
    count = f"{len(legs)} leg" + ("" if len(legs) == 1 else "s")
    return f"{name}: {count}, {total_distance(legs, unit):.1f} {unit}"
