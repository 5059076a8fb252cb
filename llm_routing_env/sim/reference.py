"""A slow, readable reference implementation of the cluster simulator.

It follows ``docs/simulator.md`` literally: every instance runs one iteration at a time, and every
request is a small Python object moved between a FCFS ``waiting`` deque and a ``running`` list.
There is no vectorization and no skipping of decode iterations, so it is easy to check by hand;
``tests/test_differential.py`` uses it as the oracle for the fast NumPy simulator
(:mod:`llm_routing_env.sim.simulator`), which has the same public API.

What a router sees (every query but ``records``) is each instance as of its last iteration that
has finished: an instance whose iteration is still in flight at ``now_s`` shows the snapshot taken
when that iteration was scheduled (admissions, preemptions and the KV blocks they took are in it;
the tokens, finished prefills, completions and freed blocks of the iteration are not), with its
live waiting queue (the router's own dispatches are in it at once).

Prefix caching (docs/simulator.md, "Prefix caching") uses :class:`.prefix_cache.PrefixCache`, one
per instance: ``free_blocks`` counts cached free blocks as free, each request's ``blocks`` are
those of all its tokens, and the blocks saved by sharing come back to ``free_blocks`` as
``PrefixCache.shared`` changes.

Iteration durations are computed by :func:`llm_routing_env.profiles.iteration_time_ms` with Python
ints and added to the instance clock as ``busy_until_s += t_ms / 1000.0``, exactly as the fast
simulator does on the iterations it does not skip, so both agree to the last bit there.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ..cluster import (
    COMPLETED,
    NOT_DISPATCHED,
    RUNNING,
    WAITING,
    ClusterConfig,
    InstanceLimits,
    InstanceState,
    RequestRecords,
    SchedulerConfig,
    validate_dispatch,
    validate_prefix_blocks,
    validate_target_times,
)
from ..profiles import KV_BLOCK_TOKENS, blocks_for_tokens, iteration_time_ms
from .prefix_cache import PrefixCache, PrefixKeys, leading_run, max_hit_blocks

NAN = float("nan")


class _Request:
    """One request's scheduling state and timestamps (times in seconds, NaN until reached)."""

    __slots__ = (
        "request_id", "instance", "prompt", "output", "arrival_s", "dispatch_s",
        "status", "generated", "blocks", "prefill_target", "prefilled", "preemptions",
        "first_scheduled_s", "first_token_s", "completion_s", "keys", "held", "prefix_done",
        "prefix_hit_tokens", "prefill_tokens",
    )

    def __init__(self, request_id: int, instance: int, prompt: int, output: int,
                 arrival_s: float, dispatch_s: float, keys: tuple = ()):
        self.request_id = request_id
        self.instance = instance
        self.prompt = prompt            # true prompt length
        self.output = output            # true output length
        self.arrival_s = arrival_s      # arrival at the router
        self.dispatch_s = dispatch_s    # hand-over to the instance
        self.status = WAITING
        self.generated = 0              # output tokens produced so far
        self.blocks = 0                 # KV blocks held
        self.prefill_target = 0         # prompt + generated at the last admission
        self.prefilled = 0              # tokens of the current prefill already processed
        self.preemptions = 0
        self.first_scheduled_s = NAN
        self.first_token_s = NAN
        self.completion_s = NAN
        self.keys = keys                # prefix cache keys of its prefix blocks
        self.held = []                  # the keys it references (its hit, then blocks it cached)
        self.prefix_done = 0            # prefix blocks of the current prefill hit or computed
        self.prefix_hit_tokens = 0      # summed over admissions
        self.prefill_tokens = 0         # prefill tokens computed, summed over admissions

    @property
    def prefill_done(self) -> bool:
        """For a running request: its current prefill is fully processed, it is decoding."""
        return self.prefilled == self.prefill_target

    @property
    def context(self) -> int:
        """Decode context: tokens in the KV cache once this iteration's token is stored."""
        return self.prompt + self.generated


class _Seen:
    """An instance as a router sees it while its iteration is in flight: as scheduled."""

    def __init__(self, inst: "_Instance"):
        self.running = [(r, r.generated, r.prefill_done) for r in inst.running]
        self.free_blocks = inst.free_blocks
        self.running_prefill_tokens = sum(r.prefill_target - r.prefilled for r in inst.running if not r.prefill_done)


class _Instance:
    """One serving instance: a running list (admission order), a FCFS waiting queue, a KV cache."""

    def __init__(self, limits: InstanceLimits, coefficients, scheduler: SchedulerConfig, kv_events: bool = False):
        self.limits = limits
        self.coefficients = coefficients
        self.v1 = scheduler.v1
        self.chunked_prefill = scheduler.chunked_prefill
        self.mixed_batches = scheduler.mixed_batches  # decodes and prefill chunks share iterations
        self.running: list[_Request] = []
        self.waiting: deque[_Request] = deque()
        self.free_blocks = limits.kv_capacity_blocks
        self.busy_until_s = 0.0         # end of the iteration last started
        self.iterations = 0
        self.seen: _Seen | None = None  # the last iteration as scheduled, before its effects
        self.cache = PrefixCache(events=kv_events) if scheduler.caches_prefixes else None

    # --- observation ------------------------------------------------------------------------

    def has_work(self) -> bool:
        return bool(self.running) or bool(self.waiting)

    def seen_cache(self, now_s: float) -> tuple[int, set | None]:
        """The prefix cache's blocks (and keys, with KV events) as of the last iteration finished."""
        if self.cache is None:
            return 0, set()
        return self.cache.seen(self.iterations - (self.busy_until_s > now_s))

    def seen_at(self, now_s: float) -> _Seen:
        """What a router sees at ``now_s`` (the snapshot while the last iteration is in flight)."""
        return self.seen if self.busy_until_s > now_s else _Seen(self)

    def pending_prefill_tokens(self, seen: _Seen) -> int:
        return sum(r.prompt + r.generated for r in self.waiting) + seen.running_prefill_tokens

    # --- dispatch ---------------------------------------------------------------------------

    def enqueue(self, request: _Request, now_s: float) -> None:
        """A request joins the tail of the waiting queue; an idle instance's clock catches up."""
        if not self.has_work():
            self.busy_until_s = max(self.busy_until_s, now_s)
        self.waiting.append(request)

    # --- time -------------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Start iterations while there is work and the clock is strictly before ``t_s``."""
        while self.has_work() and self.busy_until_s < t_s:
            self.run_iteration()

    # --- one iteration ----------------------------------------------------------------------

    def run_iteration(self) -> None:
        start_s = self.busy_until_s
        if self.v1:
            decodes, chunks = self._schedule_v1(start_s)
        elif self.chunked_prefill:
            decodes, chunks = self._schedule_chunked(start_s)
        else:
            decodes, chunks = self._schedule_prefill_first(start_s)
        assert decodes or chunks, "an instance with work always schedules something"
        if self.cache is not None:
            # the prefix blocks this iteration fills are cached; the pool's new blocks evict
            for r, chunk, prior in chunks:
                self._cache_filled_blocks(r, prior + chunk)
            self.cache.evict_to(self.free_blocks, self.iterations)  # (its index: the count so far)

        # Duration (Python ints into the shared latency model), then the clock moves.
        ntok = sum(chunk for _, chunk, _ in chunks) + len(decodes)
        sum_chunk_sq = sum(chunk * chunk for _, chunk, _ in chunks)
        sum_chunk_prior = sum(chunk * prior for _, chunk, prior in chunks)
        sum_decode_context = sum(r.context for r in decodes)
        t_ms = iteration_time_ms(self.coefficients, ntok, sum_chunk_sq, sum_chunk_prior, sum_decode_context)
        self.busy_until_s += t_ms / 1000.0
        self.busy_until_s = float(self.busy_until_s)
        self.iterations += 1
        end_s = self.busy_until_s
        self.seen = _Seen(self)

        # Effects at the end of the iteration.
        for r in decodes:
            r.generated += 1
        for r, chunk, _ in chunks:
            r.prefilled += chunk
            if r.prefilled == r.prefill_target:      # the prefill's last chunk yields a token
                r.generated += 1
                if math.isnan(r.first_token_s):
                    r.first_token_s = end_s
        still_running = []
        for r in self.running:
            if r.generated == r.output:
                r.status = COMPLETED
                r.completion_s = end_s
                self._free(r)
            else:
                still_running.append(r)
        self.running = still_running

    def _schedule_prefill_first(self, start_s: float):
        """vLLM v0: a prefill-only batch if anything is admitted, else a decode-only batch."""
        admitted = self._admit(self.limits.max_num_batched_tokens, start_s)
        if admitted:
            # Each admitted request's whole target (but its cache hit) is one chunk.
            return [], admitted
        self._allocate_decode_blocks()
        return list(self.running), []

    def _schedule_chunked(self, start_s: float):
        """vLLM v0's chunked prefill (Sarathi-style): decodes first, then running prefills' chunks,
        then admissions (KV for a whole prefill target taken at admission)."""
        preempted = self._allocate_decode_blocks()
        decodes = [r for r in self.running if r.prefill_done]
        budget_left = self.limits.max_num_batched_tokens - len(decodes)
        chunks = []
        for r in self.running:
            if r.prefill_done:
                continue
            chunk = min(r.prefill_target - r.prefilled, budget_left)
            if chunk > 0:
                chunks.append((r, chunk, r.prefilled))
                budget_left -= chunk
        if not preempted:
            chunks.extend(self._admit(budget_left, start_s))
        return decodes, chunks

    def _schedule_v1(self, start_s: float):
        """vLLM v1 (docs/simulator.md): one token budget; the running requests in order, each
        taking the KV blocks of the tokens it is given and preempting from the tail when they are
        not free; then, if nothing was preempted, admissions with a chunk of what budget is left."""
        lim = self.limits
        budget_left = lim.max_num_batched_tokens
        decodes, chunks, preempted = [], [], []
        i = 0
        while i < len(self.running) and budget_left > 0:
            r = self.running[i]
            if r.prefill_done:   # a decode: one token, its KV cache then holds its context
                tokens, computed = 1, r.context - 1
            else:                # the next chunk of its prefill
                tokens, computed = min(r.prefill_target - r.prefilled, budget_left), r.prefilled
            need = blocks_for_tokens(computed + tokens) - r.blocks
            while need > self.free_blocks:
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim is r:
                    break
            if r.status == WAITING:  # r was the tail and is itself preempted: the pass stops
                break
            r.blocks += need
            self.free_blocks -= need
            if r.prefill_done:
                decodes.append(r)
            else:
                chunks.append((r, tokens, r.prefilled))
            budget_left -= tokens
            i += 1
        for victim in preempted:  # (tail first: they end in admission order at the head)
            self.waiting.appendleft(victim)
        if not preempted:  # admissions only in a step that preempts nothing
            chunks.extend(self._admit(budget_left, start_s))
        return decodes, chunks

    def _admit(self, budget_left: int, start_s: float) -> list[tuple[_Request, int, int]]:
        """Move requests from the waiting head to the running list while the rules allow (FCFS).

        Returns (request, chunk, prior) triples: ``prior`` is the request's prefix cache hit (its
        tokens are not computed), the chunk its uncached tokens without chunked prefill, with it
        (v0's chunked prefill, v1) at most the budget left. vLLM v0 takes the blocks of the whole
        target at once and keeps the watermark free; v1 takes those up to the chunk's end only (its
        watermark is 0). A hit block that another request references is shared, not taken.

        The candidates look the cache up as it is before this step's admissions (a block cached
        by a request admitted in this step is hit from the next step on).
        """
        lim = self.limits
        admitted = []
        cache = self.cache
        more_shared = 0
        if cache is not None and self.waiting and len(self.running) < lim.max_num_seqs:
            cache.evict_to(self.free_blocks, self.iterations)  # (the blocks taken so far in this step evict first)
            room = min(len(self.waiting), lim.max_num_seqs - len(self.running))
            lookups = [cache.lookup(r.keys, max_hit_blocks(r.prompt + r.generated))
                       for r in list(self.waiting)[:max(room, 0)]]
        while self.waiting and len(self.running) < lim.max_num_seqs:
            r = self.waiting[0]
            target = r.prompt + r.generated
            hit, shared = lookups[len(admitted)] if cache is not None else (0, 0)
            prior = hit * KV_BLOCK_TOKENS
            if self.mixed_batches:
                if budget_left <= 0:
                    break
                chunk = min(target - prior, budget_left)
            else:
                if target - prior > budget_left:
                    break
                chunk = target - prior
            blocks = blocks_for_tokens(prior + chunk if self.v1 else target)
            if self.free_blocks - (blocks - shared) < lim.watermark_blocks:
                break
            self.waiting.popleft()
            self.free_blocks -= blocks
            r.blocks = blocks
            self.free_blocks += shared  # (shared hit blocks are not taken)
            if hit:
                r.held = list(r.keys[:hit])
                # a hit block taken from the free blocks by an earlier admission of this step is
                # shared too; the checks of this step do not count it (they see the cache as it
                # was before the step's admissions)
                more_shared += cache.acquire(r.held) - shared
            r.prefix_done = hit
            r.prefix_hit_tokens += prior
            r.prefill_tokens += target - prior  # (less what a preemption cuts short)
            r.prefill_target = target
            r.prefilled = prior
            r.status = RUNNING
            if math.isnan(r.first_scheduled_s):
                r.first_scheduled_s = start_s
            self.running.append(r)
            budget_left -= chunk
            admitted.append((r, chunk, prior))
        self.free_blocks += more_shared
        return admitted

    def _cache_filled_blocks(self, r: _Request, filled_tokens: int) -> None:
        """``r``'s prefix blocks within its first ``filled_tokens`` are computed: cache them (a
        key cached already leaves r's block its own)."""
        full = min(len(r.keys), filled_tokens // KV_BLOCK_TOKENS)
        r.held += self.cache.register_all(r.keys[r.prefix_done:full], self.iterations)
        r.prefix_done = max(r.prefix_done, full)

    def _free(self, r: _Request) -> None:
        """``r`` gives its blocks back; its prefix blocks stay cached (shared ones stay held)."""
        self.free_blocks += r.blocks
        r.blocks = 0
        if r.held:
            delta, _ = self.cache.release(r.held)
            self.free_blocks += delta
            r.held = []
        r.prefix_done = 0

    def _allocate_decode_blocks(self) -> list[_Request]:
        """Give each decoding request the block it needs, preempting from the tail (recompute).

        Walks the running list in order. A decoding request whose KV cache cannot hold its decode
        context needs one new block; when none is free the tail of the running list (the most
        recently admitted request) is preempted, until the block is found or the current request
        is itself the tail and gets preempted. Returns the preempted requests.
        """
        preempted: list[_Request] = []
        i = 0
        while i < len(self.running):
            r = self.running[i]
            if r.prefill_done and r.blocks < blocks_for_tokens(r.context):
                assert r.blocks + 1 == blocks_for_tokens(r.context)
                while self.free_blocks == 0:
                    victim = self.running.pop()
                    self._preempt(victim)
                    preempted.append(victim)
                    if victim is r:
                        break
                if r.status == WAITING:       # r was the tail and is itself preempted
                    break
                r.blocks += 1
                self.free_blocks -= 1
            i += 1
        # Tail first was preempted first: pushing each onto the head in turn leaves them in
        # admission order at the head of the waiting queue.
        for victim in preempted:
            self.waiting.appendleft(victim)
        return preempted

    def _preempt(self, r: _Request) -> None:
        r.prefill_tokens -= r.prefill_target - r.prefilled  # never computed
        self._free(r)
        r.prefilled = 0
        r.prefill_target = 0
        r.preemptions += 1
        r.status = WAITING


class ReferenceSimulator:
    """B independent clusters of N instances each, simulated one iteration at a time.

    Same public API as :class:`llm_routing_env.sim.simulator.ClusterSimulator`.
    """

    def __init__(self, config: ClusterConfig, num_clusters: int = 1, max_requests: int = 1024):
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or num_clusters < 1:
            raise ValueError(f"num_clusters must be a positive integer, got {num_clusters!r}")
        if isinstance(max_requests, bool) or not isinstance(max_requests, (int, np.integer)) or max_requests < 1:
            raise ValueError(f"max_requests must be a positive integer, got {max_requests!r}")
        self.config = config
        self.num_clusters = int(num_clusters)
        self.max_requests = int(max_requests)
        self.now_s = np.zeros(self.num_clusters, dtype=np.float64)
        self.iterations = np.zeros((self.num_clusters, config.num_instances), dtype=np.int64)
        self._instances: list[list[_Instance]] = [[] for _ in range(self.num_clusters)]
        self._requests: list[dict[int, _Request]] = [{} for _ in range(self.num_clusters)]
        self._prefix_keys = PrefixKeys()
        self.reset()

    # --- lifecycle --------------------------------------------------------------------------

    def reset(self, clusters=None) -> None:
        """Return the given clusters (all if None; an index array or a (B,) bool mask) to time 0."""
        for b in self._cluster_indices(clusters):
            self.now_s[b] = 0.0
            self.iterations[b, :] = 0
            self._requests[b] = {}
            self._instances[b] = [
                _Instance(lim, prof.coefficients, self.config.scheduler, self.config.cache_knowledge == "exact")
                for lim, prof in zip(self.config.limits, self.config.profiles)
            ]

    def _cluster_indices(self, clusters) -> list[int]:
        if clusters is None:
            return list(range(self.num_clusters))
        arr = np.asarray(clusters)
        if arr.dtype == np.bool_:
            if arr.shape != (self.num_clusters,):
                raise ValueError(f"clusters mask must have shape ({self.num_clusters},), got {arr.shape}")
            return [int(b) for b in np.flatnonzero(arr)]
        arr = np.atleast_1d(arr)
        if arr.size == 0:
            return []
        if arr.dtype.kind not in "iu" or ((arr < 0) | (arr >= self.num_clusters)).any():
            raise ValueError(f"clusters must be indices in [0, {self.num_clusters}) or a bool mask, got {clusters!r}")
        return [int(b) for b in arr]

    # --- router actions ---------------------------------------------------------------------

    def dispatch(self, cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s,
                 prefix_blocks=None) -> None:
        """Hand requests to instances at their cluster's current time (tail of the waiting queue).
        ``prefix_blocks``: None, or per dispatch None or its prompt's prefix block ids."""
        status = self._status_array()
        cluster, request_id, instance, prompt, output, arrival = validate_dispatch(
            self.config, self.num_clusters, self.max_requests, self.now_s, status,
            cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s,
        )
        ids = validate_prefix_blocks(prefix_blocks, prompt) or [()] * prompt.size
        for b, rid, n, p, o, a, block_ids in zip(cluster.tolist(), request_id.tolist(), instance.tolist(),
                                                 prompt.tolist(), output.tolist(), arrival.tolist(), ids):
            now = float(self.now_s[b])
            request = _Request(rid, n, p, o, a, now, self._prefix_keys.keys(block_ids))
            self._requests[b][rid] = request
            self._instances[b][n].enqueue(request, now)

    def advance_to(self, t_s) -> None:
        """Run every instance up to time ``t_s`` (scalar or (B,)); ``inf`` runs to idleness."""
        targets = validate_target_times(self.now_s, t_s)
        for b in range(self.num_clusters):
            t = float(targets[b])
            for n, inst in enumerate(self._instances[b]):
                inst.advance_to(t)
                self.iterations[b, n] = inst.iterations
            if math.isinf(t):
                # Everything has finished: the clock stops at the end of the last iteration.
                last_end = max(inst.busy_until_s for inst in self._instances[b])
                self.now_s[b] = max(float(self.now_s[b]), last_end)
            else:
                self.now_s[b] = t

    def run_until_idle(self) -> None:
        """Run every dispatched request to completion; now_s stops at the last iteration's end."""
        self.advance_to(np.inf)

    # --- observation ------------------------------------------------------------------------

    def _status_array(self) -> np.ndarray:
        status = np.full((self.num_clusters, self.max_requests), NOT_DISPATCHED, dtype=np.int64)
        for b, requests in enumerate(self._requests):
            for rid, r in requests.items():
                status[b, rid] = r.status
        return status

    def records(self, cluster: int | None = None) -> RequestRecords:
        """Per-request records as (B, R) arrays, or one cluster's as (R,) arrays."""
        if cluster is not None:
            every = self.records()
            return RequestRecords(**{name: value[cluster] for name, value in vars(every).items()})
        shape = (self.num_clusters, self.max_requests)
        ints = {name: np.zeros(shape, dtype=np.int64) for name in
                ("status", "prompt_tokens", "output_tokens", "generated_tokens", "preemptions",
                 "prefix_hit_tokens", "prefill_tokens")}
        instance = np.full(shape, -1, dtype=np.int64)
        times = {name: np.full(shape, np.nan, dtype=np.float64) for name in
                 ("arrival_s", "dispatch_s", "first_scheduled_s", "first_token_s", "completion_s")}
        for b, requests in enumerate(self._requests):
            for rid, r in requests.items():
                ints["status"][b, rid] = r.status
                instance[b, rid] = r.instance
                ints["prompt_tokens"][b, rid] = r.prompt
                ints["output_tokens"][b, rid] = r.output
                ints["generated_tokens"][b, rid] = r.generated
                ints["preemptions"][b, rid] = r.preemptions
                ints["prefix_hit_tokens"][b, rid] = r.prefix_hit_tokens
                ints["prefill_tokens"][b, rid] = r.prefill_tokens
                times["arrival_s"][b, rid] = r.arrival_s
                times["dispatch_s"][b, rid] = r.dispatch_s
                times["first_scheduled_s"][b, rid] = r.first_scheduled_s
                times["first_token_s"][b, rid] = r.first_token_s
                times["completion_s"][b, rid] = r.completion_s
        return RequestRecords(instance=instance, **ints, **times)

    def router_requests(self, cluster: int) -> list[dict]:
        """Per instance of ``cluster``, as a router sees it: ``running`` (request id, generated
        tokens, prefill done) in admission order and ``waiting`` request ids in queue order."""
        now = float(self.now_s[cluster])
        out = []
        for inst in self._instances[cluster]:
            seen = inst.seen_at(now)
            out.append({"running": [(r.request_id, g, done) for r, g, done in seen.running],
                        "waiting": [r.request_id for r in inst.waiting]})
        return out

    def decode_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Per instance: decoding requests (prefill done) and the sum of their contexts, as seen."""
        shape = (self.num_clusters, self.config.num_instances)
        count, context = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        for b, instances in enumerate(self._instances):
            for n, inst in enumerate(instances):
                decoding = [(r, g) for r, g, done in inst.seen_at(float(self.now_s[b])).running if done]
                count[b, n] = len(decoding)
                context[b, n] = sum(r.prompt + g for r, g in decoding)
        return count, context

    def completions(self) -> tuple[np.ndarray, np.ndarray]:
        """Per cluster: requests completed by now_s and the sum of their completion times."""
        count, total = np.zeros(self.num_clusters, dtype=np.int64), np.zeros(self.num_clusters)
        for b, requests in enumerate(self._requests):
            times = [r.completion_s for r in requests.values() if r.completion_s <= self.now_s[b]]
            count[b], total[b] = len(times), sum(times)
        return count, total

    def prefix_cached_blocks(self) -> np.ndarray:
        """Per instance: blocks holding a cached prefix, as the KV events of finished iterations show."""
        return np.array([[inst.seen_cache(float(self.now_s[b]))[0] for inst in instances]
                         for b, instances in enumerate(self._instances)], dtype=np.int64)

    def seen_prefix_hits(self, block_ids) -> np.ndarray:
        """Per instance: the leading blocks of cluster b's prefix ``block_ids[b]`` the KV events of
        finished iterations show cached (only with cache_knowledge='exact')."""
        if self.config.cache_knowledge != "exact":
            raise ValueError("the KV events' keys are kept only with cache_knowledge='exact'")
        out = np.zeros((self.num_clusters, self.config.num_instances), dtype=np.int64)
        for b, ids in enumerate(block_ids):
            if ids is None:
                continue
            keys = self._prefix_keys.known_keys(ids)
            for n, inst in enumerate(self._instances[b]):
                if inst.cache is not None:
                    out[b, n] = leading_run(keys, inst.seen_cache(float(self.now_s[b]))[1])
        return out

    def instance_state(self) -> InstanceState:
        """Per instance, as a router sees it (``busy_until_s``: the end of the last iteration)."""
        shape = (self.num_clusters, self.config.num_instances)
        num_running = np.zeros(shape, dtype=np.int64)
        num_waiting = np.zeros(shape, dtype=np.int64)
        used = np.zeros(shape, dtype=np.int64)
        free = np.zeros(shape, dtype=np.int64)
        pending = np.zeros(shape, dtype=np.int64)
        busy = np.zeros(shape, dtype=np.float64)
        for b, instances in enumerate(self._instances):
            for n, inst in enumerate(instances):
                seen = inst.seen_at(float(self.now_s[b]))
                num_running[b, n] = len(seen.running)
                num_waiting[b, n] = len(inst.waiting)
                used[b, n] = inst.limits.kv_capacity_blocks - seen.free_blocks
                free[b, n] = seen.free_blocks
                pending[b, n] = inst.pending_prefill_tokens(seen)
                busy[b, n] = inst.busy_until_s
        return InstanceState(num_running=num_running, num_waiting=num_waiting, kv_blocks_used=used,
                             kv_blocks_free=free, pending_prefill_tokens=pending, busy_until_s=busy)
