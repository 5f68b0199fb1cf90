"""Test runs in a container (``fixstream/sandbox/container.py``), for real, on a Docker engine
(or Podman's docker-compatible socket): per-test results through the report file, and the
layout's protections: no network, uid 65534, a pids limit, none of the worker's variables,
a deadline, bounded output. Skipped, with the engine's own error, where no engine answers.

Each inner test reports what it saw (``TAG <python literal>``, printed with ``-s``); the
outer test asserts on it, and shows first, where it can, that the check sees the opposite.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import re
import uuid
from pathlib import Path

import pytest

from fixstream.sandbox import bwrap, make_workspace, runner
from fixstream.sandbox.bwrap import Layout
from fixstream.sandbox.container import (
    LABEL,
    container_problem,
    default_image,
    run_in_container,
)
from fixstream.sandbox.runner import Finished, Limits, sandbox_env
from fixstream.sandbox.workspace import default_root

PROBLEM = container_problem()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(PROBLEM is not None, reason=f"no container engine answers: {PROBLEM}"),
]

PYTEST = ["python", "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
REPORT_ARG = "--junitxml=/dev/fd/{report_fd}"
LIMITS = Limits(memory_mb=512, cpu_s=60, processes=64, file_mb=64, disk_mb=64, cpus=1.0)


async def _run(
    tmp_path: Path,
    tests: dict[str, str],
    *,
    args: tuple[str, ...] = (REPORT_ARG,),
    limits: Limits = LIMITS,
    timeout_s: float = 60.0,
    env_vars: dict[str, str] | None = None,
    network: bool = False,
    max_output_bytes: int = 64_000,
) -> tuple[Finished, list[str], list[str], Path]:
    """The run, its passed and failed test ids, and the host's copy of the workspace."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True, exist_ok=True)
    for file, code in tests.items():
        (repo / "tests" / file).write_text(code)
    ws = await make_workspace(repo, default_root(), "container")
    await asyncio.to_thread(runner.chown_tree, ws.path)  # as run_tests does: 65534 reads it
    layout = Layout(
        command=[*PYTEST, *args], workspace=str(ws.path),
        interpreters=bwrap.interpreter_prefixes(), network=network, disk_mb=limits.disk_mb,
    )  # fmt: skip
    try:
        done = await run_in_container(
            layout, limits=limits, timeout_s=timeout_s,
            env_vars=env_vars if env_vars is not None else sandbox_env(None),
            max_output_bytes=max_output_bytes, image=default_image(),
        )  # fmt: skip
        passed, failed = runner._test_ids(ws.path, done.report)
        return done, passed, failed, ws.path
    finally:
        await ws.remove()


def reported(output: str, tag: str):
    """The value an inner test printed as ``TAG <python literal>`` (one line)."""
    match = re.search(rf"^{tag} (.*)$", output, re.M)
    assert match, f"the inner test reported no {tag}:\n{output[-3000:]}"
    return ast.literal_eval(match.group(1))


async def test_per_test_results_come_back_through_the_report_file(tmp_path):
    code = "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"
    done, passed, failed, _ = await _run(tmp_path, {"test_a.py": code})
    assert done.returncode == 1, done.output[-3000:]
    assert not done.timed_out
    assert passed == ["tests/test_a.py::test_ok"]
    assert failed == ["tests/test_a.py::test_bad"]
    assert done.report is not None and b"<testsuite" in done.report
    assert done.isolation == "container"
    assert "assert 1 == 2" in done.output


async def test_a_passing_run_exits_zero(tmp_path):
    code = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"
    done, passed, failed, _ = await _run(tmp_path, {"test_a.py": code})
    assert done.returncode == 0, done.output[-3000:]
    assert passed == ["tests/test_a.py::test_one", "tests/test_a.py::test_two"]
    assert failed == []


async def test_a_command_without_a_report_gets_none(tmp_path):
    done, passed, failed, _ = await _run(tmp_path, {"test_a.py": "def test_ok():\n    pass\n"},
                                         args=())  # fmt: skip
    assert done.returncode == 0, done.output[-3000:]
    assert done.report is None and passed == failed == []


NETWORK = """
import socket

def test_network():
    lines = open('/proc/net/dev').read().splitlines()[2:]
    print('INTERFACES', sorted(line.split(':')[0].strip() for line in lines))
    try:
        socket.create_connection(('1.1.1.1', 53), timeout=3).close()
        reached = True
    except OSError:
        reached = False
    print('REACHED', reached)
"""


async def test_a_run_has_no_network(tmp_path):
    done, passed, _, _ = await _run(tmp_path, {"test_net.py": NETWORK})
    assert passed == ["tests/test_net.py::test_network"], done.output[-3000:]
    assert reported(done.output, "INTERFACES") == ["lo"]
    assert reported(done.output, "REACHED") is False


async def test_the_check_sees_a_network_when_one_is_given(tmp_path):
    done, passed, _, _ = await _run(tmp_path, {"test_net.py": NETWORK}, network=True)
    assert passed == ["tests/test_net.py::test_network"], done.output[-3000:]
    assert len(reported(done.output, "INTERFACES")) > 1  # the engine's, beside lo


IDENTITY = """
import os

def test_identity():
    print('IDS', [os.getuid(), os.geteuid(), os.getgid(), os.getegid()])
    status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
    print('CAPS', [status['CapEff'].strip(), status['CapPrm'].strip()])
    print('NO_NEW_PRIVS', repr(status['NoNewPrivs'].strip()))
    writable = {}
    for path in ('/testbed/new.txt', '/tmp/new.txt', '/new.txt', '/usr/new.txt',
                 '/fixstream/src/new.txt', '/fixstream/out/new.txt'):
        try:
            open(path, 'w').close()
            writable[path] = True
        except OSError:
            writable[path] = False
    print('WRITABLE', writable)
    print('CWD', repr(os.getcwd()))
"""


async def test_a_run_is_uid_65534_without_privileges_on_a_read_only_root(tmp_path):
    done, passed, _, ws = await _run(tmp_path, {"test_id.py": IDENTITY})
    assert passed == ["tests/test_id.py::test_identity"], done.output[-3000:]
    assert reported(done.output, "IDS") == [65534] * 4
    assert reported(done.output, "CAPS") == ["0000000000000000"] * 2
    assert reported(done.output, "NO_NEW_PRIVS") == "1"
    assert reported(done.output, "CWD") == "/testbed"
    assert reported(done.output, "WRITABLE") == {
        "/testbed/new.txt": True, "/tmp/new.txt": True, "/new.txt": False,
        "/usr/new.txt": False, "/fixstream/src/new.txt": False,
        "/fixstream/out/new.txt": False,
    }  # fmt: skip
    assert not (ws / "new.txt").exists()  # the run wrote its copy, never the worker's


FORKS = """
import os, time

def test_fork():
    children, error = [], None
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = type(exc).__name__
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    print('FORKED', len(children))
    print('ERROR', repr(error))
"""


async def test_a_run_cannot_take_more_processes_than_its_pids_limit(tmp_path):
    roomy = await _run(tmp_path / "roomy", {"test_fork.py": FORKS},
                       limits=dataclasses.replace(LIMITS, processes=512))  # fmt: skip
    assert reported(roomy[0].output, "FORKED") == 200, roomy[0].output[-3000:]  # the check
    done, passed, _, _ = await _run(tmp_path / "tight", {"test_fork.py": FORKS},
                                    limits=dataclasses.replace(LIMITS, processes=32))  # fmt: skip
    assert passed == ["tests/test_fork.py::test_fork"], done.output[-3000:]
    forked = reported(done.output, "FORKED")
    assert 0 < forked < 32
    assert reported(done.output, "ERROR") == "BlockingIOError"  # fork: EAGAIN


ENVIRONMENT = """
import os

def test_environment():
    print('NAMES', sorted(os.environ))
    print('PASSED', repr(os.environ.get('FIXSTREAM_PASSED_ON')))
    print('LEAKED', {TOKEN!r} in open('/proc/self/environ').read())
"""


async def test_the_workers_secret_variables_are_not_visible(tmp_path, monkeypatch):
    token = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("FIXSTREAM_CONTAINER_TEST_SECRET", token)
    env_vars = {**sandbox_env(None), "FIXSTREAM_PASSED_ON": "yes"}
    code = ENVIRONMENT.replace("{TOKEN!r}", repr(token))
    done, passed, _, _ = await _run(tmp_path, {"test_env.py": code}, env_vars=env_vars)
    assert passed == ["tests/test_env.py::test_environment"], done.output[-3000:]
    assert reported(done.output, "PASSED") == "yes"  # what is given is seen: the check works
    assert "FIXSTREAM_CONTAINER_TEST_SECRET" not in reported(done.output, "NAMES")
    assert reported(done.output, "LEAKED") is False
    assert token not in done.output.replace(repr(token), "")


async def test_a_hanging_run_is_killed_at_the_deadline_and_removed(tmp_path):
    import docker

    token = uuid.uuid4().hex
    code = "import time\n\ndef test_hang():\n    time.sleep(1000)\n"
    env_vars = {**sandbox_env(None), "FIXSTREAM_RUN_TOKEN": token}
    done, passed, failed, _ = await _run(
        tmp_path, {"test_hang.py": code}, timeout_s=5, env_vars=env_vars
    )
    assert done.timed_out and done.returncode is None
    assert 5 <= done.seconds < 20
    assert passed == failed == []
    client = docker.from_env()
    try:
        left = [
            c.id for c in client.containers.list(all=True, filters={"label": f"{LABEL}=run"})
            if f"FIXSTREAM_RUN_TOKEN={token}" in (c.attrs["Config"]["Env"] or [])
        ]  # fmt: skip
    finally:
        client.close()
    assert left == []


async def test_output_is_kept_as_head_and_tail(tmp_path):
    code = (
        "def test_loud():\n"
        "    print('FIRST LINE')\n"
        "    for i in range(40000):\n"
        "        print('x' * 60)\n"
        "    print('LAST LINE')\n"
    )
    done, passed, _, _ = await _run(tmp_path, {"test_loud.py": code}, max_output_bytes=20_000)
    assert passed == ["tests/test_loud.py::test_loud"]
    assert len(done.output) < 21_000
    assert "bytes of output cut" in done.output
    assert "FIRST LINE" in done.output and "LAST LINE" in done.output
    assert "1 passed" in done.output  # the summary, at the very end, survives
