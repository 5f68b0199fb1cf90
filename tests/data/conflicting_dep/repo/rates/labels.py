"""Price labels for the shop window."""

from __future__ import annotations

from rates.discount import discounted


def price_label(price: float, percent: float = 0) -> str:
    if not percent:
        return f"{price:.2f} EUR"
    return f"{discounted(price, percent):.2f} EUR (was {price:.2f}, -{percent:g}%)"
