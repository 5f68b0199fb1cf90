"""The tests' wheel helpers: wheels uv installs offline into a fresh virtualenv."""

from __future__ import annotations

import importlib.metadata
import subprocess
import zipfile
from pathlib import Path

import pytest
from uv import find_uv_bin
from wheelhouse import (
    build_wheelhouse,
    requirement_closure,
    tiny_wheel,
    wheel_from_installed,
    wheel_name,
)


def _install(tmp_path: Path, wheels: Path, *requirements: str) -> Path:
    """A fresh virtualenv with ``requirements`` from ``wheels`` only; its python."""
    uv = find_uv_bin()
    venv = tmp_path / "venv"
    env = {"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "--no-index",
         "--find-links", str(wheels), *requirements],
        check=True, env=env,
    )  # fmt: skip
    return python


def test_the_closure_of_pytest_is_what_it_needs_here_and_no_extra():
    closure = {name.lower() for name in requirement_closure("pytest")}
    assert {"pytest", "pluggy", "iniconfig", "packaging", "pygments"} <= closure
    assert not closure & {"colorama", "exceptiongroup", "tomli"}, "markers for elsewhere"
    assert not closure & {"hypothesis", "xmlschema", "requests"}, "the dev extra"


def test_wheel_names_are_normalized():
    assert wheel_name("Foo.Bar-baz", "1.0") == "foo_bar_baz-1.0-py3-none-any.whl"


def test_a_repacked_installed_distribution_installs_offline_and_imports(tmp_path):
    wheels = tmp_path / "wheels"
    made = build_wheelhouse(wheels, ["pytest"])
    assert {p.name for p in made} == {p.name for p in wheels.iterdir()}
    version = importlib.metadata.version("pytest")
    wheel = wheels / f"pytest-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(f"pytest-{version}.dist-info/RECORD").decode()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "INSTALLER" not in record and "direct_url.json" not in record
    assert set(names) == {line.split(",")[0] for line in record.splitlines()}
    python = _install(tmp_path, wheels, "pytest")
    run = subprocess.run(
        [str(python), "-m", "pytest", "--version"], capture_output=True, text=True, check=True
    )
    assert version in run.stdout + run.stderr
    assert (python.parent / "pytest").exists(), "console scripts come from entry_points.txt"


def test_a_compiled_distribution_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a pure-Python"):
        wheel_from_installed("pydantic-core", tmp_path)


def test_a_tiny_wheel_installs_with_its_requirements_and_imports(tmp_path):
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels, "fx-base", "2.0", {"fxbase.py": "BASE = 40\n"})
    tiny_wheel(
        wheels,
        "fx.Top",
        "1.0",
        {"fxtop/__init__.py": "from fxbase import BASE\n\nVALUE = BASE + 2\n"},
        requires=["fx-base>=2"],
    )
    assert (wheels / "fx_top-1.0-py3-none-any.whl").is_file()
    python = _install(tmp_path, wheels, "fx.top==1.0")
    run = subprocess.run(
        [str(python), "-c", "import fxtop; print(fxtop.VALUE)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.strip() == "42"
