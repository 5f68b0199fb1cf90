"""Stopping child processes (broker, workers, simulator) the same way everywhere."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    stop_all([process], timeout)


def stop_all(processes: Iterable[subprocess.Popen | None], timeout: float = 10.0) -> None:
    """Stop several at once: each gets SIGTERM before any is waited for, so their shutdowns
    overlap (a worker's takes a second or more)."""
    alive = [p for p in processes if p is not None and p.poll() is None]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in alive:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill(process: subprocess.Popen | None) -> None:
    """SIGKILL: no shutdown, no commit (crash and outage tests)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
