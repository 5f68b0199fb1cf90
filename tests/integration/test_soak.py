"""``fixstream bench --soak`` as an operator runs it, small: faults and kills, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_soak_kills_workers_under_llm_faults_and_loses_nothing(tmp_path, offline_envs):
    out = tmp_path / "soak"
    run = subprocess.run(
        [sys.executable, "-m", "fixstream", "bench", "--soak", "--bugs", "6",
         "--kill-every", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **offline_envs},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = orjson.loads((out / "soak.json").read_bytes())
    assert figures["kills"] >= 1, "no worker was killed: the soak proved nothing"
    assert figures["submitted"] == 6
    assert figures["lost"] == figures["duplicated"] == figures["failed_silently"] == 0
    assert figures["fixed"] + figures["failed_with_reason"] == 6
    assert "lost" in run.stdout and "duplicated" in run.stdout
