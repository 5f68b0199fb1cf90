"""The talk's own table, reproduced by the planner."""

import orjson
import pytest

from fixstream.planner import Profile, plan

GPT_41 = Profile(prefill_ms_per_input_token=0.24, output_tokens_per_second=132.7)


def test_the_talks_case_study_100k_in_10k_out_one_call_vs_16():
    p = plan(GPT_41, 100_000, 10_000, parallel=16)
    assert p.one_call.prefill_s == pytest.approx(24.0)
    assert p.one_call.decode_s == pytest.approx(75.4, abs=0.05)
    assert p.one_call.total_s == pytest.approx(99.4, abs=0.1)  # the talk: "100 sec"
    assert p.split.prefill_s == pytest.approx(1.5)
    assert p.split.decode_s == pytest.approx(4.7, abs=0.05)  # the talk rounds to 5
    assert p.split.total_s == pytest.approx(6.2, abs=0.05)  # the talk: "6.5 sec"
    assert p.speedup == pytest.approx(16.0)


def test_the_modulo_example_30k_output_at_50_tokens_per_second():
    modulo = Profile(prefill_ms_per_input_token=0.0, output_tokens_per_second=50)
    p = plan(modulo, 0, 30_000, parallel=16)
    assert p.one_call.total_s == pytest.approx(600.0)  # "600+ seconds (10 minutes)"
    assert p.split.total_s == pytest.approx(37.5)  # "reduced to 40 seconds"


def test_more_chunks_than_slots_run_in_waves():
    p = plan(GPT_41, 100_000, 10_000, parallel=8, chunks=16)
    assert p.split.total_s == pytest.approx(2 * plan(GPT_41, 50_000, 5_000, 8).split.total_s)


def test_a_tpm_limit_bounds_the_split():
    p = plan(GPT_41, 100_000, 10_000, parallel=16, tpm=30_000)
    assert p.rate_bound_s == pytest.approx(220.0)  # 110K tokens at tier 1's 30K per minute
    assert p.split_with_limits_s == pytest.approx(220.0)
    assert plan(GPT_41, 1000, 100, 4, rpm=60).rate_bound_s == pytest.approx(4.0)


def test_plan_command_prints_the_talks_table_and_estimates_a_real_bug(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fixstream.cli import cli
    from fixstream.config import EXAMPLES

    monkeypatch.setenv("FIXSTREAM_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    talk = runner.invoke(cli, ["plan", "--tpm", "30000"])
    assert talk.exit_code == 0, talk.output
    assert "99.4" in talk.output and "6.2" in talk.output and "speedup 16.0x" in talk.output
    assert "need at least 220.0 s" in talk.output
    report = EXAMPLES / "long_log" / "report.json"
    real = runner.invoke(cli, ["plan", "--report", str(report), "--parallel", "4"])
    assert real.exit_code == 0, real.output
    assert "chunk calls" in real.output and "cost $" in real.output


def test_plan_says_whether_the_bugs_environment_is_ready_or_what_a_build_costs(
    tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from fixstream.cli import cli
    from fixstream.config import EXAMPLES
    from fixstream.sandbox.environments import Environments

    monkeypatch.setenv("FIXSTREAM_DATA_DIR", str(tmp_path))
    report = EXAMPLES / "long_log" / "report.json"
    runner = CliRunner()
    cold = runner.invoke(cli, ["plan", "--report", str(report)], terminal_width=200)
    assert cold.exit_code == 0, cold.output
    assert "to build first (no dependency files); no build measured yet" in _flat(cold.output)

    envs = Environments(tmp_path / "envs")
    other = tmp_path / "envs" / "elsewhere"  # an environment of another repository, measured
    other.mkdir(parents=True)
    (other / "meta.json").write_bytes(orjson.dumps({"seconds": 2.5, "interpreter": "/usr"}))
    assert envs.build_seconds() == [2.5]
    measured = runner.invoke(cli, ["plan", "--report", str(report)], terminal_width=200)
    assert "the 1 builds in the store took 2.5 s (median)" in _flat(measured.output)

    key = envs.plan(EXAMPLES / "long_log" / "repo", None, ["python", "-m", "pytest", "-q"]).key
    (tmp_path / "envs" / key).mkdir()
    (tmp_path / "envs" / key / "meta.json").write_bytes(
        orjson.dumps({"seconds": 1.0, "interpreter": "/usr"})
    )
    assert envs.ready(key)
    ready = runner.invoke(cli, ["plan", "--report", str(report)], terminal_width=200)
    assert f"environment {key}: ready (a lookup, no build)" in _flat(ready.output)


def _flat(text: str) -> str:
    """The console wraps at its width: words, one space apart."""
    return " ".join(text.split())
