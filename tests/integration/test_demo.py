"""README's first command, as a user runs it: everything embedded, every example through."""

import subprocess
import sys

import pytest

from fixstream.config import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_fixes_every_bundled_example_end_to_end(tmp_path, offline_envs):
    examples = sorted(p.parent.name for p in (REPO_ROOT / "examples").glob("*/report.json"))
    assert len(examples) >= 5
    result = subprocess.run(
        [sys.executable, "-m", "fixstream", "demo", "--timeout", "120"],
        env={
            "PATH": "/usr/bin:/bin",
            "FIXSTREAM_DATA_DIR": str(tmp_path),
            "HOME": str(tmp_path),
            **offline_envs,  # environments from the session's wheelhouse, never an index
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{len(examples)}/{len(examples)} examples fixed end to end" in result.stdout
    assert result.stdout.count("fixed") >= len(examples) + 1  # one per row, and the total
    assert "LLM SIMULATOR (not a real model)" in result.stdout
