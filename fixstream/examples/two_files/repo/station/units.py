"""Unit conversions. Speeds are converted through factors relative to metres per second."""

from __future__ import annotations

KMH_PER_MPS = 3.6
MPH_PER_MPS = 2.236936
KNOTS_PER_MPS = 1.852
INHG_PER_HPA = 0.02953

SPEED_FACTORS = {"m/s": 1.0, "km/h": KMH_PER_MPS, "mph": MPH_PER_MPS, "kn": KNOTS_PER_MPS}


def convert_speed(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (any two units of SPEED_FACTORS)."""
    for unit in (from_unit, to_unit):
        if unit not in SPEED_FACTORS:
            raise ValueError(f"unknown speed unit {unit!r}")
    return value / SPEED_FACTORS[from_unit] * SPEED_FACTORS[to_unit]


def celsius_to_fahrenheit(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def hpa_to_inhg(hpa: float) -> float:
    return hpa * INHG_PER_HPA
