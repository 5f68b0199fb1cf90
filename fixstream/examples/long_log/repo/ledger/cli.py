"""``python -m ledger.cli summary EXPORT.csv`` prints spending per category and month."""

from __future__ import annotations

import argparse
import sys

from ledger.parser import read_transactions
from ledger.summary import by_category, by_month


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="spending per category and month")
    summary.add_argument("export", help="the bank's CSV export")
    args = parser.parse_args(argv)

    transactions = read_transactions(args.export)
    print(f"{len(transactions)} transactions")
    for category, total in by_category(transactions).items():
        print(f"  {category:<20} {total:>10}")
    for month, total in by_month(transactions).items():
        print(f"  {month:<20} {total:>+10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
