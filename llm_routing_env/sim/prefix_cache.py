"""vLLM's automatic prefix caching, one instance's worth, shared by both simulators.

The model (docs/simulator.md, "Prefix caching", gives the vLLM source of each rule):

* A request may carry its prompt's prefix as block ids, one per full 16-token block from the
  start (``Workload.prefix_hashes``). A block's *key* is the chain of ids up to it
  (:class:`PrefixKeys`), as vLLM hashes a block with its parent's hash: two requests share their
  first ``k`` blocks exactly when their first ``k`` ids are equal. Only these declared prefix
  blocks are cached; the rest of a request's KV cache is its own.
* An instance's cache (:class:`PrefixCache`) holds the keys of blocks in its KV pool: *referenced*
  ones (``refs``: key -> reference count, the running requests that use the block) and *cached
  free* ones (``lru``: reference count 0, least recently freed first). A cached free block counts
  as free; it keeps its key until the pool needs it for a new block: the simulators take new
  blocks from the uncached free ones first, then evict cached free blocks, least recently freed
  first (:meth:`PrefixCache.evict_to`).
* At admission a request's hit is the longest leading run of its keys in the cache (referenced or
  free), capped at ``floor((target - 1) / 16)`` blocks so that one token is always computed
  (:meth:`~PrefixCache.lookup`); admitting it *touches* the hit blocks
  (:meth:`~PrefixCache.acquire`): a referenced one gains a reference (it is shared, no new block),
  a free one leaves the free pool.
* A prefix block the request computes itself becomes cached when the iteration that fills it is
  scheduled (:meth:`~PrefixCache.register`); if its key is cached already (another request
  computed the same block meanwhile, or the cap made the request recompute it) the request keeps
  its block as its own (vLLM v1 does not deduplicate).
* When a request completes or is preempted it drops its references, last block first
  (:meth:`~PrefixCache.release`); a block no one references any more becomes cached free (the
  most recently freed). Preemption keeps the keys: the request may hit its own blocks again.

What a router sees of the cache (docs/simulator.md, "What a router sees"): the engine's KV events,
``BlockStored`` when a block is registered and ``BlockRemoved`` when it is evicted, as of the last
iteration finished. The simulators name the iteration each change belongs to (its index on the
instance: :meth:`~PrefixCache.register` and :meth:`~PrefixCache.evict_to` take it); a change of a
later iteration *commits* the earlier ones, and :meth:`~PrefixCache.seen` answers as of a number of
finished iterations. Only the count is kept unless ``events=True`` (the ``exact`` knowledge): then
the keys too.

``shared`` counts the blocks the running requests save by sharing: the references minus the
referenced blocks. The simulators charge each request the blocks of all its tokens and add
``shared`` to their free count, so that a shared block is held once.
"""

from __future__ import annotations

from collections import OrderedDict

from ..profiles import KV_BLOCK_TOKENS

__all__ = ["PrefixKeys", "PrefixCache", "leading_run", "max_hit_blocks"]


def max_hit_blocks(target_tokens: int) -> int:
    """Blocks a prefill of ``target_tokens`` may hit: the last token is always computed (vLLM:
    ``max_cache_hit_length = num_tokens - 1``), and only full blocks are cached."""
    return (target_tokens - 1) // KV_BLOCK_TOKENS


class PrefixKeys:
    """The keys of block chains: block ``j``'s key names the chain of ids ``0..j``.

    Keys are interned (an exact name for each chain seen, no hash collisions); they are small
    ints, equal for equal chains, whatever the order in which chains were first seen.
    """

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[tuple[int, int], int] = {}

    def keys(self, block_ids) -> tuple[int, ...]:
        """The keys of the blocks of a prefix given as block ids (any iterable of ints)."""
        table = self._keys
        parent, out = -1, []
        setdefault, append = table.setdefault, out.append
        for block_id in block_ids:  # (a NumPy integer hashes and compares as the int it holds)
            parent = setdefault((parent, block_id), len(table))
            append(parent)
        return tuple(out)

    def known_keys(self, block_ids) -> list[int]:
        """The keys of the leading blocks of a prefix whose chains have been seen (no new key is
        made: a chain never seen is in no cache)."""
        table = self._keys
        parent, out = -1, []
        for block_id in block_ids:
            parent = table.get((parent, int(block_id)))
            if parent is None:
                break
            out.append(parent)
        return out


def leading_run(keys, cached) -> int:
    """How many of ``keys`` (a chain, in block order) lead in the set ``cached``: a prefix hit."""
    n = 0
    for key in keys:
        if key not in cached:
            break
        n += 1
    return n


class PrefixCache:
    """The cached blocks of one instance's KV pool (see the module docstring)."""

    __slots__ = ("refs", "lru", "shared", "evictions", "_tag", "_seen_len", "_seen_keys", "_journal")

    def __init__(self, events: bool = False) -> None:
        self.refs: dict[int, int] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.shared = 0      # references minus referenced blocks (blocks saved by sharing)
        self.evictions = 0   # cached free blocks evicted so far
        # the KV events: committed (iterations before _tag) and pending (iteration _tag)
        self._tag = -1
        self._seen_len = 0
        self._seen_keys: set[int] | None = set() if events else None
        self._journal: list[tuple[int, bool]] | None = [] if events else None

    def _at(self, iteration: int) -> None:
        """The changes that follow belong to ``iteration``: those of an earlier one are committed."""
        if iteration != self._tag:
            self._commit()
            self._tag = iteration

    def _commit(self) -> None:
        self._seen_len = len(self)
        journal = self._journal
        if journal:
            keys = self._seen_keys
            for key, stored in journal:
                if stored:
                    keys.add(key)
                else:
                    keys.discard(key)
            journal.clear()

    def seen(self, finished_iterations: int) -> tuple[int, set[int] | None]:
        """``(blocks, keys)``: the cached blocks as the KV events of the first ``finished_iterations``
        iterations of the instance show them (the keys only with ``events=True``, else None)."""
        if self._tag < finished_iterations:
            self._commit()
        return self._seen_len, self._seen_keys

    def __len__(self) -> int:
        """Blocks with a key (referenced or cached free)."""
        return len(self.refs) + len(self.lru)

    def lookup(self, keys, max_blocks: int) -> tuple[int, int]:
        """``(hit, shared)``: the leading run of ``keys`` in the cache, at most ``max_blocks``
        long, and how many of those blocks are referenced (the others are cached free)."""
        refs, lru = self.refs, self.lru
        hit = shared = 0
        for key in keys[:max(max_blocks, 0)]:
            if key in refs:
                shared += 1
            elif key not in lru:
                break
            hit += 1
        return hit, shared

    def acquire(self, keys) -> int:
        """A request takes a reference to each of ``keys`` (its hit, all cached: looked up and not
        evicted since). Returns the change of ``shared`` (the blocks it did not take from the
        free pool)."""
        refs, lru = self.refs, self.lru
        delta = 0
        for key in keys:
            if key in refs:
                refs[key] += 1
                delta += 1
            else:
                del lru[key]  # (KeyError: the caller's bug, a hit that is not cached)
                refs[key] = 1
        self.shared += delta
        return delta

    def register(self, key: int, iteration: int) -> bool:
        """A request filled the block of ``key`` in the instance's iteration ``iteration``: it
        becomes cached and referenced by the request (True), unless the key is cached already
        (False: the request's block stays its own)."""
        return bool(self.register_all((key,), iteration))

    def register_all(self, keys, iteration: int) -> list[int]:
        """:meth:`register` for each of ``keys`` in order (the blocks a request filled); returns the
        keys that became cached (the request holds them)."""
        refs, lru, journal = self.refs, self.lru, self._journal
        stored = [key for key in keys if key not in refs and key not in lru]
        if stored:
            self._at(iteration)
            for key in stored:
                refs[key] = 1
            if journal is not None:
                journal.extend((key, True) for key in stored)
        return stored

    def release(self, keys) -> tuple[int, int]:
        """A request drops its references to ``keys`` (block order; released last block first).
        Returns ``(delta_shared, freed)``: the change of ``shared`` and the blocks that become
        cached free (no reference left)."""
        refs, lru = self.refs, self.lru
        delta = freed = 0
        for key in reversed(keys):
            count = refs[key] - 1
            if count:
                refs[key] = count
                delta -= 1
            else:
                del refs[key]
                lru[key] = None
                freed += 1
        self.shared += delta
        return delta, freed

    def evict_to(self, free_blocks: int, iteration: int) -> int:
        """Evict cached free blocks, least recently freed first, until they fit in
        ``free_blocks`` (the pool's free blocks once the new blocks are taken: uncached free
        blocks go first), for the instance's iteration ``iteration``. Returns how many were
        evicted."""
        lru = self.lru
        n = len(lru) - max(int(free_blocks), 0)
        if n <= 0:
            return 0
        self._at(iteration)
        journal = self._journal
        for _ in range(n):
            key, _ = lru.popitem(last=False)
            if journal is not None:
                journal.append((key, False))
        self.evictions += n
        return n

    def check(self, free_blocks: int) -> None:
        """Assert the invariants (tests): no key both referenced and free, positive counts, the
        cached free blocks fit in the free pool, ``shared`` matches the counts."""
        assert not (self.refs.keys() & self.lru.keys()), "a block is both referenced and free"
        assert all(c > 0 for c in self.refs.values()), "a referenced block has no reference"
        assert len(self.lru) <= free_blocks, f"{len(self.lru)} cached free blocks > {free_blocks} free blocks"
        assert self.shared == sum(self.refs.values()) - len(self.refs), "shared does not match the references"
