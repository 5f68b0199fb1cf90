"""Test runs of untrusted code, as real subprocesses under the sandbox's limits."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from fixstream.sandbox import make_workspace, network_isolation_available, run_tests
from fixstream.sandbox.workspace import default_root

pytestmark = pytest.mark.integration


async def _workspace(tmp_path: Path, tests: dict[str, str]):
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    for name, code in tests.items():
        (repo / "tests" / name).write_text(code)
    return await make_workspace(repo, default_root(), "t")


PYTEST = ["python", "-m", "pytest", "-q"]


def _alive(pid: int) -> bool:
    """Running, not a zombie (a killed orphan stays a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_per_test_results_come_from_junit(tmp_path):
    ws = await _workspace(
        tmp_path, {"test_a.py": "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"}
    )
    run = await run_tests(ws, PYTEST)
    await ws.remove()
    assert run.exit_code == 1
    assert run.passed == ["tests/test_a.py::test_ok"]
    assert run.failed == ["tests/test_a.py::test_bad"]


async def test_a_hanging_test_and_its_children_are_killed_at_the_deadline(tmp_path):
    code = (
        "import subprocess, time\n"
        "def test_hang():\n"
        "    child = subprocess.Popen(['sleep', '1000'])\n"
        "    open('child.pid', 'w').write(str(child.pid))\n"
        "    time.sleep(1000)\n"
    )
    ws = await _workspace(tmp_path, {"test_hang.py": code})
    run = await run_tests(ws, PYTEST, timeout_s=3, network=True)
    child = int((ws.path / "child.pid").read_text())
    await ws.remove()
    assert run.timed_out and run.exit_code is None
    assert not _alive(child), "the test's own child process was killed with it"


async def test_memory_is_limited(tmp_path):
    code = "def test_big():\n    block = bytearray(2 * 1024 ** 3)\n    assert block\n"
    ws = await _workspace(tmp_path, {"test_mem.py": code})
    run = await run_tests(ws, PYTEST, memory_mb=512)
    await ws.remove()
    assert run.failed == ["tests/test_mem.py::test_big"]
    assert "MemoryError" in run.output


async def test_file_size_is_limited(tmp_path):
    code = (
        "def test_write(tmp_path):\n"
        "    with open(tmp_path / 'big', 'wb') as out:\n"
        "        out.write(b'x' * (200 * 1024 * 1024))\n"
    )
    ws = await _workspace(tmp_path, {"test_fsize.py": code})
    run = await run_tests(ws, PYTEST, max_file_mb=16, memory_mb=1024)
    await ws.remove()
    assert run.failed == ["tests/test_fsize.py::test_write"]
    assert "File too large" in run.output


async def test_the_workers_secrets_are_not_visible(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-xyz")
    monkeypatch.setenv("FIXSTREAM_SASL_PASSWORD", "kafka-secret")
    code = (
        "import os\n"
        "def test_env():\n"
        "    assert 'OPENAI_API_KEY' not in os.environ\n"
        "    assert not any(k.startswith('FIXSTREAM_') for k in os.environ)\n"
        "    assert 'sk-secret-xyz' not in str(os.environ)\n"
        "    print(sorted(os.environ))\n"
    )
    ws = await _workspace(tmp_path, {"test_env.py": code})
    run = await run_tests(ws, [*PYTEST, "-s"])
    await ws.remove()
    assert run.exit_code == 0, run.output
    assert "sk-secret-xyz" not in run.output and "kafka-secret" not in run.output


async def test_the_worker_environment_cannot_be_read_through_proc(tmp_path, monkeypatch):
    """Same machine, same /proc: only a different user keeps the worker's environ closed."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-xyz")
    code = (
        "def test_read():\n"
        f"    data = open('/proc/{os.getpid()}/environ', 'rb').read()\n"
        "    assert b'sk-secret-xyz' not in data\n"
    )
    ws = await _workspace(tmp_path, {"test_proc.py": code})
    run = await run_tests(ws, PYTEST)
    await ws.remove()
    assert "sk-secret-xyz" not in run.output
    assert run.exit_code == 1 and "PermissionError" in run.output


@pytest.mark.skipif(not network_isolation_available(), reason="unshare -Urn is not permitted here")
async def test_no_network(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        "def test_connect():\n"
        f"    socket.create_connection(('127.0.0.1', {port}), 2).close()\n"
    )
    ws = await _workspace(tmp_path, {"test_net.py": code})
    isolated = await run_tests(ws, PYTEST)
    open_net = await run_tests(ws, PYTEST, network=True)
    await ws.remove()
    server.close()
    assert isolated.failed == ["tests/test_net.py::test_connect"]
    assert open_net.exit_code == 0, "the control: with network the same test connects"


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
    assert "THE-END" in run.output


async def test_plugins_installed_beside_the_worker_are_not_loaded_unless_named(tmp_path):
    # hypothesis is installed here and registers a pytest plugin by entry point
    probe = "import sys\n\ndef test_probe():\n    assert 'hypothesis' not in sys.modules\n"
    ws = await _workspace(tmp_path, {"test_p.py": probe})
    assert (await run_tests(ws, PYTEST)).exit_code == 0
    named = await run_tests(ws, [*PYTEST, "-p", "hypothesis.extra.pytestplugin"])
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
    first = await run_tests(first_ws, PYTEST, cache=cache, tags=["bug:B1"])
    # another copy of the same content, under another name: the same run
    second_ws = await make_workspace(tmp_path / "repo", default_root(), "u")
    second = await run_tests(second_ws, PYTEST, cache=cache)
    assert not first.cached and second.cached
    assert second.failed == first.failed == ["tests/test_a.py::test_slow"]
    assert second.output == first.output and "ran in <workspace>" in first.output
    assert str(first_ws.path) not in first.output  # host paths stay out of prompts
    (second_ws.path / "tests" / "test_a.py").write_text(code.replace("1 == 2", "1 == 1"))
    third = await run_tests(second_ws, PYTEST, cache=cache)
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
    runs = [await run_tests(ws, PYTEST, timeout_s=1.5, cache=cache) for _ in range(2)]
    await ws.remove()
    assert all(r.timed_out and not r.cached for r in runs)
