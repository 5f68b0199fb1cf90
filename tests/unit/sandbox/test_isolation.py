"""What the runner does where the machine refuses it a protection, and what root does on a
workspace a test run has left (links it planted are not followed)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from fixstream.errors import EditRejectedError
from fixstream.sandbox import Workspace, runner
from fixstream.sandbox.workspace import PRIVATE, content_digest


@pytest.fixture
def refused(monkeypatch):
    """A machine that refuses namespaces, ``unshare`` and cgroups (probes answer no)."""
    monkeypatch.setattr(runner, "runs_unprivileged", lambda: True)
    monkeypatch.setattr(runner, "_jail_works", lambda **_: False)
    monkeypatch.setattr(runner, "_unshare_works", lambda: False)
    monkeypatch.setattr(runner, "_cgroup_bases", lambda: ())
    runner.isolation.cache_clear()
    yield
    runner.isolation.cache_clear()  # probed again, for real, by whoever asks next


def test_each_protection_the_machine_refuses_is_said_loudly(refused, caplog):
    with caplog.at_level(logging.ERROR, logger=runner.log.name):
        iso = runner.isolation()
    assert iso == runner.Isolation(True, False, False, False, ())
    assert not runner.network_isolation_available()
    said = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "no private mount namespace" in said
    assert "keep the network" in said
    assert "no cgroup" in said


def test_without_namespaces_a_run_is_set_up_without_them(refused, tmp_path):
    cgroup, jail = runner._prepare(tmp_path, False, _limits())
    assert cgroup is None
    assert not jail.namespaces and not jail.user_ns and not jail.hide and not jail.cgroups


def _limits() -> dict[str, int]:
    return {"memory_mb": 512, "cpu_s": 5, "processes": 16, "file_mb": 8}


def test_the_shared_writable_directories_and_the_workspaces_root_are_hidden(tmp_path):
    ws = str(tmp_path / "workspaces" / "bug-1")
    hidden = runner._hidden_dirs(ws)
    assert os.path.realpath("/tmp") in hidden
    assert str(tmp_path / "workspaces") not in hidden  # under /tmp: hidden with it
    elsewhere = runner._hidden_dirs("/srv/fixstream/workspaces/bug-1")
    assert "/srv/fixstream/workspaces" in elsewhere and "/" not in elsewhere


def test_the_report_is_not_read_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "junit.xml").write_text(
        '<testsuite><testcase classname="x" name="leak"/></testsuite>'
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / PRIVATE).symlink_to(outside)
    assert runner._read_report(ws) is None
    (ws / PRIVATE).unlink()
    (ws / PRIVATE).mkdir()
    (ws / PRIVATE / "junit.xml").symlink_to(outside / "junit.xml")
    assert runner._read_report(ws) is None
    os.mkfifo(ws / PRIVATE / "fifo")
    (ws / PRIVATE / "junit.xml").unlink()
    (ws / PRIVATE / "junit.xml").symlink_to(ws / PRIVATE / "fifo")
    assert runner._read_report(ws) is None  # and did not block
    (ws / PRIVATE / "junit.xml").unlink()
    (ws / PRIVATE / "junit.xml").write_text("<testsuite/>")
    assert runner._read_report(ws) == b"<testsuite/>"


def test_the_sandbox_directory_is_recreated_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / PRIVATE).symlink_to(outside)
    runner._reset_private(ws)
    assert not (ws / PRIVATE).is_symlink() and (ws / PRIVATE / "home").is_dir()
    assert [p.name for p in outside.iterdir()] == ["keep"]


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
