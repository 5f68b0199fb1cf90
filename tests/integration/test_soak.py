"""``fixstream bench --soak`` as an operator runs it, small: faults and kills, nothing lost.

The oracle is Kafka's: every record of every topic the workers consume has its effect or is
dead-lettered, and the group's committed offsets reach every end. A bug the watchdog failed
for "no progress" is a lost bug, not a verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.timeout(660)  # the soak's own bound is the subprocess's 600 s
def test_soak_kills_workers_under_llm_faults_and_loses_no_record(tmp_path, offline_envs):
    out = tmp_path / "soak"
    run = subprocess.run(
        [sys.executable, "-m", "fixstream", "bench", "--soak", "--bugs", "6",
         "--kill-every", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **offline_envs},
    )  # fmt: skip
    shown = run.stdout[-6000:] + run.stderr[-3000:]
    assert (out / "soak.json").exists(), shown
    figures = orjson.loads((out / "soak.json").read_bytes())
    assert figures["kills"] >= 1, "no worker was killed: the soak proved nothing"
    bugs = figures["bugs"]
    assert bugs["submitted"] == 6
    assert bugs["lost_bugs"] == {}, shown  # "no progress" included
    lost = {name: t["lost_records"] for name, t in figures["topics"].items() if t["lost"]}
    assert lost == {}, shown
    assert figures["offsets"] == {}, shown
    assert bugs["duplicate_fix_events"] == bugs["wrong_verdicts"] == 0, shown
    assert set(figures["must_be_zero"].values()) == {0}, shown
    assert bugs["fixed"] + bugs["failed_with_reason"] == 6
    assert run.returncode == 0, shown
    for words in ("every record, per topic", "chunks.results", "dead-lettered", "duplicated",
                  "lost bugs", "unaccounted offsets"):  # fmt: skip
        assert words in run.stdout, words
