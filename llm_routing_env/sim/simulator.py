"""The fast cluster simulator: B independent clusters x N instances advanced together in NumPy.

Semantics are those of ``docs/simulator.md`` (vLLM v0 by default, v0's chunked prefill as an option,
or vLLM v1's scheduler);
:mod:`.reference` implements the same thing slowly, and a differential test holds the two together.
The class is assembled from three parts, each in its own module:

* :mod:`.state`: the batched state (struct of arrays over instance rows and requests) and its
  bookkeeping;
* :mod:`.scheduler`: the step rules of vLLM v0's and v1's schedulers (admission, chunking, KV
  blocks, preemption, decode runs in closed form, completions), vectorized over the rows that step;
* :mod:`.views`: the router queries (what a router sees) and the records (the truth).

The latency model is :func:`llm_routing_env.profiles.iteration_time_ms`. ``advance_to`` repeats one
vectorized step over every instance that has work and has not reached the target time.
"""

from __future__ import annotations

import numpy as np

from ..cluster import (
    NOT_DISPATCHED, WAITING, ClusterConfig, RequestRecords, validate_dispatch, validate_prefix_blocks,
    validate_target_times,
)
from .prefix_cache import PrefixCache, PrefixKeys
from .scheduler import SchedulerSteps
from .state import _WAITING, BatchedState
from .views import RouterQueries


class ClusterSimulator(RouterQueries, SchedulerSteps, BatchedState):
    """B clusters of N instances; see the module docstring and ``docs/simulator.md``."""

    def __init__(self, config: ClusterConfig, num_clusters: int = 1, max_requests: int = 1024,
                 prediction_classes: int | None = None):
        if not isinstance(config, ClusterConfig):
            raise ValueError(f"config must be a ClusterConfig, got {type(config).__name__}")
        for name, value in (("num_clusters", num_clusters), ("max_requests", max_requests),
                            ("prediction_classes", 1 if prediction_classes is None else prediction_classes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.config = config
        # mixed batches (decodes beside prefill chunks): v0's chunked prefill, or v1, whose KV
        # blocks follow the computed tokens (sim/scheduler.py)
        self.chunked = config.scheduler.mixed_batches
        self.v1 = config.scheduler.v1
        self.B, self.N, self.R = int(num_clusters), config.num_instances, int(max_requests)
        # with prediction classes, each row summarizes its decode set as set_predictions' values see it
        self._has_predictions = prediction_classes is not None
        self.K = int(prediction_classes or 1)
        rows = self.B * self.N

        # Per-row constants (the instance's profile and limits, tiled over clusters)
        def tile(values):
            return np.tile(np.asarray(values), self.B)

        self._capacity = tile(config.per_instance("kv_capacity_blocks"))
        self._watermark = tile(config.per_instance("watermark_blocks"))
        self._max_seqs = tile(config.per_instance("max_num_seqs"))
        self._budget = tile(config.per_instance("max_num_batched_tokens"))
        coeffs = config.coefficient_table()
        self._coeffs = np.tile(coeffs, (self.B, 1))  # (rows, 7)
        # With one profile for every instance (the common case) the coefficients are scalars, which
        # NumPy multiplies faster than rows of coefficients.
        self._same_coeffs = tuple(coeffs[0]) if (coeffs == coeffs[0]).all() else None
        self.S = int(self._max_seqs.max())
        self._row_cluster = np.repeat(np.arange(self.B), self.N)
        self._max_model_len = config.max_model_len_per_instance.tolist()

        self._rows = rows
        self.now_s = np.zeros(self.B)
        self.iterations = np.zeros((self.B, self.N), dtype=np.int64)
        self._wcap = 16
        self._caching = config.scheduler.caches_prefixes
        self._prefix_keys = PrefixKeys()
        # the caches keep their KV events' keys only for a router that consumes them
        self._kv_events = config.cache_knowledge == "exact"
        self._alloc_state()

    def dispatch(self, cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s,
                 prefix_blocks=None) -> None:
        """Send requests to instances at their cluster's current time (tail of the waiting queue).
        ``prefix_blocks``: None, or per dispatch None or its prompt's prefix block ids (cached only
        with prefix caching on)."""
        args = (cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s)
        checked = self._plainly_valid_single(args)
        if checked is None:  # anything else is for validate_dispatch to check (and to word any error)
            checked = validate_dispatch(self.config, self.B, self.R, self.now_s,
                                        self.status.reshape(self.B, self.R), *args)
        cluster, request_id, instance, prompt, output, arrival = checked
        ids = validate_prefix_blocks(prefix_blocks, prompt)
        if cluster.size == 0:
            return
        q = cluster * self.R + request_id
        row = cluster * self.N + instance
        if ids is not None and self._caching:
            for qi, ri, block_ids in zip(q.tolist(), row.tolist(), ids):
                if block_ids:
                    self._keys[qi] = self._prefix_keys.keys(block_ids)
                    self._n_keys[qi] = len(block_ids)
                    if not self._cache_rows[ri]:
                        self._cache_rows[ri] = True
                        self._caches[ri] = PrefixCache(events=self._kv_events)
        rank = 0
        if row.size > 1:  # rank of each dispatch among those to the same row, in the given order
            order = np.argsort(row, kind="stable")
            first_of_row = np.searchsorted(row[order], row[order])
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size) - first_of_row
        queued = self.w_count[row] + rank
        if queued.max() >= self._wcap:
            self._grow_waiting(int(queued.max()) + 1)
        self.waiting[row, (self.w_head[row] + queued) % self._wcap] = q
        if row.size == 1:  # (np.add.at is several times slower than this)
            self.w_count[row] += 1
            self._vis_int[_WAITING, row] += 1  # (what a router sent is in its view at once)
            self.w_pending_tokens[row] += prompt
            self._vis_pending[row] += prompt
        else:
            sent = np.bincount(row, minlength=self._rows)
            self.w_count += sent
            self._vis_int[_WAITING] += sent
            np.add.at(self.w_pending_tokens, row, prompt)
            np.add.at(self._vis_pending, row, prompt)
        now = self.now_s[cluster]
        self.busy_until_s[row] = np.maximum(self.busy_until_s[row], now)
        self.status[q] = WAITING
        self.instance[q] = instance
        self.prompt[q] = prompt
        self.output[q] = output
        self.arrival_s[q] = arrival
        self.dispatch_s[q] = now

    def _plainly_valid_single(self, args):
        """The common case of ``dispatch`` checked cheaply: one request given as plain integers (an
        int, a NumPy integer or a one-element integer array) that passes every rule of
        ``validate_dispatch``; returned as that function would return it. None otherwise."""
        values = []
        for v in args:
            if type(v) is np.ndarray:
                v = v.item() if v.size == 1 and v.ndim <= 1 and v.dtype.kind in "iuf" else None
            elif isinstance(v, np.number):
                v = v.item()
            values.append(v)
        c, rid, inst, prompt, output, arrival = values
        # exact types: a bool is an int to Python but not to validate_dispatch
        if not (type(c) is type(rid) is type(inst) is type(prompt) is type(output) is int
                and type(arrival) in (int, float)):
            return None
        if not (0 <= c < self.B and 0 <= rid < self.R and 0 <= inst < self.N and 1 <= prompt <= 2**62
                and 1 <= output <= 2**62 and 0 <= arrival <= self.now_s[c]
                and prompt + output <= self._max_model_len[inst]
                and self.status[c * self.R + rid] == NOT_DISPATCHED):
            return None
        return (*np.array([c, rid, inst, prompt, output]).reshape(5, 1), np.array([float(arrival)]))

    def advance_to(self, t_s) -> None:
        """Run every instance's iterations that start before ``t_s`` (scalar or per cluster)."""
        if type(t_s) is np.ndarray and t_s.shape == self.now_s.shape and t_s.dtype == np.float64 \
                and np.count_nonzero(t_s >= self.now_s) == self.B:
            target = t_s  # the common case checked cheaply (NaN fails the comparison)
        else:  # anything else is for validate_target_times to check (and to word any error)
            target = validate_target_times(self.now_s, t_s)
        target_row = target[self._row_cluster]
        while True:
            rows = (((self.n_running + self.w_count) > 0) & (self.busy_until_s < target_row)).nonzero()[0]
            if rows.size == 0:
                break
            self._step(rows, target_row[rows])
        finite = np.isfinite(target)
        if np.count_nonzero(finite) < self.B:  # without a target the clock stops at the last iteration's end
            last_end = self.busy_until_s.reshape(self.B, self.N).max(axis=1)
            target = np.where(finite, target, np.maximum(self.now_s, last_end))
        self.now_s[:] = target

    def run_until_idle(self) -> None:
        """Run every dispatched request to completion; now_s becomes the end of the last iteration."""
        self.advance_to(np.inf)


def replay_round_robin(config: ClusterConfig, arrival_s, prompt_tokens, output_tokens) -> RequestRecords:
    """Serve every request on one cluster, the k-th to arrive on instance k mod N at its arrival
    time, until all complete; the records of that cluster (request id = index in the inputs). The
    one round-robin replay behind ``scenarios.round_robin_mean_e2e`` and the cross-check tools."""
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    n = len(arrival_s)
    sim = ClusterSimulator(config, num_clusters=1, max_requests=n)
    for k, q in enumerate(np.argsort(arrival_s, kind="stable").tolist()):
        t = float(arrival_s[q])
        sim.advance_to(t)
        sim.dispatch(0, q, k % config.num_instances, int(prompt_tokens[q]), int(output_tokens[q]), t)
    sim.run_until_idle()
    return sim.records(0)
