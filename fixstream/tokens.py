"""Token counting with a real offline tokenizer (o200k_base via bpe-openai).

Budgets, chunk sizes and cost estimates must match what the model will bill, so we
count with the same BPE the model uses instead of guessing from characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import bpe_openai
import orjson

ENCODING_NAME = "o200k_base"
TOKENS_PER_MESSAGE = 3
"""Per-message framing overhead (role markers), as in OpenAI's own token-counting recipe."""
REPLY_PRIMING_TOKENS = 3


@lru_cache(maxsize=1)
def _encoding() -> bpe_openai.Encoding:
    return bpe_openai.get_encoding(ENCODING_NAME)


# bpe_openai refuses one call over 1M characters or 200k tokens; a character is at most
# 4 tokens (byte fallback), so pieces of this many characters are always safe.
_SAFE_CHARS = 40_000


def count_tokens(text: str) -> int:
    """Number of o200k_base tokens in ``text``, for text of any length.

    Long text is counted in newline-aligned pieces; the sum may differ from one whole count
    by about a token per piece.
    """
    if not text:
        return 0
    if len(text) <= _SAFE_CHARS:
        return len(_encoding().encode(text))
    total = start = 0
    while start < len(text):
        end = min(len(text), start + _SAFE_CHARS)
        if end < len(text) and (newline := text.rfind("\n", start, end)) > start:
            end = newline + 1
        total += len(_encoding().encode(text[start:end]))
        start = end
    return total


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that fits in ``limit`` tokens."""
    enc = _encoding()
    ids = enc.encode(text)
    if len(ids) <= limit:
        return text
    return enc.decode(ids[:limit])


def message_text(message: Mapping[str, Any]) -> str:
    """A chat message's text: a plain string, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def count_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], response_format: Mapping[str, Any] | None = None
) -> int:
    """Prompt tokens as the API bills them: texts plus framing, plus a structured-output schema.

    The gateway charges its TPM budget with this before the call, and the simulator bills
    with it, so the two agree on what a request costs.
    """
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(str(message.get("role", "")))
        total += count_tokens(message_text(message))
        if message.get("name"):
            total += 1 + count_tokens(str(message["name"]))
    if response_format and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            total += count_tokens(orjson.dumps(schema).decode())
    return total
