"""§10 memory store: shared by plugin name + configuration, survives close(), bounded, evicted incrementally."""

from __future__ import annotations

import pytest
from rate_limiter_go.config import parse_config
from rate_limiter_go.engine_python import memory
from rate_limiter_go.engine_python.engine import PythonEngine
from rate_limiter_go.engine_python.memory import EVICTION_SAMPLE, SWEEP_STEP, MemoryStore, shared_store

S = 1_000_000


# --- sharing (§10), through the selected engine ------------------------------------------------


def test_instances_with_same_name_and_config_share_counters(make_engine_sync, clock) -> None:
    """The gateway rebuilds instances every 30 s and per team/tool: counters must carry on."""
    config = {"by_user": "2/m"}
    first, second = make_engine_sync(config, "limiter"), make_engine_sync(config, "limiter")
    now = clock.at(0.0)
    assert first.evaluate("alice", None, None, now).remaining == 1
    assert second.evaluate("alice", None, None, now).remaining == 0
    assert not first.evaluate("alice", None, None, now).admitted


def test_different_name_or_config_gets_its_own_store(make_engine_sync, clock) -> None:
    now = clock.at(0.0)
    base = make_engine_sync({"by_user": "1/m"}, "limiter")
    assert base.evaluate("alice", None, None, now).admitted
    other_name = make_engine_sync({"by_user": "1/m"}, "other-limiter")
    other_config = make_engine_sync({"by_user": "1/m", "fail_mode": "closed"}, "limiter")
    assert other_name.evaluate("alice", None, None, now).admitted
    assert other_config.evaluate("alice", None, None, now).admitted
    assert not base.evaluate("alice", None, None, now).admitted


async def test_state_survives_close_of_every_instance(make_engine, clock) -> None:
    """§10: an instance's shutdown does not clear the shared state."""
    now = clock.at(0.0)
    old = make_engine({"by_user": "1/m"}, "limiter")
    assert (await old.check("alice", None, None, now)).admitted
    await old.close()
    new = make_engine({"by_user": "1/m"}, "limiter")
    assert not (await new.check("alice", None, None, now)).admitted


def test_registry_returns_one_store_per_name_and_config() -> None:
    config = parse_config({"by_user": "5/s"})
    same = parse_config({"by_user": "5/second"})  # another spelling of the same configuration
    assert shared_store("a", config) is shared_store("a", same)
    assert shared_store("a", config) is not shared_store("b", config)
    assert memory.registry_size() == 2
    memory.reset_registry()
    assert memory.registry_size() == 0


# --- the store itself ---------------------------------------------------------------------------


def fill(store: MemoryStore, expiries: list[int], now_us: int = 0) -> list[str]:
    keys = [f"k{i}" for i in range(len(expiries))]
    for key, expires_at in zip(keys, expiries):
        store.put(key, (expires_at, "state"), now_us)
    return keys


def test_store_needs_a_positive_bound() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="memory_max_keys"):
            MemoryStore(bad)  # type: ignore[arg-type]


def test_put_at_capacity_evicts_expired_keys_of_the_sample_first() -> None:
    store = MemoryStore(4)
    fill(store, [50, 10, 60, 20], now_us=0)  # k1 and k3 expired by t=30
    store.put("new", (100, "state"), now_us=30)
    assert list(store.states) == ["k0", "k2", "new"]


def test_put_at_capacity_without_expired_keys_evicts_the_soonest_expiring_of_the_sample() -> None:
    store = MemoryStore(EVICTION_SAMPLE + 4)
    # The soonest-expiring key overall (k10, at 1) is outside the front sample of EVICTION_SAMPLE keys.
    expiries = [500 - i for i in range(EVICTION_SAMPLE)] + [900, 901, 1, 902]
    keys = fill(store, expiries)
    store.put("new", (1000, "state"), now_us=0)
    victim = keys[EVICTION_SAMPLE - 1]  # expires at 500 - 7: the soonest within the sample
    assert victim not in store.states and "k10" in store.states and "new" in store.states
    assert len(store) == store.max_keys


def test_updating_an_existing_key_at_capacity_evicts_nothing() -> None:
    store = MemoryStore(3)
    fill(store, [10, 20, 30])
    store.put("k1", (99, "updated"), now_us=50)  # everything is expired, but no room is needed
    assert store.states == {"k0": (10, "state"), "k1": (99, "updated"), "k2": (30, "state")}


def test_sweep_is_incremental_and_visits_every_key() -> None:
    store = MemoryStore(1000)
    live = [10_000] * 5
    fill(store, [5] * 100 + live)  # 100 expired at the front, then 5 live
    for calls in range(1, 51):
        store.sweep(now_us=100)
        assert len(store) == 105 - SWEEP_STEP * calls, "a few keys per call, never a sweep of all"
    assert len(store) == 5
    # Live keys are rotated to the back, so expired keys behind them are reached in turn.
    store.put("late", (50, "state"), now_us=100)
    for _ in range(3):
        store.sweep(now_us=100)
    assert "late" not in store.states and len(store) == 5


def test_sweep_on_an_empty_store_is_harmless() -> None:
    store = MemoryStore(1)
    store.sweep(now_us=1)
    assert len(store) == 0


# --- the bound and eviction through the Python engine -------------------------------------------


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_engine_never_exceeds_memory_max_keys(clock, algorithm: str) -> None:
    engine = PythonEngine(parse_config({"by_user": "5/h", "algorithm": algorithm, "memory_max_keys": 50}), "bound")
    for i in range(1000):
        assert engine.evaluate(f"user-{i}", None, None, clock.advance(0.001)).admitted
        assert len(engine._store) <= 50


@pytest.mark.parametrize(
    ("algorithm", "drop_after_s"),
    [("fixed_window", 1.0), ("sliding_window", 1.0), ("token_bucket", 0.5)],  # §3: when state may be dropped
)
def test_expired_state_is_dropped_a_few_keys_per_request(clock, algorithm: str, drop_after_s: float) -> None:
    engine = PythonEngine(parse_config({"by_user": "2/s", "algorithm": algorithm}), "sweep")
    store = engine._store
    start = clock.at(0.0)
    for i in range(40):
        engine.evaluate(f"user-{i}", None, None, start)
    assert len(store) == 40
    # Not yet droppable one µs before the instant §3 gives.
    engine.evaluate("carol", None, None, start + round(drop_after_s * S) - 1)
    assert len(store) == 41
    sizes = []
    for i in range(25):
        engine.evaluate("carol", None, None, start + round(drop_after_s * S) + i)
        sizes.append(len(store))
    assert sizes[0] >= 41 - SWEEP_STEP and all(a - b <= SWEEP_STEP for a, b in zip(sizes, sizes[1:]))
    assert sizes[-1] == 1, "eventually only carol's live state is left"


def test_evicting_expired_state_changes_no_answer(clock) -> None:
    """An evicted expired key answers exactly like a kept one (it equals missing state)."""
    tight = PythonEngine(parse_config({"by_user": "2/s", "memory_max_keys": 3}), "tight")
    roomy = PythonEngine(parse_config({"by_user": "2/s", "memory_max_keys": 10_000}), "roomy")
    for step in range(300):
        user = f"user-{step % 7}"
        now = clock.advance(0.25)
        assert tight.evaluate(user, None, None, now) == roomy.evaluate(user, None, None, now)
