"""Navigation links for a page, as the API puts them in its JSON body."""

from __future__ import annotations

from urllib.parse import urlencode

from pager.paginate import Page


def _url(base_url: str, number: int, size: int) -> str:
    return f"{base_url}?{urlencode({'page': number, 'per_page': size})}"


def page_links(base_url: str, page: Page) -> dict[str, str]:
    """``first``/``last`` always, ``prev``/``next`` only where such a page exists."""
    links = {
        "first": _url(base_url, 1, page.size),
        "last": _url(base_url, page.total_pages, page.size),
    }
    if page.has_previous:
        links["prev"] = _url(base_url, page.number - 1, page.size)
    if page.has_next:
        links["next"] = _url(base_url, page.number + 1, page.size)
    return links
