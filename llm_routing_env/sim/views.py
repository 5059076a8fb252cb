"""The fast simulator's router queries: what a router sees, and the records (the truth).

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

from ..cluster import InstanceState, RequestRecords
from .prefix_cache import leading_run
from .state import _CLOCK, _COMPLETED, _COMPLETION_TIME_SUM, _FIRST_GEN0, _FIRST_PRED, _FIRST_Q, _FREE, \
    _INT_COUNTERS, _N_DEC, _CTX_BASE, _RUNNING, _WAITING, GEN0, PREFILLED, Q, TARGET


class RouterQueries:
    """Every query of the simulator's state (mixed into :class:`.ClusterSimulator`)."""

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
            "waiting_request": self.waiting[np.arange(self._rows)[:, None], pos],
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

    def prefix_cached_blocks(self) -> np.ndarray:
        """(B, N) blocks holding a cached prefix (referenced or cached free) per instance, as the
        KV events of its iterations finished show them (vLLM exports cache usage)."""
        out = np.zeros(self._rows, dtype=np.int64)
        if self._caches:
            finished = self._iterations_flat - self._in_flight()
            for row, cache in self._caches.items():
                out[row] = cache.seen(int(finished[row]))[0]
        return out.reshape(self.B, self.N)

    def seen_prefix_hits(self, block_ids) -> np.ndarray:
        """(B, N) per instance, the leading blocks of cluster b's prefix ``block_ids[b]`` (block
        ids, or None) that the instance's KV events up to its last iteration finished show cached
        (uncapped). Only with ``cache_knowledge="exact"`` (the caches keep their events' keys)."""
        if not self._kv_events:
            raise ValueError("the KV events' keys are kept only with cache_knowledge='exact'")
        if len(block_ids) != self.B:
            raise ValueError(f"block_ids must hold one prefix (or None) per cluster: {self.B}, got {len(block_ids)}")
        out = np.zeros((self.B, self.N), dtype=np.int64)
        if not self._caches:
            return out
        finished = self._iterations_flat - self._in_flight()
        for b, ids in enumerate(block_ids):
            if ids is None or not len(ids):
                continue
            keys = self._prefix_keys.known_keys(ids)
            if not keys:
                continue
            for n in range(self.N):
                cache = self._caches.get(b * self.N + n)
                if cache is not None:
                    out[b, n] = leading_run(keys, cache.seen(int(finished[b * self.N + n]))[1])
        return out

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
            completion_s=part(self.completion_s), prefix_hit_tokens=part(self.prefix_hit_tokens),
            prefill_tokens=part(self.prefill_tokens),
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
