from datetime import datetime

from station import Reading, daily_summary


def reading(hour, temp, gust, pressure=1012.0):
    return Reading(datetime(2024, 7, 2, hour), temp, pressure, gust / 2, gust, 225)


DAY = [reading(6, 14.2, 5.0), reading(12, 23.8, 12.5, 1010.0), reading(18, 19.1, 8.0, 1008.0)]


def test_metric_summary():
    assert daily_summary(DAY) == "Temp 14-24 C, pressure 1010 hPa, max gust 45 km/h at 12:00"


def test_imperial_summary():
    assert daily_summary(DAY, "imperial") == (
        "Temp 58-75 F, pressure 29.83 inHg, max gust 28 mph at 12:00"
    )


def test_no_readings():
    assert daily_summary([]) == "no readings"


def test_compass():
    assert reading(6, 10, 4).compass() == "SW"
