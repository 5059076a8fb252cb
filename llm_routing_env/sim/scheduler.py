"""The step rules of the fast simulator: what one instance iteration (or run of decode iterations)
schedules, how long it takes and what it changes, vectorized over every instance row that steps.

A step is one iteration, or, for an instance that would only decode and whose batch cannot change
before the next event, ``k`` decode iterations at once in closed form. The semantics are those of
``docs/simulator.md``: vLLM v0 (prefill first by default, v0's chunked prefill as an option) and
vLLM v1. The three share one pipeline, which differs only where the engines do:

* v0 prefill first: admissions make a prefill-only iteration, decodes stall (``stalled``);
* v0 chunked prefill and v1 (``self.chunked``): decodes, then the running prefill's chunk, then
  admissions, in one token budget;
* v1 (``self.v1``) besides: KV blocks follow the computed tokens (a chunk takes the blocks it
  fills, ``_v1_prefill_chunks``; an admission the blocks of its chunk), so the running prefill's
  chunk can preempt, and there is no watermark (the limits hold 0).

With prefix caching, an admitted request's cache hit is prior context that it does not compute
(``_look_up_prefixes``); the cache's bookkeeping is per request, on the requests with prefix keys
only (``_admit_prefixes``, ``_cache_filled``, ``_release_prefixes``, ``_settle_evictions``).

The latency model is :func:`llm_routing_env.profiles.iteration_time_ms`.

A step applies an iteration's whole effect when it starts; for the iteration still in flight at
the target time (the last of a step whose end passes the target) it keeps a *visible* copy of the
row's counters for the router queries (:mod:`.views`).
"""

from __future__ import annotations

import numpy as np

from ..cluster import COMPLETED, RUNNING, WAITING
from ..profiles import KV_BLOCK_TOKENS, iteration_time_ms
from .prefix_cache import max_hit_blocks
from .state import (
    _BLOCK, _CLOCK, _FIRST_NEED, _FREE, _HALF_F, _MAX_ROOM_MS, _MAX_RUN, _MS_PER_S, _NO_LIMIT, _ONE,
    _RUNNING, _SLACK15, _WAITING, END, GEN0, PREFILLED, PROMPT, Q, TARGET, _ceil_blocks, _chunk_blocks, _run_ms,
    _split_budget,
)


class SchedulerSteps:
    """The step of every instance row that has work (mixed into :class:`.ClusterSimulator`)."""

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
            if self._caches:
                self._look_up_prefixes(cand, free[a_idx])
            cand["chunk"] = cand["x"]
            adm = self._admitted(a_idx, cand, self._admissible(cand, free[a_idx], chunked=False))
            if adm is not None:
                stalled = np.zeros(k_rows, dtype=bool)
                stalled[adm["step"]] = True
                n_dec = n_dec * ~stalled

        # ---- KV blocks for the decode set (and, under v1, the running prefill's chunk), preemption
        # (recompute) where they run short; rows with fewer free blocks than decoding requests
        # (plus the chunk's blocks) are the only ones that may run short
        need_now = None
        preempted = None
        early = chunk_need = None
        if self.v1:  # v1: the running prefill's next chunk takes its blocks (and may preempt) too
            early = self._v1_prefill_chunks(rows, n, n_dec)
            if early is not None:
                chunk_need = early[-1]
        short = n_dec > free if chunk_need is None else n_dec + chunk_need > free
        if np.count_nonzero(short):
            # (times n_dec > 0: a stalled row's histogram still counts the requests that wait)
            need_now = (hist * (slack15 == KV_BLOCK_TOKENS - 1)).sum(axis=1) * (n_dec > 0)
            total_need = need_now if chunk_need is None else need_now + chunk_need
            if np.count_nonzero(total_need > free):
                preempted = total_need > free
                v_idx = preempted.nonzero()[0]
                v_rows = rows[v_idx]
                chunk_budget = self._budget[v_rows] - n_dec[v_idx] if self.v1 else None
                free[v_idx] += self._preempt(v_rows, clock[v_idx], free[v_idx], chunk_budget)
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
                if early is not None and preempted is None:  # (v1: computed above, nothing changed since)
                    prefills = early[:4]
                else:
                    prefills = self._prefill_chunks(rows[p_idx], budget_left[p_idx])
                    if self.v1:
                        chunk_need = np.zeros(k_rows, dtype=np.int64)
                        chunk_need[p_idx] = _chunk_blocks(prefills[1][PREFILLED], prefills[2]).sum(axis=1)
                chunk, prior = prefills[2], prefills[1][PREFILLED]
                if self.v1:  # the chunks take the blocks they fill
                    free[p_idx] -= chunk_need[p_idx]
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
                if self._caches:
                    self._look_up_prefixes(cand, free[a_idx] - taken,
                                           None if preempted is None else ~preempted[a_idx])
                cand["chunk"] = np.minimum(cand["x"], budget_left[:, None] - (cand["cum_x"] - cand["x"]))
                if self.v1:  # an admitted request takes the blocks of its chunk only (and its hit's)
                    chunk = np.maximum(cand["chunk"], 0)
                    self._set_candidate_need(cand, cand["prior"] + chunk if "prior" in cand else chunk)
                adm = self._admitted(a_idx, cand, self._admissible(cand, free[a_idx] - taken, chunked=True,
                                                                   budget=budget_left))
        if adm is not None:  # the admitted requests' chunks join the batch; they take their blocks
            if isinstance(chunk_total, int):
                chunk_total, chunk_sq = np.zeros(k_rows, dtype=np.int64), np.zeros(k_rows, dtype=np.int64)
            np.add.at(chunk_total, adm["step"], adm["chunk"])
            np.add.at(chunk_sq, adm["step"], adm["chunk"] * adm["chunk"])
            np.subtract.at(free, adm["step"], adm["need"])
            if "prior" in adm:  # a cache hit is prior context of the admitted chunk
                if isinstance(chunk_prior, int):
                    chunk_prior = np.zeros(k_rows, dtype=np.int64)
                np.add.at(chunk_prior, adm["step"], adm["chunk"] * adm["prior"])

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
        free_before_last = None
        if self._caches and np.count_nonzero(k_dec > 1):  # (the run's blocks but its last iteration's)
            free_before_last = np.where(k_dec > 1, free - (hist * ((np.maximum(k_dec - 1, 0)[:, None] + slack15)
                                                                // _BLOCK)).sum(axis=1), np.iinfo(np.int64).max)
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
        if self._caches:  # the iteration's new blocks evict cached free ones, before any is freed
            self._settle_evictions(rows, free_before_last)
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
        if rows.size == self._rows:  # every row (rows are sorted and unique): whole tables copy faster
            self._vis_int[:] = self._int_counters
            self._vis_time[:] = self._time_counters
        else:
            self._vis_int[:, rows] = self._int_counters[:, rows]
            self._vis_time[:, rows] = self._time_counters[:, rows]
        self._vis_int[_CLOCK, rows] = clock
        # (the running prefills' remaining tokens are those before this iteration's chunks)
        self._vis_pending[rows] = self._pending_prefill_tokens(rows)
        if adm is not None:  # admitted requests are running (their prefill still pending)
            k_adm = np.bincount(adm["step"], minlength=k_rows)[step_idx]
            self._vis_int[_RUNNING, rows] += k_adm
            self._vis_int[_WAITING, rows] -= k_adm

    def _admission_candidates(self, rows, limit) -> dict:
        """The first waiting requests of each of ``rows``, of which the first ``limit`` may be admitted."""
        K = int(limit.max())
        pos = (self.w_head[rows, None] + np.arange(K)) % self._wcap
        q = self.waiting[rows[:, None], pos]  # positions past a row's count hold stale entries
        x = self.prompt[q] + self.generated[q]  # prefill targets
        cand = {"rows": rows, "limit": limit, "q": q, "x": x, "cum_x": x.cumsum(axis=1)}
        self._set_candidate_need(cand, x)  # v0: the whole target's blocks
        return cand

    @staticmethod
    def _set_candidate_need(cand, tokens) -> None:
        """The candidates' KV block needs (and their running sums): the blocks of ``tokens``, bar the
        hit blocks that other requests reference (``shared``, with prefix caching)."""
        need = _ceil_blocks(tokens)
        if "shared" in cand:
            need = need - cand["shared"]
        cand["need"], cand["cum_need"] = need, need.cumsum(axis=1)

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
        out = {"rows": cand["rows"], "count": adm.sum(axis=1), "r": r_idx, "j": j_idx, "step": a_idx[r_idx],
               "q": cand["q"][r_idx, j_idx], "x": cand["x"][r_idx, j_idx], "chunk": cand["chunk"][r_idx, j_idx],
               "need": cand["need"][r_idx, j_idx]}
        if "prior" in cand:  # (then "x" is the uncached part of the prefill "target")
            for name in ("prior", "shared", "target"):
                out[name] = cand[name][r_idx, j_idx]
        return out

    def _admit(self, adm, clock, start_s, end_s) -> None:
        """Move the admitted requests from the waiting heads to the running tails (their blocks are
        taken by the caller). A request whose prefill is complete joins the decode set, even if
        that prefill produced its last token: it completes with the others of the iteration.
        ``clock``, ``start_s`` and ``end_s`` are by step row (``adm["step"]``)."""
        rows, k_adm, r_idx, step_idx = adm["rows"], adm["count"], adm["r"], adm["step"]
        q, x, chunk = adm["q"], adm["x"], adm["chunk"]
        prior = adm.get("prior")
        slot_rows = rows[r_idx]
        if prior is None:
            done = chunk
            self.prefill_tokens[q] += x
        else:  # x: the prefill target, of which the cache hit (prior) is not computed
            x = adm["target"]
            done = prior + chunk
            self.prefill_tokens[q] += x - prior
        gen_before = self.generated[q]
        finished = (done == x).astype(np.int64)  # (an int64 count for _count_in_decode_sets)
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
        self.slots[:, slot_rows, dest] = np.array([q, prompt, gen0, end, done, x])
        self._tail[rows] = tail + k_adm
        self.n_running[rows] += k_adm
        # a whole prefill: the request decodes from the next iteration on
        self._count_in_decode_sets(slot_rows, prompt + gen0, finished, q, gen0)
        np.minimum.at(self._end_min, slot_rows, end)
        if prior is not None:
            # (while the iteration is in flight the router sees the admitted prefills' uncached tokens)
            np.subtract.at(self._vis_pending, slot_rows, prior)
            self._admit_prefixes(slot_rows, q, prior, adm["shared"], done)

    def _look_up_prefixes(self, cand, free, admitting=None) -> None:
        """The prefix cache hits of the candidates (``cand`` of ``_admission_candidates``) on rows
        with a cache, as the cache is before this step's admissions; ``free``: each candidate row's
        free blocks once the step's other blocks are taken (cached free blocks beyond them are
        evicted first); ``admitting``: a mask of the rows that may admit (None: all). Candidates
        get ``prior`` (hit tokens), ``shared`` (hit blocks that others reference) and ``target``;
        ``x`` becomes the uncached part of the target and ``need`` the blocks taken."""
        rows = cand["rows"]
        on = self._cache_rows[rows]
        if admitting is not None:
            on &= admitting
        if not np.count_nonzero(on):
            return
        # (in the iteration being scheduled: its index is the count so far)
        self._evict_to(rows[on], free[on], self._iterations_flat[rows[on]])
        q, x = cand["q"], cand["x"]
        has = (np.arange(x.shape[1]) < cand["limit"][:, None]) & on[:, None] & (self._n_keys[q] > 0)
        if not np.count_nonzero(has):
            return
        i_idx, j_idx = has.nonzero()
        caches, keys = self._caches, self._keys
        found = [caches[row].lookup(keys[qi], max_hit_blocks(xi))
                 for row, qi, xi in zip(rows[i_idx].tolist(), q[i_idx, j_idx].tolist(), x[i_idx, j_idx].tolist())]
        prior, shared = np.zeros_like(x), np.zeros_like(x)
        prior[i_idx, j_idx], shared[i_idx, j_idx] = np.array(found, dtype=np.int64).T
        prior *= KV_BLOCK_TOKENS
        cand["target"], cand["prior"], cand["shared"] = x, prior, shared
        cand["x"] = x - prior
        cand["cum_x"] = cand["x"].cumsum(axis=1)
        self._set_candidate_need(cand, x)  # v0: the whole target's blocks, bar the shared ones

    def _admit_prefixes(self, slot_rows, q, prior, shared, done) -> None:
        """The admitted requests with prefix keys take their hits (blocks others reference are
        shared: the admission check counted those known before the step, ``shared``) and cache the
        prefix blocks their first chunk fills."""
        # (a loop with scalar writes: the requests are few per step at B = 1, where NumPy's cost per
        # call would dominate, and the cache's work per request dominates at large B anyway)
        caches, all_keys, lru_len = self._caches, self._keys, self._lru_len
        for row, qi, hit_tokens, known_shared, filled in zip(slot_rows.tolist(), q.tolist(), prior.tolist(),
                                                             shared.tolist(), done.tolist()):
            keys = all_keys[qi]
            if not keys:
                continue
            hit = hit_tokens // KV_BLOCK_TOKENS
            held = list(keys[:hit])
            now_shared = caches[row].acquire(held)
            lru_len[row] -= hit - now_shared  # (the hit blocks that were cached free leave the free pool)
            more_shared = now_shared - known_shared
            if more_shared:  # (a block taken by an earlier admission of this step)
                self.free_blocks[row] += more_shared
                self._vis_int[_FREE, row] += more_shared  # (in the router's view: taken when scheduled)
            self.prefix_hit_tokens[qi] += hit_tokens
            self._held[qi] = held
            self._prefix_done[qi] = hit
            self._cache_filled(row, qi, filled)

    def _cache_filled(self, row: int, q: int, filled_tokens: int) -> None:
        """Request ``q``'s prefix blocks within its first ``filled_tokens`` are computed, in the
        iteration row ``row`` has just scheduled: cache them (a key cached already leaves q's block
        its own)."""
        cache = self._caches[row]
        iteration = int(self._iterations_flat[row]) - 1  # (the count includes it)
        keys = self._keys[q]
        full = min(len(keys), filled_tokens // KV_BLOCK_TOKENS)
        done = int(self._prefix_done[q])
        if full > done:
            self._held[q] += cache.register_all(keys[done:full], iteration)
            self._prefix_done[q] = full

    def _release_prefixes(self, slot_rows, q, to_free: bool) -> None:
        """Requests ``q`` (in the order given) drop their prefix blocks; with ``to_free``, the
        shared blocks that stay held are taken back from ``free_blocks`` (which got the blocks of
        all their tokens)."""
        caches, all_held, lru_len = self._caches, self._held, self._lru_len
        for row, qi in zip(slot_rows.tolist(), q.tolist()):
            held = all_held[qi]
            self._prefix_done[qi] = 0
            if held:
                delta, freed = caches[row].release(held)
                lru_len[row] += freed
                all_held[qi] = []
                if to_free:
                    self.free_blocks[row] += delta

    def _settle_evictions(self, rows, free_before_last) -> None:
        """Cached free blocks beyond the free blocks of ``rows`` are evicted (new blocks take the
        uncached free ones first), least recently freed first, by the iteration each row has just
        scheduled. A decode run's earlier iterations evict first, down to ``free_before_last`` (the
        free blocks before its last iteration took its blocks; None without runs), so that the KV
        events of the finished ones are seen while the last is in flight."""
        last = self._iterations_flat[rows] - 1
        if free_before_last is not None:
            self._evict_to(rows, free_before_last, last - 1)
        self._evict_to(rows, self.free_blocks[rows], last)

    def _evict_to(self, rows, free, iteration) -> None:
        """Evict cached free blocks of ``rows`` until they fit in ``free``, in the rows' iterations
        ``iteration`` (their KV events)."""
        free = np.maximum(free, 0)
        over = (self._lru_len[rows] > free).nonzero()[0]  # (rows without a cache have none)
        if over.size:
            rows, free = rows[over], free[over]
            for row, free_blocks, it in zip(rows.tolist(), free.tolist(), iteration[over].tolist()):
                self._caches[row].evict_to(free_blocks, it)
            self._lru_len[rows] = free

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
        if self._caches:  # (in admission order, as the reference frees them)
            self._release_prefixes(slot_rows, q, to_free=True)
        n_done = np.bincount(r_idx, minlength=rows.size)
        self.last_step_completions[rows] = n_done
        k = np.arange(r_idx.size) - np.searchsorted(r_idx, r_idx)  # (r_idx is sorted)
        self._done_q[slot_rows, k] = q
        self._done_rank[slot_rows, k] = rank
        self.completed_count[rows] += n_done
        self.completion_time_sum_s[rows] += n_done * end_s
        self._leave(rows, end, r_idx, j_idx, slot_rows, q, context0, decoding=np.ones_like(r_idx))

    def _preempt(self, rows, clock, free, chunk_budget=None) -> np.ndarray:
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
        if chunk_budget is None:  # v0: a prefill holds its whole target's blocks from admission
            held = np.where(decoding, _ceil_blocks(kv_tokens), _ceil_blocks(block[TARGET])) * valid
        else:  # v1: a prefill holds the blocks of what it computed, and its next chunk needs more
            prior = block[PREFILLED]
            held = np.where(decoding, _ceil_blocks(kv_tokens), _ceil_blocks(prior)) * valid
            rem = np.where(valid & ~decoding, block[TARGET] - prior, 0)
            need = need + _chunk_blocks(prior, _split_budget(chunk_budget, rem))
        if self._caches:
            held = self._prefix_shares(rows, block[Q], held)
        suffix_after = held.sum(axis=1, keepdims=True) - held.cumsum(axis=1)
        victims = valid & (need.cumsum(axis=1) - suffix_after > free[:, None])
        n_victims = victims.sum(axis=1)
        r_idx, j_idx = victims.nonzero()
        q = block[Q, r_idx, j_idx]
        self.prefill_tokens[q] -= block[TARGET, r_idx, j_idx] - block[PREFILLED, r_idx, j_idx]  # never computed
        if self._caches:  # tail first, as they are preempted (held counts what this frees)
            self._release_prefixes(rows[r_idx[::-1]], q[::-1], to_free=False)
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

    def _prefix_shares(self, rows, q, held):
        """``held`` (blocks of each running request's tokens) as the blocks its preemption frees
        when every request after it is preempted too: a prefix block shared by several running
        requests is freed with the first of them (in admission order), the last preempted."""
        held = held.copy()
        for i, row in enumerate(rows.tolist()):
            cache = self._caches.get(row)
            if cache is None or not cache.shared:  # (unshared: a request's blocks are its own)
                continue
            seen = set()
            for j, qi in enumerate(q[i].tolist()):
                keys = self._held[qi] if qi >= 0 else ()
                if keys:
                    firsts = len(set(keys) - seen)
                    seen.update(keys)
                    held[i, j] -= len(keys) - firsts
        return held

    def _prefill_chunks(self, rows, budget_left):
        """Chunked prefill: each running prefill, in running order, gets what is left of the budget."""
        block = self.slots[:, rows, : int(self._tail[rows].max())]
        rem = np.where(block[Q] >= 0, block[TARGET] - block[PREFILLED], 0)
        return rows, block, _split_budget(budget_left, rem), rem > 0

    def _v1_prefill_chunks(self, rows, n, n_dec):
        """v1, before preemption: the running prefills' chunks (the four results of
        ``_prefill_chunks``) and the KV blocks each step row's chunks fill; None without running
        prefills. (A running prefill is the tail of its running list, behind every decode, so
        preemption either keeps its chunk as it is or takes the request.)"""
        p_idx = (n > n_dec).nonzero()[0]
        if p_idx.size == 0:
            return None
        p_rows, block, chunk, prefilling = self._prefill_chunks(rows[p_idx], self._budget[rows[p_idx]] - n_dec[p_idx])
        chunk_need = np.zeros(rows.size, dtype=np.int64)
        chunk_need[p_idx] = _chunk_blocks(block[PREFILLED], chunk).sum(axis=1)
        return p_rows, block, chunk, prefilling, chunk_need

    def _advance_prefills(self, rows, block, chunk, prefilling, clock_before, clock, end_s) -> None:
        """End of an iteration for the running prefills of ``rows``: a prefill that completes yields
        a token and joins the decode set; one that does not keeps its generated count while the
        clock moves."""
        gen_before = block[GEN0] + clock_before[:, None]
        block[PREFILLED] += chunk
        if self._caches:  # the prefix blocks the chunks fill are cached
            qs = block[Q]
            fills = (chunk > 0) & (self._n_keys[qs] > self._prefix_done[qs])
            for i, j in zip(*fills.nonzero()):
                row = int(rows[i])
                self._cache_filled(row, int(qs[i, j]), int(block[PREFILLED, i, j]))
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
