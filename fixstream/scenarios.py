"""Simulator scenarios for the bundled examples, derived from each example's ``fix.json``.

A rule matches one kind of prompt (its ``TASK:`` line) and the code it shows, and answers
what a good model would. Generated, so they cannot drift from the known fixes or from the
prompt formats; ``fixstream examples scenarios`` rewrites the committed files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

NOT_IMPLICATED = {
    "match": "TASK: root-cause one chunk",
    "response": {"implicated": False, "score": 0.05, "why": "Nothing here explains the failure."},
}


def _snippet(search: str) -> str:
    """The first non-blank line of a search text, stripped: what identifies its chunk."""
    return next(line.strip() for line in search.splitlines() if line.strip())


def _in_section(task: str, section: str, path: str, snippet: str) -> str:
    # The section naming the chunk comes after any test output that might quote the same line.
    return (
        f"re:(?s)TASK: {re.escape(task)}.*\\n{section} {re.escape(path)} lines [^\\n]*\\n.*"
        f"{re.escape(snippet)}"
    )


def example_rules(example: Path, *, wrong_fix: bool = False) -> list[dict[str, Any]]:
    """Rules that fix the example (or, with ``wrong_fix``, propose a patch that does not)."""
    report = orjson.loads((example / "report.json").read_bytes())
    known = orjson.loads((example / "fix.json").read_bytes())
    cause = known["root_cause"]["explanation"]
    test = known["reproduction_test"]
    rules: list[dict[str, Any]] = [
        {
            "match": f"re:(?s)TASK: reproduce.*{re.escape(report['title'])}",
            "response": {"path": test["path"], "code": test["code"], "expected_failure": cause},
        }
    ]
    for edit in known["edits"]:
        snippet = _snippet(edit["search"])
        rules.append(
            {
                "match": _in_section("root-cause one chunk", "CHUNK", edit["path"], snippet),
                "response": {"implicated": True, "score": 0.95, "why": cause},
            }
        )
        proposed = dict(edit)
        if wrong_fix:  # applies cleanly, changes nothing that matters
            proposed["replace"] = edit["search"] + "# reviewed\n"
        rules.append(
            {
                "match": _in_section("fix one chunk", "CODE", edit["path"], snippet),
                "response": {"edits": [proposed], "rationale": cause},
            }
        )
    return rules


def scenario_text(rules: list[dict[str, Any]]) -> str:
    header = "# Generated from fix.json by `fixstream examples scenarios`; do not edit.\n"
    return header + yaml.safe_dump(rules, sort_keys=False, allow_unicode=True, width=100)


def write_example_scenarios(examples: Path) -> list[Path]:
    written = []
    for example in sorted(p.parent for p in examples.glob("*/fix.json")):
        path = example / "scenario.yaml"
        path.write_text(scenario_text(example_rules(example)))
        written.append(path)
    common = examples / "scenario.common.yaml"
    common.write_text(scenario_text([NOT_IMPLICATED]))
    return [*written, common]


def scenario_files(examples: Path) -> list[Path]:
    """Every example's scenario, then the shared fallbacks (first match wins)."""
    return [*sorted(examples.glob("*/scenario.yaml")), examples / "scenario.common.yaml"]
