"""The container backend's pure parts, no engine needed: what it asks the engine for (checked
against the docker SDK's own conversion to the engine API), the report's new path, and how
the report is read back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixstream.errors import SandboxUnavailableError
from fixstream.sandbox import container
from fixstream.sandbox.bwrap import ENV, MB, SOURCE, TESTBED, Bind, Layout
from fixstream.sandbox.container import (
    REPORT,
    container_kwargs,
    container_problem,
    make_report_file,
    make_scratch,
    read_report,
    rewrite_report,
    run_in_container,
)
from fixstream.sandbox.runner import Limits

PYTEST = ["python", "-m", "pytest", "-q"]
LIMITS = Limits(memory_mb=1024, cpu_s=60, processes=64, file_mb=32, disk_mb=100, cpus=0.5)
ENV_VARS = {"PATH": f"{ENV}/bin:/usr/bin:/bin", "HOME": "/tmp"}


def _layout(tmp_path: Path, **changes) -> Layout:
    for name in ("ws", "env", "python"):
        (tmp_path / name).mkdir(exist_ok=True)
    fields = {
        "command": [*PYTEST, "--junitxml=/dev/fd/{report_fd}"],
        "workspace": str(tmp_path / "ws"),
        "env": str(tmp_path / "env"),
        "interpreters": (str(tmp_path / "python"),),
        "disk_mb": 50,
    }
    return Layout(**{**fields, **changes})


def _kwargs(layout: Layout, **changes) -> dict:
    fields = {"limits": LIMITS, "env_vars": ENV_VARS, "image": "debian:bookworm-slim"}
    return container_kwargs(layout, **{**fields, **changes})


def _targets(kwargs: dict) -> dict[str, dict]:
    return {m["Target"]: m for m in kwargs["mounts"]}


def test_the_run_is_locked_down(tmp_path):
    kwargs = _kwargs(_layout(tmp_path))
    assert kwargs["image"] == "debian:bookworm-slim"
    assert kwargs["user"] == "65534:65534"
    assert kwargs["read_only"] is True
    assert kwargs["network_mode"] == "none"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["init"] is True
    assert kwargs["log_config"]["type"] == "none"  # the engine stores none of the output
    assert kwargs["labels"] == {container.LABEL: "run"}


def test_limits_become_the_containers(tmp_path):
    kwargs = _kwargs(_layout(tmp_path))
    memory = (1024 + 3 * 100) * MB  # the three tmpfs count against memory, as in the runner
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == memory
    assert kwargs["pids_limit"] == 64
    assert kwargs["nano_cpus"] == 500_000_000
    assert kwargs["shm_size"] == 50 * MB
    ulimits = {u["name"]: (u["soft"], u["hard"]) for u in kwargs["ulimits"]}
    assert ulimits == {"fsize": (32 * MB, 32 * MB), "cpu": (60, 61), "core": (0, 0)}


def test_the_workspace_is_copied_into_a_sized_tmpfs(tmp_path):
    kwargs = _kwargs(_layout(tmp_path))
    assert kwargs["tmpfs"][TESTBED] == "size=50m,exec"
    assert kwargs["tmpfs"]["/tmp"] == "size=50m,exec"
    assert kwargs["working_dir"] == TESTBED
    source = _targets(kwargs)[SOURCE]
    assert source["Source"] == str(tmp_path / "ws") and source["ReadOnly"] is True
    assert kwargs["entrypoint"] == ["/bin/sh"]
    assert kwargs["command"] == [
        "-c", f'cp -R {SOURCE}/. {TESTBED}/ && exec "$@"', "sh",
        *PYTEST, "--junitxml=/dev/fd/{report_fd}",
    ]  # fmt: skip


def test_without_a_workspace_the_command_runs_as_it_is(tmp_path):
    kwargs = _kwargs(_layout(tmp_path, workspace=None, command=["python", "-c", "pass"]))
    assert kwargs["entrypoint"] == ["python"] and kwargs["command"] == ["-c", "pass"]
    assert TESTBED not in kwargs["tmpfs"] and SOURCE not in _targets(kwargs)
    assert kwargs["working_dir"] == "/"


def test_the_interpreter_and_env_are_bound_read_only_at_their_paths_never_usr(tmp_path):
    python = str(tmp_path / "python")
    kwargs = _kwargs(_layout(tmp_path, interpreters=(python, python)))
    targets = _targets(kwargs)
    assert targets[python] == {"Type": "bind", "Source": python, "Target": python,
                               "ReadOnly": True}  # fmt: skip
    assert targets[ENV]["Source"] == str(tmp_path / "env") and targets[ENV]["ReadOnly"]
    assert [m["Target"] for m in kwargs["mounts"]].count(python) == 1
    assert not any(t == "/usr" or t.startswith("/usr/") for t in targets)
    for system in ("/usr", "/", "/lib"):
        with pytest.raises(ValueError, match="the image's"):
            _kwargs(_layout(tmp_path, interpreters=(system,)))


def test_a_writable_env_and_extra_binds_keep_their_modes(tmp_path):
    (tmp_path / "cache").mkdir()
    extra = (Bind(str(tmp_path / "cache"), "/fixstream/cache", writable=True),)
    targets = _targets(_kwargs(_layout(tmp_path, env_writable=True, extra=extra)))
    assert targets[ENV]["ReadOnly"] is False
    assert targets["/fixstream/cache"]["ReadOnly"] is False


def test_sources_are_bound_by_their_real_path(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "ws")
    targets = _targets(_kwargs(_layout(tmp_path, workspace=str(tmp_path / "link"))))
    assert targets[SOURCE]["Source"] == str(tmp_path / "ws")


def test_an_interpreter_under_root_gets_a_traversable_root(tmp_path, monkeypatch):
    """The image's /root is 0700: uid 65534 could not reach a pyenv under it. A read-only
    skeleton (0755) covers it, with a mount point for each bind under it."""
    monkeypatch.setattr(container.os.path, "realpath", lambda p: p)
    python, rc = "/root/.pyenv/versions/3.11.7", "/root/.config/tool.rc"
    (tmp_path / "tool.rc").write_text("")
    extra = (Bind(str(tmp_path / "tool.rc"), rc),)
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    layout = _layout(tmp_path, interpreters=(python,), extra=extra)
    kwargs = _kwargs(layout, scratch=str(scratch))
    skeleton = scratch / "skeleton" / "root"
    root = _targets(kwargs)["/root"]
    assert root == {"Type": "bind", "Source": str(skeleton), "Target": "/root",
                    "ReadOnly": True}  # fmt: skip
    assert _targets(kwargs)[python]["Source"] == python
    container.make_skeletons(kwargs, str(scratch))
    assert (skeleton / ".pyenv" / "versions" / "3.11.7").is_dir()
    assert (skeleton / ".config" / "tool.rc").is_file()  # a file's mount point is a file
    for path in [skeleton, *skeleton.rglob("*")]:
        assert path.stat().st_mode & 0o777 == 0o755, path
    assert "/root" not in _targets(_kwargs(_layout(tmp_path), scratch=str(scratch)))
    with pytest.raises(ValueError, match="scratch"):
        _kwargs(layout)


def test_the_network_is_the_engines_default_only_when_asked_for(tmp_path):
    assert "network_mode" not in _kwargs(_layout(tmp_path, network=True))


def test_the_environment_is_exactly_the_one_given(tmp_path, monkeypatch):
    monkeypatch.setenv("FIXSTREAM_UNIT_SECRET", "hunter2")
    env = dict(ENV_VARS)
    kwargs = _kwargs(_layout(tmp_path), env_vars=env)
    assert kwargs["environment"] == ENV_VARS and kwargs["environment"] is not env


def test_descriptors_cannot_cross_into_a_container(tmp_path):
    with pytest.raises(ValueError, match="descriptors"):
        _kwargs(_layout(tmp_path, fds=(5,)))
    with pytest.raises(ValueError, match="empty"):
        _kwargs(_layout(tmp_path, command=[]))


def test_the_report_file_is_bound_writable_at_its_place(tmp_path):
    report = tmp_path / "junit.xml"
    report.touch()
    target = _targets(_kwargs(_layout(tmp_path), report_file=str(report)))[REPORT]
    assert target["Source"] == str(report) and target["ReadOnly"] is False


def test_the_docker_sdk_accepts_every_argument(tmp_path):
    """The SDK's own conversion to the engine API (what ``containers.create`` sends)."""
    from docker.models.containers import _create_container_args

    report = tmp_path / "junit.xml"
    report.touch()
    kwargs = _kwargs(_layout(tmp_path), report_file=str(report))
    create = _create_container_args({**kwargs, "version": "1.41"})
    host = create["host_config"]
    assert create["user"] == "65534:65534" and create["image"] == "debian:bookworm-slim"
    assert create["environment"] == ENV_VARS
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 64
    assert host["Memory"] == (1024 + 300) * MB
    assert host["NanoCpus"] == 500_000_000
    assert host["Tmpfs"][TESTBED] == "size=50m,exec"
    assert host["Init"] is True
    assert host["LogConfig"]["Type"] == "none"
    assert {u["Name"] for u in host["Ulimits"]} == {"fsize", "cpu", "core"}
    assert {m["Target"] for m in host["Mounts"]} == {str(tmp_path / "python"), ENV, REPORT, SOURCE}
    assert "Binds" not in host  # no src:dst:mode strings


def test_the_junit_report_goes_to_a_file():
    command = [*PYTEST, "-p", "no:cacheprovider", "--junitxml=/dev/fd/{report_fd}", "t.py"]
    rewritten, report = rewrite_report(command)
    assert report is True
    assert rewritten == [*PYTEST, "-p", "no:cacheprovider", f"--junitxml={REPORT}", "t.py"]
    assert REPORT == "/fixstream/out/junit.xml"
    assert "--junitxml=/dev/fd/{report_fd}" in command  # the caller's list is left alone
    assert rewrite_report(PYTEST) == (PYTEST, False)


def test_the_report_file_is_the_sandbox_users_alone(tmp_path):
    folder = make_scratch()
    try:
        path = make_report_file(folder)
        assert os.stat(folder).st_mode & 0o777 == 0o700
        info = os.lstat(path)
        assert info.st_size == 0
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65534, 65534, 0o600)
        else:
            assert info.st_mode & 0o777 == 0o666
    finally:
        import shutil

        shutil.rmtree(folder)


def test_the_report_is_read_without_following_links_and_capped(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_bytes(b"<testsuites/>")
    assert read_report(str(report), 100) == b"<testsuites/>"
    assert read_report(str(report), 13) == b"<testsuites/>"
    assert read_report(str(report), 12) is None  # oversized: dropped, never cut
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    link = tmp_path / "link.xml"
    link.symlink_to(secret)
    assert read_report(str(link), 100) is None
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    assert read_report(str(fifo), 100) is None  # not waited on
    assert read_report(str(tmp_path / "missing.xml"), 100) is None
    (tmp_path / "empty.xml").touch()
    assert read_report(str(tmp_path / "empty.xml"), 100) == b""


def test_the_default_image_can_be_changed(monkeypatch):
    monkeypatch.delenv(container.IMAGE_VARIABLE, raising=False)
    assert container.default_image() == "debian:bookworm-slim"
    monkeypatch.setenv(container.IMAGE_VARIABLE, "python:3.11-slim-bookworm")
    assert container.default_image() == "python:3.11-slim-bookworm"


def test_without_an_engine_the_problem_is_said_and_runs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    problem = container_problem()
    assert problem is not None and problem.startswith("DockerException")

    async def attempt():
        await run_in_container(
            _layout(tmp_path), limits=LIMITS, timeout_s=5, env_vars=ENV_VARS,
            max_output_bytes=1000, image="debian:bookworm-slim",
        )  # fmt: skip

    import asyncio

    with pytest.raises(SandboxUnavailableError, match="container engine"):
        asyncio.run(attempt())


def test_a_missing_bind_source_is_refused_before_the_engine_sees_it(tmp_path):
    """Docker refuses one; Podman would make it, as root, on the host."""
    extra = (Bind(str(tmp_path / "missing"), "/x"),)
    container.check_sources(_kwargs(_layout(tmp_path)))
    with pytest.raises(FileNotFoundError, match="missing"):
        container.check_sources(_kwargs(_layout(tmp_path, extra=extra)))
    assert not (tmp_path / "missing").exists()
