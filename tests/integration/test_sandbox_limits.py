"""The sandbox's protections against hostile tests, each attack run for real in bubblewrap.

Tests here write code as an LLM might: it reads what is not its own, writes outside its
workspace, reaches the network or a concurrent run, outlives its run, takes every process,
the disk or the output, and looks for the worker's secrets. Each inner test reports what
happened; the outer test asserts the attack failed, and shows first, where it can, that
the same check would have seen it succeed. Which protection holds each off is in
``fixstream/sandbox/runner.py``'s docstring. As root (here and in CI) every test asserts.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest
from test_sandbox_runs import gone_soon, host_pids, kill_all, run_watched, sleeper

from fixstream.sandbox import bwrap as bwrap_module
from fixstream.sandbox import make_workspace, run_tests
from fixstream.sandbox.runner import STRONG, isolation
from fixstream.sandbox.workspace import default_root

pytestmark = pytest.mark.integration

PYTEST = ["python", "-m", "pytest", "-q", "-s"]


async def _workspace(repo: Path, tests: dict[str, str], name: str = "lim", files=None):
    (repo / "tests").mkdir(parents=True, exist_ok=True)
    for file, code in tests.items():
        (repo / "tests" / file).write_text(code)
    for file, text in (files or {}).items():
        (repo / file).write_text(text)
    return await make_workspace(repo, default_root(), name)


def reported(output: str, tag: str):
    """The value an inner test printed as ``TAG <python literal>`` (one line)."""
    match = re.search(rf"^{tag} (.*)$", output, re.M)
    assert match, f"the inner test reported no {tag}:\n{output[-3000:]}"
    return ast.literal_eval(match.group(1))


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def _stop(*runs: asyncio.Task) -> None:
    """Runs a failed assertion left behind: cancelled, which kills their process trees."""
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


async def wait_for_pids(token: str, count: int = 1, within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while len(pids := host_pids(token)) < count:
        assert time.monotonic() < deadline, f"no process with {token} appeared on the host"
        await asyncio.sleep(0.02)
    return pids


# -- the isolation this machine gives ------------------------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the strong level needs cgroups the worker may write: root here and in CI",
)
async def test_the_isolation_here_is_the_strong_one(tmp_path):
    iso = isolation()
    assert iso.level == STRONG == "bwrap+cgroup", iso
    assert iso.uid == bwrap_module.SANDBOX_UID
    ws = await _workspace(tmp_path / "repo", {"test_ok.py": "def test_ok():\n    pass\n"})
    run = await run_tests(ws, PYTEST)
    await ws.remove()
    assert run.exit_code == 0, run.output[-2000:]
    assert run.isolation == "bwrap+cgroup"


# -- what a run may read and write ---------------------------------------------------------

READ = """
import os

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return exc.strerror

def test_read():
    print("ROOT", repr(listing("/root")))
    print("HOME", repr(listing({home!r})))
    for path in ("/etc/shadow", {marker!r}):
        try:
            print("READ", repr(open(path).read()))
        except OSError as exc:
            print("READ-REFUSED", repr((path, exc.strerror)))
"""


async def test_a_test_cannot_read_roots_home_nor_the_shadow_file(tmp_path):
    home = Path.home()
    secret = f"fixstream-secret-{uuid.uuid4().hex}"
    marker = home / f".fixstream-test-{uuid.uuid4().hex}"
    marker.write_text(secret)
    try:
        # the control: the host reads both, and the listing shows the marker
        assert marker.name in os.listdir(home)
        shadow = _read("/etc/shadow").decode() if os.geteuid() == 0 else None
        code = READ.format(home=str(home), marker=str(marker))
        ws = await _workspace(tmp_path / "repo", {"test_read.py": code})
        run = await run_tests(ws, PYTEST)
        await ws.remove()
    finally:
        marker.unlink()
    assert run.exit_code == 0, run.output[-3000:]
    assert secret not in run.output and "READ '" not in run.output
    assert (shadow is None or shadow[:40] not in run.output) and "root:" not in run.output
    for listed in (reported(run.output, "ROOT"), reported(run.output, "HOME")):
        assert marker.name not in listed
        # at most the mount points bubblewrap made for the interpreter (~/.pyenv...)
        if isinstance(listed, list):
            needed = {
                Path(p).relative_to(home).parts[0]
                for p in bwrap_module.interpreter_prefixes()
                if Path(p).is_relative_to(home) and Path(p) != home
            }
            assert set(listed) <= needed, listed


WRITE = """
import os

def test_write_outside():
    done = []
    for path in {targets!r}:
        try:
            with open(path, "x") as out:
                out.write("pwned")
            done.append("written")
        except OSError as exc:
            done.append(exc.strerror)
    print("WRITES", repr(done))
"""


async def test_a_test_cannot_write_outside_its_workspace(tmp_path):
    """Host /tmp (the run's /tmp is its own tmpfs: written there, seen nowhere), /opt, the
    worker's own site-packages and interpreter, /usr, /etc, the workspaces' root and the
    worker's copy of this very workspace."""
    name = f"pwned-{uuid.uuid4().hex[:12]}"
    purelib = sysconfig.get_paths()["purelib"]
    ws = await _workspace(tmp_path / "repo", {"test_w.py": "def test_placeholder(): pass\n"})
    inside = ["/tmp", "/dev/shm", "/proc/1/root/tmp"]  # the run's own tmpfs
    closed = ["/opt", purelib, sys.prefix, "/usr", "/usr/local/bin", "/etc", "/", "/root"]
    closed += [str(default_root()), str(ws.path), "/var/tmp", "/run", "/home"]
    targets = [f"{d.rstrip('/')}/{name}-{i}" for i, d in enumerate([*inside, *closed])]
    (ws.path / "tests" / "test_w.py").write_text(WRITE.format(targets=targets))
    host = [Path(t) for t in targets if not t.startswith("/proc/")]
    try:
        run = await run_tests(ws, PYTEST)
        leaked = [str(p) for p in host if p.exists()]
    finally:
        for path in host:
            if path.is_file():
                path.unlink()
        await ws.remove()
    assert run.exit_code == 0, run.output[-3000:]
    assert not leaked, f"written on the host: {leaked}"
    done = dict(zip([*inside, *closed], reported(run.output, "WRITES"), strict=True))
    # the control: the same code writes where a run may (its own /tmp and /dev/shm)
    assert all(done[d] == "written" for d in inside), done
    assert not [d for d in closed if done[d] == "written"], done
    assert done["/opt"] == "No such file or directory"
    assert done[purelib] == "Read-only file system"


async def test_what_a_run_writes_in_its_workspace_never_reaches_the_workers_copy(tmp_path):
    """Edits, new files and planted links stay in the run's /testbed copy."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("SECRET = 1\n")
    plant = (
        "import os\n"
        "def test_plant():\n"
        "    open('tests/test_plant.py', 'a').write('# changed\\n')\n"
        "    open('new.py', 'w').write('x = 1\\n')\n"
        f"    os.symlink({str(outside / 'secret.py')!r}, 'tests/link.py')\n"
        f"    os.symlink({str(outside)!r}, 'escape')\n"
        "    os.symlink('loop', 'loop')\n"
        "    print('PLANTED', sorted(os.listdir('.')))\n"
    )
    ws = await _workspace(tmp_path / "repo", {"test_plant.py": plant})
    before = await ws.snapshot_digest()
    names = sorted(p.name for p in ws.path.iterdir())
    run = await run_tests(ws, PYTEST)
    try:
        assert run.exit_code == 0, run.output[-3000:]
        assert {"new.py", "escape", "loop"} <= set(reported(run.output, "PLANTED"))
        assert sorted(p.name for p in ws.path.iterdir()) == names
        assert not (ws.path / "tests" / "link.py").is_symlink()
        assert await ws.snapshot_digest() == before
        assert sorted(p.name for p in outside.iterdir()) == ["secret.py"]
    finally:
        await ws.remove()


# -- the network -----------------------------------------------------------------------------


def _host_address() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return next((a for a in out.stdout.split() if "." in a and not a.startswith("127.")), None)


NET = """
import socket

def test_connect():
    reached = {{}}
    for address in {addresses!r}:
        try:
            socket.create_connection((address, {port}), 2).close()
            reached[address] = "connected"
        except OSError as exc:
            reached[address] = str(exc)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect({abstract!r})
        reached["abstract"] = "connected"
    except OSError as exc:
        reached["abstract"] = str(exc)
    print("REACHED", repr(reached))
"""


async def test_no_loopback_host_address_nor_abstract_socket_is_reachable(tmp_path):
    """A server on the host's 127.0.0.1 (and its own address, and an abstract unix socket,
    which belongs to the network namespace): the host reaches each, a run none."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    port = server.getsockname()[1]
    abstract = f"\0fixstream-test-{uuid.uuid4().hex}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(abstract)
    unix.listen(8)
    addresses = ["127.0.0.1", *filter(None, [_host_address()])]
    try:
        for address in addresses:  # the control: reachable from the host
            socket.create_connection((address, port), 2).close()
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(abstract)
        probe.close()
        code = NET.format(addresses=addresses, port=port, abstract=abstract)
        ws = await _workspace(tmp_path / "repo", {"test_net.py": code})
        isolated = await run_tests(ws, PYTEST)
        open_net = await run_tests(ws, PYTEST, network=True)
        await ws.remove()
    finally:
        server.close()
        unix.close()
    assert isolated.exit_code == 0, isolated.output[-3000:]
    reached = reported(isolated.output, "REACHED")
    assert set(reached) == {*addresses, "abstract"}
    assert all(how != "connected" for how in reached.values()), reached
    # the control: the same test with the network kept (environment builds) connects
    assert reported(open_net.output, "REACHED")["127.0.0.1"] == "connected", open_net.output


# -- processes -----------------------------------------------------------------------------

ESCAPE = """
import os, sys, time

def test_escape():
    if os.fork() == 0:
        os.setsid()  # out of the run's session and process group
        if os.fork() == 0:
            os.execv(sys.executable, {argv})
        os._exit(0)
    os.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if {token!r}.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read():
                    found.append(int(pid))
            except OSError:
                pass
        if found:
            break
        time.sleep(0.01)
    print("ESCAPED", repr((os.getsid(found[0]), os.getsid(0))), flush=True)
    time.sleep({hang})
"""


@pytest.mark.parametrize("hang", [0.5, 1000], ids=["run-ends", "deadline"])
async def test_a_process_that_leaves_the_session_does_not_outlive_the_run(tmp_path, hang):
    token = f"fixstream-escape-{uuid.uuid4().hex}"
    code = ESCAPE.format(argv=sleeper(token), token=token, hang=hang)
    ws = await _workspace(tmp_path / "repo", {"test_escape.py": code})
    try:
        run, seen = await run_watched(ws, PYTEST, token, timeout_s=2)
        assert seen == 1, "the escaped process never ran on the host"
        its_sid, run_sid = reported(run.output, "ESCAPED")
        assert its_sid != run_sid, "it did not leave the run's session"
        assert run.timed_out == (hang > 2), run.output[-3000:]
        assert gone_soon(token), "the escaped process outlived the run"
        # it holds the output pipe open: the run does not wait for it to close
        assert run.duration_ms < (4000 if run.timed_out else 3000)
    finally:
        kill_all(token)
        await ws.remove()


BOMB = """
import os, time

def test_bomb():
    forks, refused = 0, None
    for _ in range(200):  # bounded: without the limits this test fails, not the machine
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.strerror
            break
        if pid == 0:
            try:
                os.execv("/bin/sleep", ["sleep", {seconds!r}])
            finally:
                os._exit(1)
        forks += 1
    print("FORKS", repr((forks, refused)), flush=True)
    time.sleep(1000)
"""


async def test_a_fork_bomb_is_held_to_the_process_limit_and_killed_at_the_deadline(tmp_path):
    seconds = f"1000.{uuid.uuid4().int % 10**15:015d}"  # unique: its sleeps are found by it
    ws = await _workspace(tmp_path / "repo", {"test_bomb.py": BOMB.format(seconds=seconds)})
    try:
        run, most = await run_watched(ws, PYTEST, seconds, timeout_s=3, max_processes=32)
        forks, refused = reported(run.output, "FORKS")
        assert refused, "no fork was refused"
        assert 5 < forks < 32 and 5 < most <= forks, (forks, most)
        assert run.timed_out and run.duration_ms < 5000
        assert gone_soon(seconds), "forked processes outlived the run"
        still = await asyncio.create_subprocess_exec("true")  # the machine still forks
        assert await still.wait() == 0
    finally:
        kill_all(seconds)
        await ws.remove()


async def test_a_fork_bomb_does_not_take_the_processes_of_a_concurrent_run(tmp_path):
    """Each run's process limit is its own: another run beside one held to its limit still
    starts and forks."""
    seconds = f"1000.{uuid.uuid4().int % 10**15:015d}"
    bomb = await _workspace(
        tmp_path / "bomb", {"test_bomb.py": BOMB.format(seconds=seconds)}, "bomb"
    )
    code = "import subprocess\n\ndef test_fork():\n    subprocess.run(['true'], check=True)\n"
    calm = await _workspace(tmp_path / "calm", {"test_calm.py": code}, "calm")
    bombing = asyncio.create_task(run_tests(bomb, PYTEST, timeout_s=4, max_processes=32))
    try:
        await wait_for_pids(seconds)
        held = 0
        while len(host_pids(seconds)) != held:  # until the bomb is held: no new process
            held = len(host_pids(seconds))
            await asyncio.sleep(0.3)
        beside = await run_tests(calm, PYTEST, timeout_s=4, max_processes=32)
        await bombing
        assert beside.exit_code == 0, beside.output[-3000:]
        assert beside.passed == ["tests/test_calm.py::test_fork"]
    finally:
        kill_all(seconds)
        await _stop(bombing)
        for ws in (bomb, calm):
            await ws.remove()


async def test_a_busy_loop_is_stopped_by_the_cpu_limit_before_the_deadline(tmp_path):
    code = "def test_spin():\n    while True:\n        pass\n"
    ws = await _workspace(tmp_path / "repo", {"test_spin.py": code})
    run = await run_tests(ws, PYTEST, cpu_s=1, timeout_s=30)  # wall time: the machine's load
    await ws.remove()
    assert not run.timed_out, "the deadline, not the CPU limit, stopped it"
    # SIGXCPU: as bubblewrap reports a signal (128 + n), or as the process's own status
    assert run.exit_code in (128 + signal.SIGXCPU, -signal.SIGXCPU), run


UID = """
import os, subprocess, sys

def test_who():
    status = [line.split()[1:] for line in open("/proc/self/status") if line.startswith("Uid:")]
    print("INSIDE", repr((os.getuid(), os.geteuid(), status[0])), flush=True)
    child = subprocess.Popen({argv})
    print("CHILD", child.wait(timeout=20), flush=True)  # the host kills it once it has looked
"""


async def test_a_run_is_not_root_inside_nor_on_the_host(tmp_path):
    token = f"fixstream-uid-{uuid.uuid4().hex}"
    ws = await _workspace(tmp_path / "repo", {"test_who.py": UID.format(argv=sleeper(token))})
    running = asyncio.create_task(run_tests(ws, PYTEST, timeout_s=20))
    try:
        (pid,) = await wait_for_pids(token)
        status = _read(f"/proc/{pid}/status").decode()
        host_uids = {int(u) for u in re.search(r"^Uid:(.*)$", status, re.M).group(1).split()}
        os.kill(pid, signal.SIGKILL)
        run = await running
    finally:
        kill_all(token)
        await _stop(running)
        await ws.remove()
    assert run.exit_code == 0, run.output[-3000:]
    assert reported(run.output, "INSIDE") == (1000, 1000, ["1000"] * 4)
    assert reported(run.output, "CHILD") == -signal.SIGKILL  # it was the process looked at
    assert host_uids == {isolation().uid} and 0 not in host_uids
    if os.geteuid() == 0:
        assert host_uids == {65534}, "a root worker's runs are nobody on the host"


# -- the disk and the output ---------------------------------------------------------------

FILL = """
import errno, os

def test_fill():
    for folder in ("/testbed", "/tmp"):
        written, error = 0, None
        try:
            for i in range(3):  # 3 files of 10 MB
                fd = os.open(f"{folder}/fill{i}", os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    for _ in range(10):
                        written += os.write(fd, b"x" * (1 << 20))
                finally:
                    os.close(fd)
        except OSError as exc:
            error = errno.errorcode[exc.errno]
        print("FILLED", repr((folder, written, error)), flush=True)
"""


async def test_a_disk_fill_is_held_to_the_quota(tmp_path):
    ws = await _workspace(tmp_path / "repo", {"test_fill.py": FILL})
    run = await run_tests(ws, PYTEST, disk_mb=16, timeout_s=20)
    await ws.remove()
    assert run.exit_code == 0, run.output[-3000:]
    filled = re.findall(r"^FILLED (.*)$", run.output, re.M)
    assert len(filled) == 2, run.output[-3000:]
    for folder, written, error in map(ast.literal_eval, filled):
        assert error in ("ENOSPC", "EFBIG"), (folder, written, error)
        assert 10 * 2**20 <= written <= 16 * 2**20, (folder, written)  # the first file fits


FLOOD = """
import sys

def test_flood():
    print("START", flush=True)
    chunk = "y" * 1023 + "\\n"
    for _ in range({megabytes} * 1024):
        sys.stdout.write(chunk)
    print("THE-END", flush=True)
"""


async def test_an_output_flood_is_kept_to_head_and_tail(tmp_path):
    ws = await _workspace(tmp_path / "repo", {"test_flood.py": FLOOD.format(megabytes=40)})
    run = await run_tests(ws, PYTEST, max_output_bytes=64_000, timeout_s=30)
    await ws.remove()
    assert not run.timed_out and run.exit_code == 0, run.output[-3000:]
    assert len(run.output) < 64_000 + 200
    cut = re.search(r"\[\.\.\. (\d+) bytes of output cut \.\.\.\]", run.output)
    assert cut and int(cut.group(1)) >= 40 * 2**20 - 64_000
    assert "START" in run.output[:1000]
    assert "THE-END" in run.output[-2000:]


# -- secrets -------------------------------------------------------------------------------

SCAN = """
import glob, os

def test_scan():
    print("ENV", repr(dict(os.environ)))
    for path in ["/proc/1/environ", "/proc/{worker}/environ", "/proc/{helper}/environ",
                 *glob.glob("/proc/[0-9]*/environ")]:
        try:
            print("ENVIRON", repr((path, open(path, "rb").read())))
        except OSError as exc:
            print("ENVIRON", repr((path, exc.strerror)))
"""


async def test_the_workers_environment_and_secrets_are_not_visible(tmp_path, monkeypatch):
    """Not in the run's environment, nor through /proc: not the worker's, nor init's, nor
    that of a process started with the secret in its environment."""
    secret = f"sk-test-secret-{uuid.uuid4()}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("FIXSTREAM_SASL_PASSWORD", secret)
    helper = await asyncio.create_subprocess_exec(  # the secret in its environ since exec
        sys.executable, "-c", "import time; time.sleep(60)", env=dict(os.environ)
    )
    try:
        # the control: the host reads it in that process's /proc/<pid>/environ
        deadline = time.monotonic() + 10
        while secret.encode() not in _read(f"/proc/{helper.pid}/environ"):
            assert time.monotonic() < deadline, "the helper never had the secret"
            await asyncio.sleep(0.01)
        code = SCAN.format(worker=os.getpid(), helper=helper.pid)
        ws = await _workspace(tmp_path / "repo", {"test_scan.py": code})
        run = await run_tests(ws, PYTEST, max_output_bytes=4_000_000)  # all of it, nothing cut
        await ws.remove()
    finally:
        helper.kill()
        await helper.wait()
    assert run.exit_code == 0, run.output[-3000:]
    assert "bytes of output cut" not in run.output
    env = reported(run.output, "ENV")
    assert "PATH" in env  # the inner test did print its environment
    assert "OPENAI_API_KEY" not in env and not any(k.startswith("FIXSTREAM_") for k in env)
    assert "ENVIRON ('/proc/1/environ'" in run.output
    assert secret not in run.output and "sk-test-secret" not in run.output


# -- concurrent runs -----------------------------------------------------------------------

LOOK = """
import os, subprocess, sys

MINE, OTHER, OTHER_HOST = {mine!r}, {other!r}, {other_host!r}

def find(names):
    found = []
    for folder, dirs, files in os.walk("/"):
        if folder == "/":
            dirs[:] = [d for d in dirs if d != "proc"]
        found += [os.path.join(folder, n) for n in names & {{*files, *dirs}}]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for sub in ("cwd", "root/testbed", "root/tmp"):
            try:
                entries = set(os.listdir(f"/proc/{{pid}}/{{sub}}"))
            except OSError:
                continue
            found += [f"/proc/{{pid}}/{{sub}}/{{n}}" for n in names & entries]
    for path in (f"{{OTHER_HOST}}/marker-{{OTHER}}", f"/proc/1/root{{OTHER_HOST}}"):
        if os.path.exists(path):
            found.append(path)
    return sorted(found)

def wait(tag):  # until the host has seen both runs at this point, and kills this child
    subprocess.run([sys.executable, "-c", "import time; time.sleep(30)", tag], timeout=25)

def test_look():
    open(f"/tmp/live-{{MINE}}", "w").close()
    wait(f"{{MINE}}-ready")
    print("OTHERS", repr(find({{f"marker-{{OTHER}}", f"live-{{OTHER}}"}})), flush=True)
    print("OWN", repr(find({{f"marker-{{MINE}}", f"live-{{MINE}}"}})), flush=True)
    wait(f"{{MINE}}-done")
"""


async def test_two_concurrent_runs_cannot_see_each_others_workspace(tmp_path):
    """Both run at once (the host sees both waiting before either looks, and both done
    looking before either ends); each looks for the other's files under / and /proc."""
    tokens = [f"fixstream-run{i}-{uuid.uuid4().hex}" for i in (0, 1)]
    spaces = []
    for i, mine in enumerate(tokens):
        spaces.append(
            await _workspace(tmp_path / f"repo{i}", {}, f"run{i}", {f"marker-{mine}": "x"})
        )
    for i, (mine, ws) in enumerate(zip(tokens, spaces, strict=True)):
        other, other_ws = tokens[1 - i], spaces[1 - i]
        code = LOOK.format(mine=mine, other=other, other_host=str(other_ws.path))
        (ws.path / "tests" / "test_look.py").write_text(code)
    runs = [asyncio.create_task(run_tests(ws, PYTEST, timeout_s=25)) for ws in spaces]
    try:
        for stage in ("ready", "done"):
            waiting = [(await wait_for_pids(f"{t}-{stage}", within_s=20))[0] for t in tokens]
            assert not any(run.done() for run in runs)
            for pid in waiting:
                os.kill(pid, signal.SIGKILL)
        done = await asyncio.gather(*runs)
    finally:
        for token in tokens:
            kill_all(token)
        await _stop(*runs)
        for ws in spaces:
            await ws.remove()
    for mine, run in zip(tokens, done, strict=True):
        assert run.exit_code == 0, run.output[-3000:]
        assert reported(run.output, "OTHERS") == []
        # the control: the same search finds the run's own files
        own = reported(run.output, "OWN")
        assert f"/testbed/marker-{mine}" in own and f"/tmp/live-{mine}" in own, own
        assert any(p.startswith("/proc/") for p in own), own
