"""Follow bugs through the stages from ``bugs.status``, ``fixes`` and ``bugs.dlq``."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from rich.table import Table

from fixstream.schemas import DeadLetter, FixEvent, StatusEvent

STAGES = ("analysis", "reproduce", "root_cause", "fix", "validate")
TERMINAL_STATES = {"failed", "dead_lettered"}


@dataclass
class BugRow:
    bug_id: str
    stages: dict[str, StatusEvent] = field(default_factory=dict)
    fix: FixEvent | None = None
    dead: str | None = None
    last: StatusEvent | None = None
    """The latest status, whichever stage (status events carry no time: arrival order)."""

    def reached(self, stage: str) -> bool:
        """Done with ``stage`` (or the whole bug ended earlier)."""
        if self.ended:
            return True
        status = self.stages.get(stage)
        return status is not None and status.state == "done"

    @property
    def ended(self) -> bool:
        return self.fix is not None or self.dead is not None

    def why(self) -> str:
        """Why the bug is where it is, in one line: its fix event's reason, or the last word
        of the stage it is in."""
        if self.fix is not None:
            return f"{self.fix.status}: {self.fix.reason}" if self.fix.reason else self.fix.status
        if self.dead:
            return f"dead-lettered: {self.dead}"
        last = self.last
        if last is None:
            return "never picked up by a worker"
        return f"still in {last.stage} ({last.state}{': ' + last.message if last.message else ''})"


class Board:
    """Per-bug progress, fed one record at a time."""

    def __init__(self) -> None:
        self.rows: dict[str, BugRow] = {}

    def row(self, bug_id: str) -> BugRow:
        return self.rows.setdefault(bug_id, BugRow(bug_id))

    def apply(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        if topic == "bugs.status" and value:
            status = StatusEvent.model_validate(orjson.loads(value))
            row = self.row(status.bug_id)
            row.stages[status.stage] = row.last = status
            if status.state in TERMINAL_STATES:
                row.dead = status.message
        elif topic == "fixes" and value:
            fix = FixEvent.model_validate(orjson.loads(value))
            self.row(fix.bug_id).fix = fix
        elif topic == "bugs.dlq":
            letter = DeadLetter.from_record(key, value, headers)
            bug_id = key.decode(errors="replace") if key else f"<{letter.offset}>"
            self.row(bug_id).dead = f"{letter.error_class}: {letter.reason}"

    def all_reached(self, bug_ids: set[str], stage: str | None) -> bool:
        """True when every bug in ``bug_ids`` ended, or passed ``stage`` if one is given."""
        rows = [self.rows.get(b) for b in bug_ids]
        if any(r is None for r in rows):
            return False
        return all(r.reached(stage) if stage else r.ended for r in rows if r is not None)

    def table(self) -> Table:
        table = Table(title="fixstream")
        table.add_column("bug", overflow="fold")
        for stage in STAGES:
            table.add_column(stage)
        table.add_column("result")
        for row in self.rows.values():
            cells = []
            for stage in STAGES:
                status = row.stages.get(stage)
                if status is None:
                    cells.append("")
                elif status.state == "done":
                    cells.append(f"[green]✓ {status.elapsed_ms / 1000:.2f}s")
                elif status.state in TERMINAL_STATES:
                    cells.append(f"[red]✗ {status.state}")
                else:
                    cells.append(f"[yellow]{status.state}…")
            if row.fix:
                result = row.fix.status
            elif row.dead:
                result = f"[red]{row.dead[:80]}"
            else:
                result = ""
            table.add_row(row.bug_id, *cells, result)
        return table
