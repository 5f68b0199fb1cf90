"""Discounted prices, memoized: the catalogue asks for the same few prices all day."""

from __future__ import annotations

import cachetools

_memo: dict[tuple, float] = {}


def discounted(price: float, percent: float) -> float:
    """``price`` less ``percent`` per cent, rounded to the cent."""
    key = cachetools.memo_key(price)
    if key not in _memo:
        _memo[key] = round(price * (100 - percent) / 100, 2)
    return _memo[key]


def clear() -> None:
    _memo.clear()
