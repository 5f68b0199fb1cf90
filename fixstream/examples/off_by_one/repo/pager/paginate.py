"""Split a sequence into fixed-size pages. Page numbers start at 1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_PAGE_SIZE = 100


class PageOutOfRange(ValueError):
    """The requested page does not exist (the API turns this into a 404)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    number: int
    size: int
    total_items: int
    total_pages: int

    @property
    def has_next(self) -> bool:
        return self.number < self.total_pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_count(total_items: int, size: int) -> int:
    """How many pages ``total_items`` items fill at ``size`` per page (an empty list has one)."""
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    return max(1, total_items // size)


def paginate(items: Sequence[T], page: int = 1, size: int = 20) -> Page[T]:
    """The ``page``-th page of ``items``, ``size`` items per page."""
    total_pages = page_count(len(items), size)
    if not 1 <= page <= total_pages:
        raise PageOutOfRange(f"page {page} out of range (1..{total_pages})")
    start = (page - 1) * size
    return Page(
        items=list(items[start : start + size]),
        number=page,
        size=size,
        total_items=len(items),
        total_pages=total_pages,
    )
