"""Redis Cluster evaluation of the Python engine (docs/semantics.md §11.1) on a real local Cluster."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
import redis.asyncio.cluster
from rate_limiter_go.engine_python.redis_cluster import ClusterClock, GroupRunner, call_script, key_slot, slot_groups
from rate_limiter_go.scripts import give_back_text, script_text
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from support.redis_cluster import RedisCluster

KEYS = ["rl:fw:user:10/60:{alice}", "rl:fw:user_per_server:10/60:{alice}:srv1", "rl:fw:tenant:5/1:{t%3A1}",
        "rl:fw:tool:3/3600:{search}", "plain", "a{}b", "x{y}z{w}", "{}{y}", "caf\u00e9{\u00e9t\u00e9}", "{a"]


def test_key_slot_is_the_servers(redis_cluster: RedisCluster) -> None:
    with redis_cluster.nodes[0].client() as c:
        for key in KEYS:
            assert key_slot(key) == c.execute_command("CLUSTER", "KEYSLOT", key), key


def test_slot_groups_keep_a_users_keys_together() -> None:
    assert slot_groups(KEYS[:4]) == [[0, 1], [2], [3]]
    assert slot_groups(["{a}1", "{b}", "{a}2"]) == [[0, 2], [1]]


def _client(redis_cluster: RedisCluster) -> redis.asyncio.cluster.RedisCluster:
    return redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url, retry=Retry(NoBackoff(), 0), socket_timeout=2)


def _tags_on_three_primaries(redis_cluster: RedisCluster) -> list[str]:
    """Three hash tags whose slots are served by three different primaries."""
    tags: dict[int, str] = {}
    for i in range(1000):
        tag = f"t{i}"
        port = redis_cluster.primary_for("{" + tag + "}").port
        tags.setdefault(port, tag)
        if len(tags) == 3:
            return list(tags.values())
    raise AssertionError("no three primaries found")


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_groups_on_three_primaries_are_all_or_nothing(redis_cluster: RedisCluster, algorithm: str) -> None:
    """The tenant (3/h) refuses: user and tool (10/h) consumed in their groups and were given back."""

    async def scenario() -> None:
        client = _client(redis_cluster)
        cache: dict[str, str] = {}
        runner = GroupRunner(lambda text, keys, args: call_script(client, cache, text, keys, args))
        run_id = uuid.uuid4().hex[:8]
        user, tenant, tool = (f"{run_id}:{{{tag}}}" for tag in _tags_on_three_primaries(redis_cluster))
        keys = [user, tenant, tool]
        pairs = [("10", "3600000000"), ("3", "3600000000"), ("10", "3600000000")]
        check, give_back = script_text(algorithm), give_back_text(algorithm)
        now = time.time_ns() // 1000
        answers = [await runner.run(check, give_back, keys, pairs, now + i) for i in range(6)]
        assert [a[0] for a in answers] == [1, 1, 1, 0, 0, 0]
        assert [a[1] for a in answers] == [now + i for i in range(6)]  # one clock for every group
        for a in answers[3:]:
            assert a[2 + 4 * 1] == 0  # the tenant refused
            assert a[2] == 1 and a[2 + 4 * 2] == 1  # user and tool would have admitted
        # One more request for the user and tool alone: exactly 3 were consumed before it.
        reply = await runner.run(check, give_back, [user, tool], [pairs[0], pairs[2]], now + 10)
        assert reply[0] == 1 and reply[3] == 10 - 4 and reply[7] == 10 - 4
        assert runner.give_backs_lost == 0
        await client.aclose()

    asyncio.run(scenario())


def test_cluster_clock_follows_redis_time_and_never_goes_back(redis_cluster: RedisCluster) -> None:
    async def scenario() -> None:
        client = _client(redis_cluster)
        await client.initialize()
        node = client.get_node_from_key("rl:clock")

        async def sample() -> int:
            seconds, micros = await client.time(target_nodes=node)
            return seconds * 1_000_000 + micros

        clock = ClusterClock(sample, refresh_s=0.05)
        seen = []
        for _ in range(50):
            seen.append(await clock.now_us())
            await asyncio.sleep(0.002)
        assert seen == sorted(seen)
        server = await sample()
        # Loopback: the error is half a round trip; 0.5 s leaves room for a loaded host. A broken
        # estimate (wrong units, a sample never carried forward) would be off by far more.
        assert abs(await clock.now_us() - server) < 500_000
        await client.aclose()

    asyncio.run(scenario())


def test_cluster_clock_keeps_the_sample_with_the_shorter_round_trip() -> None:
    """§11.1: a sample whose reply was held up (a busy event loop) would put the clock off by half its
    round trip; it does not replace a sample with a shorter one, until that one has aged past it."""
    mono = [0]
    offset_us = 5_000_000  # the server runs 5 s ahead of the local monotonic clock
    delay_ns = [0]

    async def sample() -> int:
        read = mono[0] // 1000 + offset_us  # the server reads its clock at once...
        mono[0] += delay_ns[0]  # ...and its reply is seen late
        return read

    async def scenario() -> None:
        clock = ClusterClock(sample, refresh_s=1.0, monotonic_ns=lambda: mono[0])
        assert await clock.now_us() == offset_us
        delay_ns[0] = 400_000_000  # a 400 ms round trip: its midpoint is 200 ms late
        for _ in range(3):
            mono[0] += 1_000_000_000
            await clock.now_us()  # starts a background sample
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert await clock.now_us() == mono[0] // 1000 + offset_us  # still exact: the slow sample was refused
        mono[0] += 400 * 1_000_000_000  # 400 s on: the kept sample has aged past 400 ms
        await clock.now_us()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        late = await clock.now_us()
        assert late == mono[0] // 1000 + offset_us - 200_000  # the aged sample gave way to the newer one

    asyncio.run(scenario())
