"""Test runs of untrusted code, as real subprocesses in bubblewrap under the sandbox's limits.

What a run does for well-behaved tests: per-test results, deadlines, limits, bounded output,
reuse of runs. The protections against hostile tests are in ``test_sandbox_limits.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from fixstream.sandbox import make_workspace, run_tests
from fixstream.sandbox.runner import isolation
from fixstream.sandbox.workspace import default_root
from fixstream.schemas import TestRun

pytestmark = pytest.mark.integration

PYTEST = ["python", "-m", "pytest", "-q"]


async def _workspace(tmp_path: Path, tests: dict[str, str], name: str = "t"):
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True, exist_ok=True)
    for file, code in tests.items():
        (repo / "tests" / file).write_text(code)
    return await make_workspace(repo, default_root(), name)


def _alive(pid: int) -> bool:
    """Running, not a zombie (a killed orphan stays a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def host_pids(token: str) -> list[int]:
    """Host pids of the live processes whose command line holds ``token``. Inside its pid
    namespace a run's processes have other pids: a unique word in their argv finds them."""
    needle = token.encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def gone_soon(token: str, within_s: float = 2.0) -> bool:
    """No process holding ``token`` is left on the host within ``within_s``."""
    deadline = time.monotonic() + within_s
    while host_pids(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def kill_all(token: str) -> None:
    for pid in host_pids(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def run_watched(ws, command: list[str], token: str, **kwargs) -> tuple[TestRun, int]:
    """The run, and the most processes holding ``token`` the host saw at once during it."""
    task = asyncio.create_task(run_tests(ws, command, **kwargs))
    most = 0
    while not task.done():
        most = max(most, len(host_pids(token)))
        await asyncio.sleep(0.02)
    return await task, most


def sleeper(token: str, seconds: float = 1000) -> str:
    """Python source for a child whose argv carries ``token`` (seen from the host)."""
    return f"[sys.executable, '-c', 'import time; time.sleep({seconds})', {token!r}]"


async def test_per_test_results_come_from_junit(tmp_path):
    code = "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"
    ws = await _workspace(tmp_path, {"test_a.py": code})
    run = await run_tests(ws, PYTEST)
    await ws.remove()
    assert run.exit_code == 1
    assert run.passed == ["tests/test_a.py::test_ok"]
    assert run.failed == ["tests/test_a.py::test_bad"]
    assert run.isolation == isolation().level != "refused"


async def test_selected_test_ids_run_alone(tmp_path):
    code = "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"
    ws = await _workspace(tmp_path, {"test_a.py": code})
    run = await run_tests(ws, PYTEST, test_ids=["tests/test_a.py::test_ok"])
    await ws.remove()
    assert run.exit_code == 0, run.output[-2000:]
    assert run.passed == ["tests/test_a.py::test_ok"] and run.failed == []


async def test_a_hanging_test_and_its_children_are_killed_at_the_deadline(tmp_path):
    token = f"fixstream-hang-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        "def test_hang():\n"
        f"    subprocess.Popen({sleeper(token)})\n"
        "    time.sleep(1000)\n"
    )
    ws = await _workspace(tmp_path, {"test_hang.py": code})
    try:
        run, seen = await run_watched(ws, PYTEST, token, timeout_s=2)
        assert seen == 1, "the test's child never ran (nothing to kill)"
        assert run.timed_out and run.exit_code is None
        assert run.duration_ms < 4000
        assert gone_soon(token), "the test's own child process outlived the run"
    finally:
        kill_all(token)
        await ws.remove()


@pytest.mark.parametrize("disk_mb", [16, 512])
async def test_memory_is_limited_to_memory_mb(tmp_path, disk_mb):
    """``memory_mb`` is what a test gets, whatever room its tmpfs disks have: 768 MB written
    under memory_mb=512 fails."""
    code = (
        "def test_big():\n"
        "    block = b'x' * (768 * 1024 ** 2)  # written: every page is really used\n"
        "    print('HELD', len(block))\n"
    )
    ws = await _workspace(tmp_path, {"test_mem.py": code})
    run = await run_tests(ws, [*PYTEST, "-s"], memory_mb=512, disk_mb=disk_mb, timeout_s=20)
    await ws.remove()
    assert "HELD" not in run.output, f"768 MB held under memory_mb=512, disk_mb={disk_mb}"
    assert run.failed == ["tests/test_mem.py::test_big"], run.output[-2000:]
    assert "MemoryError" in run.output


async def test_file_size_is_limited(tmp_path):
    code = (
        "def test_write(tmp_path):\n"
        "    with open(tmp_path / 'big', 'wb') as out:\n"
        "        out.write(b'x' * (64 * 1024 * 1024))\n"
    )
    ws = await _workspace(tmp_path, {"test_fsize.py": code})
    run = await run_tests(ws, PYTEST, max_file_mb=16)
    await ws.remove()
    assert run.failed == ["tests/test_fsize.py::test_write"], run.output[-2000:]
    assert "File too large" in run.output


async def test_output_keeps_head_and_tail(tmp_path):
    code = (
        "def test_loud():\n    print('START')\n    print('x' * 500_000)\n"
        "    assert False, 'THE-END'\n"
    )
    ws = await _workspace(tmp_path, {"test_loud.py": code})
    run = await run_tests(ws, [*PYTEST, "-s"], max_output_bytes=20_000)
    await ws.remove()
    assert len(run.output) < 25_000
    assert "bytes of output cut" in run.output
    assert "START" in run.output and "THE-END" in run.output


async def test_paths_in_the_output_are_the_sandboxs_own(tmp_path):
    code = "import os\n\ndef test_where():\n    print('ran in', os.getcwd())\n"
    ws = await _workspace(tmp_path, {"test_w.py": code})
    run = await run_tests(ws, [*PYTEST, "-s"])
    await ws.remove()
    assert "ran in /testbed" in run.output
    assert str(ws.path) not in run.output and str(default_root()) not in run.output


async def test_plugins_installed_beside_the_worker_are_not_loaded_unless_named(tmp_path):
    # hypothesis is installed here and registers a pytest plugin by entry point
    probe = "import sys\n\ndef test_probe():\n    assert 'hypothesis' not in sys.modules\n"
    ws = await _workspace(tmp_path, {"test_p.py": probe})
    plain = await run_tests(ws, PYTEST)
    named = await run_tests(ws, [*PYTEST, "-p", "hypothesis.extra.pytestplugin"])
    await ws.remove()
    assert plain.exit_code == 0, plain.output[-1500:]
    assert named.exit_code == 1 and named.failed, named.output[-1500:]


async def test_a_run_on_the_same_workspace_content_is_reused_and_a_changed_file_is_not(tmp_path):
    from fixstream.cache import Cache
    from fixstream.cache.backends import MemoryBackend

    cache = Cache(MemoryBackend(), ttl_s=60)
    code = (
        "import os, time\n\ndef test_slow():\n    print('ran in', os.getcwd())\n"
        "    time.sleep(0.3)\n    assert 1 == 2\n"
    )
    first_ws = await _workspace(tmp_path, {"test_a.py": code})
    first = await run_tests(first_ws, [*PYTEST, "-s"], cache=cache, tags=["bug:B1"])
    # another copy of the same content, under another name: the same run
    second_ws = await make_workspace(tmp_path / "repo", default_root(), "u")
    second = await run_tests(second_ws, [*PYTEST, "-s"], cache=cache)
    assert not first.cached and second.cached
    assert second.failed == first.failed == ["tests/test_a.py::test_slow"]
    assert second.output == first.output and "ran in /testbed" in first.output
    assert second.isolation == first.isolation == isolation().level
    (second_ws.path / "tests" / "test_a.py").write_text(code.replace("1 == 2", "1 == 1"))
    third = await run_tests(second_ws, [*PYTEST, "-s"], cache=cache)
    assert not third.cached and third.exit_code == 0
    stats = await cache.stats()
    assert stats.counters["tests"]["hits"] == 1 and stats.counters["tests"]["misses"] == 2
    assert stats.counters["tests"]["seconds_saved"] >= 0.3
    assert await cache.clear(bug="B1") == 1
    for ws in (first_ws, second_ws):
        await ws.remove()


async def test_a_timed_out_run_is_never_reused(tmp_path):
    from fixstream.cache import Cache
    from fixstream.cache.backends import MemoryBackend

    cache = Cache(MemoryBackend(), ttl_s=60)
    ws = await _workspace(
        tmp_path, {"test_hang.py": "import time\n\ndef test_h():\n    time.sleep(60)\n"}
    )
    runs = [await run_tests(ws, PYTEST, timeout_s=1, cache=cache) for _ in range(2)]
    await ws.remove()
    assert all(r.timed_out and not r.cached for r in runs)
