"""The analysis stage's core on a real example, with the scripted model: no broker."""

from __future__ import annotations

import orjson

from fixstream.artifacts import ArtifactStore
from fixstream.config import EXAMPLES
from fixstream.errors import TransientLLMError
from fixstream.llm import Gateway, GatewayConfig, ScriptedTransport
from fixstream.reports import report_from_file
from fixstream.streams.analysis import AnalysisConfig, analyse, summarise
from fixstream.tokens import count_tokens

EXAMPLE = EXAMPLES / "long_log" / "report.json"
FAST = GatewayConfig(max_attempts=2, max_reasks=1, backoff_base_s=0.001, backoff_max_s=0.001)
ANSWER = orjson.dumps(
    {
        "summary": "Transactions export with a BOM makes parse_row fail with KeyError 'date'.",
        "symptoms": ["KeyError: 'date'"],
        "suspected_locations": ["ledger/parser.py"],
        "reproduction_hint": "Read a CSV that starts with a UTF-8 BOM.",
    }
).decode()


def _config(tmp_path) -> AnalysisConfig:
    return AnalysisConfig(store=ArtifactStore(tmp_path / "a"), checkout_dir=tmp_path / "c")


async def test_long_log_example_is_located_chunked_and_summarised(tmp_path):
    report = report_from_file(EXAMPLE)
    bug = await analyse(report, _config(tmp_path))
    assert bug.candidates[0].path == "ledger/parser.py"
    assert bug.candidates[0].reason == "stack-trace"
    assert "KeyError" in bug.evidence.exception_types
    # the 2,000-line log travels by claim check, not inline
    log = next(a for a in bug.report.artifacts if a.kind == "log")
    assert log.content is None and log.uri.startswith("file://")

    transport = ScriptedTransport([ANSWER])
    outcome = await summarise(bug, Gateway(transport, FAST))
    text = outcome.output.summary
    assert "Summary: Transactions export with a BOM" in text
    assert "Suspect: ledger/parser.py" in text
    assert outcome.summary.text == text and outcome.summary.revision == 1
    assert outcome.usage.calls == 1 and outcome.usage.tokens_in > 0
    # the summary is what later stages read: far smaller than the report it replaces
    raw = report.description + "".join(a.content or "" for a in report.artifacts)
    assert outcome.summary.tokens * 10 < count_tokens(raw)
    # the cheap model was asked, with the log excerpt in the prompt
    assert transport.requests[0].model == FAST.models["default"]
    assert "Log excerpt" in transport.requests[0].messages[-1]["content"]


async def test_a_failing_model_falls_back_to_evidence_and_says_so(tmp_path):
    bug = await analyse(report_from_file(EXAMPLE), _config(tmp_path))
    transport = ScriptedTransport([TransientLLMError("HTTP 503")] * 2)
    outcome = await summarise(bug, Gateway(transport, FAST))
    assert outcome.note.startswith("summary from evidence only: RetryBudgetExhaustedError")
    assert "Exceptions: KeyError" in outcome.output.summary
    assert outcome.usage.calls == 0


async def test_locating_reaches_imports_and_plain_words(tmp_path):
    """two_files: the wrong constant sits in a module the crashing code imports;
    wrong_operator: a customer's words, no identifiers at all."""
    examples = EXAMPLE.parent.parent
    two = await analyse(report_from_file(examples / "two_files" / "report.json"), _config(tmp_path))
    assert "station/units.py" in {c.path for c in two.chunks}
    words = await analyse(
        report_from_file(examples / "wrong_operator" / "report.json"), _config(tmp_path)
    )
    assert words.candidates[0].path == "shop/coupons.py"
    assert words.candidates[0].reason == "keyword"
    assert not any(c.path.startswith("tests/") for c in two.chunks + words.chunks)
