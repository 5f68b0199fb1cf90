from datetime import date
from decimal import Decimal

from ledger import Transaction, by_category, by_month


def tx(day, category, amount):
    return Transaction(day, "x", category, Decimal(amount))


TXS = [
    tx(date(2024, 4, 30), "groceries", "-40.00"),
    tx(date(2024, 5, 1), "income", "3200.00"),
    tx(date(2024, 5, 2), "housing", "-1150.00"),
    tx(date(2024, 5, 3), "groceries", "-23.40"),
]


def test_by_category_counts_spending_only():
    assert by_category(TXS) == {"housing": Decimal("1150.00"), "groceries": Decimal("63.40")}


def test_by_month_is_net_and_sorted():
    assert by_month(TXS) == {"2024-04": Decimal("-40.00"), "2024-05": Decimal("2026.60")}
