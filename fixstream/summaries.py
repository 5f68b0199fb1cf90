"""Progressive summaries: each stage reads the bug's summary instead of the raw artifacts,
and writes back an updated, shorter one. Tokens are precious."""

from __future__ import annotations

from pydantic import BaseModel, Field

from fixstream.schemas import AnalyzedBug, BugSummary
from fixstream.tokens import count_tokens, truncate_to_tokens

DESCRIPTION_TOKENS = 1500
COMMENT_TOKENS = 300
MAX_FRAMES = 8


class ReportSummary(BaseModel):
    """What the cheap model returns for a report: the first progressive summary."""

    summary: str = Field(description="What is wrong, in at most 80 words.")
    symptoms: list[str] = Field(default_factory=list, max_length=5)
    suspected_locations: list[str] = Field(
        default_factory=list, max_length=5, description="path:line or symbol names"
    )
    reproduction_hint: str = Field(default="", description="How to trigger it, one sentence.")


def evidence_lines(bug: AnalyzedBug) -> list[str]:
    """The facts a regular program found: these never need tokens to compress."""
    ev = bug.evidence
    lines = []
    if ev.exception_types:
        lines.append("Exceptions: " + ", ".join(ev.exception_types[:5]))
    if ev.messages:
        lines.append("Messages: " + " | ".join(m[:200] for m in ev.messages[:3]))
    frames = [f"{f.path}:{f.line} in {f.function}" for f in ev.frames[-MAX_FRAMES:]]
    if frames:
        lines.append("Innermost frames: " + "; ".join(frames))
    if bug.candidates:
        lines.append("Candidate files: " + ", ".join(c.path for c in bug.candidates[:8]))
    return lines


def report_prompt(bug: AnalyzedBug) -> list[dict[str, str]]:
    """Everything the report says, bounded, for the one call that compresses it."""
    report = bug.report
    comments = "\n".join(
        f"- {c.author}: {truncate_to_tokens(c.body, COMMENT_TOKENS)}" for c in report.comments
    )
    parts = [
        f"Title: {report.title}",
        f"Description:\n{truncate_to_tokens(report.description, DESCRIPTION_TOKENS)}",
        f"Comments:\n{comments}" if comments else "",
        *evidence_lines(bug),
        f"Log excerpt:\n{bug.evidence.log_excerpt}" if bug.evidence.log_excerpt else "",
    ]
    return [
        {
            "role": "system",
            "content": "You compress bug reports for an automated bug-fixing pipeline. "
            "Keep every fact a developer needs to reproduce and locate the bug; drop the rest.",
        },
        {"role": "user", "content": "\n\n".join(p for p in parts if p)},
    ]


def render(bug: AnalyzedBug, summary: ReportSummary | None) -> str:
    """The summary text later stages put in their prompts."""
    lines = [f"Bug: {bug.report.title}"]
    if summary is not None:
        lines.append(f"Summary: {summary.summary}")
        lines += [f"Symptom: {s}" for s in summary.symptoms]
        lines += [f"Suspect: {s}" for s in summary.suspected_locations]
        if summary.reproduction_hint:
            lines.append(f"Reproduce: {summary.reproduction_hint}")
    else:
        lines.append(f"Summary: {truncate_to_tokens(bug.report.description, 200)}")
    return "\n".join(lines + evidence_lines(bug))


def summary_event(bug_id: str, stage: str, revision: int, text: str) -> BugSummary:
    return BugSummary(
        bug_id=bug_id, stage=stage, revision=revision, text=text, tokens=count_tokens(text)
    )


def revise(bug_id: str, stage: str, revision: int, previous: str, facts: list[str]) -> BugSummary:
    """The next revision: the previous summary plus what this stage established."""
    text = "\n".join([previous, *facts]) if facts else previous
    return summary_event(bug_id, stage, revision, text)
