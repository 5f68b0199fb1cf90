"""Read the bank's CSV export (columns: date, description, category, amount)."""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ledger.models import Transaction

DATE_FORMAT = "%Y-%m-%d"


class ParseError(ValueError):
    """A row of the export could not be read; the message names the line."""


def parse_row(row: dict[str, str], line: int) -> Transaction:
    try:
        when = datetime.strptime(row["date"].strip(), DATE_FORMAT).date()
        amount = Decimal(row["amount"].strip().replace(",", ""))
    except (ValueError, InvalidOperation) as exc:
        raise ParseError(f"line {line}: {exc}") from None
    return Transaction(
        date=when,
        description=row["description"].strip(),
        category=(row.get("category") or "").strip().lower() or "uncategorized",
        amount=amount,
    )


def read_transactions(path: str | Path) -> list[Transaction]:
    """All rows of the export at ``path``, in file order."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return [parse_row(row, line) for line, row in enumerate(reader, start=2)]
