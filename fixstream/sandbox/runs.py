"""What a sandboxed run is given (its limits) and gives back (its end, its bounded output):
shared by every backend (``runner.py``'s bubblewrap, ``container.py``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MB = 1024 * 1024
MAX_REPORT = 64 * MB


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 2048
    cpu_s: int = 120
    processes: int = 256
    file_mb: int = 64
    disk_mb: int = 512
    """Each of ``/testbed``, ``/tmp`` and ``/dev/shm``; all of them count against memory."""
    cpus: float = 1.0
    """The run's CPU share (cgroup), in cores."""


@dataclass(frozen=True)
class Finished:
    returncode: int | None
    timed_out: bool
    output: str
    report: bytes | None
    seconds: float
    isolation: str


class Output:
    """Head and tail of a stream, at most ``limit`` bytes kept."""

    def __init__(self, limit: int) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.half = limit // 2

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size > self.half:
            excess = self.tail_size - self.half
            first = self.tail[0]
            if len(first) <= excess:
                self.tail.popleft()
                cut = len(first)
            else:
                self.tail[0] = first[excess:]
                cut = excess
            self.tail_size -= cut
            self.dropped += cut

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes of output cut ...]\n" if self.dropped else ""
        return (bytes(self.head) + middle.encode() + b"".join(self.tail)).decode(errors="replace")
