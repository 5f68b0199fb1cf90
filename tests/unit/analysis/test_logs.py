"""Log parsing on real traces: Python tracebacks produced here, a Java trace in its real format."""

from __future__ import annotations

import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixstream.analysis.logs import Frame, file_references, identifiers, parse_log
from fixstream.tokens import count_tokens


class ConfigError(Exception):
    """A non-builtin exception, so the traceback prints a dotted ``module.ConfigError``."""


def _divide(total: int, quantity: int) -> float:
    return total / quantity


def _load(quantity: int) -> float:
    try:
        return _divide(10, quantity)
    except ZeroDivisionError as exc:
        raise ConfigError("quantity must be positive") from exc


def _handler() -> None:
    try:
        _load(0)
    except ConfigError:
        {}["missing"]  # a second exception while handling the first


def _real_traceback() -> tuple[str, BaseException]:
    try:
        _handler()
    except KeyError as exc:
        return traceback.format_exc(), exc
    raise AssertionError("unreachable")


JAVA_TRACE = """\
2024-05-02 10:14:07,118 ERROR [main] c.a.s.OrderService - order import failed
Exception in thread "main" java.lang.IllegalStateException: Failed to load order 42
\tat com.acme.shop.OrderService.load(OrderService.java:88)
\tat com.acme.shop.OrderService.importAll(OrderService.java:61)
\tat com.acme.shop.Main.main(Main.java:12)
Caused by: com.acme.shop.db.RepositoryException: query failed for order 42
\tat com.acme.shop.db.OrderRepository.find(OrderRepository.java:51)
\tat com.acme.shop.OrderService.load(OrderService.java:85)
\t... 2 more
Caused by: java.sql.SQLException: Connection reset
\tat org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:370)
\tat com.acme.shop.db.OrderRepository$1.lambda$find$0(OrderRepository.java:47)
\tat java.base/java.lang.Thread.run(Thread.java:829)
\tat jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\t... 3 more
"""


def test_chained_python_traceback_frames_types_and_messages() -> None:
    text, exc = _real_traceback()
    parsed = parse_log(text)

    expected: list[traceback.FrameSummary] = []
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for link in reversed(chain):  # printed oldest first
        expected += traceback.extract_tb(link.__traceback__)
    assert [(f.path, f.line, f.function) for f in parsed.frames] == [
        (s.filename, s.lineno, s.name) for s in expected
    ]
    assert {f.language for f in parsed.frames} == {"python"}
    assert parsed.frames[-1].function == "_handler"  # where the last exception was raised

    assert parsed.exception_types[0] == "ZeroDivisionError"
    assert parsed.exception_types[1].endswith(".ConfigError")  # dotted: module.Class
    assert parsed.exception_types[2] == "KeyError"
    assert parsed.messages == ("division by zero", "quantity must be positive", "'missing'")
    assert (__file__, expected[-1].lineno) in parsed.file_refs


def test_dotted_exception_and_same_exception_deduplicated() -> None:
    log = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/client.py", line 12, in fetch\n'
        "    resp.raise_for_status()\n"
        "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: x\n"
        "retrying\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app/client.py", line 12, in fetch\n'
        "    resp.raise_for_status()\n"
        "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: x\n"
    )
    parsed = parse_log(log)
    assert parsed.exception_types == ("requests.exceptions.HTTPError",)
    assert parsed.messages == ("503 Server Error: Service Unavailable for url: x",)
    assert len(parsed.frames) == 2
    assert parsed.file_refs == (("/srv/app/client.py", 12),)


def test_java_trace_with_causes_and_omitted_frames() -> None:
    parsed = parse_log(JAVA_TRACE)
    assert parsed.exception_types == (
        "java.lang.IllegalStateException",
        "com.acme.shop.db.RepositoryException",
        "java.sql.SQLException",
    )
    assert parsed.messages == (
        "Failed to load order 42",
        "query failed for order 42",
        "Connection reset",
    )
    assert parsed.frames[0] == Frame(
        "com/acme/shop/OrderService.java", 88, "OrderService.load", "java"
    )
    assert len(parsed.frames) == 9  # "... N more" lines are not frames
    lambda_frame = parsed.frames[6]
    assert lambda_frame.path == "com/acme/shop/db/OrderRepository.java"  # file, not $1 class
    assert parsed.frames[7].path == "java/lang/Thread.java"  # module prefix dropped
    assert parsed.frames[8] == Frame(
        "jdk/internal/reflect/NativeMethodAccessorImpl.java",
        None,
        "NativeMethodAccessorImpl.invoke0",
        "java",
    )
    assert ("com/acme/shop/Main.java", 12) in parsed.file_refs
    assert all(line is not None for _, line in parsed.file_refs)


def test_generic_references_and_frames() -> None:
    text = (
        "FAILED tests/test_cart.py::test_zero - see src/shop/cart.py:42 and lib/util.js line 7\n"
        "E       ZeroDivisionError: division by zero\n"
        "tests/test_cart.py:9: ZeroDivisionError\n"
        "on windows: C:\\build\\proj\\pkg\\mod.py:3, also https://github.com/o/r/blob/main/src/x.py#L9\n"
        "    at handler (/home/ci/app/server.js:10:15)\n"
        "main.main()\n"
        "\t/home/ci/go/proj/main.go:12 +0x1d\n"
        "plain mention of shop/pricing.py without a line\n"
    )
    parsed = parse_log(text)
    assert parsed.exception_types == ("ZeroDivisionError",)
    assert parsed.messages == ("division by zero",)
    refs = parsed.file_refs
    for ref in [
        ("src/shop/cart.py", 42),
        ("lib/util.js", 7),
        ("tests/test_cart.py", 9),
        ("C:/build/proj/pkg/mod.py", 3),
        ("shop/pricing.py", None),
        ("/home/ci/app/server.js", 10),
        ("/home/ci/go/proj/main.go", 12),
    ]:
        assert ref in refs
    assert any(path.endswith("github.com/o/r/blob/main/src/x.py") for path, _ in refs)
    assert ("tests/test_cart.py", None) not in refs  # a bare path is dropped if it has a line
    assert parsed.frames == (
        Frame("/home/ci/app/server.js", 10, "handler", "generic"),
        Frame("/home/ci/go/proj/main.go", 12, "main.main", "generic"),
    )
    assert file_references("x = 1") == []


def test_exception_group_members_are_found() -> None:
    text = (
        "  + Exception Group Traceback (most recent call last):\n"
        '  |   File "/app/run.py", line 3, in <module>\n'
        "  |     raise ExceptionGroup('many', [ValueError(1), TypeError(2)])\n"
        "  | ExceptionGroup: many (2 sub-exceptions)\n"
        "  +-+---------------- 1 ----------------\n"
        "    | ValueError: 1\n"
        "    +---------------- 2 ----------------\n"
        "    | TypeError: 2\n"
        "    +------------------------------------\n"
    )
    parsed = parse_log(text)
    assert parsed.frames == (Frame("/app/run.py", 3, "<module>", "python"),)
    assert parsed.exception_types == ("ExceptionGroup", "ValueError", "TypeError")


def test_repeated_lines_collapse_even_with_timestamps() -> None:
    noise = "".join(f"2024-05-02T10:14:{i % 60:02d}.{i:03d}Z WARN retrying\n" for i in range(58))
    trace, _ = _real_traceback()
    parsed = parse_log("collecting...\n" + noise + "\n\n\n" + trace)
    assert parsed.text.count("WARN retrying") == 1
    assert "[... previous line repeated 57 more times]" in parsed.text
    assert "\n\n\n" not in parsed.text
    assert "Traceback (most recent call last):" in parsed.text


def test_truncation_keeps_head_and_tail_and_all_frames() -> None:
    trace, _ = _real_traceback()
    noise = "".join(f"INFO step {i}: processed batch {i * 7919 % 10007}\n" for i in range(3000))
    full = "build started\n" + noise + trace
    parsed = parse_log(full, max_tokens=400)
    assert count_tokens(parsed.text) <= 400
    assert parsed.text.startswith("build started")
    assert "[... truncated " in parsed.text and " tokens ...]" in parsed.text
    assert parsed.text.rstrip().endswith("KeyError: 'missing'")  # the tail holds the traceback
    assert parsed.frames == parse_log(trace).frames  # parsed from the full text
    assert len(parsed.frames) == 6


def test_truncation_cuts_a_single_giant_line() -> None:
    # Over 1M characters: more than the tokenizer accepts in a single call.
    parsed = parse_log("start\n" + "x" * 1_100_000 + " end\nTypeError: boom\n", max_tokens=100)
    assert count_tokens(parsed.text) <= 100
    assert "truncated" in parsed.text
    assert parsed.text.endswith("TypeError: boom")
    assert parsed.exception_types == ("TypeError",)


def test_identifiers_from_free_text() -> None:
    text = (
        "Calling `Cart.prices()` with quantity 0 in shop/cart.py fails: unit_price raises "
        "ZeroDivisionError. Also getUserName and self.items look wrong, e.g. the file(s) at "
        "https://example.com/some_path. Maybe compute() or `apply discount` or Node.js? "
        "The unit_price again and _private_helper and MAX_RETRIES."
    )
    assert identifiers(text) == [
        "Cart.prices",
        "unit_price",
        "ZeroDivisionError",
        "getUserName",
        "items",
        "compute",
        "apply",
        "discount",
        "_private_helper",
        "MAX_RETRIES",
    ]
    assert identifiers("the and of to in is it") == []
    assert identifiers("") == []


@pytest.mark.parametrize(
    "text",
    [
        "at " + "\t" * 30_000 + "x",
        "`" * 30_000 + "x",
        "a" * 60_000,
        '  File "' + ":1" * 20_000,
        "Caused by: " + "a." * 30_000,
        "\t" + "x.go:1 " * 10_000,
        "a/" * 30_000 + "b",
    ],
    ids=lambda t: repr(t[:12]),
)
def test_pathological_lines_are_parsed_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    parse_log(text)
    identifiers(text)
    assert time.perf_counter() - started < 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400), st.integers(30, 200))
def test_parse_log_never_fails_and_respects_the_budget(text: str, max_tokens: int) -> None:
    parsed = parse_log(text * 20, max_tokens=max_tokens)
    assert count_tokens(parsed.text) <= max_tokens
    identifiers(text)
