"""Ordered acks: never a gap for Faust to commit past, not even across a rebalance."""

from __future__ import annotations

from types import SimpleNamespace

from fixstream.streams.inflight import OrderedAcks


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: SimpleNamespace) -> None:
        self.acked.append(event.message.offset)


def _event(offset: int, tp: str = "bugs.reproduced/0") -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


async def test_an_event_is_acked_only_when_every_earlier_one_of_its_partition_is_done():
    stream = FakeStream()
    acks = OrderedAcks(stream)
    t10, t11, t12 = (acks.track(_event(n)) for n in (10, 11, 12))
    other = acks.track(_event(5, tp="bugs.reproduced/1"))
    await acks.done(t12)
    await acks.done(t11)
    assert stream.acked == []  # 10 is still in flight: acking 11 would open a gap
    await acks.done(other)
    await acks.done(t10)
    assert stream.acked == [5, 10, 11, 12]


async def test_events_in_flight_at_a_revocation_are_never_acked():
    """Reassigned at committed offset 10, acks of 11 and 12 from the old assignment would let
    Faust commit 13 before the new assignment has processed 10 (faust #606)."""
    stream = FakeStream()
    acks = OrderedAcks(stream)
    old = [acks.track(_event(n)) for n in (10, 11, 12)]
    await acks.done(old[0])
    assert stream.acked == [10]
    acks.revoke(None, {"bugs.reproduced/0"})
    again = acks.track(_event(11))  # the new assignment redelivers from the committed offset
    for ticket in old[1:]:
        await acks.done(ticket)
    assert stream.acked == [10], "an event of the revoked assignment was acked"
    await acks.done(again)
    assert stream.acked == [10, 11]
