"""The board behind `fixstream watch` and the demo: which bug is where."""

from fixstream.schemas import DeadLetter, FixEvent, StageMeta, StatusEvent
from fixstream.watch import Board


def _status(bug: str, stage: str, state: str, **kw) -> bytes:
    return StatusEvent(bug_id=bug, stage=stage, state=state, **kw).to_bytes()


def test_board_follows_stages_fixes_and_dead_letters():
    board = Board()
    board.apply("bugs.status", b"a", _status("a", "analysis", "started"), [])
    assert not board.all_reached({"a"}, "analysis")
    board.apply("bugs.status", b"a", _status("a", "analysis", "done", elapsed_ms=12), [])
    assert board.all_reached({"a"}, "analysis")
    assert not board.all_reached({"a"}, None)  # not ended: no fix event yet
    assert not board.all_reached({"a", "b"}, "analysis")  # b never seen

    fix = FixEvent(bug_id="a", meta=StageMeta(stage="validate"), status="fixed")
    board.apply("fixes", b"a", fix.to_bytes(), [])
    assert board.all_reached({"a"}, None)

    letter = DeadLetter(original_topic="bugs.reported", error_class="BadInputError", reason="x")
    board.apply("bugs.dlq", b"b", b"\xff", letter.headers())
    assert board.rows["b"].dead == "BadInputError: x"
    assert board.all_reached({"a", "b"}, "validate")  # ended bugs count as through
    table = board.table()
    assert table.row_count == 2


def test_dead_lettered_status_ends_a_bug():
    board = Board()
    board.apply(
        "bugs.status", b"c", _status("c", "analysis", "dead_lettered", message="Repo gone"), []
    )
    assert board.rows["c"].ended and board.rows["c"].dead == "Repo gone"


def test_a_bug_in_progress_says_the_latest_status_it_had():
    """It read a timestamp status events do not have, and raised for every unfinished bug."""
    board = Board()
    for stage, state in (("analysis", "done"), ("reproduce", "started")):
        board.apply("bugs.status", b"b1", _status("b1", stage, state), [])
    assert board.rows["b1"].why() == "still in reproduce (started)"
