"""The fast cluster simulator: B independent clusters x N instances advanced together in NumPy.

Semantics are those of ``docs/simulator.md`` (vLLM v0 by default, chunked prefill as an option);
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
_FILL = np.arange(KV_BLOCK_TOKENS)  # histogram bins: tokens in the KV cache modulo the block size


def _ceil_blocks(tokens):
    return -(-tokens // KV_BLOCK_TOKENS)


class ClusterSimulator:
    """B clusters of N instances; see the module docstring and ``docs/simulator.md``."""

    def __init__(self, config: ClusterConfig, num_clusters: int = 1, max_requests: int = 1024):
        if not isinstance(config, ClusterConfig):
            raise ValueError(f"config must be a ClusterConfig, got {type(config).__name__}")
        for name, value in (("num_clusters", num_clusters), ("max_requests", max_requests)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.config = config
        self.chunked = bool(config.scheduler.chunked_prefill)
        self.B, self.N, self.R = int(num_clusters), config.num_instances, int(max_requests)
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
        self._c5 = self._coeffs[:, 6].copy()
        self.S = int(self._max_seqs.max())

        self._rows = rows
        self.now_s = np.zeros(self.B)
        self.iterations = np.zeros((self.B, self.N), dtype=np.int64)
        self._wcap = 16
        self._alloc_state()

    # ------------------------------------------------------------------------------------ state
    def _alloc_state(self) -> None:
        rows, BR = self._rows, self.B * self.R
        self.busy_until_s = np.zeros(rows)
        self.n_running = np.zeros(rows, dtype=np.int64)
        self.completed_count = np.zeros(rows, dtype=np.int64)
        self.completion_time_sum_s = np.zeros(rows)
        self.last_step_completions = np.zeros(rows, dtype=np.int64)
        self.slots = np.empty((_NUM_FIELDS, rows, self.S), dtype=np.int64)
        self.slots[:] = _EMPTY_SLOT[:, None, None]
        self._tail = np.zeros(rows, dtype=np.int64)  # slots in use, holes included
        self.free_blocks = self._capacity.copy()
        self.waiting = np.zeros((rows, self._wcap), dtype=np.int64)
        self.w_head = np.zeros(rows, dtype=np.int64)
        self.w_count = np.zeros(rows, dtype=np.int64)
        self.w_pending_tokens = np.zeros(rows, dtype=np.int64)
        # The decode clock and the decode-set aggregates (see the module docstring)
        self._clock = np.zeros(rows, dtype=np.int64)
        self._n_dec = np.zeros(rows, dtype=np.int64)     # size of the decode set
        self._ctx_base = np.zeros(rows, dtype=np.int64)  # sum of PROMPT + GEN0: context sum = this + n_dec * clock
        self._end_min = np.full(rows, _NO_LIMIT)         # min of END: the clock of the first completion
        self._fill_hist = np.zeros((rows, KV_BLOCK_TOKENS), dtype=np.int64)  # by (PROMPT + GEN0 - 1) % 16
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
        for arr, value in ((self.status, NOT_DISPATCHED), (self.instance, -1), (self.prompt, 0), (self.output, 0),
                           (self.generated, 0), (self.preemptions, 0), (self.arrival_s, np.nan),
                           (self.dispatch_s, np.nan), (self.first_scheduled_s, np.nan),
                           (self.first_token_s, np.nan), (self.completion_s, np.nan)):
            arr[reqs] = value

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
        """Move the holes of ``rows`` behind their running requests (a stable sort keeps the order)."""
        width = int(self._tail[rows].max())
        block = self.slots[:, rows, :width]
        order = np.argsort(block[Q] < 0, axis=1, kind="stable")
        self.slots[:, rows, :width] = np.take_along_axis(block, order[None], axis=2)
        self._tail[rows] = self.n_running[rows]

    # ------------------------------------------------------------------------ decode-set aggregates
    def _join_decode_sets(self, slot_rows, prompt, gen0, end) -> None:
        """Add requests (one per entry; ``slot_rows`` may repeat) to their rows' decode sets."""
        context0 = prompt + gen0
        np.add.at(self._n_dec, slot_rows, 1)
        np.add.at(self._ctx_base, slot_rows, context0)
        np.minimum.at(self._end_min, slot_rows, end)
        np.add.at(self._fill_hist.reshape(-1), slot_rows * KV_BLOCK_TOKENS + (context0 - 1) % KV_BLOCK_TOKENS, 1)

    def _leave(self, rows, end, r_idx, j_idx) -> None:
        """Requests ``(r_idx, j_idx)`` of ``rows`` leave the running lists (their slots become holes).

        ``end`` is a copy of the END field of ``slots[:, rows, :width]`` (overwritten here); the
        leavers that decode leave the decode sets, whose first completion is found again among
        those that stay.
        """
        slot_rows = rows[r_idx]
        leaver = self.slots[:, slot_rows, j_idx]
        decoding = leaver[END] < _NO_LIMIT
        r_dec, context0 = r_idx[decoding], leaver[PROMPT, decoding] + leaver[GEN0, decoding]
        self._n_dec[rows] -= np.bincount(r_dec, minlength=rows.size)
        self._ctx_base[rows] -= np.bincount(r_dec, weights=context0, minlength=rows.size).astype(np.int64)
        np.subtract.at(self._fill_hist.reshape(-1),
                       slot_rows[decoding] * KV_BLOCK_TOKENS + (context0 - 1) % KV_BLOCK_TOKENS, 1)
        end[r_idx, j_idx] = _NO_LIMIT
        self._end_min[rows] = end.min(axis=1)
        self.slots[:, slot_rows, j_idx] = _EMPTY_SLOT[:, None]
        self.n_running[rows] -= np.bincount(r_idx, minlength=rows.size)

    # --------------------------------------------------------------------------------- dispatch
    def dispatch(self, cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s) -> None:
        """Send requests to instances at their cluster's current time (tail of the waiting queue)."""
        cluster, request_id, instance, prompt, output, arrival = validate_dispatch(
            self.config, self.B, self.R, self.now_s, self.status.reshape(self.B, self.R),
            cluster, request_id, instance, prompt_tokens, output_tokens, arrival_s)
        if cluster.size == 0:
            return
        q = cluster * self.R + request_id
        row = cluster * self.N + instance
        counts = np.bincount(row, minlength=self._rows)
        if counts.max() > 1:  # rank of each dispatch among those to the same row, in the given order
            order = np.argsort(row, kind="stable")
            first_of_row = np.cumsum(counts) - counts
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size) - first_of_row[row[order]]
        else:
            rank = 0
        if (self.w_count + counts).max() > self._wcap:
            self._grow_waiting(int((self.w_count + counts).max()))
        pos = (self.w_head[row] + self.w_count[row] + rank) % self._wcap
        self.waiting[row, pos] = q
        self.w_count += counts
        np.add.at(self.w_pending_tokens, row, prompt)
        self.busy_until_s[row] = np.maximum(self.busy_until_s[row], self.now_s[cluster])
        self.status[q] = WAITING
        self.instance[q] = instance
        self.prompt[q] = prompt
        self.output[q] = output
        self.arrival_s[q] = arrival
        self.dispatch_s[q] = self.now_s[cluster]

    # ---------------------------------------------------------------------------------- advance
    def advance_to(self, t_s) -> None:
        """Run every instance's iterations that start before ``t_s`` (scalar or per cluster)."""
        target = validate_target_times(self.now_s, t_s)
        target_row = np.repeat(target, self.N)
        while True:
            has_work = (self.n_running > 0) | (self.w_count > 0)
            rows = np.flatnonzero(has_work & (self.busy_until_s < target_row))
            if rows.size == 0:
                break
            self._step(rows, target_row[rows])
        finite = np.isfinite(target)
        self.now_s[finite] = target[finite]
        if not finite.all():
            last_end = self.busy_until_s.reshape(self.B, self.N).max(axis=1)
            self.now_s[~finite] = np.maximum(self.now_s[~finite], last_end[~finite])

    def run_until_idle(self) -> None:
        """Run every dispatched request to completion; now_s becomes the end of the last iteration."""
        self.advance_to(np.inf)

    def _step(self, rows: np.ndarray, target: np.ndarray) -> None:
        """One iteration (or a run of k decode iterations) on each of ``rows``."""
        k_rows = rows.size
        n = self.n_running[rows]  # copies (fancy indexing), written back at the end
        free = self.free_blocks[rows]
        clock = self._clock[rows]
        n_dec = self._n_dec[rows]
        hist = self._fill_hist[rows]

        # Admission candidates: the first K waiting requests of each row (a (k_rows, K) block).
        wc = self.w_count[rows]
        K = int(min(wc.max(), (self._max_seqs[rows] - n).max()))
        cand = self._admission_candidates(rows, wc, K) if K > 0 else None
        k_adm = 0
        if not self.chunked and cand is not None:
            # prefill first: rows that admit somebody run a prefill-only batch, their decodes stall
            k_adm = self._admissible(rows, cand, n, free, self._budget[rows], cumulative_budget=True)
            decode_row = k_adm == 0
            n_dec = n_dec * decode_row
            hist = hist * decode_row[:, None]

        # ---- KV blocks for the decode set, preemption (recompute) where they run short.
        # slack[:, f]: decode iterations before a request with KV fill f (histogram bin) needs a block.
        slack = (-(clock[:, None] + _FILL)) % KV_BLOCK_TOKENS
        need_now = (hist * (slack == 0)).sum(axis=1)
        preempted_row = None
        if (need_now > free).any():
            preempted_row = need_now > free
            v_idx = np.flatnonzero(preempted_row)
            free[v_idx] += self._preempt(rows[v_idx], clock[v_idx], free[v_idx])
            n[v_idx] = self.n_running[rows[v_idx]]
            n_dec[v_idx] = self._n_dec[rows[v_idx]]
            hist[v_idx] = self._fill_hist[rows[v_idx]]
            need_now = (hist * (slack == 0)).sum(axis=1)

        # ---- prefill chunks (chunked prefill) and admission
        chunk_sq = chunk_prior = chunk_total = 0
        prefills = None
        if self.chunked:
            budget_left = self._budget[rows] - n_dec
            p_idx = np.flatnonzero(n > n_dec)  # rows with a running prefill
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
                allowed = None if preempted_row is None else ~preempted_row
                k_adm = self._admissible(rows, cand, n, free - need_now, budget_left, cumulative_budget=False,
                                         allowed=allowed)
                cand["chunk"] = np.minimum(cand["x"], budget_left[:, None] - cand["excl_x"])
        elif cand is not None:
            cand["chunk"] = cand["x"]
        adm = None
        if cand is not None and k_adm.any():
            adm = np.arange(K) < k_adm[:, None]
            adm_chunk = adm * cand["chunk"]
            chunk_total = chunk_total + adm_chunk.sum(axis=1)
            chunk_sq = chunk_sq + (adm_chunk * adm_chunk).sum(axis=1)
            free = free - (adm * cand["need"]).sum(axis=1)

        # ---- duration: one iteration, or k decode iterations for pure decode batches
        ntok = n_dec + chunk_total
        if (ntok == 0).any():  # cannot happen with validated profiles; guard against an endless loop
            r = int(rows[np.flatnonzero(ntok == 0)[0]])
            raise RuntimeError(f"instance row {r} has work but an empty iteration (simulator invariant broken)")
        sum_ctx = (self._ctx_base[rows] + n_dec * clock) * (n_dec > 0)
        c = self._coeffs[rows].T
        t0_ms = iteration_time_ms(c, ntok, chunk_sq, chunk_prior, sum_ctx)
        start_s = self.busy_until_s[rows]
        skippable = ntok == n_dec
        if preempted_row is not None:
            skippable &= ~preempted_row
        if skippable.any():
            k_iter = np.where(skippable, self._decode_run_length(
                rows, target, start_s, t0_ms, n_dec, clock, hist, slack, free - need_now), 1)
            dt_ms = k_iter * t0_ms + c[6] * n_dec * (k_iter * (k_iter - 1) // 2)
        else:
            k_iter = np.ones(k_rows, dtype=np.int64)
            dt_ms = t0_ms
        end_s = start_s + dt_ms / 1000.0

        # ---- effects at the end of the iteration(s)
        # The decode set takes the KV blocks for the contexts it reaches (those needed now included)
        # and gains k tokens: its clock moves.
        free = free - (hist * ((k_iter[:, None] + KV_BLOCK_TOKENS - 1 - slack) // KV_BLOCK_TOKENS)).sum(axis=1)
        clock_before, clock = clock, clock + k_iter * (n_dec > 0)
        self._clock[rows] = clock
        if prefills is not None:
            self._advance_prefills(*prefills, clock_before[p_idx], clock[p_idx], end_s[p_idx])
        n_completed = 0
        done_row = clock >= self._end_min[rows]
        if done_row.any():
            d_idx = np.flatnonzero(done_row)
            freed, n_done = self._complete(rows[d_idx], clock[d_idx], end_s[d_idx])
            free[d_idx] += freed
            n_completed = np.zeros(k_rows, dtype=np.int64)
            n_completed[d_idx] = n_done
        if adm is not None:  # admitted requests join the running tail
            adm_free, adm_completed = self._admit(rows, cand, adm, k_adm, clock, start_s, end_s)
            free = free + adm_free
            n_completed = n_completed + adm_completed

        # completion counters: every completion of this step happens at end_s
        self.last_step_completions[rows] = n_completed
        if np.any(n_completed):
            self.completed_count[rows] += n_completed
            self.completion_time_sum_s[rows] += n_completed * end_s

        self.free_blocks[rows] = free
        self.busy_until_s[rows] = end_s
        self.iterations.reshape(-1)[rows] += k_iter

    def _admission_candidates(self, rows, wc, K) -> dict:
        pos = (self.w_head[rows, None] + np.arange(K)) % self._wcap
        q = self.waiting[rows[:, None], pos]
        valid = np.arange(K) < wc[:, None]
        x = np.where(valid, self.prompt[q] + self.generated[q], 0)  # prefill targets
        cum_x = np.cumsum(x, axis=1)
        need = _ceil_blocks(x)
        return {"q": q, "valid": valid, "x": x, "cum_x": cum_x, "excl_x": cum_x - x, "need": need,
                "cum_need": np.cumsum(need, axis=1)}

    def _admissible(self, rows, cand, n_running, free, budget, cumulative_budget, allowed=None) -> np.ndarray:
        """How many waiting requests each row admits (FCFS: a prefix of the candidates)."""
        K = cand["x"].shape[1]
        ok = (cand["valid"] & (np.arange(K) < (self._max_seqs[rows] - n_running)[:, None])
              & (free[:, None] - cand["cum_need"] >= self._watermark[rows, None]))
        if cumulative_budget:  # without chunked prefill every admitted prompt must fit whole
            ok &= cand["cum_x"] <= budget[:, None]
        else:  # chunked prefill: admitted while any budget is left
            ok &= cand["excl_x"] < budget[:, None]
        if allowed is not None:
            ok &= allowed[:, None]
        return ok.sum(axis=1)

    def _admit(self, rows, cand, adm, k_adm, clock, start_s, end_s):
        """Move admitted candidates to the running tails; returns freed blocks and completions per
        row (one-token outputs finish with their prefill and never take a slot)."""
        r_idx, j_idx = np.nonzero(adm)
        q = cand["q"][r_idx, j_idx]
        x = cand["x"][r_idx, j_idx]
        chunk = cand["chunk"][r_idx, j_idx]
        gen_before = self.generated[q]
        finished = chunk == x
        gen = gen_before + finished
        self.status[q] = RUNNING
        first_sched = np.isnan(self.first_scheduled_s[q])
        self.first_scheduled_s[q[first_sched]] = start_s[r_idx[first_sched]]
        first_tok = finished & (gen_before == 0)
        self.first_token_s[q[first_tok]] = end_s[r_idx[first_tok]]
        adm_rows = rows[k_adm > 0]
        self.w_head[adm_rows] = (self.w_head[adm_rows] + k_adm[k_adm > 0]) % self._wcap
        self.w_count[adm_rows] -= k_adm[k_adm > 0]
        np.subtract.at(self.w_pending_tokens, rows[r_idx], x)
        output = self.output[q]
        done = gen == output
        freed = np.zeros(rows.size, dtype=np.int64)
        completed = 0
        if done.any():
            completed = np.bincount(r_idx[done], minlength=rows.size)
            self.completion_s[q[done]] = end_s[r_idx[done]]
            self.status[q[done]] = COMPLETED
            self.generated[q[done]] = output[done]
            freed = np.bincount(r_idx[done], weights=cand["need"][r_idx, j_idx][done], minlength=rows.size).astype(np.int64)
            stay = ~done
            r_idx, q, x, chunk, gen, output, finished = (
                r_idx[stay], q[stay], x[stay], chunk[stay], gen[stay], output[stay], finished[stay])
        # destination slot: after the tail, in candidate order
        per_row = np.bincount(r_idx, minlength=rows.size)
        full = self._tail[rows] + per_row > self.S
        if full.any():
            self._squeeze(rows[full])
        first_of_row = np.cumsum(per_row) - per_row
        slot_rows = rows[r_idx]
        dest = self._tail[slot_rows] + (np.arange(r_idx.size) - first_of_row[r_idx])
        prompt = self.prompt[q]
        gen0 = gen - clock[r_idx]
        end = np.where(finished, output - gen0, _NO_LIMIT)
        self.slots[:, slot_rows, dest] = np.stack([q, prompt, gen0, end, chunk, x])
        self._tail[rows] += per_row
        self.n_running[rows] += per_row
        if finished.any():  # a whole prefill: the request decodes from the next iteration on
            self._join_decode_sets(slot_rows[finished], prompt[finished], gen0[finished], end[finished])
        return freed, completed

    def _complete(self, rows, clock, end_s):
        """Complete the decoding requests whose clock reached their END; returns the blocks they
        free and the completions per row."""
        end = self.slots[END, rows, : int(self._tail[rows].max())]
        r_idx, j_idx = np.nonzero(end == clock[:, None])
        q, prompt, gen0 = self.slots[:END, rows[r_idx], j_idx]
        output = gen0 + clock[r_idx]
        self.completion_s[q] = end_s[r_idx]
        self.status[q] = COMPLETED
        self.generated[q] = output
        # a decoding request holds the blocks of its context minus the token it has not fed yet
        freed = np.bincount(r_idx, weights=_ceil_blocks(prompt + output - 1), minlength=rows.size)
        self._leave(rows, end, r_idx, j_idx)
        return freed.astype(np.int64), np.bincount(r_idx, minlength=rows.size)

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
        suffix_after = held.sum(axis=1, keepdims=True) - np.cumsum(held, axis=1)
        victims = valid & (np.cumsum(need, axis=1) - suffix_after > free[:, None])
        n_victims = victims.sum(axis=1)
        r_idx, j_idx = np.nonzero(victims)
        q = block[Q, r_idx, j_idx]
        gen = block[GEN0, r_idx, j_idx] + clock[r_idx]
        self.generated[q] = gen
        self.preemptions[q] += 1
        self.status[q] = WAITING
        need_cap = int((self.w_count[rows] + n_victims).max())
        if need_cap > self._wcap:
            self._grow_waiting(need_cap)
        new_head = (self.w_head[rows] - n_victims) % self._wcap
        rank = (np.cumsum(victims, axis=1) - 1)[r_idx, j_idx]
        self.waiting[rows[r_idx], (new_head[r_idx] + rank) % self._wcap] = q
        self.w_head[rows] = new_head
        self.w_count[rows] += n_victims
        np.add.at(self.w_pending_tokens, rows[r_idx], block[PROMPT, r_idx, j_idx] + gen)
        self._leave(rows, block[END], r_idx, j_idx)
        return np.bincount(r_idx, weights=held[r_idx, j_idx], minlength=rows.size).astype(np.int64)

    def _prefill_chunks(self, rows, budget_left):
        """Chunked prefill: each running prefill, in running order, gets what is left of the budget."""
        block = self.slots[:, rows, : int(self._tail[rows].max())]
        rem = np.where(block[Q] >= 0, block[TARGET] - block[PREFILLED], 0)
        chunk = np.clip(budget_left[:, None] - (np.cumsum(rem, axis=1) - rem), 0, rem)
        return rows, block, chunk, rem > 0

    def _advance_prefills(self, rows, block, chunk, prefilling, clock_before, clock, end_s) -> None:
        """End of an iteration for the running prefills of ``rows``: a prefill that completes yields
        a token and joins the decode set; one that does not keeps its generated count while the
        clock moves."""
        gen_before = block[GEN0] + clock_before[:, None]
        block[PREFILLED] += chunk
        finished = prefilling & (block[PREFILLED] == block[TARGET])
        block[GEN0] = np.where(prefilling, gen_before + finished - clock[:, None], block[GEN0])
        r_idx, j_idx = np.nonzero(finished)
        q = block[Q, r_idx, j_idx]
        block[END, r_idx, j_idx] = self.output[q] - block[GEN0, r_idx, j_idx]
        first_tok = gen_before[r_idx, j_idx] == 0
        self.first_token_s[q[first_tok]] = end_s[r_idx[first_tok]]
        self.slots[:, rows, : block.shape[2]] = block
        self._join_decode_sets(rows[r_idx], block[PROMPT, r_idx, j_idx], block[GEN0, r_idx, j_idx],
                               block[END, r_idx, j_idx])

    def _decode_run_length(self, rows, target, busy, t0_ms, n, clock, hist, slack, spare) -> np.ndarray:
        """How many decode iterations each row can run at once (>= 1); see docs/simulator.md.

        ``spare`` are the free blocks left once the requests that need one now have it.
        """
        to_completion = self._end_min[rows] - clock
        # iterations before the first block need (16 for those served now), then 16 per spare
        # block each request can get
        first_need = np.where(hist > 0, (slack - 1) % KV_BLOCK_TOKENS + 1, KV_BLOCK_TOKENS).min(axis=1)
        k = np.minimum(to_completion, first_need + KV_BLOCK_TOKENS * (spare // np.maximum(n, 1)))
        # Iterations that start before the target. Iteration x (from 0) starts at
        # busy + (x * t0 + c5 * n * x * (x - 1) / 2) / 1000: solve the quadratic for x (in the
        # stable form 2c / (b + sqrt(b^2 + 4ac)); b = t0 - c5 n / 2 > 0), then correct its rounding
        # with the exact start times.
        c5n = self._c5[rows] * n
        b = t0_ms - c5n / 2.0
        room_ms = np.minimum((target - busy) * 1000.0, 1e15)  # a finite stand-in for "no target"
        root = 2.0 * room_ms / (b + np.sqrt(b * b + 2.0 * c5n * room_ms))
        x = np.maximum(np.ceil(np.minimum(root, 1e9)) - 1.0, 0.0).astype(np.int64)

        def start(xx):
            return busy + (xx * t0_ms + c5n * (xx * (xx - 1) // 2)) / 1000.0

        x -= (x > 0) & (start(x) >= target)
        x += start(x + 1) < target
        return np.maximum(np.minimum(k, x + 1), 1)

    # -------------------------------------------------------------------------------- observing
    def instance_requests(self) -> dict[str, np.ndarray]:
        """Which requests each instance holds, for routers and observation encoders.

        Rows are instances (``row = cluster * N + instance``). ``running_request`` (rows, S) and
        ``waiting_request`` (rows, W) hold request indices ``cluster * R + request_id`` (running in
        admission order, waiting in queue order) where ``running_valid`` / ``waiting_valid``;
        ``running_generated`` are their output tokens so far and ``running_prefill_done`` whether
        their (current) prefill is complete. Arrays are copies.
        """
        holey = np.flatnonzero(self._tail > self.n_running)
        if holey.size:
            self._squeeze(holey)
        width = max(int(self.n_running.max()), 1)
        slots = self.slots[:, :, :width]
        w = max(int(self.w_count.max()), 1)
        pos = (self.w_head[:, None] + np.arange(w)) % self._wcap
        return {
            "running_request": slots[Q].copy(),
            "running_valid": np.arange(width) < self.n_running[:, None],
            "running_generated": slots[GEN0] + self._clock[:, None],
            "running_prefill_done": slots[PREFILLED] == slots[TARGET],
            "waiting_request": np.take_along_axis(self.waiting, pos, axis=1),
            "waiting_valid": np.arange(w) < self.w_count[:, None],
        }

    def completions_by(self, t_s) -> tuple[np.ndarray, np.ndarray]:
        """Per cluster: how many requests completed at or before ``t_s`` and the sum of their
        completion times. ``t_s`` must be at least ``now_s`` (completions recorded for an iteration
        still in flight at ``t_s``, which all end at that instance's ``busy_until_s``, are left out).
        """
        t_row = np.repeat(np.broadcast_to(np.asarray(t_s, dtype=np.float64), (self.B,)), self.N)
        in_flight = np.where(self.busy_until_s > t_row, self.last_step_completions, 0)
        count = (self.completed_count - in_flight).reshape(self.B, self.N).sum(axis=1)
        total = (self.completion_time_sum_s - in_flight * self.busy_until_s).reshape(self.B, self.N).sum(axis=1)
        return count, total

    def records(self) -> RequestRecords:
        """Per-request records as (B, R) arrays (copies)."""
        generated = self.generated.copy()
        q = self.slots[Q]
        valid = q >= 0
        generated[q[valid]] = (self.slots[GEN0] + self._clock[:, None])[valid]
        shape = (self.B, self.R)
        return RequestRecords(
            status=self.status.reshape(shape).copy(),
            instance=self.instance.reshape(shape).copy(),
            prompt_tokens=self.prompt.reshape(shape).copy(),
            output_tokens=self.output.reshape(shape).copy(),
            generated_tokens=generated.reshape(shape),
            preemptions=self.preemptions.reshape(shape).copy(),
            arrival_s=self.arrival_s.reshape(shape).copy(),
            dispatch_s=self.dispatch_s.reshape(shape).copy(),
            first_scheduled_s=self.first_scheduled_s.reshape(shape).copy(),
            first_token_s=self.first_token_s.reshape(shape).copy(),
            completion_s=self.completion_s.reshape(shape).copy(),
        )

    def instance_state(self) -> InstanceState:
        """What a router can observe about each instance, as (B, N) arrays."""
        running_prefill = np.where(self.slots[Q] >= 0, self.slots[TARGET] - self.slots[PREFILLED], 0).sum(axis=1)
        shape = (self.B, self.N)
        return InstanceState(
            num_running=self.n_running.reshape(shape).copy(),
            num_waiting=self.w_count.reshape(shape).copy(),
            kv_blocks_used=(self._capacity - self.free_blocks).reshape(shape),
            kv_blocks_free=self.free_blocks.reshape(shape).copy(),
            pending_prefill_tokens=(self.w_pending_tokens + running_prefill).reshape(shape),
            busy_until_s=self.busy_until_s.reshape(shape).copy(),
        )
