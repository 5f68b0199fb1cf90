"""Run a Faust worker for the app (the ``worker`` and ``up`` commands)."""

from __future__ import annotations

import asyncio
import logging

import faust

from fixstream.app import create_app
from fixstream.config import Settings


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Block until the worker is stopped (SIGINT/SIGTERM stop it cleanly)."""
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    logging.getLogger("faust").setLevel(logging.WARNING)
    worker.execute_from_commandline()
