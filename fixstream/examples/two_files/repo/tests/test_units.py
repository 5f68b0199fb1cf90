import pytest

from station.units import celsius_to_fahrenheit, convert_speed, hpa_to_inhg


def test_mps_to_kmh():
    assert convert_speed(10, "m/s", "km/h") == pytest.approx(36.0)


def test_kmh_to_mph():
    assert convert_speed(100, "km/h", "mph") == pytest.approx(62.137, abs=1e-3)


def test_round_trip():
    assert convert_speed(convert_speed(7.5, "mph", "km/h"), "km/h", "mph") == pytest.approx(7.5)


def test_unknown_unit():
    with pytest.raises(ValueError, match="furlongs"):
        convert_speed(1, "m/s", "furlongs/fortnight")


def test_temperature_and_pressure():
    assert celsius_to_fahrenheit(100) == pytest.approx(212)
    assert hpa_to_inhg(1013.25) == pytest.approx(29.92, abs=0.01)
