"""Read the text of a chunk reference from the repository (chunks travel as references)."""

from __future__ import annotations

from pathlib import Path

from fixstream.schemas import ChunkRef


def chunk_text(repo_dir: Path, chunk: ChunkRef, *, numbered: bool = False) -> str:
    lines = (repo_dir / chunk.path).read_text(errors="replace").splitlines()
    picked = lines[chunk.start_line - 1 : chunk.end_line]
    if numbered:
        return "\n".join(f"{chunk.start_line + i:5d}| {line}" for i, line in enumerate(picked))
    return "\n".join(picked) + "\n"


def header(chunk: ChunkRef) -> str:
    symbol = f" ({chunk.symbol})" if chunk.symbol else ""
    return f"{chunk.path} lines {chunk.start_line}-{chunk.end_line}{symbol}"
