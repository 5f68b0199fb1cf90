"""Many messages in flight per agent, acknowledged strictly in offset order.

Faust's own ``concurrency > 1`` can commit past a slow message (faust #606: its commit check
misses a gap right after the committed offset). Here the stream is ``noack``: each event is
processed in its own task, and an event is acked only when it and every earlier event of its
partition are done, so Faust never sees a gap and never commits past unfinished work.

A rebalance revokes every partition while their events are still in flight. Those events
are never acked: an ack landing after the partition is assigned again (to this worker or
to none) would mark an offset past the newly committed one and recreate the #606 gap, and
the commit would skip a message the new assignment had not processed. The soak lost a bug
that way. Unacked, they are redelivered from the committed offset and done again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from fixstream.faust_hooks import PartitionRevoked

log = logging.getLogger(__name__)

Process = Callable[[faust.EventT], Awaitable[None]]


@dataclass(eq=False)
class _Ticket:
    event: Any
    done: bool = False
    revoked: bool = False


@dataclass
class OrderedAcks:
    stream: Any
    pending: dict[Any, deque[_Ticket]] = field(default_factory=dict)

    def track(self, event: Any) -> _Ticket:
        ticket = _Ticket(event)
        self.pending.setdefault(event.message.tp, deque()).append(ticket)
        return ticket

    async def done(self, ticket: _Ticket) -> None:
        ticket.done = True
        queue = self.pending.get(ticket.event.message.tp)
        # revoked tickets are out of ``pending``; one may be revoked while we await an ack
        while queue and queue[0].done and not queue[0].revoked:
            await self.stream.ack(queue.popleft().event)

    def revoke(self, sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        """Faust's on_partitions_revoked receiver: what is in flight there is never acked."""
        for tp in revoked:
            for ticket in self.pending.pop(tp, ()):
                ticket.revoked = True


async def run_concurrently(stream: faust.StreamT, process: Process, concurrency: int) -> None:
    """Feed every event of ``stream`` to ``process``, up to ``concurrency`` at once."""
    manual = stream.noack()
    acks = OrderedAcks(manual)
    revocations = stream.app.on_partitions_revoked
    revocations.connect(acks.revoke)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def guarded(event: Any, ticket: _Ticket) -> None:
        try:
            await process(event)
        except PartitionRevoked as exc:  # exactly_once: its outputs were refused
            log.info("dropped %s: %s (its partition's next owner redoes it)", event, exc)
            return
        except Exception:
            # process() dead-letters bad messages itself; what reaches here is an output
            # that could not be produced. Exit unacked: the broker redelivers the message.
            log.critical("could not produce the output of %s: exiting", event, exc_info=True)
            os._exit(70)
        finally:
            slots.release()
        await acks.done(ticket)

    try:
        async for event in manual.events():
            await slots.acquire()
            task = asyncio.create_task(guarded(event, acks.track(event)))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        revocations.disconnect(acks.revoke)
        for task in running:
            task.cancel()
