"""Locating files on a temporary repo, with traces produced on "another machine"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixstream.analysis import locate
from fixstream.analysis.locate import LocatedFile, locate_files
from fixstream.analysis.logs import parse_log

PRICING = '''"""Prices."""

TAX = 0.2


def unit_price(total, quantity):
    """Price of one item."""
    return total / quantity


def with_tax(price):
    return price * (1 + TAX)
'''
CART = """from shop.core.pricing import unit_price, with_tax


class Cart:
    def __init__(self):
        self.items = []

    def add(self, total, quantity):
        self.items.append((total, quantity))

    def prices(self):
        return [with_tax(unit_price(t, q)) for t, q in self.items]
"""
DISCOUNTS = """def apply_discount(price, rate):
    return price * (1 - rate)
"""
CHECKOUT = """import json

from shop.core.cart import Cart
from shop.discounts import apply_discount


def checkout(lines):
    cart = Cart()
    for total, quantity in lines:
        cart.add(total, quantity)
    return json.dumps([apply_discount(p, 0.1) for p in cart.prices()])
"""


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    _write(
        root,
        {
            "src/shop/__init__.py": "",
            "src/shop/core/__init__.py": "",
            "src/shop/core/pricing.py": PRICING,
            "src/shop/core/cart.py": CART,
            "src/shop/discounts.py": DISCOUNTS,
            "src/shop/checkout.py": CHECKOUT,
            "src/shop/helpers/format.py": "def money(x):\n    return f'{x:.2f}'\n",
            "tests/test_cart.py": "from shop.core.cart import Cart\n",
            "README.md": "unit_price apply_discount\n",
            # Copies that must never be returned:
            ".venv/lib/python3.11/site-packages/shop/core/pricing.py": PRICING,
            "env2/pyvenv.cfg": "home = /usr/bin\n",
            "env2/lib/shop/discounts.py": DISCOUNTS,
            "node_modules/shop/discounts.js": "function apply_discount() {}\n",
            "src/shop/__pycache__/discounts.py": DISCOUNTS,
            ".git/hooks/discounts.py": DISCOUNTS,
            "src/shop/blob.py": b"\0\x01apply_discount\0",
            "src/shop/huge.py": "# apply_discount\n" + "x = 1\n" * 200_000,
        },
    )
    return root


def _trace_from_another_machine(repo: Path) -> str:
    """Run the real code, then rewrite the paths as if it had run on a CI machine."""
    script = "from shop.checkout import checkout\ncheckout([(10, 2), (10, 0)])\n"
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo / "src",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo / "src"), "PATH": ""},
        check=False,
    )
    assert "ZeroDivisionError" in run.stderr, run.stderr
    return run.stderr.replace(str(repo), "/home/ci/build/proj")


def test_stack_trace_files_first_innermost_highest(repo: Path) -> None:
    trace = _trace_from_another_machine(repo)
    assert "/home/ci/build/proj/src/shop/core/pricing.py" in trace
    stdlib = '  File "/usr/lib/python3.11/json/__init__.py", line 231, in dumps\n    x\n'
    site = '  File "/opt/venv/lib/python3.11/site-packages/shop/core/cart.py", line 1, in f\n'
    trace = trace.replace("Traceback (most recent call last):\n", "Traceback:\n" + stdlib + site)
    parsed = parse_log(trace)

    found = locate_files(repo, parsed, "checkout crashes")
    assert [f.path for f in found[:3]] == [
        "src/shop/core/pricing.py",  # innermost frame: where it raised
        "src/shop/core/cart.py",
        "src/shop/checkout.py",
    ]
    assert all(f.reason == "stack-trace" for f in found[:3])
    assert found[0].score > found[1].score > found[2].score > 200
    pricing_line = next(i for i, t in enumerate(PRICING.splitlines(), 1) if "/ quantity" in t)
    assert found[0].lines == (pricing_line,)
    assert "src/shop/__init__.py" not in [f.path for f in found]  # stdlib __init__ ignored


def test_paths_never_come_from_skipped_places(repo: Path) -> None:
    text = "`apply_discount` is wrong"
    found = locate_files(repo, parse_log(""), text)
    paths = [f.path for f in found]
    assert paths[0] == "src/shop/discounts.py"  # defines it
    assert "src/shop/checkout.py" in paths  # only mentions it
    assert all(f.reason == "identifier" for f in found)
    assert found[0].score > found[paths.index("src/shop/checkout.py")].score
    assert found[0].lines == (1,)
    for bad in (".venv", "env2/", "node_modules", "__pycache__", ".git/", "blob.py", "huge.py"):
        assert not any(bad in p for p in paths), bad
    assert "README.md" not in paths  # not a source file


def test_file_references_then_identifiers(repo: Path) -> None:
    text = (
        "Money formatting in helpers/format.py:2 looks off; see also shop.discounts and "
        "`Cart.prices`"
    )
    found = locate_files(repo, parse_log(""), text)
    assert found[0] == LocatedFile(
        "src/shop/helpers/format.py", "file-reference", found[0].score, (2,)
    )
    assert found[1].path == "src/shop/discounts.py"  # module name → file
    assert found[1].reason == "file-reference"
    assert 100 < found[1].score < found[0].score < 200
    rest = {f.path: f for f in found[2:]}
    assert rest["src/shop/core/cart.py"].reason == "identifier"
    assert rest["src/shop/core/cart.py"].score > rest["src/shop/checkout.py"].score


JAVA_TRACE = """\
Exception in thread "main" java.lang.IllegalStateException: Failed to load order 42
\tat com.acme.shop.OrderService.load(OrderService.java:88)
\tat com.acme.shop.Main.main(Main.java:12)
Caused by: java.lang.NullPointerException: Cannot invoke "Order.total()" because "o" is null
\tat com.acme.shop.db.OrderRepository.find(OrderRepository.java:51)
\tat org.postgresql.jdbc.PgStatement.execute(PgStatement.java:99)
\tat java.base/java.lang.Thread.run(Thread.java:829)
\t... 2 more
"""


def test_java_classes_map_to_files_by_package(tmp_path: Path) -> None:
    base = "service/src/main/java/com/acme/shop"
    _write(
        tmp_path,
        {
            f"{base}/OrderService.java": "package com.acme.shop;\nclass OrderService {}\n",
            f"{base}/Main.java": "package com.acme.shop;\nclass Main {}\n",
            f"{base}/db/OrderRepository.java": "package com.acme.shop.db;\n",
            "other/src/main/java/com/other/OrderService.java": "package com.other;\n",
            "legacy/OrderRepository.java": "class OrderRepository {}\n",
        },
    )
    found = locate_files(tmp_path, parse_log(JAVA_TRACE), "")
    assert [(f.path, f.lines) for f in found] == [
        (f"{base}/OrderService.java", (88,)),  # first "at" line ranks highest
        (f"{base}/Main.java", (12,)),
        (f"{base}/db/OrderRepository.java", (51,)),
    ]
    assert all(f.reason == "stack-trace" for f in found)


def test_limit_missing_repo_and_bounded_walk(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = parse_log(_trace_from_another_machine(repo))
    assert len(locate_files(repo, parsed, "", limit=1)) == 1
    assert locate_files(tmp_path / "nope", parsed, "") == []
    monkeypatch.setattr(locate, "MAX_FILES", 3)
    assert len(locate_files(repo, parsed, "apply_discount")) <= 3


def test_local_absolute_paths_resolve_even_under_interpreter_like_dirs(tmp_path: Path) -> None:
    root = tmp_path / "lib" / "python3.11" / "proj"  # looks like a stdlib path
    _write(root, {"pkg/mod.py": "def f():\n    return 1 / 0\n", "mod.py": "x = 1\n"})
    trace = (
        "Traceback (most recent call last):\n"
        f'  File "{root}/pkg/mod.py", line 2, in f\n'
        "ZeroDivisionError: division by zero\n"
    )
    found = locate_files(root, parse_log(trace), "")
    assert [(f.path, f.reason, f.lines) for f in found] == [("pkg/mod.py", "stack-trace", (2,))]
