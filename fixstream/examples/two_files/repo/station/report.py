"""Human-readable reports built from a day's readings."""

from __future__ import annotations

from station.readings import Reading
from station.units import celsius_to_fahrenheit, convert_speed, hpa_to_inhg

UNIT_SYSTEMS = {"metric": "km/h", "imperial": "mph"}


def daily_summary(readings: list[Reading], system: str = "metric") -> str:
    """Min/max temperature, mean pressure and the strongest gust of the day."""
    if not readings:
        return "no readings"
    speed_unit = UNIT_SYSTEMS[system]
    low = min(r.temperature_c for r in readings)
    high = max(r.temperature_c for r in readings)
    pressure = sum(r.pressure_hpa for r in readings) / len(readings)
    gust = max(readings, key=lambda r: r.gust_mps)
    gust_speed = convert_speed(gust.gust_mps, "m/s", speed_unit)
    if system == "imperial":
        temps = f"{celsius_to_fahrenheit(low):.0f}-{celsius_to_fahrenheit(high):.0f} F"
        pressure_text = f"{hpa_to_inhg(pressure):.2f} inHg"
    else:
        temps = f"{low:.0f}-{high:.0f} C"
        pressure_text = f"{pressure:.0f} hPa"
    return (
        f"Temp {temps}, pressure {pressure_text}, "
        f"max gust {gust_speed:.0f} {speed_unit} at {gust.at:%H:%M}"
    )


def marine_line(reading: Reading) -> str:
    """The sailing club's one-liner: wind and gusts in whole knots."""
    wind = convert_speed(reading.wind_mps, "kn", "m/s")
    gust = convert_speed(reading.gust_mps, "kn", "m/s")
    return f"{reading.at:%H:%M} wind {reading.compass()} {wind:.0f} kn, gusts {gust:.0f} kn"
