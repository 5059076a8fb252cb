"""The fast cluster simulator: B independent clusters x N instances advanced together in NumPy.

Semantics are those of ``docs/simulator.md`` (vLLM v0 by default, chunked prefill as an option);
``reference_simulator.py`` implements the same thing slowly, and a differential test holds the two
together. The state is a struct of arrays over *instance rows* (``row = cluster * N + instance``):

* running requests sit in ``slots[row, :n_running[row]]`` in admission order, one int64 record
  per slot (request index, prompt, output, generated, KV blocks, prefilled, prefill target);
* waiting requests sit in a ring buffer ``waiting[row]`` (FIFO with push-front for preemptions);
* per-request facts and timestamps live in flat arrays indexed by ``cluster * R + request_id``.

``advance_to`` repeats one vectorized *step* over every instance that has work and has not reached
the target time. A step is one iteration, or, for an instance that would only decode and whose
batch cannot change before the next event, ``k`` decode iterations at once in closed form.
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

# Fields of a running slot record (last axis of ``slots``)
Q, PROMPT, OUTPUT, GEN, BLOCKS, PREFILLED, TARGET = range(7)
_NUM_FIELDS = 7
_NO_LIMIT = np.iinfo(np.int64).max // 4


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
        self._row_cluster = np.repeat(np.arange(self.B), self.N)
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
        self.slots = np.zeros((rows, self.S, _NUM_FIELDS), dtype=np.int64)
        self.free_blocks = self._capacity.copy()
        self.waiting = np.zeros((rows, self._wcap), dtype=np.int64)
        self.w_head = np.zeros(rows, dtype=np.int64)
        self.w_count = np.zeros(rows, dtype=np.int64)
        self.w_pending_tokens = np.zeros(rows, dtype=np.int64)
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
        self.free_blocks[rows] = self._capacity[rows]
        self.w_head[rows] = 0
        self.w_count[rows] = 0
        self.w_pending_tokens[rows] = 0
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
        n0 = self.n_running[rows]
        free = self.free_blocks[rows]  # a copy (fancy indexing), written back at the end
        width = int(n0.max())
        sub = self.slots[rows, :width]  # running requests; a copy, written back at the end
        col = np.arange(width)
        valid0 = col < n0[:, None]
        prompt_gen = sub[..., PROMPT] + sub[..., GEN]
        prefill_done = valid0 & (sub[..., PREFILLED] == sub[..., TARGET])

        # Admission candidates: the first K waiting requests of each row (a (k_rows, K) block).
        wc = self.w_count[rows]
        K = int(min(wc.max(), (self._max_seqs[rows] - n0).max())) if wc.any() else 0
        if K:
            cand = self._admission_candidates(rows, wc, K)
        if not self.chunked:  # prefill first: rows that admit somebody run a prefill-only batch
            k_adm = self._admissible(rows, cand, n0, free, self._budget[rows], cumulative_budget=True) if K else 0
            decode_row = (k_adm == 0) if K else True
            decoding = prefill_done & decode_row[:, None] if K else prefill_done
        else:
            decoding = prefill_done

        # ---- block allocation and preemption (recompute) for decoding requests
        need = decoding & (sub[..., BLOCKS] * KV_BLOCK_TOKENS < prompt_gen)
        keep, preempted_row = valid0, None
        if need.any():
            short = need.sum(axis=1) > free
            if short.any():
                blocks_v = np.where(valid0, sub[..., BLOCKS], 0)
                suffix_after = blocks_v.sum(axis=1, keepdims=True) - np.cumsum(blocks_v, axis=1)
                keep = valid0 & (np.cumsum(need, axis=1) - suffix_after <= free[:, None])
                n_kept = keep.sum(axis=1)
                preempted_row = n_kept < n0
                free = free + self._preempt(rows, sub, valid0 & ~keep, n_kept, n0)
                need &= keep
                decoding = decoding & keep
            sub[..., BLOCKS] += need
            free = free - need.sum(axis=1)
        n_kept = keep.sum(axis=1) if preempted_row is not None else n0
        n_decode = decoding.sum(axis=1)

        # ---- prefill chunks (chunked prefill) and admission
        chunk_sq = chunk_prior = chunk_total = 0
        chunk = None
        if self.chunked:
            budget_left = self._budget[rows] - n_decode
            partial = keep & ~prefill_done
            if partial.any():
                rem = np.where(partial, sub[..., TARGET] - sub[..., PREFILLED], 0)
                chunk = np.clip(budget_left[:, None] - (np.cumsum(rem, axis=1) - rem), 0, rem)
                chunk_total = chunk.sum(axis=1)
                chunk_sq = (chunk * chunk).sum(axis=1)
                chunk_prior = (chunk * sub[..., PREFILLED]).sum(axis=1)
                budget_left = budget_left - chunk_total
            if K:
                allowed = None if preempted_row is None else ~preempted_row
                k_adm = self._admissible(rows, cand, n_kept, free, budget_left, cumulative_budget=False,
                                         allowed=allowed)
                cand["chunk"] = np.minimum(cand["x"], budget_left[:, None] - cand["excl_x"])
        elif K:
            cand["chunk"] = cand["x"]
        if K and k_adm.any():
            adm = np.arange(K) < k_adm[:, None]
            adm_chunk = np.where(adm, cand["chunk"], 0)
            chunk_total = chunk_total + adm_chunk.sum(axis=1)
            chunk_sq = chunk_sq + (adm_chunk * adm_chunk).sum(axis=1)
            free = free - np.where(adm, cand["need"], 0).sum(axis=1)
        else:
            adm = None

        # ---- duration: one iteration, or k decode iterations for pure decode batches
        ntok = n_decode + chunk_total
        if (ntok == 0).any():  # cannot happen with validated profiles; guard against an endless loop
            r = int(rows[np.flatnonzero(ntok == 0)[0]])
            raise RuntimeError(f"instance row {r} has work but an empty iteration (simulator invariant broken)")
        sum_ctx = np.where(decoding, prompt_gen, 0).sum(axis=1)
        c = self._coeffs[rows].T
        t0_ms = iteration_time_ms(c, ntok, chunk_sq, chunk_prior, sum_ctx)
        k_iter = np.ones(k_rows, dtype=np.int64)
        skippable = ntok == n_decode
        if preempted_row is not None:
            skippable &= ~preempted_row
        if skippable.any():
            k_iter[skippable] = self._decode_run_length(
                rows[skippable], target[skippable], t0_ms[skippable], n_decode[skippable],
                sub[skippable], decoding[skippable], prompt_gen[skippable], free[skippable])
            dt_ms = k_iter * t0_ms + c[6] * n_decode * (k_iter * (k_iter - 1) // 2)
        else:
            dt_ms = t0_ms
        start_s = self.busy_until_s[rows]
        end_s = start_s + dt_ms / 1000.0

        # ---- effects on running requests at the end of the iteration(s)
        gen = sub[..., GEN]
        gen_before = gen.copy() if chunk is not None else None
        gen += np.where(decoding, k_iter[:, None], 0)
        if (k_iter > 1).any():  # KV blocks for the contexts reached during the run
            grown = np.where(decoding, np.maximum(_ceil_blocks(sub[..., PROMPT] + gen - 1) - sub[..., BLOCKS], 0), 0)
            sub[..., BLOCKS] += grown
            free = free - grown.sum(axis=1)
        if chunk is not None:
            sub[..., PREFILLED] += chunk
            finished = (chunk > 0) & (sub[..., PREFILLED] == sub[..., TARGET])
            gen += finished
            first_tok = finished & (gen_before == 0)
            if first_tok.any():
                r_idx, j_idx = np.nonzero(first_tok)
                self.first_token_s[sub[r_idx, j_idx, Q]] = end_s[r_idx]
        valid1 = col < n_kept[:, None]
        done = valid1 & (gen == sub[..., OUTPUT])
        n1 = n_kept
        n_completed = 0
        if done.any():
            free = free + self._complete(rows, sub, done, end_s)
            n_completed = done.sum(axis=1)
            sub = self._compact(sub, valid1 & ~done, n_kept - n_completed)
            n1 = n_kept - n_completed
        self.slots[rows, :width] = sub

        # ---- admitted requests join the running tail
        if adm is not None:
            n1, adm_free, adm_completed = self._admit(rows, cand, adm, k_adm, n1, start_s, end_s)
            free = free + adm_free
            n_completed = n_completed + adm_completed

        # completion counters: every completion of this step happens at end_s
        self.last_step_completions[rows] = n_completed
        if np.any(n_completed):
            self.completed_count[rows] += n_completed
            self.completion_time_sum_s[rows] += n_completed * end_s

        self.n_running[rows] = n1
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

    def _admit(self, rows, cand, adm, k_adm, n_running, start_s, end_s):
        """Move admitted candidates to the running tail; returns new running counts and freed blocks."""
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
        done = gen == output  # one-token outputs finish with their prefill
        freed = np.zeros(rows.size, dtype=np.int64)
        completed = 0
        if done.any():
            completed = np.bincount(r_idx[done], minlength=rows.size)
            self.completion_s[q[done]] = end_s[r_idx[done]]
            self.status[q[done]] = COMPLETED
            self.generated[q[done]] = output[done]
            freed = np.bincount(r_idx[done], weights=cand["need"][r_idx, j_idx][done], minlength=rows.size).astype(np.int64)
            stay = ~done
            r_idx, q, x, chunk, gen, output = r_idx[stay], q[stay], x[stay], chunk[stay], gen[stay], output[stay]
            j_idx = j_idx[stay]
        # destination slot: after the surviving running requests, in candidate order
        per_row = np.bincount(r_idx, minlength=rows.size)
        first_of_row = np.cumsum(per_row) - per_row
        dest = n_running[r_idx] + (np.arange(r_idx.size) - first_of_row[r_idx])
        record = np.stack([q, self.prompt[q], output, gen, _ceil_blocks(x), chunk, x], axis=1)
        self.slots[rows[r_idx], dest] = record
        return n_running + per_row, freed, completed

    def _complete(self, rows, sub, done, end_s) -> np.ndarray:
        """Record completions; returns the KV blocks they free per row."""
        r_idx, j_idx = np.nonzero(done)
        q = sub[r_idx, j_idx, Q]
        self.completion_s[q] = end_s[r_idx]
        self.status[q] = COMPLETED
        self.generated[q] = sub[r_idx, j_idx, OUTPUT]
        return np.bincount(r_idx, weights=sub[r_idx, j_idx, BLOCKS], minlength=rows.size).astype(np.int64)

    @staticmethod
    def _compact(sub, keep, n_keep):
        """Stable partition of each row: kept slots first, in order (a scatter, no sort)."""
        k, w, _ = sub.shape
        kept_pos = np.cumsum(keep, axis=1) - 1
        other_pos = n_keep[:, None] + np.cumsum(~keep, axis=1) - 1
        dest = np.where(keep, kept_pos, other_pos) + (np.arange(k) * w)[:, None]
        out = np.empty_like(sub)
        out.reshape(k * w, -1)[dest.ravel()] = sub.reshape(k * w, -1)
        return out

    def _preempt(self, rows, sub, victims, n_kept, n0) -> np.ndarray:
        """Send the victims (a suffix of each running list) to the waiting head; returns freed blocks."""
        r_idx, j_idx = np.nonzero(victims)
        q = sub[r_idx, j_idx, Q]
        gen = sub[r_idx, j_idx, GEN]
        self.generated[q] = gen
        self.preemptions[q] += 1
        self.status[q] = WAITING
        n_victims = n0 - n_kept
        vrows = rows[r_idx]
        need_cap = int((self.w_count[rows] + n_victims).max())
        if need_cap > self._wcap:
            self._grow_waiting(need_cap)
        new_head = (self.w_head[rows] - n_victims) % self._wcap
        pos = (new_head[r_idx] + (j_idx - n_kept[r_idx])) % self._wcap
        self.waiting[vrows, pos] = q
        self.w_head[rows] = new_head
        self.w_count[rows] += n_victims
        np.add.at(self.w_pending_tokens, vrows, sub[r_idx, j_idx, PROMPT] + gen)
        return np.bincount(r_idx, weights=sub[r_idx, j_idx, BLOCKS], minlength=rows.size).astype(np.int64)

    def _decode_run_length(self, rows, target, t0_ms, n, sub, in_decode, prompt_gen, free) -> np.ndarray:
        """How many decode iterations each row can run at once (>= 1); see docs/simulator.md."""
        to_completion = np.where(in_decode, sub[..., OUTPUT] - sub[..., GEN], _NO_LIMIT).min(axis=1)
        slack = np.where(in_decode, sub[..., BLOCKS] * KV_BLOCK_TOKENS - prompt_gen + 1, _NO_LIMIT).min(axis=1)
        k = np.minimum(to_completion, slack + KV_BLOCK_TOKENS * (free // n))
        # Iterations that start before the target. Iteration x (from 0) starts at
        # busy + (x * t0 + c5 * n * x * (x - 1) / 2) / 1000: solve the quadratic for x (in the
        # stable form 2c / (b + sqrt(b^2 + 4ac)); b = t0 - c5 n / 2 > 0), then correct its rounding
        # with the exact start times.
        busy = self.busy_until_s[rows]
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
        width = max(int(self.n_running.max()), 1)
        slots = self.slots[:, :width]
        w = max(int(self.w_count.max()), 1)
        pos = (self.w_head[:, None] + np.arange(w)) % self._wcap
        return {
            "running_request": slots[..., Q].copy(),
            "running_valid": np.arange(width) < self.n_running[:, None],
            "running_generated": slots[..., GEN].copy(),
            "running_prefill_done": slots[..., PREFILLED] == slots[..., TARGET],
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
        valid = np.arange(self.S) < self.n_running[:, None]
        generated[self.slots[..., Q][valid]] = self.slots[..., GEN][valid]
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
        valid = np.arange(self.S) < self.n_running[:, None]
        running_prefill = np.where(valid, self.slots[..., TARGET] - self.slots[..., PREFILLED], 0).sum(axis=1)
        shape = (self.B, self.N)
        return InstanceState(
            num_running=self.n_running.reshape(shape).copy(),
            num_waiting=self.w_count.reshape(shape).copy(),
            kv_blocks_used=(self._capacity - self.free_blocks).reshape(shape),
            kv_blocks_free=self.free_blocks.reshape(shape).copy(),
            pending_prefill_tokens=(self.w_pending_tokens + running_prefill).reshape(shape),
            busy_until_s=self.busy_until_s.reshape(shape).copy(),
        )
