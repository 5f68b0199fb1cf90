"""The knobs of the later stages, built once from Settings in the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fixstream.cache import Cache


@dataclass(frozen=True, slots=True)
class StageKnobs:
    workspaces: Path
    test_timeout_s: float = 60.0
    test_memory_mb: int = 1024
    reproduce_attempts: int = 3
    fix_attempts: int = 3
    root_cause_chunks: int = 16
    fix_suspects: int = 3
    suspect_threshold: float = 0.5
    chunk_max_tokens: int = 600
    cache: Cache | None = None
    """Test runs and searches already done on the same content (None: always redo)."""
