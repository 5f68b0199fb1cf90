"""One sensor reading, always stored in SI units."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"]


@dataclass(frozen=True)
class Reading:
    at: datetime
    temperature_c: float
    pressure_hpa: float
    wind_mps: float
    gust_mps: float
    wind_from_deg: float

    def compass(self) -> str:
        """The wind direction as one of the eight compass points."""
        return COMPASS[round(self.wind_from_deg % 360 / 45) % 8]
