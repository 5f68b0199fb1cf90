from datetime import date
from decimal import Decimal

import pytest

from shop import Cart, Coupon, CouponError

SPRING = Coupon("SPRING20", 20, starts=date(2024, 3, 1), expires=date(2024, 3, 31))


def test_coupon_active_mid_promotion():
    assert SPRING.is_active(date(2024, 3, 15))


def test_coupon_active_on_first_day():
    assert SPRING.is_active(date(2024, 3, 1))


def test_coupon_not_active_before_or_after():
    assert not SPRING.is_active(date(2024, 2, 29))
    assert not SPRING.is_active(date(2024, 4, 1))


def test_discount_applied_to_total():
    cart = Cart()
    cart.add("HOODIE", "60.00")
    # 60.00 - 20% = 48.00, under the free-shipping threshold, so shipping is added
    assert cart.total(date(2024, 3, 10), SPRING) == Decimal("52.99")


def test_minimum_subtotal():
    coupon = Coupon("BIG10", 10, date(2024, 1, 1), date(2024, 12, 31), Decimal("100"))
    with pytest.raises(CouponError, match="at least 100"):
        coupon.discount(Decimal("99.99"), date(2024, 6, 1))


def test_expired_coupon_rejected():
    with pytest.raises(CouponError, match="not valid on 2024-04-02"):
        SPRING.discount(Decimal("30.00"), date(2024, 4, 2))
