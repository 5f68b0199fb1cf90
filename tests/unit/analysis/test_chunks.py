"""Chunking: structure-aware for Python, line-based otherwise; invariants checked by hypothesis."""

from __future__ import annotations

import ast
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixstream.analysis.chunks import SourceChunk, chunk_id, chunk_source
from fixstream.tokens import count_tokens

MODULE = '''"""Prices and carts."""

import os

TAX = 0.2


# Compute the unit price.
# Careful with zero.
@cache
@other(
    arg=1,
)
def unit_price(total, quantity):
    """Price of one item."""
    return total / quantity


class Cart:
    """A cart."""

    items: list

    def __init__(self):
        self.items = []

    # Add one line.
    def add(self, total, quantity):
        self.items.append((total, quantity))
        return len(self.items)

    def prices(self):
        return [unit_price(t, q) for t, q in self.items]


if __name__ == "__main__":
    main()
'''


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _span(text: str, chunk: SourceChunk) -> str:
    return "".join(_lines(text)[chunk.start_line - 1 : chunk.end_line])


def assert_invariants(text: str, chunks: list[SourceChunk], budget: int) -> None:
    """Every line in exactly one chunk, in order; only a single line may exceed the budget."""
    n = len(_lines(text))
    if n == 0:
        assert chunks == []
        return
    assert chunks[0].start_line == 1
    assert chunks[-1].end_line == n
    for before, after in itertools.pairwise(chunks):
        assert after.start_line == before.end_line + 1
    for chunk in chunks:
        assert chunk.start_line <= chunk.end_line
        assert chunk.tokens == count_tokens(_span(text, chunk))
        assert chunk.tokens <= budget or chunk.start_line == chunk.end_line


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_small_file_is_one_chunk() -> None:
    chunks = chunk_source("shop/pricing.py", MODULE, budget=1000)
    assert len(chunks) == 1
    assert (chunks[0].start_line, chunks[0].end_line) == (1, len(MODULE.splitlines()))
    assert chunks[0].symbol == "unit_price, Cart"
    assert chunks[0].tokens == count_tokens(MODULE)


def test_definitions_own_their_decorators_and_leading_comments() -> None:
    budget = 40
    chunks = chunk_source("m.py", MODULE, budget=budget)
    assert_invariants(MODULE, chunks, budget)
    starts = {c.start_line: c for c in chunks}
    comment = _line_of(MODULE, "# Compute the unit price.")
    assert starts[comment].symbol == "unit_price"  # comment + decorators + def together
    assert _line_of(MODULE, "def unit_price") <= starts[comment].end_line
    add_comment = _line_of(MODULE, "# Add one line.")
    assert any(c.start_line == add_comment and c.symbol == "Cart.add" for c in chunks)


def test_big_class_is_split_into_methods() -> None:
    methods = "".join(
        f"    def method_{i}(self, value):\n        return value * {i} + self.base_{i}\n\n"
        for i in range(12)
    )
    text = f"import os\n\n\nclass Big:\n    base = 1\n\n{methods}\ndef after():\n    pass\n"
    budget = 60
    chunks = chunk_source("big.py", text, budget=budget)
    assert_invariants(text, chunks, budget)
    assert len(chunks) > 2
    for chunk in chunks:
        symbol = chunk.symbol or ""
        assert symbol.startswith("Big") or "after" in symbol or symbol == ""
    assert any(c.symbol == "Big" for c in chunks)  # several methods merged: the class scope
    for chunk in chunks:  # cuts are on method boundaries
        first = _lines(text)[chunk.start_line - 1]
        assert first.startswith(("import", "class", "    def", "def", "\n")), first


def test_oversized_function_is_split_by_lines_keeping_its_symbol() -> None:
    body = "".join(f"    total_{i} = compute(value, {i}) * factor_{i}\n" for i in range(80))
    text = f"X = 1\n\n\ndef huge(value):\n{body}    return value\n\n\ndef small():\n    pass\n"
    budget = 100
    chunks = chunk_source("huge.py", text, budget=budget)
    assert_invariants(text, chunks, budget)
    huge = [c for c in chunks if c.symbol and "huge" in c.symbol]
    assert len(huge) > 3
    inner = [c for c in huge if c.start_line > _line_of(text, "def huge")]
    assert all(c.symbol == "huge" for c in inner[:-1])


def test_single_line_over_budget_is_its_own_chunk() -> None:
    long_line = "DATA = [" + ", ".join(str(i) for i in range(400)) + "]\n"
    text = "import os\n\n" + long_line + "\n\ndef f():\n    return DATA\n"
    budget = 50
    chunks = chunk_source("data.py", text, budget=budget)
    assert_invariants(text, chunks, budget)
    big = [c for c in chunks if c.tokens > budget]
    assert len(big) == 1
    assert big[0].start_line == big[0].end_line == 3


def test_line_longer_than_the_tokenizer_accepts() -> None:
    text = "a = 1\n" + "b" * 1_100_000 + "\nc = 2\n"
    chunks = chunk_source("min.js", text, budget=100)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 1), (2, 2), (3, 3)]
    assert chunks[1].tokens > 100


def test_non_python_and_unparsable_python_prefer_blank_lines() -> None:
    blocks = [
        f"function f{i}(x) {{\n" + "".join(f"  x = x + {j};\n" for j in range(6)) + "}\n"
        for i in range(20)
    ]
    text = "\n".join(blocks)
    budget = 120
    for path, source in (("app.js", text), ("broken.py", "def broken(:\n" + text)):
        chunks = chunk_source(path, source, budget=budget)
        assert_invariants(source, chunks, budget)
        assert all(c.symbol is None for c in chunks)
        lines = _lines(source)
        ends_on_blank = [not lines[c.end_line - 1].strip() for c in chunks[:-1]]
        assert all(ends_on_blank), ends_on_blank


def test_odd_line_breaks_and_empty_input() -> None:
    text = (
        "x = 1\x0c\ny = 2\r\ndef f():\r    return 1  # a\u2028b\n"
        's = "c\x1cd"\n\n\ndef g():\n    return 2\n'
    )
    assert len(ast.parse(text).body) == 5  # valid Python although splitlines() sees more lines
    for budget in (1, 5, 1000):
        assert_invariants(text, chunk_source("odd.py", text, budget=budget), budget)
    starts = {c.start_line: c.symbol for c in chunk_source("odd.py", text, budget=8)}
    assert starts[_line_of(text, "def g")] == "g"  # ast lines mapped onto splitlines() lines
    assert chunk_source("empty.py", "", budget=10) == []
    with pytest.raises(ValueError):
        chunk_source("x.py", "x = 1\n", budget=0)


def test_chunk_id_is_short_and_stable() -> None:
    a = chunk_id("bug-1", "shop/pricing.py", 1, 20)
    assert a == chunk_id("bug-1", "shop/pricing.py", 1, 20)
    assert len(a) == 16 and int(a, 16) >= 0
    others = {
        chunk_id("bug-2", "shop/pricing.py", 1, 20),
        chunk_id("bug-1", "shop/cart.py", 1, 20),
        chunk_id("bug-1", "shop/pricing.py", 1, 21),
        chunk_id("bug-1", "shop/pricing.py", 2, 20),
    }
    assert a not in others and len(others) == 4


# --- property tests ------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).map(lambda s: "n_" + s)
_comments = st.lists(st.from_regex(r"# [a-z ]{0,30}", fullmatch=True), max_size=2)


@st.composite
def _statement(draw: st.DrawFn, indent: str) -> str:
    kind = draw(st.sampled_from(["assign", "long", "call", "blank", "comment", "if"]))
    name = draw(_names)
    if kind == "assign":
        return f"{indent}{name} = {draw(st.integers())}\n"
    if kind == "long":
        return f"{indent}{name} = {'x' * draw(st.integers(0, 600))!r}\n"
    if kind == "call":
        args = draw(st.lists(st.integers(0, 999), max_size=6))
        return f"{indent}{name}(\n" + "".join(f"{indent}    {a},\n" for a in args) + f"{indent})\n"
    if kind == "blank":
        return "\n"
    if kind == "comment":
        return f"{indent}# {name}\n"
    return f"{indent}if {name}:\n{indent}    pass\n{indent}else:\n{indent}    {name} = 1\n"


@st.composite
def _function(draw: st.DrawFn, indent: str) -> str:
    head = "".join(f"{indent}{c}\n" for c in draw(_comments))
    head += "".join(f"{indent}@{d}\n" for d in draw(st.lists(_names, max_size=2)))
    body = "".join(draw(st.lists(_statement(indent + "    "), min_size=0, max_size=12)))
    return f"{head}{indent}def {draw(_names)}(a, b=1):\n{body}{indent}    return a\n"


@st.composite
def _class(draw: st.DrawFn) -> str:
    methods = draw(st.lists(_function("    "), max_size=5))
    return f"class C{draw(_names)}:\n    '''Doc.'''\n\n" + "\n".join(methods) + "\n"


@st.composite
def _module(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(st.one_of(_statement(""), _function(""), _class()), min_size=0, max_size=10)
    )
    text = "".join(parts)
    if draw(st.booleans()):
        text = text.rstrip("\n")  # no final newline
    return text


_FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@_FAST
@given(_module(), st.integers(1, 400))
def test_python_modules_keep_the_invariants(text: str, budget: int) -> None:
    ast.parse(text)  # the generator only builds valid modules
    chunks = chunk_source("gen.py", text, budget=budget)
    assert_invariants(text, chunks, budget)
    if count_tokens(text) <= budget:
        assert len(chunks) <= 1


_any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\n\n\n\r\x0c\u2028 \t:#()def class")), st.characters(codec="utf-8")
    ),
    max_size=600,
)


@_FAST
@given(_any_text, st.integers(1, 200), st.sampled_from(["x.py", "x.txt", "x.go"]))
def test_any_text_keeps_the_invariants(text: str, budget: int, path: str) -> None:
    assert_invariants(text, chunk_source(path, text, budget=budget), budget)
