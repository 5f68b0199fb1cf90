"""`fixstream doctor` as a user runs it, against a real broker, the real simulator and
closed ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fixstream.broker import free_port

pytestmark = pytest.mark.integration

PARTS = ("broker", "llm", "sandbox", "uv", "env dir", "env index")


def _doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m fixstream doctor`` with only these settings (none of this shell's)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FIXSTREAM_", "OPENAI_"))}
    clean["FIXSTREAM_DATA_DIR"] = str(tmp_path / "var")
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fixstream", "doctor", "--timeout", "2", *args],
        capture_output=True, text=True, timeout=90, env=clean,
    )  # fmt: skip


def _line(output: str, part: str) -> str:
    (line,) = [x for x in output.splitlines() if x[6:].startswith(f"{part}: ")]
    return line


def _fix_after(output: str, part: str) -> str:
    lines = output.splitlines()
    following = lines[lines.index(_line(output, part)) + 1]
    assert following.startswith("  fix: "), output
    return following


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def test_everything_there_passes(broker, llm_sim, tmp_path):
    env = {f"FIXSTREAM_{k.upper()}": str(v) for k, v in broker.client_settings().items()}
    result = _doctor(tmp_path, **env, FIXSTREAM_LLM_BASE_URL=llm_sim)
    _no_traceback(result)
    assert result.returncode == 0, result.stdout
    for part in PARTS:
        assert _line(result.stdout, part)
    assert _line(result.stdout, "broker").startswith(f"ok    broker: {broker.bootstrap} answers")
    assert "LLM SIMULATOR" in _line(result.stdout, "llm")
    assert _line(result.stdout, "llm").startswith("ok")
    assert _line(result.stdout, "uv").startswith("ok    uv: uv ")
    assert _line(result.stdout, "env dir").startswith("ok")
    assert "redis" not in result.stdout  # not configured, not checked
    if os.geteuid() == 0:  # root with writable cgroups: the strong level, runs as nobody
        sandbox = _line(result.stdout, "sandbox")
        assert sandbox.startswith("ok    sandbox: bwrap+cgroup: ")
        assert "host uid 65534" in sandbox
    assert result.stdout.splitlines()[-1].endswith("0 FAIL: the main job can run")


def test_a_broker_that_does_not_answer_fails(tmp_path):
    closed = f"127.0.0.1:{free_port()}"
    result = _doctor(tmp_path, FIXSTREAM_BROKER=closed)
    _no_traceback(result)
    assert result.returncode == 1, result.stdout
    line = _line(result.stdout, "broker")
    assert line.startswith(f"FAIL  broker: {closed} ")
    assert "FIXSTREAM_BROKER" in _fix_after(result.stdout, "broker")


def test_a_redis_that_does_not_answer_fails(tmp_path):
    result = _doctor(tmp_path, FIXSTREAM_REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    _no_traceback(result)
    assert result.returncode == 1, result.stdout
    assert _line(result.stdout, "redis").startswith("FAIL  redis: redis://:***@127.0.0.1:")
    assert "FIXSTREAM_REDIS_URL" in _fix_after(result.stdout, "redis")
    assert "hunter2" not in result.stdout
    assert _line(result.stdout, "broker").startswith("warn  broker: not configured")


def test_json_lists_every_check(tmp_path):
    result = _doctor(tmp_path, "--json")
    _no_traceback(result)
    checks = orjson.loads(result.stdout)
    assert [c["part"] for c in checks] == list(PARTS)
    assert all(c["status"] in ("ok", "warn", "FAIL") and c["found"] for c in checks)
    assert all(c["fix"] for c in checks if c["status"] != "ok")
    by_part = {c["part"]: c for c in checks}
    assert by_part["broker"]["status"] == "warn"  # the embedded broker is not a failure
    assert by_part["llm"]["status"] == "warn"  # nor is the simulator
    assert result.returncode == (1 if any(c["status"] == "FAIL" for c in checks) else 0)
    if os.geteuid() == 0:
        assert by_part["sandbox"]["details"]["level"] == "bwrap+cgroup"
