"""`fixstream doctor`'s verdicts: one line per check, a fix when not ok, exit 1 only on FAIL."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from typer.testing import CliRunner

from fixstream import doctor
from fixstream.cli import cli
from fixstream.doctor import Check, exit_code, render, summary

OK = Check("uv", "ok", "uv 0.5.0 at /usr/bin/uv", fix="never shown")
WARN = Check("llm", "warn", "no endpoint configured", "set OPENAI_API_KEY")
FAIL = Check("broker", "FAIL", "127.0.0.1:1 does not answer", "start the broker")


def test_a_check_is_one_line_and_a_fix_line_only_when_not_ok():
    assert OK.lines() == ["ok    uv: uv 0.5.0 at /usr/bin/uv"]
    assert WARN.lines() == ["warn  llm: no endpoint configured", "  fix: set OPENAI_API_KEY"]
    assert FAIL.lines() == [
        "FAIL  broker: 127.0.0.1:1 does not answer",
        "  fix: start the broker",
    ]


def test_multi_line_messages_are_flattened_and_bounded():
    check = Check("uv", "FAIL", "Could not find uv:\n - /a\n - /b\n", "pip install\nuv")
    assert check.lines() == ["FAIL  uv: Could not find uv: - /a - /b", "  fix: pip install uv"]
    long = Check("sandbox", "FAIL", "x" * 5000, "y")
    assert len(long.lines()[0]) < 700
    assert long.lines()[0].endswith("…")


def test_render_keeps_the_order_of_the_checks():
    assert render([FAIL, OK, WARN]).splitlines() == [
        *FAIL.lines(),
        *OK.lines(),
        *WARN.lines(),
    ]


@pytest.mark.parametrize(
    ("checks", "code"),
    [([], 0), ([OK], 0), ([OK, WARN, WARN], 0), ([OK, FAIL], 1), ([WARN, FAIL, FAIL], 1)],
)
def test_only_a_failure_makes_the_exit_code_non_zero(checks, code):
    assert exit_code(checks) == code


def test_summary_counts_each_status():
    assert summary([OK, WARN, FAIL]) == "1 ok, 1 warn, 1 FAIL: the main job cannot run"
    assert summary([OK, WARN]) == "1 ok, 1 warn, 0 FAIL: the main job can run"


def test_json_has_no_fix_for_an_ok_check_and_carries_the_details():
    check = Check("sandbox", "ok", "bwrap+cgroup", "unused", {"level": "bwrap+cgroup"})
    assert check.as_json() == {
        "part": "sandbox",
        "status": "ok",
        "found": "bwrap+cgroup",
        "fix": "",
        "details": {"level": "bwrap+cgroup"},
    }
    assert FAIL.as_json()["fix"] == "start the broker"
    assert "details" not in FAIL.as_json()


def test_error_text_names_the_type_once():
    assert doctor._error(TimeoutError()) == "TimeoutError"
    assert doctor._error(RuntimeError("RuntimeError: boom\nmore")) == "RuntimeError: boom more"


async def test_a_check_that_raises_or_hangs_becomes_a_fail_line():
    async def raises() -> Check:
        raise KeyError("topics_file")

    async def hangs() -> Check:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    raised = await doctor.guarded("broker", raises(), 1.0)
    assert raised.status == "FAIL"
    assert "KeyError" in raised.found
    assert raised.fix
    hung = await doctor.guarded("llm", hangs(), 0.05)
    assert (hung.part, hung.status) == ("llm", "FAIL")
    assert "0.05 s" in hung.found


def test_env_dir_writable_missing_and_blocked(tmp_path):
    assert doctor._env_dir(tmp_path, 100).status == "ok"
    later = tmp_path / "a" / "envs"
    check = doctor._env_dir(later, 100)
    assert check.status == "ok"
    assert "will be created" in check.found
    assert not (tmp_path / "a").exists(), "the doctor creates nothing"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    blocked = doctor._env_dir(tmp_path / "file" / "envs", 100)
    assert blocked.status == "FAIL"
    assert "FIXSTREAM_ENV_DIR" in blocked.fix


def test_env_dir_warns_when_the_disk_is_smaller_than_the_budget(tmp_path):
    check = doctor._env_dir(tmp_path, 10**12)
    assert check.status == "warn"
    assert "FIXSTREAM_ENV_DISK_MB" in check.fix


def test_env_index(tmp_path):
    assert doctor._env_index([], offline=False).status == "ok"
    assert doctor._env_index([], offline=True).status == "FAIL"
    missing = doctor._env_index([str(tmp_path / "nowhere")], offline=False)
    assert missing.status == "FAIL"
    assert "nowhere" in missing.found
    assert doctor._env_index([str(tmp_path)], offline=True).status == "warn"  # no wheels
    (tmp_path / "pytest-8.0.0-py3-none-any.whl").write_bytes(b"")
    found = doctor._env_index([str(tmp_path)], offline=True)
    assert found.status == "ok"
    assert "1 distributions" in found.found


def test_redis_password_is_never_printed():
    assert doctor._without_password("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert doctor._without_password("redis://u:s3cret@h/0") == "redis://u:***@h/0"
    assert doctor._without_password("redis://h:6379/0") == "redis://h:6379/0"


@pytest.fixture
def canned(monkeypatch):
    """The command with these check results instead of real ones."""

    def use(*checks: Check) -> None:
        async def run_checks(settings, timeout):
            return list(checks)

        monkeypatch.setattr(doctor, "run_checks", run_checks)

    return use


def test_command_prints_lines_and_exits_by_the_worst_status(canned):
    canned(OK, WARN)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [*OK.lines(), *WARN.lines()]
    canned(OK, FAIL)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL  broker: 127.0.0.1:1 does not answer" in result.output


def test_command_json(canned):
    canned(OK, FAIL)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1
    assert orjson.loads(result.output) == [OK.as_json(), FAIL.as_json()]


def test_a_bad_setting_is_one_line_not_a_traceback(monkeypatch):
    monkeypatch.setenv("FIXSTREAM_ENV_DISK_MB", "lots")
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 2
    assert "bad setting: env_disk_mb" in result.output
    assert "Traceback" not in result.output
    monkeypatch.delenv("FIXSTREAM_ENV_DISK_MB")
    monkeypatch.setenv("FIXSTREAM_ENV_FIND_LINKS", "/wheels")  # not JSON
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 2
    assert "env_find_links" in result.output
