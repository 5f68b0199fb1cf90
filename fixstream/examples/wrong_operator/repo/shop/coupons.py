"""Coupon codes: a percentage off, valid from ``starts`` through ``expires``.

Both dates are inclusive: a coupon advertised as "valid March 1-31" has
``starts=date(2024, 3, 1)`` and ``expires=date(2024, 3, 31)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shop.money import percent_of


class CouponError(ValueError):
    """The coupon cannot be applied to this order; the message is shown to the customer."""


@dataclass(frozen=True)
class Coupon:
    code: str
    percent_off: int
    starts: date
    expires: date
    min_subtotal: Decimal = Decimal("0")

    def is_active(self, today: date) -> bool:
        """True on every day of the promotion, first and last day included."""
        return self.starts <= today < self.expires

    def check(self, subtotal: Decimal, today: date) -> None:
        if not self.is_active(today):
            raise CouponError(f"Coupon {self.code} is not valid on {today.isoformat()}.")
        if subtotal < self.min_subtotal:
            raise CouponError(
                f"Coupon {self.code} needs an order of at least {self.min_subtotal}."
            )

    def discount(self, subtotal: Decimal, today: date) -> Decimal:
        """The amount taken off ``subtotal``; raises CouponError if the coupon does not apply."""
        self.check(subtotal, today)
        return percent_of(subtotal, self.percent_off)
