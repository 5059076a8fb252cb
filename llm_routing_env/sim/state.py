"""The batched state of the fast simulator: B clusters x N instances as a struct of arrays.

The state is a struct of arrays over *instance rows* (``row = cluster * N + instance``):

* running requests sit in ``slots[:, row, :tail[row]]`` in admission order, one field per leading
  index (see ``Q, PROMPT, ...`` below); a request that leaves the running list leaves a *hole*
  (``Q == -1``) that is squeezed out only when the row's tail is full or when the running lists
  are observed, so that a completion does not move its row's other requests;
* waiting requests sit in a ring buffer ``waiting[row]`` (FIFO with push-front for preemptions);
* per-request facts and timestamps live in flat arrays indexed by ``cluster * R + request_id``.

Decoding is the common case and must not cost per-request work. Every decoding request of a row
gains one token per decode iteration of that row, so a slot stores its generated count minus the
row's *decode clock* (decode iterations run so far) and a decode run only moves the clock. Each
row keeps aggregates of its *decode set* (the running requests whose prefill is complete): its
size, its context sum, the clock of its first completion and a histogram of the requests' KV
fill (a decoding request holds the blocks of its context, so which requests need a block in which
iteration follows from the context modulo the block size). Slots are only read or written when a
running list changes: admissions, completions, preemptions and chunked prefills.

For routers, each row also summarizes its decode set as the router's length predictions see it
(given by ``set_predictions``; they never change the dynamics): the members per predicted class and
the member predicted to finish first. Between changes of the set every member gains the same
tokens, so that member stays first until it leaves; only then is the row searched again.

Prefix caching (:mod:`.prefix_cache`) is per-request Python work on the few requests that carry
prefix block ids, at the moments their slots change anyway: each row with such requests has a
:class:`.prefix_cache.PrefixCache`; a request's keys, the keys it references and its prefix blocks
done sit in Python lists by request index. ``free_blocks`` counts cached free blocks as free and
each request is charged the blocks of all its tokens; the blocks saved by sharing are added back
as the caches' ``shared`` counts change.
"""

from __future__ import annotations

import numpy as np

from ..cluster import NOT_DISPATCHED
from ..profiles import KV_BLOCK_TOKENS
from .prefix_cache import PrefixCache

# Slot fields (leading axis of ``slots``): request index (-1: a hole), prompt tokens, generated
# tokens minus the row's decode clock, the clock value at which the request completes (_NO_LIMIT
# unless it is decoding: holes and running prefills never complete), tokens of the current prefill
# processed, prefill target.
Q, PROMPT, GEN0, END, PREFILLED, TARGET = range(6)
_NUM_FIELDS = 6
_NO_LIMIT = np.iinfo(np.int64).max // 4
_EMPTY_SLOT = np.array([-1, 0, 0, _NO_LIMIT, 0, 0])
# The decode-set histogram counts requests by fill f = (PROMPT + GEN0) % 16: at clock d, such a
# request holds PROMPT + GEN0 + d - 1 tokens of KV cache and needs a new block for its next token
# when that is a multiple of 16. _SLACK[d % 16, f]: decode iterations before it does (0: in the
# next one); _SLACK15 is 15 minus that; _FIRST_NEED the same once those that need one now have it
# (16 for them).
_SLACK = (1 - np.arange(KV_BLOCK_TOKENS)[:, None] - np.arange(KV_BLOCK_TOKENS)) % KV_BLOCK_TOKENS
_SLACK15 = KV_BLOCK_TOKENS - 1 - _SLACK
_FIRST_NEED = np.where(_SLACK == 0, KV_BLOCK_TOKENS, _SLACK)


# The integer counters per instance row, in the order of their table (_alloc_state)
_INT_COUNTERS = ("n_running", "w_count", "free_blocks", "n_dec", "ctx_base", "clock", "first_q", "first_gen0",
                 "completed_count", "last_step_completions")
_FLOAT_COUNTERS = ("busy_until_s", "completion_time_sum_s", "first_pred")
(_RUNNING, _WAITING, _FREE, _N_DEC, _CTX_BASE, _CLOCK, _FIRST_Q, _FIRST_GEN0, _COMPLETED,
 _LAST_COMPLETIONS) = range(len(_INT_COUNTERS))
_COMPLETION_TIME_SUM, _FIRST_PRED = 1, 2


# Numbers of the hot paths, as 0-d arrays: NumPy combines an array with a 0-d array faster than with
# a Python number, which it must convert first (the results are the same).
_MS_PER_S = np.array(1000.0)
_MAX_ROOM_MS = np.array(1e15)  # a finite stand-in for "no target" (31,700 years)
_MAX_RUN = np.array(1e9)       # a cap on the length of a decode run (keeps int64 conversions safe)
_ONE, _ONE_F, _HALF_F = np.array(1), np.array(1.0), np.array(0.5)
_BLOCK = np.array(KV_BLOCK_TOKENS)


def _ceil_blocks(tokens):
    return -(-tokens // KV_BLOCK_TOKENS)


def _chunk_blocks(prior, chunk):
    """KV blocks a prefill chunk of ``chunk`` tokens fills beyond the ``prior`` tokens computed."""
    return _ceil_blocks(prior + chunk) - _ceil_blocks(prior)


def _split_budget(budget, remaining):
    """Each row's token ``budget`` split over its prefills in running order: each gets what is left,
    up to its ``remaining`` tokens (rows x requests)."""
    return np.clip(budget[:, None] - (remaining.cumsum(axis=1) - remaining), 0, remaining)


def _run_ms(k, t0_ms, half_c5n):
    """Duration of k decode iterations whose first takes t0_ms, each one's decode context n tokens
    more than the last: k * t0 + c5 * n * k * (k - 1) / 2, with half_c5n = c5 * n / 2. One
    iteration takes exactly t0_ms, as the reference computes it."""
    return k * (t0_ms + half_c5n * (k - _ONE_F))



class BatchedState:
    """The arrays of every cluster's instances and requests, and the bookkeeping that keeps their
    aggregates (decode sets, waiting queues, predicted first completions) in step."""

    def _alloc_state(self) -> None:
        rows, BR = self._rows, self.B * self.R
        # The per-row counters are the rows of two tables (integers, then the decode-set members
        # per predicted class; floats), so that one cluster's are read in two calls
        # (cluster_counters; at B = 1 NumPy's cost per call dominates)
        self._int_counters = np.zeros((len(_INT_COUNTERS) + self.K, rows), dtype=np.int64)
        self._time_counters = np.zeros((len(_FLOAT_COUNTERS), rows))
        self._bind_views()
        self.slots = np.empty((_NUM_FIELDS, rows, self.S), dtype=np.int64)
        self.slots[:] = _EMPTY_SLOT[:, None, None]
        self._tail = np.zeros(rows, dtype=np.int64)  # slots in use, holes included
        self.free_blocks[:] = self._capacity
        self.waiting = np.zeros((rows, self._wcap), dtype=np.int64)
        self.w_head = np.zeros(rows, dtype=np.int64)  # ring position of each queue head (modulo _wcap)
        self.w_pending_tokens = np.zeros(rows, dtype=np.int64)
        # The decode clock and the decode-set aggregates (see the module docstring)
        # _clock, _n_dec (the size of the decode set) and _ctx_base (sum of PROMPT + GEN0: the context
        # sum is this + n_dec * clock) are counters
        self._end_min = np.full(rows, _NO_LIMIT)         # min of END: the clock of the first completion
        self._fill_hist = np.zeros((rows, KV_BLOCK_TOKENS), dtype=np.int64)  # by (PROMPT + GEN0) % 16
        # The router's predictions (set_predictions) and the decode sets as they see them
        self.predicted_class = np.zeros(BR, dtype=np.int64)
        self.predicted_output = np.zeros(BR)
        self._first_key = np.full(rows, np.inf)  # min over members of predicted_output - GEN0
        self._first_q[:] = -1  # the member with that key (-1: empty set); its GEN0 and predicted output
        # The router's view of rows whose iteration is in flight (see the module docstring): their
        # counters after that iteration's scheduling, its pending prefill tokens, the requests it
        # completes (the first last_step_completions of each row, with their ranks among the row's
        # running requests in admission order) and, per request, the end of the
        # iteration that finished its current prefill (later than now_s: it finishes in flight)
        self._vis_int = np.zeros_like(self._int_counters)
        self._vis_time = np.zeros_like(self._time_counters)
        self._vis_pending = np.zeros(rows, dtype=np.int64)
        self._done_q = np.zeros((rows, self.S), dtype=np.int64)
        self._done_rank = np.zeros((rows, self.S), dtype=np.int64)  # their places in admission order
        self.decode_start_s = np.full(BR, np.nan)
        self.status = np.zeros(BR, dtype=np.int64)
        self.instance = np.full(BR, -1, dtype=np.int64)
        self.prompt = np.zeros(BR, dtype=np.int64)
        self.output = np.zeros(BR, dtype=np.int64)
        self.generated = np.zeros(BR, dtype=np.int64)
        self.preemptions = np.zeros(BR, dtype=np.int64)
        self.arrival_s = np.full(BR, np.nan)
        self.dispatch_s = np.full(BR, np.nan)
        self.first_scheduled_s = np.full(BR, np.nan)
        self.first_token_s = np.full(BR, np.nan)
        self.completion_s = np.full(BR, np.nan)
        self.prefix_hit_tokens = np.zeros(BR, dtype=np.int64)
        self.prefill_tokens = np.zeros(BR, dtype=np.int64)
        self._alloc_prefix_state()

    def _alloc_prefix_state(self) -> None:
        """The prefix caches (rows that have seen a request with prefix block ids) and, per
        request, its keys, the keys it references and its prefix blocks hit or computed."""
        BR = self.B * self.R
        self._caches: dict[int, PrefixCache] = {}
        self._cache_rows = np.zeros(self._rows, dtype=bool)
        self._lru_len = np.zeros(self._rows, dtype=np.int64)  # len(lru) of each row's cache (0: none)
        self._n_keys = np.zeros(BR, dtype=np.int64)
        self._keys: list[tuple] = [()] * BR
        self._held: list[list] = [[] for _ in range(BR)] if self._caching else []
        self._prefix_done = np.zeros(BR, dtype=np.int64)

    # Some state is views of other arrays (the counters' tables, the iterations by row). A copy
    # (copy.deepcopy, pickle) copies each array apart, so views are left out and made again.
    _VIEWS = ("n_running", "w_count", "free_blocks", "_n_dec", "_ctx_base", "_clock", "_first_q", "_first_gen0",
              "completed_count", "last_step_completions", "_class_hist", "busy_until_s", "completion_time_sum_s",
              "_first_pred", "_iterations_flat")

    def _bind_views(self) -> None:
        (self.n_running, self.w_count, self.free_blocks, self._n_dec, self._ctx_base, self._clock, self._first_q,
         self._first_gen0, self.completed_count, self.last_step_completions) = self._int_counters[:len(_INT_COUNTERS)]
        self._class_hist = self._int_counters[len(_INT_COUNTERS):].T  # (rows, K)
        self.busy_until_s, self.completion_time_sum_s, self._first_pred = self._time_counters
        self._iterations_flat = self.iterations.reshape(-1)  # by row

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._VIEWS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_views()

    def reset(self, clusters=None) -> None:
        """Empty the given clusters (None: all; else indices or a (B,) bool mask) at time 0."""
        if clusters is None:
            self.now_s[:] = 0.0
            self.iterations[:] = 0
            self._alloc_state()
            return
        idx = np.asarray(clusters)
        if idx.dtype == bool:
            if idx.shape != (self.B,):
                raise ValueError(f"clusters mask must have shape ({self.B},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if ((idx < 0) | (idx >= self.B)).any():
            raise ValueError(f"clusters out of range: {idx[(idx < 0) | (idx >= self.B)][0]!r}")
        rows = (idx[:, None] * self.N + np.arange(self.N)).ravel()
        reqs = (idx[:, None] * self.R + np.arange(self.R)).ravel()
        self.now_s[idx] = 0.0
        self.iterations[idx] = 0
        self.busy_until_s[rows] = 0.0
        self.n_running[rows] = 0
        self.completed_count[rows] = 0
        self.completion_time_sum_s[rows] = 0.0
        self.last_step_completions[rows] = 0
        self.slots[:, rows] = _EMPTY_SLOT[:, None, None]
        self._tail[rows] = 0
        self.free_blocks[rows] = self._capacity[rows]
        self.w_head[rows] = 0
        self.w_count[rows] = 0
        self.w_pending_tokens[rows] = 0
        self._clock[rows] = 0
        self._n_dec[rows] = 0
        self._ctx_base[rows] = 0
        self._end_min[rows] = _NO_LIMIT
        self._fill_hist[rows] = 0
        self._class_hist[rows] = 0
        self._first_key[rows] = np.inf
        self._first_q[rows] = -1
        for arr, value in ((self.status, NOT_DISPATCHED), (self.instance, -1), (self.prompt, 0), (self.output, 0),
                           (self.generated, 0), (self.preemptions, 0), (self.arrival_s, np.nan),
                           (self.dispatch_s, np.nan), (self.first_scheduled_s, np.nan),
                           (self.first_token_s, np.nan), (self.completion_s, np.nan),
                           (self.predicted_class, 0), (self.predicted_output, 0.0), (self.decode_start_s, np.nan),
                           (self.prefix_hit_tokens, 0), (self.prefill_tokens, 0), (self._n_keys, 0),
                           (self._prefix_done, 0)):
            arr[reqs] = value
        if self._caching:
            for row in rows.tolist():
                self._caches.pop(row, None)
            self._cache_rows[rows] = False
            self._lru_len[rows] = 0
            R = self.R
            for lo in (idx * R).tolist():  # each cluster's request slots are one contiguous range
                self._keys[lo:lo + R] = [()] * R
                self._held[lo:lo + R] = [[] for _ in range(R)]

    def set_predictions(self, cluster: int, predicted_class, predicted_output_tokens) -> None:
        """The router's predictions for requests ``0..n-1`` of ``cluster``: a class in
        ``0..prediction_classes-1`` and a point estimate of the output length, before they are
        dispatched. Only ``predicted_decode_sets`` reads them (a simulator made with
        ``prediction_classes``)."""
        if not self._has_predictions:
            raise ValueError("this simulator keeps no predictions: make it with prediction_classes")
        cls = np.asarray(predicted_class)
        out = np.asarray(predicted_output_tokens, dtype=np.float64)
        n = cls.shape[0] if cls.ndim == 1 else -1
        if not (0 <= int(cluster) < self.B) or cls.ndim != 1 or out.shape != cls.shape or n > self.R:
            raise ValueError(f"set_predictions needs a cluster in 0..{self.B - 1} and two equal 1-D arrays of at "
                             f"most {self.R} entries, got cluster {cluster!r}, shapes {cls.shape} and {out.shape}")
        if cls.dtype.kind not in "iu" or n and (cls.min() < 0 or cls.max() >= self.K):
            raise ValueError(f"predicted classes must be integers in 0..{self.K - 1}")
        if not np.isfinite(out).all():
            raise ValueError("predicted output lengths must be finite")
        lo = int(cluster) * self.R
        if (self.status[lo:lo + n] != NOT_DISPATCHED).any():
            raise ValueError("set_predictions must come before the requests are dispatched")
        self.predicted_class[lo:lo + n] = cls
        self.predicted_output[lo:lo + n] = out

    def _grow_waiting(self, needed: int) -> None:
        new_cap = self._wcap
        while new_cap < needed:
            new_cap *= 2
        if new_cap == self._wcap:
            return
        idx = (self.w_head[:, None] + np.arange(self._wcap)) % self._wcap
        grown = np.zeros((self._rows, new_cap), dtype=np.int64)
        grown[:, : self._wcap] = np.take_along_axis(self.waiting, idx, axis=1)
        self.waiting, self._wcap = grown, new_cap
        self.w_head[:] = 0

    def _squeeze(self, rows) -> None:
        """Close the holes of ``rows``: the running requests behind a hole move up, in order."""
        col = np.arange(int(self._tail[rows].max()))
        valid = self.slots[Q, rows, : col.size] >= 0
        dest = valid.cumsum(axis=1) - 1
        r_idx, j_idx = (valid & (dest != col)).nonzero()
        self.slots[:, rows[r_idx], dest[r_idx, j_idx]] = self.slots[:, rows[r_idx], j_idx]
        n = self.n_running[rows]
        r_idx, j_idx = ((col >= n[:, None]) & (col < self._tail[rows, None])).nonzero()
        self.slots[:, rows[r_idx], j_idx] = _EMPTY_SLOT[:, None]
        self._tail[rows] = n

    def _pending_prefill_tokens(self, rows):
        """Prefill tokens not processed yet on ``rows`` (indices or a slice): the waiting requests'
        prefill targets plus, with chunked prefill, the unprocessed part of the running prefills
        (without it a prefill is done in the iteration that admits it)."""
        pending = self.w_pending_tokens[rows]
        if self.chunked:
            # only the rows with a running prefill (more running requests than decoding ones) read
            # their slots (holes, free slots and decodes have TARGET = PREFILLED)
            p_idx = (self.n_running[rows] > self._n_dec[rows]).nonzero()[0]
            if p_idx.size:
                p_rows = rows[p_idx] if isinstance(rows, np.ndarray) else np.arange(self._rows)[rows][p_idx]
                width = int(self._tail[p_rows].max())
                block = self.slots[:, p_rows, :width]
                pending = pending.copy()  # (a slice of rows gives a view)
                pending[p_idx] += (block[TARGET] - block[PREFILLED]).sum(axis=1)
        return pending

    def _leave(self, rows, end, r_idx, j_idx, slot_rows, q, context0, decoding) -> None:
        """Requests ``(r_idx, j_idx)`` of ``rows`` (in rows ``slot_rows``, request indices ``q``)
        leave the running lists; their slots become holes.

        ``end`` is a copy of the END field of ``slots[:, rows]`` (overwritten here), ``context0``
        the leavers' PROMPT + GEN0 and ``decoding`` (int64) 1 where they decode, 0 where not. The
        decoding leavers leave the decode sets, whose first completion (and first predicted one,
        where it left) is found again among the requests that stay.
        """
        self._count_in_decode_sets(slot_rows, context0, -decoding, q)
        end[r_idx, j_idx] = _NO_LIMIT
        self._end_min[rows] = end.min(axis=1)
        np.subtract.at(self.n_running, slot_rows, 1)
        self.slots[:, slot_rows, j_idx] = _EMPTY_SLOT[:, None]
        if self._has_predictions:
            lost = slot_rows[q == self._first_q[slot_rows]]
            if lost.size:
                self._find_first_predicted(np.unique(lost))

    def _find_first_predicted(self, rows) -> None:
        """Search the decode sets of ``rows`` for the member predicted to finish first."""
        width = max(int(self._tail[rows].max()), 1)
        q = self.slots[Q, rows, :width]
        gen0 = self.slots[GEN0, rows, :width]
        predicted = self.predicted_output[q]
        key = np.where(self.slots[END, rows, :width] < _NO_LIMIT, predicted - gen0, np.inf)
        pick = np.arange(rows.size), key.argmin(axis=1)
        self._first_key[rows] = key[pick]
        self._first_q[rows] = np.where(key[pick] < np.inf, q[pick], -1)
        self._first_gen0[rows] = gen0[pick]
        self._first_pred[rows] = predicted[pick]

    def _count_in_decode_sets(self, slot_rows, context0, count, q, gen0=None) -> None:
        """Add ``count`` (int64, one per entry: 1 joins, -1 leaves, 0 neither) requests ``q`` whose
        PROMPT + GEN0 is ``context0`` (GEN0 is ``gen0``, given with joiners) to the decode-set
        sizes, context sums, KV fill histograms and predicted-class counts of their rows
        (``slot_rows`` may repeat); a joiner predicted to finish before its row's first becomes it.
        The first completions, and the first predicted ones where they leave, are the callers'
        business. (np.add.at is several times slower with a scalar or bool ``count``.)"""
        np.add.at(self._n_dec, slot_rows, count)
        np.add.at(self._ctx_base, slot_rows, count * context0)
        np.add.at(self._fill_hist, (slot_rows, context0 % KV_BLOCK_TOKENS), count)
        if self._has_predictions:
            np.add.at(self._class_hist, (slot_rows, self.predicted_class[q]), count)
            if gen0 is not None:
                join = count > 0
                rows, q, gen0 = slot_rows[join], q[join], gen0[join]
                predicted = self.predicted_output[q]
                key = predicted - gen0
                np.minimum.at(self._first_key, rows, key)
                first = key == self._first_key[rows]  # (of equal keys, any is first)
                self._first_q[rows[first]] = q[first]
                self._first_gen0[rows[first]] = gen0[first]
                self._first_pred[rows[first]] = predicted[first]
