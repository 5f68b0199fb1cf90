"""Import bank CSV exports and summarise spending by category and month."""

from ledger.models import Transaction
from ledger.parser import ParseError, read_transactions
from ledger.summary import by_category, by_month

__all__ = ["ParseError", "Transaction", "by_category", "by_month", "read_transactions"]
