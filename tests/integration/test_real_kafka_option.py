"""FIXSTREAM_TEST_BROKER=testcontainers as a developer runs it: the broker tests go to a real
Kafka in Docker where an engine answers, and skip saying so where none does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, docker_problem

pytestmark = pytest.mark.integration

TARGET = "tests/integration/test_topics_cli.py"


def _pytest(broker: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env |= {"FIXSTREAM_TEST_BROKER": broker}  # a run of its own, not one of xdist's workers
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-n", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _counts(summary: str) -> dict[str, int]:
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|error)", summary)}


@pytest.mark.timeout(900)  # with Docker, the first run pulls the Kafka image
def test_the_suite_runs_on_real_kafka_where_docker_answers_and_skips_saying_why_elsewhere():
    problem = docker_problem()
    result = _pytest("testcontainers", TARGET, "-q", "-rs", timeout=840)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    counts = _counts(result.stdout.strip().splitlines()[-1])  # stderr: plugins' warnings
    assert "failed" not in counts and "error" not in counts, output[-4000:]
    skips = {
        line: int(re.match(r"SKIPPED \[(\d+)\]", line)[1])
        for line in output.splitlines()
        if line.startswith("SKIPPED")
    }
    # the `fixstream broker` test is about tansu itself: skipped under testcontainers anyway
    embedded_only = {r for r in skips if "tests the embedded broker (tansu) itself" in r}
    no_docker = {r for r in skips if "needs a running Docker engine" in r}
    assert embedded_only and embedded_only | no_docker == set(skips), output[-4000:]
    if problem is None:  # a Docker engine answers: the apply tests ran on Kafka and passed
        assert counts["passed"] >= 2 and not no_docker, output[-4000:]
        return
    assert set(counts) == {"skipped"}, output[-4000:]
    assert sum(skips[r] for r in no_docker) >= 2, output[-4000:]
    assert all("FIXSTREAM_TEST_BROKER=testcontainers" in r for r in no_docker)


def test_an_unknown_test_broker_stops_the_run_instead_of_falling_back():
    result = _pytest("kafka-please", TARGET, "-q", "--collect-only", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output[-3000:]
    assert "FIXSTREAM_TEST_BROKER='kafka-please' is unknown" in output
    assert "embedded, testcontainers" in output
    assert "collected" not in output
