"""The prefix cache on its own: keys, hits and their cap, references, LRU eviction, invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_routing_env.sim.prefix_cache import PrefixCache, PrefixKeys, max_hit_blocks


def test_keys_name_chains():
    k = PrefixKeys()
    a = k.keys([7, 12, 40])
    b = k.keys([7, 12, 41])
    c = k.keys([9, 12, 40])
    assert a[:2] == b[:2] and a[2] != b[2]
    assert not set(a) & set(c)  # same ids after a different first block: different blocks
    assert k.keys([7, 12, 40]) == a
    assert k.keys([]) == ()


def test_hit_cap_keeps_one_token_to_compute():
    assert [max_hit_blocks(n) for n in (1, 15, 16, 17, 32, 33)] == [0, 0, 0, 1, 1, 2]


def test_lookup_acquire_release_evict_by_hand():
    keys = PrefixKeys()
    a, b = keys.keys([1, 2, 3]), keys.keys([1, 2, 4])
    cache = PrefixCache()
    assert all(cache.register(k, 0) for k in a)          # request A computed its 3 prefix blocks
    assert cache.lookup(b, 10) == (2, 2)               # B hits the two shared ones, both referenced
    assert cache.acquire(b[:2]) == 2 and cache.shared == 2
    assert cache.register(b[2], 0) and not cache.register(a[0], 0)  # a cached key is not registered twice
    assert cache.lookup(b, 1) == (1, 1)                # the cap
    assert cache.release(a) == (-2, 1)                 # A leaves: its own third block becomes free
    assert list(cache.lru) == [a[2]] and cache.shared == 0
    assert cache.release(b[:3]) == (0, 3)              # B leaves, last block first
    assert list(cache.lru) == [a[2], b[2], b[1], b[0]]
    assert cache.lookup(a, 3) == (3, 0)                # free blocks still hit
    assert cache.acquire(a[:1]) == 0 and list(cache.lru) == [a[2], b[2], b[1]]  # a touch leaves the LRU
    assert cache.evict_to(1, 0) == 2 and list(cache.lru) == [b[1]]  # least recently freed first
    assert cache.lookup(a, 3) == (2, 1)                # a[2] was evicted: the hit ends there
    assert cache.evictions == 2
    cache.check(free_blocks=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("arle"), st.integers(0, 5), st.integers(0, 6)), max_size=60))
def test_invariants_under_random_operations(ops):
    """Requests (up to 6 prefixes over a few shared ids) admit, register, release and the pool
    evicts, in any order: no block is both free and referenced, hits are cached, counts add up."""
    keys = PrefixKeys()
    prefixes = [keys.keys([i % 2, i % 3, i]) for i in range(6)]
    held: dict[int, list[int]] = {}  # running request -> keys it references
    cache, free = PrefixCache(events=True), 8
    for it, (op, r, n) in enumerate(ops):
        if op == "a" and r not in held:
            hit, shared = cache.lookup(prefixes[r], n)
            assert hit <= min(n, 3) and shared <= hit
            assert all(k in cache.refs or k in cache.lru for k in prefixes[r][:hit])
            assert cache.acquire(prefixes[r][:hit]) == shared
            held[r] = list(prefixes[r][:hit])
        elif op == "r" and r in held and len(held[r]) < 3:
            k = prefixes[r][len(held[r])]
            if cache.register(k, it):
                held[r].append(k)
        elif op == "l" and r in held:
            delta, freed = cache.release(held.pop(r))
            assert delta <= 0 and freed >= 0
        elif op == "e":
            free = n
            cache.evict_to(free, it)
        cache.check(free_blocks=max(free, len(cache.lru)) if op != "e" else free)
        assert cache.shared == sum(len(h) for h in held.values()) - len(cache.refs)
        # the KV events of the finished operations (all but this one) replay the cache's keys
        count, seen = cache.seen(it + 1)
        assert seen == cache.refs.keys() | cache.lru.keys() and count == len(cache)


def test_kv_events_are_seen_once_their_iteration_finished():
    """Registrations and evictions of iteration i show in ``seen`` only once i has finished."""
    a = PrefixKeys().keys([1, 2, 3])
    cache = PrefixCache(events=True)
    assert cache.register(a[0], 0) and cache.register(a[1], 0)
    assert cache.seen(0) == (0, set())                # iteration 0 in flight: nothing seen
    assert cache.register(a[2], 1)                     # iteration 1 stores a[2]: iteration 0 committed
    assert cache.seen(1) == (2, {a[0], a[1]})
    cache.release(list(a))
    assert cache.evict_to(1, 2) == 2                   # iteration 2 evicts a[2] then a[1]
    assert cache.seen(2) == (3, {a[0], a[1], a[2]})
    assert cache.seen(3) == (1, {a[0]})
    assert PrefixCache().seen(5) == (0, None)          # without events only the count is kept
