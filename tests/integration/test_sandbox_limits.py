"""The sandbox's protections against hostile tests, each shown by a test that fails without it.

Tests here write code as an LLM might: it tries to write outside its workspace, to reach a
concurrent run, to outlive its run, to take every process or CPU second, to read the
worker's secrets and to reach the network. Which protection holds each off, and where it
holds, is in ``fixstream/sandbox/runner.py``'s docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from test_sandbox_runs import _alive

from fixstream.config import Settings
from fixstream.errors import EditRejectedError
from fixstream.sandbox import apply_edits, make_workspace, run_tests
from fixstream.sandbox.runner import SANDBOX_UID, isolation
from fixstream.sandbox.workspace import PRIVATE, default_root
from fixstream.schemas import Edit

pytestmark = pytest.mark.integration

PYTEST = ["python", "-m", "pytest", "-q", "-s"]
ISO = isolation()
needs_namespaces = pytest.mark.skipif(
    not ISO.namespaces, reason="no private mount namespace here (see the runner's log)"
)
needs_cgroups = pytest.mark.skipif(not ISO.cgroups, reason="no cgroup per run here")


async def _workspace(repo: Path, tests: dict[str, str], name: str = "lim"):
    (repo / "tests").mkdir(parents=True, exist_ok=True)
    for file, code in tests.items():
        (repo / "tests" / file).write_text(code)
    return await make_workspace(repo, default_root(), name)


def _dead_soon(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


ATTEMPT_WRITES = """
import os, subprocess

def test_write_outside():
    wrote = []
    for path in {targets!r}:
        try:
            with open(path, "x") as out:
                out.write("pwned")
            wrote.append(path)
        except OSError:
            pass
    print("WROTE", wrote)  # in /tmp and the like, the run's own: nothing reaches the host
    for undo in ("umount -l /tmp", "mkdir -p m && mount --bind / m && cd m"):
        # the private mounts cannot be undone (nor a user namespace made to try)
        script = undo + " && touch {undone}"
        subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True)
"""


@needs_namespaces
async def test_a_test_cannot_write_outside_its_workspace(tmp_path):
    """The shared writable directories, a checkout anyone may write, another workspace (by
    path and by '..'), the workspaces' root and the worker's data dir. As ``nobody`` only the
    root-owned ones are closed; the rest are hidden by the run's own mount namespace."""
    name = f"pwned-{uuid.uuid4().hex[:8]}"
    # a checkout as open as it gets: only the mount namespace keeps it out of reach
    repo = Path(tempfile.mkdtemp(prefix="fixstream-src-", dir="/tmp"))
    (repo / "tests").mkdir()
    for d in (repo, repo / "tests"):
        os.chmod(d, 0o777)
    other = await make_workspace(repo, default_root(), "other")
    os.chown(other.path, SANDBOX_UID, SANDBOX_UID)  # as a run in it leaves it
    targets = [f"{d}/{name}" for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")]
    targets += [f"{repo}/{name}", f"{repo}/tests/{name}", f"{other.path}/{name}"]
    targets += [f"../{other.path.name}/{name}", f"{default_root()}/{name}"]
    targets += [f"/proc/1/root/tmp/{name}", f"/proc/{os.getpid()}/cwd/{name}"]
    if Settings().data_dir.is_dir():
        targets.append(f"{Settings().data_dir}/{name}")
    undone = f"/tmp/{name}-undone"
    code = ATTEMPT_WRITES.format(targets=targets, undone=undone)
    ws = await _workspace(repo, {"test_w.py": code})
    # as the host sees them: the relative one from the workspace, those through /proc direct
    host_paths = [ws.path / t for t in [*targets, undone] if not t.startswith("/proc/")]
    host_paths.append(Path.cwd() / name)
    try:
        run = await run_tests(ws, PYTEST)
        written = [str(p) for p in host_paths if p.exists()]
        assert run.exit_code == 0, run.output[-2000:]
        assert not written
        assert f"'/tmp/{name}'" in run.output, "a test can still use /tmp"
    finally:
        for path in host_paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        for each in (ws, other):
            await each.remove()
        shutil.rmtree(repo, ignore_errors=True)


@pytest.mark.skipif(not ISO.own_user_ns, reason="no user namespace per run here")
async def test_a_run_cannot_reach_a_concurrent_run_through_proc(tmp_path):
    """Both runs are ``nobody``: only their separate user namespaces stop one from opening
    the other's /proc/<pid>/cwd (its workspace) and /proc/<pid>/root."""
    waiting = (
        "import os, time\n"
        "def test_wait():\n"
        "    open('pid.tmp', 'w').write(str(os.getpid()))\n"
        "    os.rename('pid.tmp', 'pid')\n"
        "    deadline = time.time() + 20\n"
        "    while not os.path.exists('stop') and time.time() < deadline:\n"
        "        time.sleep(0.02)\n"
    )
    victim = await _workspace(tmp_path / "victim", {"test_wait.py": waiting})
    victim_run = asyncio.create_task(run_tests(victim, PYTEST, timeout_s=30))
    try:
        for _ in range(500):
            if (victim.path / "pid").exists() or victim_run.done():
                break
            await asyncio.sleep(0.02)
        pid = int((victim.path / "pid").read_text())
        reach = (
            "import os\n"
            "def test_reach():\n"
            "    reached = []\n"
            f"    for path in ['/proc/{pid}/cwd/pwned', '/proc/{pid}/root{victim.path}/pwned']:\n"
            "        try:\n"
            "            open(path, 'x').close()\n"
            "            reached.append(path)\n"
            "        except OSError:\n"
            "            pass\n"
            "    try:\n"
            f"        reached.append(str(os.listdir('/proc/{pid}/cwd')))\n"
            "    except OSError:\n"
            "        pass\n"
            "    assert not reached, reached\n"
        )
        attacker = await _workspace(tmp_path / "attacker", {"test_reach.py": reach})
        run = await run_tests(attacker, PYTEST)
        await attacker.remove()
        (victim.path / "stop").touch()
        assert (await victim_run).exit_code == 0
        assert not (victim.path / "pwned").exists()
        assert run.exit_code == 0, run.output[-2000:]
    finally:
        (victim.path / "stop").touch()
        await asyncio.wait_for(victim_run, 40)
        await victim.remove()


ESCAPE = """
import os, time

def test_escape():
    if os.fork() == 0:
        os.setsid()  # out of the run's session and process group
        if os.fork() == 0:
            open("escaped.tmp", "w").write(str(os.getpid()))
            os.rename("escaped.tmp", "escaped.pid")
            time.sleep(1000)
        os._exit(0)
    while not os.path.exists("escaped.pid"):
        time.sleep(0.01)
    time.sleep({hang})
"""


@needs_cgroups
@pytest.mark.parametrize("hang", [0, 1000], ids=["run-ends", "deadline"])
async def test_a_process_that_leaves_the_process_group_does_not_outlive_the_run(tmp_path, hang):
    ws = await _workspace(tmp_path / "repo", {"test_escape.py": ESCAPE.format(hang=hang)})
    run = await run_tests(ws, PYTEST, timeout_s=3)
    pid = int((ws.path / "escaped.pid").read_text())
    await ws.remove()
    try:
        assert run.timed_out == bool(hang), run.output[-2000:]
        assert _dead_soon(pid), "the escaped process outlived the run"
        # it held the output pipe open: with it alive the run waited for the reader
        assert run.duration_ms < (5000 if hang else 2500)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


BOMB = """
import os, time

def test_bomb():
    children = []
    try:
        for _ in range(200):  # bounded: without the limits this test fails, not the machine
            pid = os.fork()
            if pid == 0:
                time.sleep(1000)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        print("fork refused after", len(children), exc, flush=True)
    open("children", "w").write(" ".join(map(str, children)))
    time.sleep(1000)
"""


async def test_a_fork_bomb_is_contained_and_killed_at_the_deadline(tmp_path):
    """RLIMIT_NPROC (``nobody``'s processes, all runs together) and the run's pids cgroup
    each stop it; at the deadline the whole run is killed."""
    ws = await _workspace(tmp_path / "repo", {"test_bomb.py": BOMB})
    run = await run_tests(ws, PYTEST, timeout_s=3, max_processes=32)
    children = [int(p) for p in (ws.path / "children").read_text().split()]
    await ws.remove()
    try:
        assert run.timed_out
        assert "fork refused after" in run.output
        assert 0 < len(children) < 32
        assert all(_dead_soon(pid) for pid in children)
    finally:
        for pid in filter(_alive, children):
            os.kill(pid, signal.SIGKILL)


async def test_a_busy_loop_is_stopped_by_the_cpu_limit_before_the_deadline(tmp_path):
    code = "def test_spin():\n    while True:\n        pass\n"
    ws = await _workspace(tmp_path / "repo", {"test_spin.py": code})
    run = await run_tests(ws, PYTEST, cpu_s=2, timeout_s=15)
    await ws.remove()
    assert not run.timed_out
    assert run.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    assert run.duration_ms < 8000


async def test_no_process_environment_with_the_workers_secrets_is_readable(tmp_path, monkeypatch):
    """Not the run's own, not the worker's, not init's, not another root process's."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "OPENAI_API_KEY"):
        monkeypatch.setenv(key, secret)
    monkeypatch.setenv("FIXSTREAM_REDIS_URL", f"redis://:{secret}@localhost")
    # a process that has them in its environment since exec (a worker started with them)
    helper = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)",
        env={"AWS_SECRET_ACCESS_KEY": secret, "OPENAI_API_KEY": secret},
    )  # fmt: skip
    code = (
        "import glob, os\n"
        "def test_scan():\n"
        f"    secret = {secret!r}\n"
        "    found = [k for k, v in os.environ.items()\n"
        "             if secret in v or k.startswith(('AWS_', 'FIXSTREAM_', 'OPENAI_'))]\n"
        "    for path in glob.glob('/proc/[0-9]*/environ'):\n"
        "        try:\n"
        "            if secret.encode() in open(path, 'rb').read():\n"
        "                found.append(path)\n"
        "        except OSError:\n"
        "            pass\n"
        f"    for pid in (1, {os.getpid()}, {helper.pid}):\n"
        "        try:\n"
        "            open(f'/proc/{pid}/environ', 'rb').read()\n"
        "            found.append(f'read /proc/{pid}/environ')\n"
        "        except PermissionError:\n"
        "            pass\n"
        "    assert not found, found\n"
    )
    try:
        ws = await _workspace(tmp_path / "repo", {"test_scan.py": code})
        run = await run_tests(ws, PYTEST)
        await ws.remove()
    finally:
        helper.kill()
        await helper.wait()
    assert secret not in run.output
    assert run.exit_code == 0, run.output[-2000:]


def _host_address() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
    except OSError:
        return None
    return next((a for a in out.stdout.split() if "." in a and not a.startswith("127.")), None)


@pytest.mark.skipif(not ISO.network, reason="no network namespace here")
async def test_no_host_address_nor_abstract_socket_is_reachable(tmp_path):
    """Beyond 127.0.0.1 (test_sandbox_runs): the host's own address, and abstract unix
    sockets, which belong to the network namespace, not to the filesystem."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    port = server.getsockname()[1]
    abstract = f"\0fixstream-test-{uuid.uuid4().hex}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(abstract)
    unix.listen()
    addresses = ["127.0.0.1", *filter(None, [_host_address()])]
    code = (
        "import socket\n"
        "def test_connect():\n"
        "    reached = []\n"
        f"    for address in {addresses!r}:\n"
        "        try:\n"
        f"            socket.create_connection((address, {port}), 2).close()\n"
        "            reached.append(address)\n"
        "        except OSError:\n"
        "            pass\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        f"        s.connect({abstract!r})\n"
        "        reached.append('abstract')\n"
        "    except OSError:\n"
        "        pass\n"
        "    print('REACHED', reached)\n"
        "    assert not reached\n"
    )
    try:
        ws = await _workspace(tmp_path / "repo", {"test_net.py": code})
        isolated = await run_tests(ws, PYTEST)
        open_net = await run_tests(ws, PYTEST, network=True)
        await ws.remove()
    finally:
        server.close()
        unix.close()
    assert isolated.exit_code == 0, isolated.output[-2000:]
    assert "'127.0.0.1'" in open_net.output and "'abstract'" in open_net.output, "the control"


async def test_an_edit_does_not_follow_a_link_a_test_run_planted(tmp_path):
    """Edits go to fresh copies of the checkout, which the run cannot change; and should one
    reach a workspace a test ran in, a link it left that leaves the workspace is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("SECRET = 1\n")
    plant = (
        "import os\n"
        "def test_plant():\n"
        f"    os.symlink({str(outside / 'secret.py')!r}, 'tests/link.py')\n"
        f"    os.symlink({str(outside)!r}, 'escape')\n"
        "    os.symlink('loop', 'loop')\n"
    )
    repo = tmp_path / "repo"
    ws = await _workspace(repo, {"test_plant.py": plant})
    run = await run_tests(ws, PYTEST)
    assert run.exit_code == 0, run.output[-2000:]
    assert (ws.path / "tests" / "link.py").is_symlink()
    for edit in (
        Edit(path="tests/link.py", search="SECRET = 1", replace="SECRET = 2"),
        Edit(path="escape/new.py", search="", replace="x = 1\n"),
        Edit(path="loop", search="", replace="x = 1\n"),
    ):
        with pytest.raises(EditRejectedError):
            apply_edits(ws, [edit])
    assert (await ws.snapshot_digest()) != ""  # walks the planted links without following
    await ws.remove()
    assert (outside / "secret.py").read_text() == "SECRET = 1\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.py"]
    fresh = await make_workspace(repo, default_root(), "fresh")
    assert not (fresh.path / "tests" / "link.py").exists()
    await fresh.remove()


async def test_the_worker_does_not_follow_links_a_run_left_in_the_sandbox_directory(tmp_path):
    """After a run root reads its report and, before the next, recreates ``.fixstream``: a
    run that swapped it for a link to a root-only directory reads nothing from there, and
    has nothing created or deleted there."""
    outside = tmp_path / "root-only"
    outside.mkdir(mode=0o700)
    report = '<testsuite><testcase classname="LEAKED" name="root_only"/></testsuite>'
    (outside / "junit.xml").write_text(report)
    os.chmod(outside / "junit.xml", 0o600)
    swap = (
        "import os, time\n"
        "def test_swap():\n"
        f"    os.rename({PRIVATE!r}, f'.old-{{time.time_ns()}}')\n"
        f"    os.symlink({str(outside)!r}, {PRIVATE!r})\n"
    )
    ws = await _workspace(tmp_path / "repo", {"test_swap.py": swap})
    first = await run_tests(ws, PYTEST)
    second = await run_tests(ws, PYTEST)  # the sandbox directory is still the link
    await ws.remove()
    for run in (first, second):
        assert "LEAKED" not in " ".join(run.passed + run.failed)
    assert sorted(p.name for p in outside.iterdir()) == ["junit.xml"]
    assert (outside / "junit.xml").read_text() == report
