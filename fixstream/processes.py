"""Stopping child processes (broker, workers, simulator) the same way everywhere."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill(process: subprocess.Popen | None) -> None:
    """SIGKILL: no shutdown, no commit (crash and outage tests)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
