"""The router's approximate prefix index: what it believes each instance caches, from its own
routing history only (``cache_knowledge="approximate"``, docs/simulator.md "What a router sees").

As SGLang's cache-aware router and llm-d's approximate prefix scorer do, the router records the
prefix blocks of every request it dispatches under the instance it chose, and never reads the
engines' caches. A block's key names its chain (block ``j``'s key names ids ``0..j``,
:class:`~llm_routing_env.sim.prefix_cache.PrefixKeys`), so a hit is a leading run of keys.

Eviction is approximated as llm-d's approximate index does it: one LRU per instance with a
capacity in blocks (``lruCapacityPerServer``; its auto-tune sets it from the engine's KV blocks,
``vllm:cache_config_info``), so the default capacity is the instance's KV capacity. We take this
rather than Dynamo's ``ApproxKvIndexer`` TTL (120 s) because vLLM evicts by space, not by age: a
capacity bound tracks how much an instance can hold whatever the load, where a fixed TTL claims
blocks long evicted under load and forgets them on an idle instance. The bound is
``prefix_index_capacity_blocks`` (scenario / ``gym.make``). A dispatch refreshes its blocks; within
one dispatch the leading blocks are the most recent, so the tail of a chain goes first (as in
vLLM's free queue).

State and functions: :class:`PrefixIndex` holds one environment's NumPy arrays for one episode
(the keys of every request's prefix, named when the episode loads: naming a chain reveals
nothing, only a dispatch writes the index); :func:`record_dispatch` and :func:`hit_blocks` are the
two operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sim.prefix_cache import PrefixKeys


@dataclass
class PrefixIndex:
    """One environment's approximate index for one episode (see the module docstring).

    ``key_start`` (R + 1,) and ``key_flat``: request ``r``'s prefix keys are
    ``key_flat[key_start[r]:key_start[r + 1]]`` (episode-local ints, equal for equal chains);
    ``stamp`` (keys, N): when each key was last routed to each instance (0: not in the index;
    larger is more recent); ``size`` (N,): keys held per instance; ``capacity`` (N,) blocks;
    ``clock``: the last stamp given.
    """

    key_start: np.ndarray
    key_flat: np.ndarray
    stamp: np.ndarray
    size: np.ndarray
    capacity: np.ndarray
    clock: int = 0


def new_index(prefix_blocks, capacity_blocks: np.ndarray) -> PrefixIndex:
    """An empty index for an episode whose requests' prefixes are ``prefix_blocks`` (one sequence
    of block ids per request), on instances holding ``capacity_blocks`` (N,) each."""
    keys = PrefixKeys()
    per_request = [keys.keys(ids) for ids in prefix_blocks]
    lengths = np.fromiter((len(k) for k in per_request), dtype=np.int64, count=len(per_request))
    key_start = np.zeros(len(per_request) + 1, dtype=np.int64)
    np.cumsum(lengths, out=key_start[1:])
    key_flat = np.fromiter((k for ks in per_request for k in ks), dtype=np.int64, count=int(key_start[-1]))
    n_keys = int(key_flat.max()) + 1 if key_flat.size else 0
    capacity = np.asarray(capacity_blocks, dtype=np.int64)
    return PrefixIndex(key_start=key_start, key_flat=key_flat,
                       stamp=np.zeros((n_keys, capacity.size), dtype=np.int64),
                       size=np.zeros(capacity.size, dtype=np.int64), capacity=capacity)


def record_dispatch(index: PrefixIndex, request: int, instance: int) -> None:
    """The router sent ``request`` to ``instance``: its prefix blocks are (again) held there, the
    least recently routed ones beyond the capacity are forgotten."""
    keys = index.key_flat[index.key_start[request]:index.key_start[request + 1]]
    if not keys.size:
        return
    column = index.stamp[:, instance]
    index.size[instance] += np.count_nonzero(column[keys] == 0)
    # the leading blocks the most recent: a chain is forgotten from its tail
    column[keys] = index.clock + np.arange(keys.size, 0, -1)
    index.clock += keys.size
    excess = int(index.size[instance] - index.capacity[instance])
    if excess > 0:
        held = column.nonzero()[0]
        oldest = held[np.argpartition(column[held], excess - 1)[:excess]]
        column[oldest] = 0
        index.size[instance] -= excess


def hit_blocks(index: PrefixIndex, request: int) -> np.ndarray:
    """(N,) the leading blocks of ``request``'s prefix the index holds for each instance."""
    keys = index.key_flat[index.key_start[request]:index.key_start[request + 1]]
    if not keys.size:
        return np.zeros(index.size.size, dtype=np.int64)
    held = index.stamp[keys] > 0  # (L, N)
    return np.where(held.all(axis=0), keys.size, held.argmin(axis=0)).astype(np.int64)
