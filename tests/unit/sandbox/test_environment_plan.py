"""What an environment build installs, read from a repository's files, and its key; and the
installer's reason, read from uv's real output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from uv import find_uv_bin

from fixstream.sandbox.environments import build_script, installer_reason, plan
from fixstream.schemas import EnvironmentSpec

PYTEST = ["python", "-m", "pytest", "-q"]


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "shop"
version = "1.0"
dependencies = ["attrs>=23"]

[project.optional-dependencies]
test = ["hypothesis"]
docs = ["sphinx"]
"""


def test_the_same_files_give_the_same_key_wherever_the_repository_is(tmp_path):
    files = {"requirements.txt": "attrs==23.2.0\n", "shop/cart.py": "X = 1\n"}
    one = plan(_repo(tmp_path / "one", files), None, PYTEST)
    two = plan(_repo(tmp_path / "two", files), None, PYTEST)
    assert one.key == two.key
    assert one == two


def test_source_files_are_not_part_of_the_key(tmp_path):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "attrs\n", "shop/cart.py": "X = 1\n"})
    before = plan(repo, None, PYTEST).key
    (repo / "shop" / "cart.py").write_text("X = 2\n")
    assert plan(repo, None, PYTEST).key == before


def test_a_changed_requirements_file_changes_the_key(tmp_path):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "attrs==23.2.0\n"})
    before = plan(repo, None, PYTEST).key
    (repo / "requirements.txt").write_text("attrs==24.1.0\n")
    assert plan(repo, None, PYTEST).key != before
    (repo / "requirements-dev.txt").write_text("hypothesis\n")  # a new dependency file too
    assert len({before, plan(repo, None, PYTEST).key}) == 2


def test_the_spec_the_python_the_index_settings_and_the_runner_are_in_the_key(tmp_path):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "attrs\n"})
    base = plan(repo, None, PYTEST)
    assert plan(repo, EnvironmentSpec(), PYTEST).key == base.key  # no spec = an empty one
    variants = [
        plan(repo, EnvironmentSpec(packages=["pytest-asyncio"]), PYTEST),
        plan(repo, EnvironmentSpec(extras=["docs"]), PYTEST),
        plan(repo, EnvironmentSpec(install=[["python", "-c", "pass"]]), PYTEST),
        plan(repo, EnvironmentSpec(python="3.12"), PYTEST),
        plan(repo, EnvironmentSpec(python="3.13"), PYTEST),
        plan(repo, None, PYTEST, offline=True),
        plan(repo, None, PYTEST, find_links=("/wheels",)),
        plan(repo, None, PYTEST, mode="unsafe"),
        plan(repo, None, ["python", "-m", "unittest"]),
    ]
    keys = [base.key, *(v.key for v in variants)]
    assert len(set(keys)) == len(keys), keys


def test_the_python_is_the_specs_or_the_workers_own(tmp_path):
    import os
    import sys

    repo = _repo(tmp_path / "repo", {})
    assert plan(repo, None, PYTEST).python == os.path.realpath(sys.executable)
    assert plan(repo, EnvironmentSpec(python="3.12"), PYTEST).python == "3.12"


def test_requirements_files_are_installed_in_order_and_the_runner_added(tmp_path):
    repo = _repo(
        tmp_path / "repo",
        {
            "requirements.txt": "attrs\n",
            "requirements-dev.txt": "hypothesis\n",
            "requirements/ci.txt": "coverage\n",
            "requirements.in": "attrs\n",  # not a requirements file pip reads
        },
    )
    p = plan(repo, None, PYTEST)
    assert p.requirements == (
        "-r", "/testbed/requirements-dev.txt",
        "-r", "/testbed/requirements.txt",
        "-r", "/testbed/requirements/ci.txt",
        "pytest",
    )  # fmt: skip
    assert p.files == ("requirements-dev.txt", "requirements.txt", "requirements/ci.txt")
    assert p.lock == "" and p.lock_pins == ()


def test_the_runner_is_added_only_when_the_test_command_uses_it(tmp_path):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "attrs\n"})
    assert plan(repo, None, ["pytest", "-x"]).requirements[-1] == "pytest"
    assert plan(repo, None, ["python", "-m", "unittest"]).requirements == (
        "-r",
        "/testbed/requirements.txt",
    )
    assert plan(tmp_path / "empty", None, PYTEST).requirements == ("pytest",)


def test_a_project_with_a_build_system_is_installed_editable_with_its_test_extras(tmp_path):
    repo = _repo(tmp_path / "repo", {"pyproject.toml": PROJECT})
    assert plan(repo, None, PYTEST).requirements == ("-e", "/testbed[test]", "pytest")
    with_docs = plan(repo, EnvironmentSpec(extras=["docs"], packages=["pytest-xdist"]), PYTEST)
    assert with_docs.requirements == ("-e", "/testbed[docs,test]", "pytest", "pytest-xdist")
    assert with_docs.files == ("pyproject.toml",)


def test_a_project_without_test_extras_is_installed_editable_as_it_is(tmp_path):
    text = PROJECT.split("[project.optional-dependencies]")[0]
    repo = _repo(tmp_path / "repo", {"pyproject.toml": text})
    assert plan(repo, None, PYTEST).requirements == ("-e", "/testbed", "pytest")


def test_a_pyproject_without_a_build_system_gives_its_dependencies_only(tmp_path):
    text = PROJECT.split("[project]", 1)[1]
    repo = _repo(tmp_path / "repo", {"pyproject.toml": "[project]" + text})
    assert plan(repo, None, PYTEST).requirements == (
        "-r", "/testbed/pyproject.toml", "--extra=test", "pytest",
    )  # fmt: skip
    no_extras = "[project]\nname = 'shop'\nversion = '1'\ndependencies = ['attrs']\n"
    (repo / "pyproject.toml").write_text(no_extras)
    assert plan(repo, None, PYTEST).requirements == ("-r", "/testbed/pyproject.toml", "pytest")


def test_a_pyproject_that_only_configures_tools_installs_nothing(tmp_path):
    repo = _repo(tmp_path / "repo", {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"})
    p = plan(repo, None, PYTEST)
    assert p.requirements == ("pytest",)
    assert p.files == ("pyproject.toml",)  # still part of the key


def test_setup_cfg_test_extras_go_with_the_editable_install(tmp_path):
    setup_cfg = (
        "[metadata]\nname = shop\n\n[options]\ninstall_requires = attrs\n\n"
        "[options.extras_require]\ntesting = hypothesis\ndocs = sphinx\n"
    )
    repo = _repo(
        tmp_path / "repo",
        {"setup.cfg": setup_cfg, "setup.py": "from setuptools import setup\nsetup()\n"},
    )
    p = plan(repo, None, PYTEST)
    assert p.requirements == ("-e", "/testbed[testing]", "pytest")
    assert p.files == ("setup.cfg", "setup.py")


POETRY_LOCK = """\
[[package]]
name = "attrs"
version = "23.2.0"
description = ""
optional = false
python-versions = ">=3.7"

[[package]]
name = "pytest"
version = "8.3.2"
description = ""
optional = false
python-versions = ">=3.8"

[[package]]
name = "private-lib"
version = "0.1.0"
description = ""
optional = false
python-versions = "*"

[package.source]
type = "git"
url = "https://example.invalid/private-lib.git"
reference = "main"
resolved_reference = "0000000"
"""


def test_poetry_lock_pins_are_installed_and_requirements_files_ignored(tmp_path):
    pyproject = (
        '[tool.poetry]\nname = "shop"\nversion = "1.0"\n\n'
        '[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )
    repo = _repo(
        tmp_path / "repo",
        {"pyproject.toml": pyproject, "poetry.lock": POETRY_LOCK, "requirements.txt": "x\n"},
    )
    p = plan(repo, None, PYTEST, offline=True, find_links=("/wheels",))
    assert p.lock == "poetry.lock"
    assert p.lock_pins == ("attrs==23.2.0", "pytest==8.3.2")  # not the git one
    assert p.project == ("-e", "/testbed")
    assert p.requirements == ("pytest", "--no-index", "--find-links", "/wheels")
    script = build_script(p).splitlines()
    assert script[2].endswith("attrs==23.2.0 pytest==8.3.2 --no-index --find-links /wheels")
    assert script[3].endswith("--no-deps -e /testbed --no-index --find-links /wheels")
    assert script[4].endswith("pytest --no-index --find-links /wheels")


def test_with_a_lock_only_the_project_goes_without_its_dependencies(tmp_path):
    """The lock's pins are the project's dependencies; the runner and the spec's packages are
    not in it, and need theirs (with one ``--no-deps`` install, pytest came without pluggy)."""
    repo = _repo(tmp_path / "repo", {"pyproject.toml": PROJECT, "poetry.lock": POETRY_LOCK})
    spec = EnvironmentSpec(packages=["pytest-timeout"])
    p = plan(repo, spec, PYTEST)
    assert p.project == ("-e", "/testbed[test]")
    assert p.requirements == ("pytest", "pytest-timeout")
    lines = build_script(p).splitlines()
    (no_deps,) = [line for line in lines if "--no-deps" in line]
    assert no_deps.endswith("--no-deps -e '/testbed[test]'")
    assert lines[-1].endswith("install --quiet --python /fixstream/env/bin/python pytest "
                              "pytest-timeout")  # fmt: skip


def test_nothing_to_install_is_no_install_even_offline(tmp_path):
    """uv refuses an install of nothing but index options."""
    p = plan(_repo(tmp_path / "repo", {}), None, ["python", "-m", "unittest"], offline=True,
             find_links=("/wheels",))  # fmt: skip
    assert p.requirements == () and p.project == ()
    assert [line.split()[1] for line in build_script(p).splitlines()[1:]] == ["venv"]


def test_uv_lock_is_exported_then_installed(tmp_path):
    repo = _repo(tmp_path / "repo", {"pyproject.toml": PROJECT, "uv.lock": "version = 1\n"})
    p = plan(repo, None, PYTEST)
    assert p.lock == "uv.lock" and p.lock_pins == ()
    assert p.project == ("-e", "/testbed[test]")
    assert p.requirements == ("pytest",)
    script = build_script(p).splitlines()
    assert script[0] == "set -e"
    assert script[2].startswith("uv export --quiet --frozen") and "--project /testbed" in script[2]
    assert script[3].endswith("-r /tmp/lock.txt")
    assert script[4].endswith("--no-deps -e '/testbed[test]'")
    assert script[5].endswith(" pytest")


def test_offline_and_find_links_reach_every_install(tmp_path):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "attrs\n"})
    p = plan(repo, None, PYTEST, offline=True, find_links=("/a", "/b"))
    assert p.requirements[-5:] == ("--no-index", "--find-links", "/a", "--find-links", "/b")
    assert p.find_links == ("/a", "/b")


def test_install_commands_of_the_spec_run_after_the_install(tmp_path):
    spec = EnvironmentSpec(install=[["python", "-m", "compileall", "-q", "/testbed"]])
    script = build_script(plan(_repo(tmp_path / "repo", {}), spec, PYTEST))
    assert script.splitlines()[-1] == "python -m compileall -q /testbed"


# -- the installer's reason, from uv's real output -------------------------------------


def _uv_failure(tmp_path: Path, *options: str) -> str:
    """What uv really prints when a requirement cannot be met offline."""
    uv = find_uv_bin()
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True, capture_output=True)
    run = subprocess.run(
        [uv, *options, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "nonexistent-pkg==9.9", "--no-index", "--find-links", str(empty)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1",
                                             "UV_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert run.returncode != 0
    return run.stdout + run.stderr


@pytest.mark.parametrize("color", ["never", "always"])
def test_installer_reason_of_a_real_uv_failure_names_the_package(tmp_path, color):
    output = _uv_failure(tmp_path, "--color", color)
    assert "nonexistent-pkg" in output
    reason = installer_reason(output)
    assert "nonexistent-pkg" in reason
    assert "\n" not in reason and "\x1b" not in reason
    assert not reason.lower().startswith("error")
    assert reason.startswith("No solution found"), reason
    assert len(reason) <= 600


def test_installer_reason_without_output():
    assert installer_reason("") == "the installer failed without saying why"
