import pytest

from pager import PageOutOfRange, page_count, paginate


def test_first_page():
    page = paginate(list(range(40)), page=1, size=20)
    assert page.items == list(range(20))
    assert page.total_pages == 2
    assert page.has_next and not page.has_previous


def test_second_page_of_two():
    page = paginate(list(range(40)), page=2, size=20)
    assert page.items == list(range(20, 40))
    assert not page.has_next and page.has_previous


def test_empty_list_has_one_empty_page():
    page = paginate([], page=1, size=10)
    assert page.items == []
    assert page.total_pages == 1


def test_page_count_exact_multiple():
    assert page_count(60, 20) == 3
    assert page_count(5, 5) == 1


@pytest.mark.parametrize("number", [0, -1, 3])
def test_page_out_of_range(number):
    with pytest.raises(PageOutOfRange):
        paginate(list(range(40)), page=number, size=20)


@pytest.mark.parametrize("size", [0, 101])
def test_bad_page_size(size):
    with pytest.raises(ValueError):
        page_count(10, size)
