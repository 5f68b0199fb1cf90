"""README's first command, as a user of the built wheel runs it: from an empty directory, with
nothing of the source checkout at hand, everything embedded, every example through."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fixstream.config import EXAMPLES, PACKAGE_DIR

pytestmark = pytest.mark.integration


def build_wheel(out: Path) -> Path:
    """The project's wheel, built offline from a copy of the sources (the build writes beside
    them)."""
    src = out / "src"
    shutil.copytree(PACKAGE_DIR, src / "fixstream", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE_DIR.parent / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = out.glob("fixstream-*.whl")
    return wheel


def test_the_wheel_runs_the_demo_from_an_empty_directory(tmp_path, offline_envs):
    examples = sorted(p.parent.name for p in EXAMPLES.glob("*/report.json"))
    assert len(examples) >= 5
    wheel = build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fixstream/topics.yaml" in names
    assert {f"fixstream/examples/{e}/report.json" for e in examples} <= set(names)
    assert not [n for n in names if "__pycache__" in n]

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    home, cwd = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    cwd.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(site),  # the wheel's fixstream, ahead of the checkout's
        **offline_envs,  # environments from the session's wheelhouse, never an index
    }
    where = subprocess.run(
        [sys.executable, "-c", "import fixstream; print(fixstream.__file__)"],
        env=env, cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(site)), where.stdout

    result = subprocess.run(
        [sys.executable, "-m", "fixstream", "demo", "--timeout", "120"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{len(examples)}/{len(examples)} examples fixed end to end" in result.stdout
    assert "LLM SIMULATOR (not a real model)" in result.stdout
    data = home / ".local" / "share" / "fixstream"  # the user's data directory, not the wheel's
    assert (data / "worker.log").is_file() and (data / "broker.log").is_file()
    assert list(cwd.iterdir()) == []
    assert not (site / "var").exists()
