from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class Transaction:
    date: date
    description: str
    category: str
    amount: Decimal  # negative for money going out

    @property
    def month(self) -> str:
        return f"{self.date:%Y-%m}"
