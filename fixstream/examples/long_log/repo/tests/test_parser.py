from datetime import date
from decimal import Decimal

import pytest

from ledger import ParseError, read_transactions

EXPORT = """date,description,category,amount
2024-05-01,Salary,Income,"3,200.00"
2024-05-02,Rent,Housing,-1150.00
2024-05-03, Corner shop ,Groceries,-23.40
2024-05-09,Refund,,12.99
"""


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(EXPORT, encoding="utf-8")
    return path


def test_reads_all_rows(export):
    transactions = read_transactions(export)
    assert len(transactions) == 4
    assert transactions[0].date == date(2024, 5, 1)
    assert transactions[0].amount == Decimal("3200.00")


def test_strips_and_normalises(export):
    shop = read_transactions(export)[2]
    assert shop.description == "Corner shop"
    assert shop.category == "groceries"


def test_missing_category(export):
    assert read_transactions(export)[3].category == "uncategorized"


def test_bad_amount_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,description,category,amount\n2024-05-01,Coffee,Food,abc\n")
    with pytest.raises(ParseError, match="line 2"):
        read_transactions(path)
