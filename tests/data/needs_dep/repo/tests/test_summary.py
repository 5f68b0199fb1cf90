from trip import describe


def test_describe_in_metres():
    assert describe("Walk", [(300, "m"), (200, "m")], unit="m") == "Walk: 2 legs, 500.0 m"
