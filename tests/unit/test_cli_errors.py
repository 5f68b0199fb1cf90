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
