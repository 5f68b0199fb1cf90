"""Pagination helpers for the list endpoints of the orders API."""

from pager.links import page_links
from pager.paginate import Page, PageOutOfRange, page_count, paginate

__all__ = ["Page", "PageOutOfRange", "page_count", "page_links", "paginate"]
