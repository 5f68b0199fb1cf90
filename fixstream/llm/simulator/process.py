"""A simulator in its own process, so its CPU time is not counted as ours."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from fixstream import processes
from fixstream.broker import free_port


@contextlib.contextmanager
def simulator_process(*args: str, timeout: float = 20.0) -> Iterator[str]:
    """Run ``fixstream sim ARGS`` on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fixstream", "sim", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.05)
        yield base_url
    finally:
        processes.stop(process)
