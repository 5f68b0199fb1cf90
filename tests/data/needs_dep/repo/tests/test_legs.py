import pytest
from trip import leg_in_metres, total_distance


def test_a_leg_in_metres():
    assert leg_in_metres(1.5, "km") == 1500
    assert leg_in_metres(2, "mi") == pytest.approx(3218.688)


def test_total_in_metres():
    assert total_distance([(1, "km"), (500, "m")], unit="m") == 1500


def test_an_empty_trip_has_no_length():
    assert total_distance([]) == 0
