"""Catalogue prices and their discounts."""

from rates.discount import clear, discounted
from rates.labels import price_label

__all__ = ["clear", "discounted", "price_label"]
