"""The embedded broker's group coordinator keeps a leader that left while the group was
forming, and the group never forms again: reproduced here with plain aiokafka consumers, then
healed by ``faust_hooks.adopt_lost_leader``.

The recipe: L leads the group alone (past generation 0: aiokafka sends no LeaveGroup before
it); F's first JoinGroup (MEMBER_ID_REQUIRED) puts the group back to forming with L still
recorded as leader; L leaves right then, before F's second JoinGroup. From there every
JoinGroup names L, every SyncGroup of F is refused, and F re-joins every ~8 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MemberIdRequired

from fixstream import faust_hooks

pytestmark = [pytest.mark.integration, pytest.mark.embedded_broker_only]

PARTITIONS = 8


def _consumer(bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=6000,
        heartbeat_interval_ms=1000, rebalance_timeout_ms=6000, retry_backoff_ms=100,
    )  # fmt: skip


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def _assigned(consumer: AIOKafkaConsumer, seconds: float) -> set[int]:
    """The partitions ``consumer`` holds within ``seconds`` (empty: none). Polled from a task
    of its own: aiokafka's ``getmany`` waits for an assignment, whatever its timeout."""
    await _until(lambda: bool(consumer.assignment()), seconds)
    return {tp.partition for tp in consumer.assignment()}


def _polling(consumer: AIOKafkaConsumer) -> asyncio.Task:
    async def poll() -> None:
        while True:
            await consumer.getmany(timeout_ms=200)

    return asyncio.get_running_loop().create_task(poll())


async def _stop(consumer: AIOKafkaConsumer, poller: asyncio.Task) -> None:
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await poller
    await asyncio.wait_for(consumer.stop(), 60)  # a LeaveGroup to a stuck group waits


async def _leader_leaves_while_forming(
    bootstrap: str, topic: str, group: str
) -> tuple[AIOKafkaConsumer, asyncio.Task]:
    """L leads; W joins and leaves (generation > 0); F joins, and L leaves between F's two
    JoinGroups. Returns F, subscribed and polled, stuck if the broker keeps L as leader."""
    leader, warmup, follower = (_consumer(bootstrap, group) for _ in range(3))
    await leader.start()
    leader.subscribe([topic])
    leading = _polling(leader)
    assert len(await _assigned(leader, 20)) == PARTITIONS
    await warmup.start()
    warmup.subscribe([topic])
    warming = _polling(warmup)
    await _until(lambda: len(leader.assignment()) < PARTITIONS, 20)
    await _stop(warmup, warming)
    assert await _until(
        lambda: leader._coordinator.generation > 0 and len(leader.assignment()) == PARTITIONS, 30
    )

    await follower.start()
    coordinator = follower._coordinator
    send = coordinator._send_req
    left = asyncio.Event()

    async def leave_after_first_join(request):
        response = await send(request)
        if not left.is_set() and response.error_code == MemberIdRequired.errno:
            await _stop(leader, leading)  # LeaveGroup while the group forms, L its leader
            left.set()
        return response

    coordinator._send_req = leave_after_first_join
    follower.subscribe([topic])
    following = _polling(follower)
    await asyncio.wait_for(left.wait(), 30)
    return follower, following


async def _topic(bootstrap: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("lost-leader", PARTITIONS, 1)])
    finally:
        await admin.close()
    return "lost-leader"


async def test_a_follower_re_joins_as_the_departed_leader_and_the_group_forms(broker):
    bootstrap = broker.bootstrap
    topic = await _topic(bootstrap)
    try:
        faust_hooks.adopt_lost_leader(0)  # off: the broker's own behaviour
        stuck, polling = await _leader_leaves_while_forming(bootstrap, topic, "off")
        try:
            assert await _assigned(stuck, 20) == set(), "the broker replaced its lost leader"
        finally:
            await _stop(stuck, polling)

        faust_hooks.adopt_lost_leader(1)  # on: re-join as the lost leader after 1-2 rounds
        healed, polling = await _leader_leaves_while_forming(bootstrap, topic, "on")
        try:
            assert await _assigned(healed, 60), "still no assignment with the hook on"
            # its old member id expires after a session timeout: then it holds every partition
            assert await _until(lambda: len(healed.assignment()) == PARTITIONS, 30)
        finally:
            await _stop(healed, polling)
    finally:
        faust_hooks.adopt_lost_leader(0)
