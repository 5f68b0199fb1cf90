"""Totals over a list of transactions."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from ledger.models import Transaction


def by_category(transactions: list[Transaction]) -> dict[str, Decimal]:
    """Spending per category (outgoing money only, as positive amounts), largest first."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for tx in transactions:
        if tx.amount < 0:
            totals[tx.category] += -tx.amount
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def by_month(transactions: list[Transaction]) -> dict[str, Decimal]:
    """Net balance change per month, oldest first."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for tx in transactions:
        totals[tx.month] += tx.amount
    return dict(sorted(totals.items()))
