"""The fast cluster simulator: B independent clusters x N instances advanced together in NumPy.

Semantics are those of ``docs/simulator.md`` (vLLM v0 by default, v0's chunked prefill as an option);
``reference_simulator.py`` implements the same thing slowly, and a differential test holds the two
together. The state is a struct of arrays over *instance rows* (``row = cluster * N + instance``):

* running requests sit in ``slots[:, row, :tail[row]]`` in admission order, one field per leading
  index (see ``Q, PROMPT, ...`` below); a request that leaves the running list leaves a *hole*
  (``Q == -1``) that is squeezed out only when the row's tail is full or when the running lists
  are observed, so that a completion does not move its row's other requests;
* waiting requests sit in a ring buffer ``waiting[row]`` (FIFO with push-front for preemptions);
* per-request facts and timestamps live in flat arrays indexed by ``cluster * R + request_id``.

``advance_to`` repeats one vectorized *step* over every instance that has work and has not reached
the target time. A step is one iteration, or, for an instance that would only decode and whose
batch cannot change before the next event, ``k`` decode iterations at once in closed form.

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

What a router sees (every query but ``records``) is the state as of the last iteration that has
*finished* by ``now_s``, as a real router reads it from vLLM's metrics. A step applies an
iteration's whole effect when it starts; for the iteration still in flight at the target time (the
last of a step whose end passes the target) the step keeps a *visible* copy of the row's counters
taken after its scheduling (admissions and preemptions, KV blocks taken) and before its results
(tokens, finished prefills, completions, freed blocks). The queries read that copy for the rows
whose iteration is in flight (``busy_until_s > now_s``) and the live counters elsewhere; requests
are corrected the same way (``instance_requests``). ``records`` is the truth, for metrics.
"""

from __future__ import annotations

import numpy as np

from .cluster import (
    COMPLETED,
    NOT_DISPATCHED,
    RUNNING,
    WAITING,
    ClusterConfig,
    InstanceState,
    RequestRecords,
    validate_dispatch,
    validate_target_times,
)
from .profiles import KV_BLOCK_TOKENS, iteration_time_ms

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


def _run_ms(k, t0_ms, half_c5n):
    """Duration of k decode iterations whose first takes t0_ms, each one's decode context n tokens
    more than the last: k * t0 + c5 * n * k * (k - 1) / 2, with half_c5n = c5 * n / 2. One
    iteration takes exactly t0_ms, as the reference computes it."""
    return k * (t0_ms + half_c5n * (k - _ONE_F))


class ClusterSimulator:
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
        self.chunked = bool(config.scheduler.chunked_prefill)
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
        self._alloc_state()

    # ------------------------------------------------------------------------------------ state
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
                           (self.predicted_class, 0), (self.predicted_output, 0.0), (self.decode_start_s, np.nan)):
            arr[reqs] = value

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

    # --------------------------------------------------------------------------------- dispatch
    def dispatch(self, cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s) -> None:
        """Send requests to instances at their cluster's current time (tail of the waiting queue)."""
        args = (cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s)
        checked = self._plainly_valid_single(args)
        if checked is None:  # anything else is for validate_dispatch to check (and to word any error)
            checked = validate_dispatch(self.config, self.B, self.R, self.now_s,
                                        self.status.reshape(self.B, self.R), *args)
        cluster, request_id, instance, prompt, output, arrival = checked
        if cluster.size == 0:
            return
        q = cluster * self.R + request_id
        row = cluster * self.N + instance
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
        return (*np.array([[c], [rid], [inst], [prompt], [output]]), np.array([float(arrival)]))

    # ---------------------------------------------------------------------------------- advance
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

    # With few clusters a step is many NumPy calls on a few rows each, and their count is the cost:
    # the code below checks np.count_nonzero(mask) rather than mask.any() (a fifth of the cost),
    # applies masks by multiplication and restricts rarer work to the rows that need it.
    def _step(self, rows: np.ndarray, target: np.ndarray) -> None:
        """One iteration (or a run of k decode iterations) on each of ``rows``."""
        k_rows = rows.size
        n = self.n_running[rows]
        free = self.free_blocks[rows]
        clock = self._clock[rows]
        n_dec = self._n_dec[rows]
        hist = self._fill_hist[rows]
        # slack15[:, f]: 15 - decode iterations before a request with KV fill f (histogram bin)
        # needs a new block (15: in the next iteration)
        slack15 = _SLACK15[clock % _BLOCK]

        # ---- admission candidates (rows[a_idx] may admit some of their first waiting requests)
        cand = None
        wc = self.w_count[rows]
        if np.count_nonzero(wc):
            limit = np.minimum(wc, self._max_seqs[rows] - n)
            a_idx = limit.nonzero()[0]
            if a_idx.size:
                cand = self._admission_candidates(rows[a_idx], limit[a_idx])
        adm = stalled = None  # stalled, prefill first: rows whose decodes wait for a prefill-only batch
        if cand is not None and not self.chunked:
            cand["chunk"] = cand["x"]
            adm = self._admitted(a_idx, cand, self._admissible(cand, free[a_idx], chunked=False))
            if adm is not None:
                stalled = np.zeros(k_rows, dtype=bool)
                stalled[adm["step"]] = True
                n_dec = n_dec * ~stalled

        # ---- KV blocks for the decode set, preemption (recompute) where they run short; rows
        # with fewer free blocks than decoding requests are the only ones that may run short
        need_now = None
        preempted = None
        if np.count_nonzero(n_dec > free):
            # (times n_dec > 0: a stalled row's histogram still counts the requests that wait)
            need_now = (hist * (slack15 == KV_BLOCK_TOKENS - 1)).sum(axis=1) * (n_dec > 0)
            if np.count_nonzero(need_now > free):
                preempted = need_now > free
                v_idx = preempted.nonzero()[0]
                v_rows = rows[v_idx]
                free[v_idx] += self._preempt(v_rows, clock[v_idx], free[v_idx])
                n[v_idx] = self.n_running[v_rows]
                n_dec[v_idx] = self._n_dec[v_rows]
                hist[v_idx] = self._fill_hist[v_rows]
                need_now[v_idx] = (hist[v_idx] * (slack15[v_idx] == KV_BLOCK_TOKENS - 1)).sum(axis=1)
        ctx_base = self._ctx_base[rows]
        if stalled is not None:
            ctx_base *= ~stalled

        # ---- prefill chunks (chunked prefill) and admission
        chunk_total = chunk_sq = chunk_prior = 0
        prefills = None
        if self.chunked:
            budget_left = self._budget[rows] - n_dec
            p_idx = (n > n_dec).nonzero()[0]  # rows with a running prefill
            if p_idx.size:
                prefills = self._prefill_chunks(rows[p_idx], budget_left[p_idx])
                chunk, prior = prefills[2], prefills[1][PREFILLED]
                chunk_total = np.zeros(k_rows, dtype=np.int64)
                chunk_sq, chunk_prior = chunk_total.copy(), chunk_total.copy()
                chunk_total[p_idx] = chunk.sum(axis=1)
                chunk_sq[p_idx] = (chunk * chunk).sum(axis=1)
                chunk_prior[p_idx] = (chunk * prior).sum(axis=1)
                budget_left = budget_left - chunk_total
            if cand is not None:
                if preempted is not None:  # no admission in an iteration that preempts
                    budget_left = budget_left * ~preempted
                budget_left = budget_left[a_idx]
                # admission sees the blocks left once the decode set has taken those it needs now
                taken = (hist[a_idx] * (slack15[a_idx] == KV_BLOCK_TOKENS - 1)).sum(axis=1)
                cand["chunk"] = np.minimum(cand["x"], budget_left[:, None] - (cand["cum_x"] - cand["x"]))
                adm = self._admitted(a_idx, cand, self._admissible(cand, free[a_idx] - taken, chunked=True,
                                                                   budget=budget_left))
        if adm is not None:  # the admitted requests' chunks join the batch; they take their blocks
            if isinstance(chunk_total, int):
                chunk_total, chunk_sq = np.zeros(k_rows, dtype=np.int64), np.zeros(k_rows, dtype=np.int64)
            np.add.at(chunk_total, adm["step"], adm["chunk"])
            np.add.at(chunk_sq, adm["step"], adm["chunk"] * adm["chunk"])
            np.subtract.at(free, adm["step"], adm["need"])

        # ---- duration: one iteration, or k decode iterations for pure decode batches
        ntok = n_dec + chunk_total
        if np.count_nonzero(ntok) < k_rows:  # cannot happen with validated profiles; guards an endless loop
            r = int(rows[(ntok == 0).nonzero()[0][0]])
            raise RuntimeError(f"instance row {r} has work but an empty iteration (simulator invariant broken)")
        c = self._same_coeffs or self._coeffs[rows].T
        t0_ms = iteration_time_ms(c, ntok, chunk_sq, chunk_prior, ctx_base + n_dec * clock)
        start_s = self.busy_until_s[rows]
        end_min = self._end_min[rows]
        runs = ntok == n_dec
        if preempted is not None:
            runs &= ~preempted
        if np.count_nonzero(runs):
            half_c5n = c[6] * (_HALF_F * n_dec)
            k_iter = self._decode_run_length(target, start_s, t0_ms, half_c5n, n_dec, clock, end_min, hist, free,
                                             need_now)
            k_iter = np.where(runs, k_iter, _ONE)
            dt_ms = _run_ms(k_iter, t0_ms, half_c5n)
        else:
            k_iter = np.ones(k_rows, dtype=np.int64)
            dt_ms = t0_ms
        end_s = start_s + dt_ms / _MS_PER_S

        # ---- effects at the end of the iteration(s)
        # The decode set runs k_dec iterations: it takes the KV blocks for the contexts it reaches
        # (those needed now included) and gains k_dec tokens, its clock moves.
        k_dec = k_iter * (n_dec > 0)
        crossing = end_s > target
        n_flight = np.count_nonzero(crossing)
        if n_flight:  # the router's view of these rows until their iteration ends
            f_idx = slice(None) if n_flight == k_rows else crossing.nonzero()[0]
            f_rows = rows[f_idx]
            # the clock of the decode iterations finished: those of a decode run but the last
            self._keep_visible(f_rows, f_idx, (clock + k_dec - (k_dec > 0))[f_idx], adm, k_rows)
        self.free_blocks[rows] = free - (hist * ((k_dec[:, None] + slack15) // _BLOCK)).sum(axis=1)
        if n_flight:  # blocks are taken when the iteration is scheduled
            self._vis_int[_FREE, f_rows] = self.free_blocks[f_rows]
        clock_before, clock = clock, clock + k_dec
        self._clock[rows] = clock
        self.busy_until_s[rows] = end_s
        self._iterations_flat[rows] += k_iter
        if prefills is not None:
            self._advance_prefills(*prefills, clock_before[p_idx], clock[p_idx], end_s[p_idx])
        if adm is not None:
            self._admit(adm, clock, start_s, end_s)
        if prefills is not None or adm is not None:  # the requests that joined the decode sets count
            end_min = self._end_min[rows]
        # Completions, including requests whose (last) prefill chunk was their last token
        self.last_step_completions[rows] = 0
        done_row = clock >= end_min
        if np.count_nonzero(done_row):
            d_idx = done_row.nonzero()[0]
            self._complete(rows[d_idx], clock[d_idx], end_s[d_idx])

    def _keep_visible(self, rows, step_idx, clock, adm, k_rows) -> None:
        """Keep what a router sees of ``rows`` (positions ``step_idx`` in the step) while their
        iteration is in flight: the counters as scheduled (preemptions are applied already,
        admissions are not yet, results are not), with the decode clock ``clock`` (the iterations
        of a decode run but the last) and the prefill tokens still pending."""
        self._vis_int[:, rows] = self._int_counters[:, rows]
        self._vis_int[_CLOCK, rows] = clock
        self._vis_time[:, rows] = self._time_counters[:, rows]
        # (the running prefills' remaining tokens are those before this iteration's chunks)
        self._vis_pending[rows] = self._pending_prefill_tokens(rows)
        if adm is not None:  # admitted requests are running (their prefill still pending)
            k_adm = np.bincount(adm["step"], minlength=k_rows)[step_idx]
            self._vis_int[_RUNNING, rows] += k_adm
            self._vis_int[_WAITING, rows] -= k_adm

    def _pending_prefill_tokens(self, rows):
        """Prefill tokens not processed yet on ``rows`` (indices or a slice): the waiting requests'
        prefill targets plus, with chunked prefill, the unprocessed part of the running prefills
        (without it a prefill is done in the iteration that admits it)."""
        pending = self.w_pending_tokens[rows]
        if self.chunked:
            width = int(self._tail[rows].max())  # (holes and free slots have TARGET = PREFILLED = 0)
            pending = pending + (self.slots[TARGET, rows, :width] - self.slots[PREFILLED, rows, :width]).sum(axis=1)
        return pending

    def _admission_candidates(self, rows, limit) -> dict:
        """The first waiting requests of each of ``rows``, of which the first ``limit`` may be admitted."""
        K = int(limit.max())
        pos = (self.w_head[rows, None] + np.arange(K)) % self._wcap
        q = self.waiting[rows[:, None], pos]  # positions past a row's count hold stale entries
        x = self.prompt[q] + self.generated[q]  # prefill targets
        need = _ceil_blocks(x)
        return {"rows": rows, "limit": limit, "q": q, "x": x, "cum_x": x.cumsum(axis=1), "need": need,
                "cum_need": need.cumsum(axis=1)}

    def _admissible(self, cand, free, chunked, budget=None) -> np.ndarray:
        """Which candidates each row admits (FCFS: a prefix of each row, as every rule is monotone)."""
        rows = cand["rows"]
        ok = ((np.arange(cand["x"].shape[1]) < cand["limit"][:, None])
              & (cand["cum_need"] <= (free - self._watermark[rows])[:, None]))
        if chunked:  # admitted while any budget is left
            return ok & (cand["cum_x"] - cand["x"] < budget[:, None])
        return ok & (cand["cum_x"] <= self._budget[rows, None])  # every admitted prompt must fit whole

    @staticmethod
    def _admitted(a_idx, cand, adm):
        """The admitted candidates (``adm``, a mask over ``cand``, of the step's rows ``a_idx``) as
        flat arrays; None if there are none."""
        r_idx, j_idx = adm.nonzero()
        if r_idx.size == 0:
            return None
        return {"rows": cand["rows"], "count": adm.sum(axis=1), "r": r_idx, "j": j_idx, "step": a_idx[r_idx],
                "q": cand["q"][r_idx, j_idx], "x": cand["x"][r_idx, j_idx], "chunk": cand["chunk"][r_idx, j_idx],
                "need": cand["need"][r_idx, j_idx]}

    def _admit(self, adm, clock, start_s, end_s) -> None:
        """Move the admitted requests from the waiting heads to the running tails (their blocks are
        taken by the caller). A request whose prefill is complete joins the decode set, even if
        that prefill produced its last token: it completes with the others of the iteration.
        ``clock``, ``start_s`` and ``end_s`` are by step row (``adm["step"]``)."""
        rows, k_adm, r_idx, step_idx = adm["rows"], adm["count"], adm["r"], adm["step"]
        q, x, chunk = adm["q"], adm["x"], adm["chunk"]
        slot_rows = rows[r_idx]
        gen_before = self.generated[q]
        finished = (chunk == x).astype(np.int64)  # (an int64 count for _count_in_decode_sets)
        gen = gen_before + finished
        self.status[q] = RUNNING
        # fmin keeps the first time: a request admitted again after a preemption has one already,
        # and NaN (not yet) loses against any time
        self.first_scheduled_s[q] = np.fmin(self.first_scheduled_s[q], start_s[step_idx])
        self.first_token_s[q] = np.fmin(self.first_token_s[q], np.where(finished, end_s[step_idx], np.nan))
        self.decode_start_s[q] = np.where(finished, end_s[step_idx], self.decode_start_s[q])
        self.w_head[rows] += k_adm
        self.w_count[rows] -= k_adm
        np.subtract.at(self.w_pending_tokens, slot_rows, x)
        tail = self._tail[rows]
        if np.count_nonzero(tail + k_adm > self.S):
            self._squeeze(rows[tail + k_adm > self.S])
            tail = self._tail[rows]
        dest = tail[r_idx] + adm["j"]  # admitted candidates are a prefix: j is the rank in the row
        prompt = x - gen_before
        gen0 = gen - clock[step_idx]
        end = np.where(finished, self.output[q] - gen0, _NO_LIMIT)
        self.slots[:, slot_rows, dest] = np.array([q, prompt, gen0, end, chunk, x])
        self._tail[rows] = tail + k_adm
        self.n_running[rows] += k_adm
        # a whole prefill: the request decodes from the next iteration on
        self._count_in_decode_sets(slot_rows, prompt + gen0, finished, q, gen0)
        np.minimum.at(self._end_min, slot_rows, end)

    def _complete(self, rows, clock, end_s) -> None:
        """Complete the decoding requests of ``rows`` whose END is the clock (the iteration ending at
        ``end_s`` produced their last token)."""
        end = self.slots[END, rows]  # whole rows: finding their tails would cost as much
        r_idx, j_idx = (end == clock[:, None]).nonzero()
        # each one's place among the row's running requests in admission order (holes skipped)
        rank = ((self.slots[Q, rows] >= 0).cumsum(axis=1) - 1)[r_idx, j_idx]
        slot_rows = rows[r_idx]
        q, prompt, gen0 = self.slots[:END, slot_rows, j_idx]
        context0 = prompt + gen0
        output = gen0 + clock[r_idx]
        self.completion_s[q] = end_s[r_idx]
        self.status[q] = COMPLETED
        self.generated[q] = output
        # a decoding request holds the blocks of its context minus the token it has not fed yet
        np.add.at(self.free_blocks, slot_rows, _ceil_blocks(prompt + output - 1))
        n_done = np.bincount(r_idx, minlength=rows.size)
        self.last_step_completions[rows] = n_done
        k = np.arange(r_idx.size) - np.searchsorted(r_idx, r_idx)  # (r_idx is sorted)
        self._done_q[slot_rows, k] = q
        self._done_rank[slot_rows, k] = rank
        self.completed_count[rows] += n_done
        self.completion_time_sum_s[rows] += n_done * end_s
        self._leave(rows, end, r_idx, j_idx, slot_rows, q, context0, decoding=np.ones_like(r_idx))

    def _preempt(self, rows, clock, free) -> np.ndarray:
        """Block allocation walking each running list, preempting from the tail (recompute).

        The kept requests are the longest prefix whose block needs fit in the free blocks plus
        those of the requests after it; the victims (the rest) go to the waiting head in admission
        order. Returns the blocks freed; the needs themselves are taken by the caller with the
        decode set's.
        """
        block = self.slots[:, rows, : int(self._tail[rows].max())]
        valid = block[Q] >= 0
        decoding = block[END] < _NO_LIMIT
        kv_tokens = block[PROMPT] + block[GEN0] + clock[:, None] - 1
        need = decoding & (kv_tokens % KV_BLOCK_TOKENS == 0)
        held = np.where(decoding, _ceil_blocks(kv_tokens), _ceil_blocks(block[TARGET])) * valid
        suffix_after = held.sum(axis=1, keepdims=True) - held.cumsum(axis=1)
        victims = valid & (need.cumsum(axis=1) - suffix_after > free[:, None])
        n_victims = victims.sum(axis=1)
        r_idx, j_idx = victims.nonzero()
        q = block[Q, r_idx, j_idx]
        prompt, gen0 = block[PROMPT, r_idx, j_idx], block[GEN0, r_idx, j_idx]
        gen = gen0 + clock[r_idx]
        self.generated[q] = gen
        self.preemptions[q] += 1
        self.status[q] = WAITING
        need_cap = int((self.w_count[rows] + n_victims).max())
        if need_cap > self._wcap:
            self._grow_waiting(need_cap)
        new_head = self.w_head[rows] - n_victims
        rank = (victims.cumsum(axis=1) - 1)[r_idx, j_idx]
        self.waiting[rows[r_idx], (new_head[r_idx] + rank) % self._wcap] = q
        self.w_head[rows] = new_head
        self.w_count[rows] += n_victims
        np.add.at(self.w_pending_tokens, rows[r_idx], prompt + gen)
        self._leave(rows, block[END], r_idx, j_idx, rows[r_idx], q, prompt + gen0,
                    decoding=decoding[r_idx, j_idx].astype(np.int64))
        return np.bincount(r_idx, weights=held[r_idx, j_idx], minlength=rows.size).astype(np.int64)

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

    def _prefill_chunks(self, rows, budget_left):
        """Chunked prefill: each running prefill, in running order, gets what is left of the budget."""
        block = self.slots[:, rows, : int(self._tail[rows].max())]
        rem = np.where(block[Q] >= 0, block[TARGET] - block[PREFILLED], 0)
        chunk = np.clip(budget_left[:, None] - (rem.cumsum(axis=1) - rem), 0, rem)
        return rows, block, chunk, rem > 0

    def _advance_prefills(self, rows, block, chunk, prefilling, clock_before, clock, end_s) -> None:
        """End of an iteration for the running prefills of ``rows``: a prefill that completes yields
        a token and joins the decode set; one that does not keeps its generated count while the
        clock moves."""
        gen_before = block[GEN0] + clock_before[:, None]
        block[PREFILLED] += chunk
        finished = prefilling & (block[PREFILLED] == block[TARGET])
        block[GEN0] = np.where(prefilling, gen_before + finished - clock[:, None], block[GEN0])
        r_idx, j_idx = finished.nonzero()
        q = block[Q, r_idx, j_idx]
        block[END, r_idx, j_idx] = self.output[q] - block[GEN0, r_idx, j_idx]
        first_tok = gen_before[r_idx, j_idx] == 0
        self.first_token_s[q[first_tok]] = end_s[r_idx[first_tok]]
        self.decode_start_s[q] = end_s[r_idx]
        self.slots[:, rows, : block.shape[2]] = block
        joined = block[:, r_idx, j_idx]
        self._count_in_decode_sets(rows[r_idx], joined[PROMPT] + joined[GEN0], np.ones_like(r_idx), q,
                                   joined[GEN0])
        np.minimum.at(self._end_min, rows[r_idx], joined[END])

    def _decode_run_length(self, target, busy, t0_ms, half_c5n, n, clock, end_min, hist, free, need_now):
        """How many decode iterations each row can run at once (>= 1); see docs/simulator.md.

        ``need_now`` are the blocks the decode set needs for its next iteration (None: not
        computed, as every row has a free block per decoding request).
        """
        # Iterations that start before the target. Iteration x (from 0) starts at
        # busy + _run_ms(x) / 1000, so their number is the root of a quadratic rounded up: solve it
        # (in the stable form 2c / (b + sqrt(b^2 + 4ac)); a = c5 n / 2, b = t0 - a > 0), round it
        # to the nearest iteration x and settle on which side of the target x starts with its start
        # time, computed as the run's end will be.
        b = t0_ms - half_c5n
        room_ms = np.minimum((target - busy) * _MS_PER_S, _MAX_ROOM_MS)
        root = 2.0 * room_ms / (b + np.sqrt(b * b + 4.0 * half_c5n * room_ms))
        x = np.rint(np.minimum(root, _MAX_RUN))
        in_time = x.astype(np.int64) + (busy + _run_ms(x, t0_ms, half_c5n) / _MS_PER_S < target)
        k = np.minimum(end_min - clock, in_time)  # the target and the first completion
        # KV blocks: with s spare blocks (free once those needed now are taken), every request can
        # take s // n more, each good for 16 iterations, after its first need (16 iterations away
        # for those served now). First with s = free - n, a lower bound, then exactly where it binds.
        n = np.maximum(n, _ONE)
        if np.count_nonzero(_BLOCK * ((free - n) // n) < k):
            if need_now is None:
                need_now = (hist * (_SLACK15[clock % KV_BLOCK_TOKENS] == KV_BLOCK_TOKENS - 1)).sum(axis=1)
            first_need = np.where(hist > 0, _FIRST_NEED[clock % KV_BLOCK_TOKENS], KV_BLOCK_TOKENS).min(axis=1)
            k = np.minimum(k, first_need + KV_BLOCK_TOKENS * ((free - need_now) // n))
        return np.maximum(k, _ONE)

    # -------------------------------------------------------------------------------- observing
    # Every query but ``records`` answers what a router sees (the module docstring): rows whose
    # iteration is in flight read the copies _step kept for them.
    def _in_flight(self) -> np.ndarray:
        """Rows whose last iteration has not finished by their cluster's now_s."""
        return self.busy_until_s > self.now_s[self._row_cluster]

    def _visible_counters(self):
        """The two counter tables (integers, floats) as a router sees them, and the in-flight rows.
        Without rows in flight the tables are the live ones (not copies)."""
        flight = self._in_flight()
        if not np.count_nonzero(flight):
            return self._int_counters, self._time_counters, flight
        return (np.where(flight, self._vis_int, self._int_counters),
                np.where(flight, self._vis_time, self._time_counters), flight)

    def instance_requests(self) -> dict[str, np.ndarray]:
        """Which requests each instance holds as a router sees them, for routers and observation
        encoders.

        Rows are instances (``row = cluster * N + instance``). ``running_request`` (rows, S) and
        ``waiting_request`` (rows, W) hold request indices ``cluster * R + request_id`` (running in
        admission order, those that complete in the iteration in flight in their places: an order
        that depends only on the past, so that a sum over the list rounds the same whatever comes
        next; waiting in queue order) where ``running_valid`` / ``waiting_valid``; ``running_generated`` are their output
        tokens so far and ``running_prefill_done`` whether their (current) prefill is complete, as
        of the last iteration finished. Arrays are copies.
        """
        holey = np.flatnonzero(self._tail > self.n_running)
        if holey.size:
            self._squeeze(holey)
        flight = self._in_flight()
        n_done = self.last_step_completions * flight
        n_visible = self.n_running + n_done
        width = max(int(n_visible.max()), 1)
        slots = self.slots[:, :, :width]  # (past a row's running requests: empty slots, Q = -1)
        q = slots[Q].copy()
        generated = slots[GEN0] + self._clock[:, None]
        prefill_done = slots[PREFILLED] == slots[TARGET]
        n_flight = np.count_nonzero(flight)
        if n_flight:
            # (with every row in flight, as in a vector env that ticks often, slices are cheaper)
            f = slice(None) if n_flight == flight.size else flight.nonzero()[0]
            now = self.now_s[self._row_cluster[f], None]
            qf = q[f]
            # a request whose prefill finishes in flight is still prefilling; the decode set gains
            # its token of the iteration in flight only at its end
            joined = (qf >= 0) & (self.decode_start_s[qf] > now)
            stepped = (self._clock[f] > self._vis_int[_CLOCK, f])[:, None]
            generated[f] -= joined | (prefill_done[f] & stepped)
            prefill_done[f] &= ~joined
            d = (n_done > 0).nonzero()[0]  # (n_done is 0 where no iteration is in flight)
            if d.size:  # the requests completing in flight still run, in their places in admission order
                r_i, j_i = (np.arange(self.S) < n_done[d, None]).nonzero()
                done, rank = self._done_q[d[r_i], j_i], self._done_rank[d[r_i], j_i]
                cols = np.arange(width)
                at_done = np.zeros((d.size, width), dtype=bool)
                at_done[r_i, rank] = True
                live_to = ~at_done & (cols < n_visible[d, None])
                live_from = cols < self.n_running[d, None]
                finished = ~(self.decode_start_s[done] > self.now_s[self._row_cluster[d[r_i]]])
                for table, values in ((q, done), (generated, self.output[done] - 1), (prefill_done, finished)):
                    merged = table[d]  # (a copy; past the visible requests: empty slots)
                    merged[live_to] = merged[live_from]
                    merged[r_i, rank] = values
                    table[d] = merged
        w = max(int(self.w_count.max()), 1)
        pos = (self.w_head[:, None] + np.arange(w)) % self._wcap
        return {
            "running_request": q,
            "running_valid": np.arange(width) < n_visible[:, None],
            "running_generated": generated,
            "running_prefill_done": prefill_done,
            "waiting_request": np.take_along_axis(self.waiting, pos, axis=1),
            "waiting_valid": np.arange(w) < self.w_count[:, None],
        }

    def predicted_decode_sets(self) -> tuple[np.ndarray, np.ndarray]:
        """The decode sets (running requests whose prefill is complete) as the router's predictions
        (``set_predictions``) see them: per instance, the members per predicted class (B, N, K), and
        the fewest predicted remaining tokens of a member, predicted output - generated (B, N;
        inf for an empty set). Arrays are copies."""
        if not self._has_predictions:
            raise ValueError("this simulator keeps no predictions: make it with prediction_classes")
        ints, times, _ = self._visible_counters()
        first_q = ints[_FIRST_Q]
        remaining = times[_FIRST_PRED] - (ints[_FIRST_GEN0] + ints[_CLOCK])
        shape = (self.B, self.N)
        return (ints[len(_INT_COUNTERS):].T.reshape(*shape, self.K).copy(),
                np.where(first_q >= 0, remaining, np.inf).reshape(shape))

    def cluster_counters(self, cluster: int) -> dict:
        """One cluster's per-instance counters as lists of Python numbers, for a router of a single
        cluster (for which NumPy's per-call cost exceeds the work): ``num_running``, ``num_waiting``,
        ``kv_blocks_free`` (as ``instance_state``), ``num_decoding``, ``decode_context_tokens`` (as
        ``decode_totals``), with predictions ``predicted_class_counts`` (per instance, K counts)
        and ``first_predicted_remaining`` (as ``predicted_decode_sets``), and the cluster's
        ``completed`` count and ``completion_time_sum_s`` (as ``completions``)."""
        lo = cluster * self.N
        hi = lo + self.N
        now = self.now_s.item(cluster)
        ints, times = self._int_counters[:, lo:hi], self._time_counters[:, lo:hi]
        flight = times[0] > now
        if np.count_nonzero(flight):
            ints, times = np.where(flight, self._vis_int[:, lo:hi], ints), np.where(flight, self._vis_time[:, lo:hi], times)
        ints = ints.tolist()
        running, waiting, free, n_dec, ctx_base, clock, first, first_gen0, done, _ = ints[:len(_INT_COUNTERS)]
        _, time_sums, first_pred = times.tolist()
        out = {"num_running": running, "num_waiting": waiting, "kv_blocks_free": free, "num_decoding": n_dec,
               "decode_context_tokens": [b + n * c for b, n, c in zip(ctx_base, n_dec, clock)]}
        if self._has_predictions:
            out["predicted_class_counts"] = list(zip(*ints[len(_INT_COUNTERS):]))
            out["first_predicted_remaining"] = [p - (g + c) if q >= 0 else np.inf
                                                for p, q, g, c in zip(first_pred, first, first_gen0, clock)]
        if self.N >= 8:  # NumPy sums 8 or more numbers pairwise: let it, for the same rounding
            count, total = self.completions()
            out["completed"], out["completion_time_sum_s"] = count.item(cluster), total.item(cluster)
        else:  # (fewer are summed in order, as here)
            out["completed"], out["completion_time_sum_s"] = sum(done), sum(time_sums)
        return out

    def decode_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Per instance, as (B, N) arrays: how many running requests are decoding (prefill done) and
        the sum of their decode contexts (prompt + generated tokens), from the running totals."""
        ints, _, _ = self._visible_counters()
        shape = (self.B, self.N)
        return ints[_N_DEC].reshape(shape).copy(), (ints[_CTX_BASE] + ints[_N_DEC] * ints[_CLOCK]).reshape(shape)

    def completions(self) -> tuple[np.ndarray, np.ndarray]:
        """Per cluster: how many requests have completed by ``now_s`` (in iterations finished by
        then) and the sum of their completion times."""
        ints, times, _ = self._visible_counters()
        count = ints[_COMPLETED].reshape(self.B, self.N).sum(axis=1)
        return count, times[_COMPLETION_TIME_SUM].reshape(self.B, self.N).sum(axis=1)

    def records(self, cluster: int | None = None) -> RequestRecords:
        """Per-request records as (B, R) arrays, or one cluster's as (R,) arrays (copies)."""
        if cluster is None:
            lo, hi, shape, rows = 0, self.B * self.R, (self.B, self.R), slice(None)
        else:
            if isinstance(cluster, bool) or not isinstance(cluster, (int, np.integer)) or not 0 <= cluster < self.B:
                raise ValueError(f"cluster must be an integer in 0..{self.B - 1}, got {cluster!r}")
            b = int(cluster)
            lo, hi, shape, rows = b * self.R, (b + 1) * self.R, (self.R,), slice(b * self.N, (b + 1) * self.N)
        generated = self.generated[lo:hi].copy()
        q = self.slots[Q, rows]  # running requests hold their count as GEN0 + clock
        running = q >= 0
        generated[q[running] - lo] = (self.slots[GEN0, rows] + self._clock[rows, None])[running]

        def part(values):
            return values[lo:hi].reshape(shape).copy()

        return RequestRecords(
            status=part(self.status), instance=part(self.instance), prompt_tokens=part(self.prompt),
            output_tokens=part(self.output), generated_tokens=generated.reshape(shape),
            preemptions=part(self.preemptions), arrival_s=part(self.arrival_s), dispatch_s=part(self.dispatch_s),
            first_scheduled_s=part(self.first_scheduled_s), first_token_s=part(self.first_token_s),
            completion_s=part(self.completion_s),
        )

    def instance_state(self) -> InstanceState:
        """What a router can observe about each instance, as (B, N) arrays. ``busy_until_s`` is the
        end of the iteration in flight (or of the last one): the profile's time for the batch
        scheduled, which a router with the profile can compute from what it sees."""
        ints, _, flight = self._visible_counters()
        pending = np.where(flight, self._vis_pending, self._pending_prefill_tokens(slice(None)))
        shape = (self.B, self.N)
        return InstanceState(
            num_running=ints[_RUNNING].reshape(shape).copy(),
            num_waiting=ints[_WAITING].reshape(shape).copy(),
            kv_blocks_used=(self._capacity - ints[_FREE]).reshape(shape),
            kv_blocks_free=ints[_FREE].reshape(shape).copy(),
            pending_prefill_tokens=pending.reshape(shape),
            busy_until_s=self.busy_until_s.reshape(shape).copy(),
        )
