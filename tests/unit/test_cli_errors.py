"""A CLI error is one line on stderr and a non-zero exit, never a traceback: each command
run as a user runs it (the installed entry point, a new process), against a broker and a
worker that are not there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fixstream.config import EXAMPLES

DEAD = "127.0.0.1:1"  # nothing listens on port 1
EXAMPLE = str(EXAMPLES / "off_by_one" / "report.json")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["status"], f"cannot reach the Kafka broker at {DEAD}"),
        (["watch"], f"cannot reach the Kafka broker at {DEAD}"),
        (["submit", EXAMPLE], f"cannot reach the Kafka broker at {DEAD}"),
        (["topics", "apply"], f"cannot reach the Kafka broker at {DEAD}"),
        (["dlq", "list"], f"cannot reach the Kafka broker at {DEAD}"),
        (["dlq", "replay", "--all-retryable"], f"cannot reach the Kafka broker at {DEAD}"),
        (["worker"], f"cannot reach the Kafka broker at {DEAD}"),  # after waiting 15 s for it
        (["cache", "stats", "--worker", "http://127.0.0.1:1"], "Cannot connect to host"),
        (["submit", "/nonexistent/missing.json"], "No such file or directory"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_failing_command_says_why_in_one_line(args, says, tmp_path):
    env = {**os.environ, "FIXSTREAM_BROKER": DEAD, "FIXSTREAM_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", "from fixstream.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_broker_after_the_command_name_is_the_one_used(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FIXSTREAM_BROKER"}
    done = subprocess.run(
        [sys.executable, "-c", "from fixstream.cli import main; main()", "status",
         "--broker", DEAD],
        capture_output=True, text=True, env={**env, "FIXSTREAM_DATA_DIR": str(tmp_path)},
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()  # not "no broker": the flag after the name counted
    assert len(lines) == 1 and f"cannot reach the Kafka broker at {DEAD}" in lines[0], lines


def _options() -> list[tuple[str, object]]:
    """Every (command path, option) of the CLI (typer carries its own click: duck-typed)."""
    import typer

    from fixstream.cli import cli

    found = []

    def walk(command, path: str) -> None:
        for param in command.params:
            if param.param_type_name == "option":
                found.append((path, param))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(cli), "")
    return found


def test_one_word_means_one_thing_across_the_cli():
    options = _options()
    names = {(path, name) for path, o in options for name in o.opts}
    for path, option in options:
        if "--json" in option.opts:
            assert option.is_flag and not option.secondary_opts, f"{path}: --json is a flag"
        if "--bug" in option.opts:
            assert "str" in str(option.type_descriptor.annotation), f"{path}: --bug is an id"
        assert not {"--bug-id", "--sim-time-scale", "--json-out"} & set(option.opts), path
    talks_to_kafka = [
        "topics apply", "submit", "watch", "status", "worker", "dlq list", "dlq replay", "doctor",
    ]  # fmt: skip
    assert [p for p in talks_to_kafka if (p, "--broker") not in names] == []
    assert ("", "--broker") in names  # before the command's name too
    assert len(names) > 60  # the walk saw the whole CLI
