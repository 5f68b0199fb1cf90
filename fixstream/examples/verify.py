#!/usr/bin/env python
"""Check the bundled examples: each bug is real, its reproduction test catches it, its fix works.

Every ``examples/<name>/`` folder holds

* ``repo/``       a small Python project; its own tests pass on the buggy code;
* ``report.json`` the bug report, as ``fixstream submit`` reads it (an artifact's ``file`` is
                  relative to the example folder and is inlined as the artifact's content);
* ``fix.json``    the known-correct fix::

      {"edits": [{"path": "pkg/mod.py", "search": "exact text", "replace": "new text"}],
       "reproduction_test": {"path": "tests/test_repro_x.py", "code": "..."},
       "root_cause": {"path": "pkg/mod.py", "symbol": "func", "explanation": "..."}}

  (paths are relative to ``repo/``; each ``search`` text occurs exactly once in its file).

For each example, in a temporary copy of ``repo/``, this script checks that

1. the repository's tests pass;
2. with the reproduction test added, the run fails, and every failing test is in the
   reproduction file and fails with an assertion or with an exception the report names
   (an ImportError, NameError or SyntaxError of the test itself does not count);
3. with the edits applied, every test passes, the reproduction test included.

Usage: ``python examples/verify.py [NAME ...]``. Prints one line per example; exits 1 if any
example fails. Needs only the standard library and pytest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
NOT_A_REPRODUCTION = {"ImportError", "ModuleNotFoundError", "NameError", "SyntaxError"}


class ExampleError(Exception):
    """The example is broken; the message says how."""


def report_text(folder: Path, report: dict) -> str:
    """Everything a reader of the report sees: title, description, comments, artifacts."""
    parts = [report["title"], report.get("description", "")]
    parts += [comment["body"] for comment in report.get("comments", [])]
    for artifact in report.get("artifacts", []):
        if "file" in artifact:
            parts.append((folder / artifact["file"]).read_text(errors="replace"))
        else:
            parts.append(artifact.get("content") or "")
    return "\n".join(parts)


def run_tests(repo: Path, command: list[str], workdir: Path) -> tuple[int, dict[str, str]]:
    """Run the test command in ``repo``: its exit code and {test module: failure message}."""
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    junit = workdir / "junit.xml"
    junit.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    args = [*command, "-p", "no:cacheprovider", f"--junitxml={junit}"]
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    failures = {}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            for problem in case:
                if problem.tag in ("failure", "error"):
                    test_id = f"{case.get('classname')}::{case.get('name')}"
                    failures[test_id] = f"{problem.tag}: {problem.get('message', '')}"
    return result.returncode, failures


def exception_name(message: str) -> str:
    """'failure: KeyError: ...' -> 'KeyError'; pytest's rewritten asserts -> 'AssertionError'."""
    kind, _, message = message.partition(": ")
    if kind == "error":  # an error in setup, teardown or collection, never a reproduction
        return "error"
    if message.startswith("assert") or message.startswith("Failed:"):
        return "AssertionError"
    return message.partition(":")[0].strip().rsplit(".", 1)[-1]


def apply_edit(repo: Path, edit: dict) -> None:
    path = repo / edit["path"]
    text = path.read_text()
    count = text.count(edit["search"])
    if count != 1:
        raise ExampleError(f"search text occurs {count} times in {edit['path']}, not once")
    path.write_text(text.replace(edit["search"], edit["replace"]))


def check_example(folder: Path) -> str:
    report = json.loads((folder / "report.json").read_text())
    fix = json.loads((folder / "fix.json").read_text())
    if report["bug_id"] != f"example-{folder.name}":
        raise ExampleError(f"bug_id is {report['bug_id']!r}, expected 'example-{folder.name}'")
    command = report["repo"]["test_command"]
    repro = fix["reproduction_test"]
    repro_module = repro["path"].removesuffix(".py").replace("/", ".")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        repo = workdir / "repo"
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache")
        shutil.copytree(folder / report["repo"]["path"], repo, ignore=ignore)

        # 1. The buggy code passes its own tests.
        code, failures = run_tests(repo, command, workdir)
        if code != 0:
            raise ExampleError(f"tests fail on the buggy code (exit {code}): {failures}")

        # 2. The reproduction test fails, for the reported reason.
        repro_file = repo / repro["path"]
        if repro_file.exists():
            raise ExampleError(f"{repro['path']} already exists in the repository")
        repro_file.write_text(repro["code"])
        code, failures = run_tests(repo, command, workdir)
        if code != 1 or not failures:
            raise ExampleError(f"with the reproduction test, pytest exits {code}, expected 1")
        reported = report_text(folder, report)
        reasons = set()
        for test_id, message in failures.items():
            name = exception_name(message)
            if not test_id.startswith(f"{repro_module}::"):
                raise ExampleError(f"{test_id} fails, but it is not the reproduction test")
            if name in NOT_A_REPRODUCTION or not (
                name == "AssertionError" or re.search(rf"\b{re.escape(name)}\b", reported)
            ):
                raise ExampleError(f"{test_id} fails for the wrong reason: {message}")
            reasons.add(name)

        # 3. The edits make every test pass.
        for edit in fix["edits"]:
            apply_edit(repo, edit)
        code, failures = run_tests(repo, command, workdir)
        if code != 0:
            raise ExampleError(f"tests still fail after the fix (exit {code}): {failures}")

    edited = ", ".join(sorted({edit["path"] for edit in fix["edits"]}))
    return f"repro fails with {'/'.join(sorted(reasons))}; fix edits {edited}"


def main(names: list[str]) -> int:
    folders = [EXAMPLES / name for name in names] or sorted(
        path for path in EXAMPLES.iterdir() if (path / "fix.json").exists()
    )
    failed = 0
    for folder in folders:
        try:
            print(f"PASS {folder.name:<15} {check_example(folder)}", flush=True)
        except (ExampleError, OSError, KeyError, ValueError) as exc:
            failed += 1
            print(f"FAIL {folder.name:<15} {type(exc).__name__}: {exc}", flush=True)
    print(f"{len(folders) - failed}/{len(folders)} examples OK")
    return 1 if failed or not folders else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
