"""``fixstream up`` as a new user meets it: a data directory that does not exist yet, a bug
fixed through it, then Ctrl-C: a clean stop, no error logged."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fixstream.broker import free_port
from fixstream.config import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.embedded_broker_only]


def test_up_fixes_a_bug_from_a_fresh_data_dir_and_stops_cleanly_on_ctrl_c(tmp_path, offline_envs):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "FIXSTREAM_DATA_DIR": str(tmp_path / "not-yet" / "var"),
        "FIXSTREAM_WEB_PORT": str(free_port()),
        **offline_envs,
    }
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "fixstream", "up", "--time-scale", "0.05"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "export FIXSTREAM_BROKER=" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        broker = log.read_text().split("export FIXSTREAM_BROKER=")[1].split()[0]
        client = {**env, "FIXSTREAM_BROKER": broker}

        def fixstream(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "fixstream", *args],
                env=client, capture_output=True, text=True, timeout=150,
            )  # fmt: skip

        report = str(EXAMPLES / "off_by_one" / "report.json")
        assert fixstream("submit", report, "--bug", "up-1").returncode == 0
        watched = fixstream("watch", "--bug", "up-1", "--timeout", "120")
        assert "fixed" in watched.stdout, watched.stdout[-2000:] + log.read_text()[-3000:]
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert not [line for line in output.splitlines() if "[ERROR]" in line or " ERROR " in line]
