"""Cart totals and coupon codes for the web shop checkout."""

from shop.cart import Cart, LineItem
from shop.coupons import Coupon, CouponError

__all__ = ["Cart", "Coupon", "CouponError", "LineItem"]
