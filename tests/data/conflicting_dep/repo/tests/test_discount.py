import pytest
from rates import clear, discounted, price_label


@pytest.fixture(autouse=True)
def _fresh():
    clear()


def test_ten_percent_off():
    assert discounted(20.0, 10) == 18.0


def test_a_repeated_price_is_memoized():
    assert discounted(19.99, 0) == 19.99
    assert discounted(19.99, 0) == 19.99


def test_labels():
    assert price_label(12.5) == "12.50 EUR"
    assert price_label(40.0, 25) == "30.00 EUR (was 40.00, -25%)"
