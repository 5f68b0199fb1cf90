"""A shopping cart and its checkout total."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from shop.coupons import Coupon
from shop.money import to_money

FREE_SHIPPING_FROM = Decimal("50.00")
SHIPPING_FEE = Decimal("4.99")


@dataclass
class LineItem:
    sku: str
    unit_price: Decimal
    quantity: int = 1

    @property
    def amount(self) -> Decimal:
        return to_money(self.unit_price * self.quantity)


@dataclass
class Cart:
    items: list[LineItem] = field(default_factory=list)

    def add(self, sku: str, unit_price: Decimal | str, quantity: int = 1) -> None:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        for item in self.items:
            if item.sku == sku:
                item.quantity += quantity
                return
        self.items.append(LineItem(sku, Decimal(unit_price), quantity))

    def subtotal(self) -> Decimal:
        return to_money(sum((item.amount for item in self.items), Decimal("0")))

    def shipping(self, discounted_subtotal: Decimal) -> Decimal:
        if not self.items or discounted_subtotal >= FREE_SHIPPING_FROM:
            return Decimal("0.00")
        return SHIPPING_FEE

    def total(self, today: date, coupon: Coupon | None = None) -> Decimal:
        """Subtotal minus the coupon discount, plus shipping."""
        subtotal = self.subtotal()
        discount = coupon.discount(subtotal, today) if coupon else Decimal("0.00")
        after_discount = subtotal - discount
        return to_money(after_discount + self.shipping(after_discount))
