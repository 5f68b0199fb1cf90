"""fxunits: lengths from one unit to another (a package only test environments have)."""

METRES_PER = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


def convert(value: float, source: str, target: str) -> float:
    """``value`` in ``source`` units, expressed in ``target`` units."""
    return value * METRES_PER[source] / METRES_PER[target]
