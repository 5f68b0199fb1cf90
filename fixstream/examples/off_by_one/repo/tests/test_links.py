from pager import page_links, paginate


def test_links_on_middle_page():
    page = paginate(list(range(90)), page=2, size=30)
    links = page_links("/api/orders", page)
    assert links == {
        "first": "/api/orders?page=1&per_page=30",
        "last": "/api/orders?page=3&per_page=30",
        "prev": "/api/orders?page=1&per_page=30",
        "next": "/api/orders?page=3&per_page=30",
    }


def test_single_page_has_no_prev_or_next():
    links = page_links("/api/orders", paginate(["a", "b"], page=1, size=10))
    assert set(links) == {"first", "last"}
