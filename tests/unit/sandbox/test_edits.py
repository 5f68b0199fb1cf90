"""LLM edits may only touch files inside their workspace, exactly where they say."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixstream.errors import EditRejectedError
from fixstream.sandbox import Workspace, apply_edits, unified_diff
from fixstream.schemas import Edit


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text(
        "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n"
    )
    (root / "pkg" / "one.py").write_text("VALUE = 1\n")
    return Workspace(root)


@pytest.mark.parametrize(
    "path",
    ["../x.py", "/etc/passwd", "pkg/../../x.py", "", "~/x", "a" * 300 + ".py", "x\n.py"],
)
def test_paths_that_leave_the_workspace_are_refused(ws, path):
    with pytest.raises(EditRejectedError):
        apply_edits(ws, [Edit(path=path, search="", replace="pwned\n")])
    assert not (ws.path.parent / "x.py").exists()


def test_a_symlink_pointing_outside_cannot_be_edited_through(ws, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    os.symlink(outside, ws.path / "pkg" / "link.py")
    os.symlink(tmp_path, ws.path / "escape")
    with pytest.raises(EditRejectedError, match="outside the workspace"):
        apply_edits(ws, [Edit(path="pkg/link.py", search="SECRET = 1", replace="SECRET = 2")])
    with pytest.raises(EditRejectedError, match="outside the workspace"):
        apply_edits(ws, [Edit(path="escape/new.py", search="", replace="x = 1\n")])
    assert outside.read_text() == "SECRET = 1\n"
    assert not (tmp_path / "new.py").exists()


def test_absent_and_ambiguous_search_text_are_refused(ws):
    with pytest.raises(EditRejectedError, match="search text not found"):
        apply_edits(ws, [Edit(path="pkg/mod.py", search="return x * 2", replace="y")])
    with pytest.raises(EditRejectedError, match=r"ambiguous \(2 places\)"):
        apply_edits(ws, [Edit(path="pkg/mod.py", search="    return x + 1\n", replace="y")])
    with pytest.raises(EditRejectedError, match="no such file"):
        apply_edits(ws, [Edit(path="pkg/none.py", search="a", replace="b")])


def test_binary_files_are_refused(ws):
    (ws.path / "blob.bin").write_bytes(b"\x00\x01binary")
    with pytest.raises(EditRejectedError, match="binary file"):
        apply_edits(ws, [Edit(path="blob.bin", search="binary", replace="text")])


def test_edits_are_all_or_nothing(ws):
    before = (ws.path / "pkg" / "one.py").read_text()
    with pytest.raises(EditRejectedError):
        apply_edits(
            ws,
            [
                Edit(path="pkg/one.py", search="VALUE = 1", replace="VALUE = 2"),
                Edit(path="pkg/mod.py", search="absent", replace="x"),
            ],
        )
    assert (ws.path / "pkg" / "one.py").read_text() == before


def test_indentation_slips_are_tolerated_only_when_unambiguous(ws):
    changed = apply_edits(
        ws,
        [
            Edit(
                path="pkg/mod.py",
                search="def f(x):\n  return x + 1",
                replace="def f(x):\n    return x + 2\n",
            )
        ],
    )
    assert changed == ["pkg/mod.py"]
    assert "return x + 2" in (ws.path / "pkg" / "mod.py").read_text()


def test_new_files_and_a_diff_that_applies(ws, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(ws.path, original)
    changed = apply_edits(
        ws,
        [
            Edit(path="pkg/one.py", search="VALUE = 1", replace="VALUE = 2"),
            Edit(path="tests/test_new.py", search="", replace="def test_x():\n    assert True\n"),
        ],
    )
    assert changed == ["pkg/one.py", "tests/test_new.py"]
    diff = unified_diff(original, ws.path, changed)
    assert "--- a/pkg/one.py" in diff and "+VALUE = 2" in diff
    assert "--- /dev/null" in diff and "+++ b/tests/test_new.py" in diff
    if shutil.which("patch"):
        check = subprocess.run(
            ["patch", "-p1", "--dry-run"], input=diff, text=True, cwd=original, capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    with pytest.raises(EditRejectedError, match="already exists"):
        apply_edits(ws, [Edit(path="pkg/one.py", search="", replace="overwrite")])
