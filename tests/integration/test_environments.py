"""Environments built for real: uv in the build sandbox, offline from local wheels (never an
index), then test runs in bubblewrap with them. Only the end-to-end tests at the end need a
broker: the pipeline with repositories that need packages of their own (tests/data)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest
from conftest import TEST_DATA, read_until
from wheelhouse import modules_in, readable, tiny_wheel

from fixstream.artifacts import ArtifactStore
from fixstream.errors import EnvironmentBuildError
from fixstream.kafka import producer, publish
from fixstream.llm.simulator.process import simulator_process
from fixstream.reports import report_from_file
from fixstream.sandbox import make_workspace, run_tests
from fixstream.sandbox.edits import apply_edits
from fixstream.sandbox.environments import Environments
from fixstream.sandbox.workspace import default_root
from fixstream.scenarios import NOT_IMPLICATED, example_rules, scenario_text
from fixstream.schemas import BugReport, Edit, FixEvent, StatusEvent, TestRun
from fixstream.worker import WorkerProcess

pytestmark = pytest.mark.integration
PYTEST = ["python", "-m", "pytest", "-q"]
NO_RUNNER = ["python", "-c", "pass"]
"""A test command without pytest: the build installs the repository's requirements only."""
MB = 1024 * 1024


def _repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def wheels(tmp_path) -> Path:
    """This test's own local packages, beside the session's wheelhouse."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    return readable(folder)


def _envs(root: Path, *links: Path, **kwargs) -> Environments:
    return Environments(root, find_links=tuple(str(p) for p in links), offline=True, **kwargs)


def _site_packages(env_path: Path) -> Path:
    (found,) = env_path.glob("lib/python3*/site-packages")
    return found


async def _run_on_copy(repo: Path, name: str, env, edits: Sequence[Edit] = ()) -> TestRun:
    """The suite on a fresh workspace copy of ``repo`` with ``edits``, in ``env``."""
    ws = await make_workspace(repo, default_root(), name)
    try:
        await asyncio.to_thread(apply_edits, ws, list(edits))
        return await run_tests(ws, PYTEST, env=env)
    finally:
        await ws.remove()


def _stored(root: Path) -> set[str]:
    """The environments in the store (not its locks, build area or cache)."""
    return {p.parent.name for p in root.glob("*/meta.json")}


async def test_a_second_ensure_builds_nothing_and_new_requirements_build_anew(tmp_path, wheelhouse):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "iniconfig\n"})
    envs = _envs(tmp_path / "envs", wheelhouse)
    env, built = await envs.ensure(repo, None, NO_RUNNER)
    assert built and envs.builds == 1
    assert (_site_packages(env.path) / "iniconfig").is_dir()

    started = time.perf_counter()
    again, built_again = await envs.ensure(repo, None, NO_RUNNER)
    assert time.perf_counter() - started < 0.5
    assert again == env and not built_again and envs.builds == 1

    other = _envs(tmp_path / "envs", wheelhouse)  # another worker on the machine
    theirs, built_by_them = await other.ensure(repo, None, NO_RUNNER)
    assert theirs == env and not built_by_them and other.builds == 0

    (repo / "requirements.txt").write_text("iniconfig\npluggy\n")
    new, built_new = await envs.ensure(repo, None, NO_RUNNER)
    assert built_new and new.key != env.key and envs.builds == 2
    assert (_site_packages(new.path) / "pluggy").is_dir()
    assert not (_site_packages(env.path) / "pluggy").exists(), "the old version is untouched"
    assert _stored(tmp_path / "envs") == {env.key, new.key}
    assert list((tmp_path / "envs" / ".building").iterdir()) == []


async def test_a_repository_with_nothing_to_install_gets_a_bare_environment(tmp_path, wheelhouse):
    repo = _repo(tmp_path / "repo", {"tests/test_x.py": "import unittest\n"})
    envs = _envs(tmp_path / "envs", wheelhouse)
    env, built = await envs.ensure(repo, None, ["python", "-m", "unittest"])
    assert built and (env.path / "bin" / "python").exists()
    assert {p.name for p in _site_packages(env.path).iterdir()} <= {
        "_virtualenv.py",
        "_virtualenv.pth",
    }


async def test_the_store_keeps_the_environment_and_its_record_only(tmp_path, wheelhouse):
    """Not the copy of the repository the build ran on: it would be stale, and is not counted
    in the store's budget."""
    repo = _repo(tmp_path / "repo", {"requirements.txt": "iniconfig\n", "big.bin": "x" * MB})
    envs = _envs(tmp_path / "envs", wheelhouse)
    env, _ = await envs.ensure(repo, None, NO_RUNNER)
    assert {p.name for p in (tmp_path / "envs" / env.key).iterdir()} == {"env", "meta.json"}


@pytest.fixture
def builds_started(monkeypatch) -> list[str]:
    """The keys of every build begun (a request that found no environment), whoever ran it."""
    started: list[str] = []
    build_locked = Environments._build_locked

    async def counted(self, repo, p):
        started.append(p.key)
        return await build_locked(self, repo, p)

    monkeypatch.setattr(Environments, "_build_locked", counted)
    return started


async def test_concurrent_requests_in_one_process_share_one_build(
    tmp_path, wheelhouse, builds_started
):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "iniconfig\n"})
    envs = _envs(tmp_path / "envs", wheelhouse)
    results = await asyncio.gather(*(envs.ensure(repo, None, NO_RUNNER) for _ in range(4)))
    assert all(built for _, built in results), "every request found no environment..."
    assert len(builds_started) == 1, "...and waited for the one build in flight"
    assert envs.builds == 1
    assert len({env for env, _ in results}) == 1
    assert _stored(tmp_path / "envs") == {results[0][0].key}


async def test_two_stores_on_one_root_build_once_under_the_file_lock(
    tmp_path, wheelhouse, builds_started
):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "iniconfig\n"})
    one, two = _envs(tmp_path / "envs", wheelhouse), _envs(tmp_path / "envs", wheelhouse)
    (env_one, built_one), (env_two, built_two) = await asyncio.gather(
        one.ensure(repo, None, NO_RUNNER), two.ensure(repo, None, NO_RUNNER)
    )
    assert len(builds_started) == 2, "both found no environment and went for the lock"
    assert one.builds + two.builds == 1
    assert sorted([built_one, built_two]) == [False, True], "only the builder says it built"
    assert env_one == env_two
    assert _stored(tmp_path / "envs") == {env_one.key}
    assert list((tmp_path / "envs" / ".building").iterdir()) == []


async def test_a_failed_build_says_what_the_installer_said(tmp_path, wheelhouse):
    repo = _repo(tmp_path / "repo", {"requirements.txt": "iniconfig\nnonexistent-pkg==9.9\n"})
    envs = _envs(tmp_path / "envs", wheelhouse)
    with pytest.raises(EnvironmentBuildError) as failure:
        await envs.ensure(repo, None, PYTEST)
    message = str(failure.value)
    assert message.startswith("environment:"), message
    assert "nonexistent-pkg" in message
    assert failure.value.retryable
    assert envs.builds == 0
    assert _stored(tmp_path / "envs") == set()
    assert list((tmp_path / "envs" / ".building").iterdir()) == [], "the failed build is gone"


async def test_the_least_recently_used_environment_is_evicted_past_the_budget(tmp_path, wheels):
    """Three environments of about 2 MB each in a 5 MB store: the third build evicts the one
    used least recently, not the oldest, and never the one just built."""
    for name in ("big_a", "big_b", "big_c"):
        blob = "DATA = '" + "x" * (2 * MB) + "'\n"
        tiny_wheel(wheels, name, "1.0", {f"{name}/__init__.py": blob})
    repos = {
        name: _repo(tmp_path / name, {"requirements.txt": f"{name}==1.0\n"})
        for name in ("big_a", "big_b", "big_c")
    }
    envs = _envs(tmp_path / "envs", wheels, disk_mb=5)
    a, _ = await envs.ensure(repos["big_a"], None, NO_RUNNER)
    b, _ = await envs.ensure(repos["big_b"], None, NO_RUNNER)
    assert _stored(tmp_path / "envs") == {a.key, b.key}, "two fit the budget"
    await asyncio.sleep(0.05)
    _, reused = await envs.ensure(repos["big_a"], None, NO_RUNNER)  # a is used again: b is LRU
    assert not reused
    await asyncio.sleep(0.05)
    c, built = await envs.ensure(repos["big_c"], None, NO_RUNNER)
    assert built and envs.builds == 3
    assert _stored(tmp_path / "envs") == {a.key, c.key}
    assert not (tmp_path / "envs" / b.key).exists()
    assert list((tmp_path / "envs" / ".building").iterdir()) == []
    _, rebuilt = await envs.ensure(repos["big_b"], None, NO_RUNNER)  # evicted: built again
    assert rebuilt and envs.builds == 4


async def test_a_budget_smaller_than_one_environment_keeps_the_one_just_built(tmp_path, wheels):
    tiny_wheel(wheels, "small", "1.0", {"small.py": "X = 1\n"})
    first = _repo(tmp_path / "first", {"requirements.txt": "small==1.0\n"})
    second = _repo(tmp_path / "second", {"requirements.txt": "small\n"})
    envs = _envs(tmp_path / "envs", wheels, disk_mb=0)
    a, _ = await envs.ensure(first, None, NO_RUNNER)
    assert _stored(tmp_path / "envs") == {a.key}
    b, _ = await envs.ensure(second, None, NO_RUNNER)
    assert _stored(tmp_path / "envs") == {b.key}
    assert envs.evict(keep=b.key) == []
    assert _stored(tmp_path / "envs") == {b.key}


def _sizes(root: Path, keys: list[str]) -> list[int]:
    return [orjson.loads((root / k / "meta.json").read_bytes())["bytes"] for k in keys]


async def test_evict_stops_as_soon_as_the_store_fits(tmp_path, wheels):
    for name in ("one", "two", "three"):
        tiny_wheel(wheels, name, "1.0", {f"{name}.py": "DATA = '" + "y" * (2 * MB) + "'\n"})
    envs = _envs(tmp_path / "envs", wheels)
    keys = []
    for name in ("one", "two", "three"):
        repo = _repo(tmp_path / name, {"requirements.txt": f"{name}\n"})
        env, _ = await envs.ensure(repo, None, NO_RUNNER)
        keys.append(env.key)
        await asyncio.sleep(0.05)
    total = sum(_sizes(tmp_path / "envs", keys))
    envs.disk_mb = math.ceil((total - _sizes(tmp_path / "envs", keys[:1])[0]) / MB)
    assert envs.disk_mb * MB < total
    assert envs.evict() == [keys[0]], "the oldest only: then the store fits"
    assert _stored(tmp_path / "envs") == set(keys[1:])


FXTINY = {"fxtiny/__init__.py": '"""A package only the test environment has."""\n\nANSWER = 42\n'}
ISOLATED_TESTS = """\
import importlib.util


def test_the_declared_package_is_there():
    import fxtiny

    assert fxtiny.ANSWER == 42


def test_none_of_the_workers_packages_are():
    assert importlib.util.find_spec("fixstream") is None
    assert importlib.util.find_spec("faust") is None
"""


async def test_tests_run_in_the_repositorys_environment_not_the_workers(
    tmp_path, wheelhouse, wheels
):
    tiny_wheel(wheels, "fxtiny", "1.0", FXTINY)
    repo = _repo(
        tmp_path / "repo",
        {
            "requirements.txt": "fxtiny==1.0\n",
            "pytest.ini": "[pytest]\ntestpaths = tests\n",
            "tests/test_isolated.py": ISOLATED_TESTS,
        },
    )
    envs = _envs(tmp_path / "envs", wheelhouse, wheels)
    env, built = await envs.ensure(repo, None, PYTEST)
    assert built
    ws = await make_workspace(repo, default_root(), "env-isolation")
    try:
        inside = await run_tests(ws, PYTEST, env=env)
        worker = await run_tests(ws, PYTEST, env=None)  # the worker's own interpreter
    finally:
        await ws.remove()
    assert inside.exit_code == 0, inside.output
    assert sorted(inside.passed) == [
        "tests/test_isolated.py::test_none_of_the_workers_packages_are",
        "tests/test_isolated.py::test_the_declared_package_is_there",
    ]
    assert inside.isolation.startswith("bwrap")
    assert worker.exit_code == 1
    assert sorted(worker.failed) == sorted(inside.passed)
    assert "ModuleNotFoundError: No module named 'fxtiny'" in worker.output


# -- projects with a build system: installed editable at /testbed --------------------------

BACKEND = '''\
"""A PEP 517/660 build backend in the repository itself: builds need nothing from an index."""

import base64
import hashlib
import os
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))


def _metadata():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        project = tomllib.load(file)["project"]
    lines = [f"Metadata-Version: 2.1", f"Name: {project['name']}",
             f"Version: {project['version']}"]
    lines += [f"Requires-Dist: {r}" for r in project.get("dependencies", [])]
    for extra, requires in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requires]
    return project["name"], project["version"], "\\n".join(lines) + "\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, metadata = _metadata()
    info = f"{name}-{version}.dist-info"
    files = {
        f"_{name}_editable.pth": ROOT + "\\n",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    files[f"{info}/RECORD"] = "\\n".join([*record, f"{info}/RECORD,,"]) + "\\n"
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


build_wheel = build_editable
'''


def _project(name: str, dependencies: list[str], test_extra: list[str]) -> str:
    return (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = {dependencies!r}\n\n'
        f"[project.optional-dependencies]\ntest = {test_extra!r}\n"
    ).replace("'", '"')


PROJECT_TESTS = """\
import pathlib

import shop


def test_the_project_is_imported_from_this_workspace():
    assert pathlib.Path(shop.__file__).read_text() == "MARK = 'mine'\\n"


def test_its_dependencies_and_test_extra_are_installed():
    import iniconfig  # dependencies
    import pluggy  # the test extra

    assert iniconfig and pluggy
"""


async def test_a_project_is_installed_editable_from_the_workspace_under_test(tmp_path, wheelhouse):
    """One build serves every workspace: ``-e /testbed`` points at whatever copy a run has
    there, not at the repository the environment was built from."""
    repo = _repo(
        tmp_path / "repo",
        {
            "backend.py": BACKEND,
            "pyproject.toml": _project("shop", ["iniconfig"], ["pluggy"]),
            "shop/__init__.py": "MARK = 'built from this'\n",
            "tests/test_project.py": PROJECT_TESTS,
        },
    )
    envs = _envs(tmp_path / "envs", wheelhouse)
    env, _ = await envs.ensure(repo, None, PYTEST)
    assert envs.plan(repo, None, PYTEST).requirements[:2] == ("-e", "/testbed[test]")
    (repo / "shop" / "__init__.py").write_text("MARK = 'mine'\n")  # a candidate's change
    again, built = await envs.ensure(repo, None, PYTEST)
    assert again == env and not built, "source changes need no new environment"
    run = await _run_on_copy(repo, "editable", env)
    assert run.exit_code == 0, run.output
    assert len(run.passed) == 2


POETRY_LOCK = "".join(
    f'[[package]]\nname = "{name}"\nversion = "{pinned}"\noptional = false\n\n'
    for name, pinned in ((n, importlib.metadata.version(n)) for n in ("iniconfig", "pluggy"))
)
"""Pinned to the versions installed here: the wheelhouse is made of them."""


async def test_a_locked_project_gets_its_pins_and_a_working_runner(tmp_path, wheelhouse):
    """The lock's pins are installed as they are and the project without its dependencies
    (the lock has them); the runner the lock does not have still comes with its own."""
    repo = _repo(
        tmp_path / "repo",
        {
            "backend.py": BACKEND,
            "pyproject.toml": _project("shop", ["iniconfig"], ["pluggy"]),
            "poetry.lock": POETRY_LOCK,
            "shop/__init__.py": "MARK = 'mine'\n",
            "tests/test_project.py": PROJECT_TESTS,
        },
    )
    envs = _envs(tmp_path / "envs", wheelhouse)
    env, _ = await envs.ensure(repo, None, PYTEST)
    run = await _run_on_copy(repo, "locked", env)
    assert run.exit_code == 0, run.output
    assert len(run.passed) == 2


# -- the test repositories (tests/data): real bugs that need packages of their own ----------

DATA_PACKAGES = {"needs_dep": ("fxunits", "1.0"), "conflicting_dep": ("cachetools", "0.0.1")}
"""Each test repository, and the package (built from its ``package/``) it pins."""


def _data_wheels(dest: Path) -> Path:
    dest.mkdir(exist_ok=True)
    readable(dest)
    for name, (project, version) in DATA_PACKAGES.items():
        tiny_wheel(dest, project, version, modules_in(TEST_DATA / name / "package"))
    return dest


def test_the_workers_own_cachetools_lacks_what_the_old_one_had():
    """conflicting_dep needs cachetools 0.0.1's ``memo_key``: with the worker's packages its
    tests could not pass, only in the environment built for it."""
    import cachetools

    assert importlib.metadata.version("cachetools") != "0.0.1"
    assert not hasattr(cachetools, "memo_key")


@pytest.mark.parametrize("name", sorted(DATA_PACKAGES))
async def test_a_test_repository_is_a_real_bug_only_its_environment_can_run(
    name, tmp_path, wheelhouse
):
    """What examples/verify.py checks of the examples, in the repository's environment: its
    tests pass on the buggy code, the reproduction test fails on an assertion, the fix makes
    every test pass; and with the worker's packages its tests cannot even run."""
    folder = TEST_DATA / name
    fix = orjson.loads((folder / "fix.json").read_bytes())
    repro = fix["reproduction_test"]
    envs = _envs(tmp_path / "envs", wheelhouse, _data_wheels(tmp_path / "wheels"))
    env, _ = await envs.ensure(folder / "repo", None, PYTEST)

    async def run(name: str, edits: list[Edit], env=env):
        return await _run_on_copy(folder / "repo", name, env, edits)

    add_test = Edit(path=repro["path"], search="", replace=repro["code"])
    fixed = [Edit(**e) for e in fix["edits"]]
    buggy, reproduced, after = await asyncio.gather(
        run(f"{name}-buggy", []), run(f"{name}-repro", [add_test]),
        run(f"{name}-fixed", [add_test, *fixed]),
    )  # fmt: skip
    assert buggy.exit_code == 0 and buggy.passed, buggy.output
    assert reproduced.exit_code == 1
    assert reproduced.failed and all(t.startswith(repro["path"]) for t in reproduced.failed)
    assert "AssertionError" in reproduced.output or "assert " in reproduced.output
    assert "ModuleNotFoundError" not in reproduced.output
    assert after.exit_code == 0, after.output
    assert set(after.passed) == set(buggy.passed) | set(reproduced.failed)

    unisolated = await run(f"{name}-worker", [], env=None)
    assert unisolated.exit_code != 0 and not unisolated.passed
    expected = {
        "needs_dep": "No module named 'fxunits'",
        "conflicting_dep": "module 'cachetools' has no attribute 'memo_key'",
    }[name]
    assert expected in unisolated.output


@pytest.fixture(scope="module")
def data_sim(tmp_path_factory) -> Iterator[str]:
    """The simulator scripted from the test repositories' fix.json, as the examples' are."""
    folder = tmp_path_factory.mktemp("scenarios")
    args = []
    for name in sorted(DATA_PACKAGES):
        scenario = folder / f"{name}.yaml"
        scenario.write_text(scenario_text(example_rules(TEST_DATA / name)))
        args += ["--scenario", str(scenario)]
    (folder / "common.yaml").write_text(scenario_text([NOT_IMPLICATED]))
    args += ["--scenario", str(folder / "common.yaml")]
    with simulator_process("--time-scale", "0.01", *args) as url:
        yield url


def _report(settings, path: Path, suffix: str) -> BugReport:
    store = ArtifactStore(settings.artifact_dir)
    report = report_from_file(path, store=store, inline_limit=settings.inline_artifact_bytes)
    return report.model_copy(update={"bug_id": f"{report.bug_id}-{suffix}"})


def _through_the_pipeline(
    settings, tmp_path: Path, reports: list[BugReport]
) -> tuple[list[FixEvent], list[StatusEvent]]:
    """One worker; every fix event of ``reports`` (read again after a pause, so that a
    duplicate would show) and their status events."""
    ids = {r.bug_id for r in reports}

    async def submit() -> None:
        async with producer(settings) as client:
            for report in reports:
                await publish(client, "bugs.reported", report.bug_id, report)

    def read(topic: str, done) -> list:
        return asyncio.run(read_until(settings, topic, done, timeout=120))

    def everything(topic: str, settle: float = 1.0) -> list:
        deadline = time.monotonic() + settle
        return read(topic, lambda _: time.monotonic() > deadline)

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        asyncio.run(submit())
        read("fixes", lambda records: {r.key.decode() for r in records} >= ids)
        time.sleep(1.0)  # a second fix event for a bug would arrive now
        fixes = everything("fixes")
        statuses = everything("bugs.status")
    finally:
        worker.stop()
    return (
        [FixEvent.model_validate_json(r.value) for r in fixes if r.key.decode() in ids],
        [StatusEvent.model_validate_json(r.value) for r in statuses if r.key.decode() in ids],
    )


def test_repositories_needing_packages_the_worker_lacks_or_conflicts_with_are_fixed(
    settings, data_sim, tmp_path
):
    import cachetools

    assert not hasattr(cachetools, "memo_key"), "the worker's own cachetools could not pass"
    wheels = _data_wheels(tmp_path / "wheels")
    scripted = settings.model_copy(
        update={"llm_base_url": data_sim, "env_find_links": [*settings.env_find_links, str(wheels)]}
    )
    reports = [_report(scripted, TEST_DATA / n / "report.json", "e2e") for n in DATA_PACKAGES]
    fixes, statuses = _through_the_pipeline(scripted, tmp_path, reports)

    assert sorted(f.bug_id for f in fixes) == sorted(r.bug_id for r in reports), "one each"
    for fix in fixes:
        name = fix.bug_id.removeprefix("data-").removesuffix("-e2e")
        known = orjson.loads((TEST_DATA / name / "fix.json").read_bytes())
        assert fix.status == "fixed", (fix.bug_id, fix.reason)
        for edit in known["edits"]:
            assert f"+++ b/{edit['path']}" in fix.patch
            assert "\n+" + edit["replace"].rstrip("\n") in fix.patch, fix.patch
        (run,) = fix.test_runs
        assert run.exit_code == 0 and run.isolation.startswith("bwrap"), run.output
        repro = known["reproduction_test"]["path"]
        assert any(t.startswith(repro) for t in run.passed), run.passed
        built = [s for s in statuses if s.bug_id == fix.bug_id and s.state == "progress"]
        assert [(s.stage, s.message.split()[0], s.message.split()[-1]) for s in built] == [
            ("reproduce", "environment", "(requirements.txt)"),
            ("reproduce", "environment", "built"),
        ], "said before it began, built once, in reproduce; validate reused it"


def test_a_repository_whose_requirements_cannot_be_installed_fails_with_the_reason(
    settings, data_sim, tmp_path
):
    folder = tmp_path / "unmet"
    shutil.copytree(TEST_DATA / "needs_dep", folder, ignore=shutil.ignore_patterns("package"))
    (folder / "repo" / "requirements.txt").write_text("nonexistent-pkg==9.9\n")
    scripted = settings.model_copy(update={"llm_base_url": data_sim})
    report = _report(scripted, folder / "report.json", "unmet")
    fixes, statuses = _through_the_pipeline(scripted, tmp_path, [report])

    (fix,) = fixes
    assert fix.status == "failed"
    assert "environment:" in fix.reason and "nonexistent-pkg" in fix.reason, fix.reason
    assert "not reproduced" not in fix.reason.lower()
    assert fix.patch == ""
    stages = {s.stage for s in statuses if s.state == "done"} - {"final"}
    assert "reproduce" not in stages and "validate" not in stages
