from datetime import date
from decimal import Decimal

import pytest

from shop import Cart

TODAY = date(2024, 3, 15)


def test_subtotal_merges_same_sku():
    cart = Cart()
    cart.add("TEE-M", "19.99")
    cart.add("TEE-M", "19.99", 2)
    cart.add("MUG", "8.50")
    assert len(cart.items) == 2
    assert cart.subtotal() == Decimal("68.47")


def test_shipping_below_threshold():
    cart = Cart()
    cart.add("MUG", "8.50", 2)
    assert cart.total(TODAY) == Decimal("21.99")


def test_free_shipping_from_threshold():
    cart = Cart()
    cart.add("HOODIE", "50.00")
    assert cart.total(TODAY) == Decimal("50.00")


def test_empty_cart_is_free():
    assert Cart().total(TODAY) == Decimal("0.00")


def test_quantity_must_be_positive():
    with pytest.raises(ValueError):
        Cart().add("MUG", "8.50", 0)
