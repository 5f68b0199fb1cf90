"""What the model answers in: one pydantic schema per kind of call.

The field descriptions are part of the JSON schema the model is given, so they say exactly
what is wanted. Edit proposals live with the sandbox that applies them
(``fixstream.sandbox.edits.EditProposal``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReproductionTest(BaseModel):
    """A new pytest file that fails on the current code because of the bug."""

    path: str = Field(description="New file path relative to the repository root, under tests/.")
    code: str = Field(description="The whole file: imports and one or more test functions.")
    expected_failure: str = Field(
        default="", description="The assertion or exception the test should fail with now."
    )


class ChunkVerdict(BaseModel):
    """Whether one chunk of code is where the bug is."""

    implicated: bool = Field(description="True if the bug is in this chunk.")
    score: float = Field(ge=0.0, le=1.0, description="Confidence that the bug is here, 0 to 1.")
    why: str = Field(default="", description="One or two sentences: what is wrong here, or not.")
