"""Baseline routers: one interface for heuristics, clairvoyant oracles and (agents/learned.py) learned agents.

Every router decides for the B environments of a :class:`~llm_routing_env.view.RouterView` at once::

    router = make_router("lwl")
    router.prepare(config)          # optional: static facts of the EnvConfig (max_model_len, tick length)
    router.reset(num_envs, rng)     # rng: None, an int, a Generator, or one Generator per env
    actions = router.act(view)      # (B,) int64 actions for RoutingCore.step

Class attributes: ``name``, ``modes`` (decision modes it supports), ``clairvoyant`` (reads true
output lengths; reported apart), ``holds`` (may hold a request in tick mode) and ``source`` (one line: where the definition comes from).

**What a router sees.** Heuristics read only the :class:`~llm_routing_env.view.RouterView`
(router queue, each instance as of its last iteration finished, predictor outputs), which holds
no reference to the core, the simulator or the workload. Oracles (``clairvoyant = True``) are given
a :class:`~llm_routing_env.view.ClairvoyantView` instead (``RoutingCore.clairvoyant_view()``: the
same plus true lengths and the simulator) and refuse anything else; they are reported apart.

**Decision modes.** In ``arrival`` mode every router sends the request at the head of the router
queue to an instance. In ``tick`` mode (action ``N`` = hold) the routers dispatch the head
whenever the router queue is non-empty and hold otherwise, except the routers with ``holds = True``:
``max-capacity`` holds between its 1 s marks, ``late-binding`` and ``kv-admission`` (tick mode only)
hold the head until an instance can take it. Every router chooses only among instances that ``view.action_mask``
allows; in tick mode it holds when none is allowed (in arrival mode there is no hold and the
mask always allows every instance).

**Ties** are broken uniformly at random from the env's own Generator (so results do not depend
on how episodes are batched), except ``lor-waiting`` (lowest index, as Vidur does).

Roster (``router_names()``): random, rr, lor, lor-waiting, p2c, lot (the paper's JSQ), least-kv,
lwl, max-capacity, min-min, impact, bucket, late-binding, kv-admission, the cache-aware routers
(issue #13: cache-aware, prefix-load, kv-router, chwbl, session-affinity; they read the head
request's prefix as the router view gives it under the environment's ``cache_knowledge``),
oracle-lwl, oracle-lookahead. See each class.
"""

from __future__ import annotations

import copy
import hashlib
import time

import numpy as np

from llm_routing_env.cluster import NOT_DISPATCHED
from llm_routing_env.predictors import DQN_STATE_BUCKETS
from llm_routing_env.profiles import KV_BLOCK_TOKENS, iteration_time_ms
from llm_routing_env.view import ClairvoyantView

__all__ = ["Router", "make_router", "router_names", "ROUTERS"]

_TOL = 1e-9


def _as_rngs(rng, n: int) -> list[np.random.Generator]:
    """One Generator per env from None, an int seed, a Generator (spawned) or a sequence of them."""
    if isinstance(rng, (list, tuple)):
        if len(rng) != n:
            raise ValueError(f"rng: expected {n} generators (one per env), got {len(rng)}")
        return [r if isinstance(r, np.random.Generator) else np.random.default_rng(r) for r in rng]
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be None, an int, a numpy Generator or one per env, got {rng!r}")
    return list(rng.spawn(n))


def _blocks(tokens):
    return np.ceil(np.asarray(tokens, dtype=np.float64) / KV_BLOCK_TOKENS)


def valid_max_min(values: np.ndarray, valid: np.ndarray, keepdims: bool = False) -> tuple:
    """(B,) largest and smallest of ``values`` (B, N) over each env's allowed instances."""
    return (np.where(valid, values, -np.inf).max(axis=1, keepdims=keepdims),
            np.where(valid, values, np.inf).min(axis=1, keepdims=keepdims))


def effective_free_blocks(view) -> np.ndarray:
    """(B, N) free KV blocks less those the prompts already sent there (still to prefill) will take."""
    return view.kv_blocks_free - _blocks(view.pending_prefill_tokens)


def watermark_blocks(view) -> np.ndarray:
    """(1, N) the scheduler's admission watermark (KV blocks kept free when admitting: 1 % under
    vLLM v0, none under v1), as the view states it."""
    return np.asarray(view.watermark_blocks, dtype=np.float64)[None, :]


class Router:
    """Base class. Subclasses implement :meth:`_choose` (instances for the envs that dispatch)."""

    name = "router"
    modes: tuple[str, ...] = ("arrival", "tick")
    clairvoyant = False
    #: may hold a request at the router in tick mode (the others send the head whenever they can)
    holds = False
    source = ""
    #: largest batch of envs worth giving the router at once (None: any); the evaluator obeys it
    max_batch: int | None = None

    def __init__(self) -> None:
        self.num_envs = 0
        self._rngs: list[np.random.Generator] = []
        self.max_model_len = 4096
        self.decision_interval_s = 0.02
        self.mode: str | None = None

    # ------------------------------------------------------------------------------ set-up
    def prepare(self, config) -> None:
        """Static facts of the environment (an EnvConfig); raises ValueError for an unsupported mode."""
        if config.mode not in self.modes:
            raise ValueError(f"router {self.name!r} supports mode(s) {', '.join(self.modes)}, not {config.mode!r}")
        self.max_model_len = int(config.scenario.max_model_len)
        self.decision_interval_s = float(config.decision_interval_s)
        self.mode = config.mode

    def reset(self, num_envs: int, rng=None) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self._rngs = _as_rngs(rng, self.num_envs)
        self._reset_state(self.num_envs)

    def _reset_state(self, num_envs: int) -> None:
        pass

    # -------------------------------------------------------------------------------- act
    def act(self, view) -> np.ndarray:
        """(B,) int64 actions: an instance for every env with a request (and an allowed instance);
        hold (``N``) otherwise in tick mode, 0 (ignored by the core) in arrival mode."""
        if self.clairvoyant and not isinstance(view, ClairvoyantView):
            raise TypeError(f"router {self.name!r} is clairvoyant: give it RoutingCore.clairvoyant_view(), "
                            f"not a {type(view).__name__}")
        B, N = view.num_running.shape
        if B != self.num_envs:
            self.reset(B, None)
        A = view.action_mask.shape[1]
        tick = A > N
        valid = np.asarray(view.action_mask[:, :N], dtype=bool) & np.asarray(view.has_request, dtype=bool)[:, None]
        go = valid.any(axis=1)
        choice = np.full(B, -1, dtype=np.int64)
        if go.any():
            choice = np.asarray(self._choose(view, valid, go), dtype=np.int64)
        ok = go & (choice >= 0) & (choice < N)
        ok[ok] = valid[np.flatnonzero(ok), choice[ok]]
        if not tick:  # no hold in arrival mode: a router that declines gets the first allowed instance
            fallback = np.argmax(valid, axis=1)
            choice = np.where(ok, choice, np.where(go, fallback, 0))
            return choice.astype(np.int64)
        return np.where(ok, choice, N).astype(np.int64)

    def _choose(self, view, valid: np.ndarray, go: np.ndarray) -> np.ndarray:
        """(B,) instance per env (-1 = hold); only rows in ``go`` matter, ``valid`` (B, N) the allowed
        instances. Update any per-env state for the rows that dispatch."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------- helpers
    def _uniform(self, rows, n: int) -> np.ndarray:
        return np.stack([self._rngs[b].random(n) for b in rows]) if len(rows) else np.zeros((0, n))

    def _argmin(self, score: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Index of the smallest score among valid instances, ties at random (per-env Generator)."""
        s = np.where(valid, score, np.inf)
        best = s.min(axis=1, keepdims=True)
        tol = _TOL * np.maximum(np.abs(np.where(np.isfinite(best), best, 0.0)), 1.0)
        ties = valid & (s <= best + tol)
        choice = np.argmax(ties, axis=1)
        multi = np.flatnonzero(ties.sum(axis=1) > 1)
        if multi.size:
            u = self._uniform(multi, score.shape[1])
            choice[multi] = np.argmax(np.where(ties[multi], u, -1.0), axis=1)
        return choice

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------------------------
# Blind policies
# --------------------------------------------------------------------------------------------


class RandomRouter(Router):
    """Uniform over the allowed instances."""

    name = "random"
    source = "uniform random dispatch (microsoft/vidur vidur/scheduler/global_scheduler/random_global_scheduler.py)"

    def _choose(self, view, valid, go):
        return self._argmin(np.zeros(valid.shape), valid)


class RoundRobinRouter(Router):
    """Cyclic order 0, 1, ..., N-1 per env; the counter advances only when a request is dispatched
    (a masked instance is skipped: the next allowed one in cyclic order)."""

    name = "rr"
    source = ("round robin, the paper's main baseline (arXiv 2408.13510 §6; microsoft/vidur "
              "round_robin_global_scheduler.py)")

    def _reset_state(self, num_envs):
        self.counter = np.zeros(num_envs, dtype=np.int64)

    def _choose(self, view, valid, go):
        B, N = valid.shape
        order = (self.counter[:, None] + np.arange(N)) % N
        first = np.argmax(np.take_along_axis(valid, order, axis=1), axis=1)
        choice = order[np.arange(B), first]
        self.counter = np.where(go, (choice + 1) % N, self.counter)
        return choice


# --------------------------------------------------------------------------------------------
# Count-based load
# --------------------------------------------------------------------------------------------


def outstanding_requests(view) -> np.ndarray:
    """(B, N) requests sent to each instance and not completed (running + waiting, float): the
    router-side in-flight count that SGLang's ``worker.load()`` and KubeAI's ``inFlight`` keep
    (the router's own dispatches are in the waiting queue at once, a completion is seen when it ends)."""
    return (view.num_running + view.num_waiting).astype(np.float64)


class LeastOutstandingRequestsRouter(Router):
    """Fewest requests at the instance (waiting + running), ties at random."""

    name = "lor"
    source = "least outstanding requests / JSQ on request counts (vllm-project/aibrix least-request; Winston 1977)"

    def _choose(self, view, valid, go):
        return self._argmin(outstanding_requests(view), valid)


class LeastWaitingRequestsRouter(Router):
    """Vidur's LOR: fewest requests in the instance's *waiting* queue only, ties to the lowest index.

    Kept for comparison: it ignores running requests, so it piles onto instance 0 whenever every
    waiting queue is empty (which is most of the time below saturation)."""

    name = "lor-waiting"
    source = ("Vidur global scheduler 'lor': min num_pending_requests, first replica on ties "
              "(microsoft/vidur vidur/scheduler/global_scheduler/lor_global_scheduler.py @ 6e2138f)")

    def _choose(self, view, valid, go):
        return np.argmin(np.where(valid, view.num_waiting.astype(np.float64), np.inf), axis=1)


class PowerOfTwoRouter(Router):
    """Two distinct allowed instances drawn at random; the one with fewer outstanding requests
    (waiting + running) wins, ties to the first drawn (itself random). One allowed instance: it."""

    name = "p2c"
    source = "power of two choices (Mitzenmacher 2001; Ray Serve default, SGLang/vllm-router power_of_two)"

    def _choose(self, view, valid, go):
        B, N = valid.shape
        rows = np.flatnonzero(go)
        choice = np.full(B, -1, dtype=np.int64)
        if rows.size == 0:
            return choice
        u = np.where(valid[rows], self._uniform(rows, N), -1.0)
        pick = np.argsort(-u, axis=1, kind="stable")[:, :2] if N > 1 else np.zeros((rows.size, 2), dtype=np.int64)
        a, b = pick[:, 0], pick[:, 1]
        b = np.where(valid[rows, b], b, a)
        load = (view.num_running + view.num_waiting)[rows]
        ar = np.arange(rows.size)
        choice[rows] = np.where(load[ar, b] < load[ar, a], b, a)
        return choice


# --------------------------------------------------------------------------------------------
# Token and memory load
# --------------------------------------------------------------------------------------------


def outstanding_tokens(view) -> np.ndarray:
    """(B, N) remaining prefill tokens + predicted remaining decode tokens (running + waiting)."""
    return view.pending_prefill_tokens + view.pred_remaining_tokens.sum(axis=2)


class LeastOutstandingTokensRouter(Router):
    """Fewest outstanding tokens: remaining prefill + predicted remaining decode tokens.

    This is also the paper's JSQ (A.2.1: the instance with the fewest prompt + decode tokens still
    to process), scored from what a router sees; the evaluator takes ``jsq`` as another name for it."""

    name = "lot"
    source = ("least outstanding tokens (llm-d/llm-d-inference-scheduler pkg/plugins/scorer/pending_tokens.go, "
              "NVIDIA Dynamo's router, vllm-project/aibrix token_load; "
              "the paper's JSQ, arXiv 2408.13510 A.2.1), predicted decode")

    def _choose(self, view, valid, go):
        return self._argmin(outstanding_tokens(view).astype(np.float64), valid)


class LeastKVRouter(Router):
    """Lowest KV-cache utilization (used / capacity blocks); requests still waiting hold no KV."""

    name = "least-kv"
    source = ("least KV-cache utilization (vllm-project/aibrix least-kv-cache; "
              "kubernetes-sigs/gateway-api-inference-extension kv-cache-utilization scorer)")

    def _choose(self, view, valid, go):
        util = view.kv_blocks_used / np.asarray(view.kv_capacity_blocks, dtype=np.float64)[None, :]
        return self._argmin(util, valid)


# --------------------------------------------------------------------------------------------
# Prediction-based
# --------------------------------------------------------------------------------------------


def _coeff_cols(coefficients: np.ndarray) -> tuple:
    """(N, 7) coefficient table -> tuple of seven (1, N) arrays for iteration_time_ms."""
    c = np.asarray(coefficients, dtype=np.float64)
    return tuple(c[None, :, i] for i in range(7))


def work_left_s(view, remaining_decode_tokens: np.ndarray) -> np.ndarray:
    """(B, N) seconds each instance needs to finish what it holds, from its latency profile.

    ``pending_prefill_tokens x prefill_s_per_token`` (the linear prefill cost of the profile) plus
    the decode backlog: ``R`` remaining decode tokens shared by a batch of ``b = clip(running +
    waiting, 1, max_num_seqs)`` requests take ``R / b`` iterations of ``iteration_time_ms(ntok=b,
    decode context = current decode context + pending prompts + R / 2)`` (the context grows by R
    over the backlog; R / 2 is its mean)."""
    seqs = np.asarray(view.max_num_seqs, dtype=np.float64)[None, :]
    R = np.asarray(remaining_decode_tokens, dtype=np.float64)
    b = np.clip(view.num_running + view.num_waiting, 1, seqs).astype(np.float64)
    context = view.decode_context_tokens + view.pending_prefill_tokens + R / 2.0
    iter_s = iteration_time_ms(_coeff_cols(view.coefficients), b, 0.0, 0.0, context) / 1000.0
    prefill_s = view.pending_prefill_tokens * np.asarray(view.prefill_s_per_token)[None, :]
    return prefill_s + R / b * iter_s


def job_alone_s(view, prompt_tokens: np.ndarray, decode_tokens: np.ndarray) -> np.ndarray:
    """(B, N) seconds a request of ``prompt_tokens`` / ``decode_tokens`` takes alone on each instance
    (linear prefill cost + one single-request decode iteration per token at its mean context)."""
    p = np.asarray(prompt_tokens, dtype=np.float64)[:, None]
    d = np.asarray(decode_tokens, dtype=np.float64)[:, None]
    per_token_s = iteration_time_ms(_coeff_cols(view.coefficients), 1.0, 0.0, 0.0, p + d / 2.0) / 1000.0
    return p * np.asarray(view.prefill_s_per_token)[None, :] + d * per_token_s


class LeastWorkLeftRouter(Router):
    """Least work left (LWL-pred): the instance where the head request would finish its share of work
    earliest, ``work_left_s(predicted remaining decode) + job_alone_s(head)``. The second term is
    the same on every instance of a homogeneous cluster and only matters for heterogeneous ones."""

    name = "lwl"
    source = "least work left with predicted lengths (Harchol-Balter, Crovella, Murta 1999: LWL), profile-timed"

    def remaining(self, view) -> tuple[np.ndarray, np.ndarray]:
        return view.pred_remaining_tokens.sum(axis=2), view.head_pred_tokens

    def _choose(self, view, valid, go):
        remaining, head_decode = self.remaining(view)
        score = work_left_s(view, remaining) + job_alone_s(view, view.head_prompt_tokens, head_decode)
        return self._argmin(score, valid)


class MaxCapacityRouter(Router):
    """The paper's Maximum Capacity Usage (A.2.2): every 1 s, the head request to the instance with
    the most available capacity that can fit it.

    * capacity of an instance: ``min(1 - (running + waiting) / max_num_seqs, effective free KV /
      KV capacity)``, where effective free KV = free blocks - blocks the waiting prompts will
      take (the paper state's "available capacity", counting requests already sent there);
    * it *fits* the head when a batch slot is left and the effective free KV (less the scheduler's
      admission watermark, 1 % under vLLM v0) holds ``prompt + predicted decode`` tokens.
    * **tick mode**: at each 1 s mark the requests waiting at the router then are sent, one per
      tick, head first, each to the most-capacity instance that fits it; if the head fits
      nowhere, the rest waits for the next mark. Requests that arrive between marks wait for the
      next mark. (One request per second, read literally, would leave the router queue growing
      without bound at the paper's 20 req/s; the paper reports the policy 2.6 % *better* than RR.)
    * **arrival mode** (no hold): each request on arrival to the most-capacity instance that fits
      it, or to the most-capacity instance when none fits.
    """

    name = "max-capacity"
    holds = True
    source = "paper arXiv 2408.13510 A.2.2 Maximum Capacity Usage (every 1 s, head to the most available capacity that fits)"
    period_s = 1.0

    def _reset_state(self, num_envs):
        self.last_mark = np.full(num_envs, -1, dtype=np.int64)
        self.quota = np.zeros(num_envs, dtype=np.int64)

    def capacity(self, view) -> tuple[np.ndarray, np.ndarray]:
        seqs = np.asarray(view.max_num_seqs, dtype=np.float64)[None, :]
        cap_blocks = np.asarray(view.kv_capacity_blocks, dtype=np.float64)[None, :]
        occupied = view.num_running + view.num_waiting
        free_eff = effective_free_blocks(view)
        capacity = np.minimum(1.0 - occupied / seqs, free_eff / cap_blocks)
        need = _blocks(view.head_prompt_tokens + view.head_pred_tokens)[:, None]
        fits = (occupied < seqs) & (free_eff - watermark_blocks(view) >= need)
        return capacity, fits

    def _choose(self, view, valid, go):
        capacity, fits = self.capacity(view)
        best_fit = self._argmin(-capacity, valid & fits)
        any_fit = (valid & fits).any(axis=1)
        if view.action_mask.shape[1] == view.num_running.shape[1]:  # arrival mode: no hold
            return np.where(any_fit, best_fit, self._argmin(-capacity, valid))
        # tick mode: open a window at each 1 s mark for the requests queued at that mark
        t = np.asarray(view.time_s, dtype=np.float64)
        mark = np.floor(t / self.period_s + 1e-6).astype(np.int64)
        new = go & (mark > self.last_mark)
        at_mark = (t - mark * self.period_s) < self.decision_interval_s - 1e-9
        self.quota = np.where(new, np.where(at_mark, view.queue_len, 0), self.quota)
        self.last_mark = np.where(new, mark, self.last_mark)
        send = go & (self.quota > 0) & any_fit
        self.quota = np.where(go & (self.quota > 0) & ~any_fit, 0, self.quota - send)
        return np.where(send, best_fit, -1)


class MinMinRouter(Router):
    """The paper's Min-Min (A.2.3; Chen et al. 2013) mapped onto head-of-line routing.

    Min-Min repeatedly takes, among the unassigned jobs, the one with the smallest minimum
    completion time and assigns it to that machine; with homogeneous machines the job order is
    shortest-job-first. The routing core dispatches only the head of the router queue (FIFO), so
    the job-selection step has a single candidate and the policy becomes *minimum completion time*
    for the head: ``argmin_m ready_m + ET_m`` where

    * ``ET_m`` (job time, the paper's definition): the head's prefill (prompt x the profile's
      prefill cost per token) + the *upper bound* of its predicted decode bucket (the open last
      bucket closed at ``max_model_len - prompt``) decode tokens, each one iteration of the batch
      it joins on ``m`` (``running + waiting + 1`` requests at the current decode context);
    * ``ready_m``: when ``m`` can start it: the waiting prompts' prefill time + the iteration in
      flight, + the predicted time to its earliest completion if it has no free batch slot or
      not enough effective free KV for the prompt.
    """

    name = "min-min"
    source = "paper arXiv 2408.13510 A.2.3 Min-Min (Chen et al. 2013): prompt + predicted-bucket upper bound; head-of-line MCT"

    def head_upper_bound(self, view) -> np.ndarray:
        ub = DQN_STATE_BUCKETS.upper_bounds[np.asarray(view.head_pred_bucket)]
        cap = np.maximum(self.max_model_len - np.asarray(view.head_prompt_tokens, dtype=np.float64), 1.0)
        return np.minimum(ub, cap)

    def _choose(self, view, valid, go):
        seqs = np.asarray(view.max_num_seqs, dtype=np.float64)[None, :]
        p = np.asarray(view.head_prompt_tokens, dtype=np.float64)[:, None]
        d = self.head_upper_bound(view)[:, None]
        batch = np.minimum(view.num_running + view.num_waiting + 1, seqs)
        context = view.decode_context_tokens + p + d / 2.0
        per_token_s = iteration_time_ms(_coeff_cols(view.coefficients), batch, 0.0, 0.0, context) / 1000.0
        prefill_cost = np.asarray(view.prefill_s_per_token)[None, :]
        exec_s = p * prefill_cost + d * per_token_s
        free_eff = effective_free_blocks(view)
        full = (view.num_running + view.num_waiting >= seqs) | (free_eff < _blocks(p))
        ready_s = (view.pending_prefill_tokens * prefill_cost + view.busy_for_s
                   + np.where(full, view.earliest_completion_s, 0.0))
        return self._argmin(ready_s + exec_s, valid)


class ImpactRouter(Router):
    """The paper's workload-impact heuristic on its own: the instance with the smallest impact,
    i.e. the largest mixing penalty ``r_mix`` (``view.impact``, impact.py), ties at random."""

    name = "impact"
    source = "paper arXiv 2408.13510 §4.3-4.5 workload-impact estimator (impact.py), greedy argmax r_mix"

    def _choose(self, view, valid, go):
        return self._argmin(-np.asarray(view.impact, dtype=np.float64), valid)


class BucketRouter(Router):
    """Size-interval task assignment (SITA-E) by predicted length class.

    Instances are split into contiguous groups, one per predicted decode bucket seen so far (short
    classes on the low indices), sized in proportion to each class's share of the work routed so
    far (SITA-E equalises load across groups; job size in tokens, :meth:`job_size`), at
    least one instance per seen class (largest-remainder rounding). A class never predicted gets
    no instance, so a predictor that never outputs the long class wastes no instance on it; when
    there are more seen classes than instances, class ``k`` of the ``m`` seen ones shares instance
    ``floor(rank(k) N / m)``. Inside its group a request goes to the least outstanding tokens
    (``lot``), ties at random; masked instances are skipped (the whole cluster if its group has
    none allowed)."""

    name = "bucket"
    source = ("size-interval routing by predicted class (SITA-E, Harchol-Balter, Crovella, Murta 1999; "
              "SGLang's bucket policy)")

    def _reset_state(self, num_envs):
        self.K = DQN_STATE_BUCKETS.n_buckets
        self.work = np.zeros((num_envs, self.K))
        self.seen = np.zeros((num_envs, self.K), dtype=bool)

    @staticmethod
    def job_size(view) -> np.ndarray:
        """(B,) the head's size: prompt + predicted decode tokens (the KV it will hold at the end;
        KV capacity is what binds an instance here). Weighting decode tokens by their time in a
        batch (several times a prefill token's) gave a worse split on paper-v100 (14.7 s vs
        12.5 s mean E2E over 8 episodes), so sizes stay in tokens."""
        return np.asarray(view.head_prompt_tokens, dtype=np.float64) + np.asarray(view.head_pred_tokens)

    @staticmethod
    def group_sizes(work: np.ndarray, N: int) -> np.ndarray:
        """(K,) work per class (0 = unseen) -> (K,) instance counts summing to N: proportional,
        >= 1 for every class with work (needs N >= number of such classes), largest remainder."""
        work = np.asarray(work, dtype=np.float64)
        seen = work > 0
        sizes = np.zeros(work.shape, dtype=np.int64)
        if not seen.any():
            return sizes
        raw = np.where(seen, work / work.sum() * N, 0.0)
        sizes = np.where(seen, np.maximum(np.floor(raw), 1), 0).astype(np.int64)
        while sizes.sum() > N:
            sizes[int(np.argmax(np.where(sizes > 1, sizes - raw, -np.inf)))] -= 1
        while sizes.sum() < N:
            sizes[int(np.argmax(np.where(seen, raw - sizes, -np.inf)))] += 1
        return sizes

    def owners(self, b: int, N: int) -> np.ndarray:
        """(N,) the class each instance of env ``b`` serves (-1: none seen yet); needs seen classes <= N."""
        seen = np.flatnonzero(self.seen[b])
        if seen.size == 0:
            return np.full(N, -1, dtype=np.int64)
        sizes = self.group_sizes(np.where(self.seen[b], np.maximum(self.work[b], 1e-12), 0.0), N)
        return np.repeat(np.arange(self.K), sizes)

    def _choose(self, view, valid, go):
        B, N = valid.shape
        k = np.asarray(view.head_pred_bucket, dtype=np.int64)
        rows = np.flatnonzero(go)
        size = self.job_size(view)
        self.seen[rows, k[rows]] = True  # the head's class counts as seen before its group is formed
        in_group = np.zeros((B, N), dtype=bool)
        for b in rows:
            seen = np.flatnonzero(self.seen[b])
            if seen.size > N:
                rank = int(np.searchsorted(seen, k[b]))
                in_group[b, (rank * N) // seen.size] = True
            else:
                in_group[b] = self.owners(int(b), N) == k[b]
        allowed = valid & in_group
        allowed = np.where(allowed.any(axis=1, keepdims=True), allowed, valid)
        choice = self._argmin(outstanding_tokens(view).astype(np.float64), allowed)
        np.add.at(self.work, (rows, k[rows]), size[rows])
        return choice


# --------------------------------------------------------------------------------------------
# Routers that hold (tick mode only): the non-learned users of the paper's no-op action
# --------------------------------------------------------------------------------------------


class LateBindingRouter(Router):
    """Late binding ("pull", join-the-idle-queue): the head request waits at the router until some
    instance has **no request waiting** and **KV room** for it, then goes to the one of those with
    the most effective free KV (free blocks less the prompts still to prefill; ties at random).

    * KV room: after the head's prompt, at least ``headroom_frac`` (10 %) of the instance's KV
      cache stays free beyond the scheduler's admission watermark (1 % under vLLM v0, none under
      v1), for its running requests to grow into;
    * a free batch slot (``running < max_num_seqs``);
    * an instance with nothing running or waiting always qualifies, so a request is never held
      on an idle cluster (the one case where holding cannot help).

    This is how pull-based dispatchers behave (join-idle-queue, Lu et al. 2011; Ray Serve's
    queue-length probes with rejection; Triton's dispatch to free model instances): nothing queues
    at an instance, so a request is bound to an instance only when it can start there.
    """

    name = "late-binding"
    modes = ("tick",)
    holds = True
    headroom_frac = 0.10
    source = ("late binding / join-idle-queue 'pull' dispatch (Lu et al. 2011 JIQ; Ray Serve queue-length probes; "
              "Triton); hold until an instance has nothing waiting and 10% KV headroom, most free KV")

    def ready(self, view, free_blocks: np.ndarray | None = None) -> np.ndarray:
        """(B, N) instances the head may be bound to now (``free_blocks``: effective_free_blocks(view),
        if the caller has it)."""
        cap = np.asarray(view.kv_capacity_blocks, dtype=np.float64)[None, :]
        seqs = np.asarray(view.max_num_seqs)[None, :]
        free = effective_free_blocks(view) if free_blocks is None else free_blocks
        after = free - _blocks(view.head_prompt_tokens)[:, None]
        room = after >= watermark_blocks(view) + self.headroom_frac * cap
        idle = (view.num_running + view.num_waiting) == 0
        return idle | ((view.num_waiting == 0) & room & (view.num_running < seqs))

    def _choose(self, view, valid, go):
        free = effective_free_blocks(view)
        ok = valid & self.ready(view, free)
        choice = self._argmin(-free.astype(np.float64), ok)
        return np.where(ok.any(axis=1), choice, -1)


class KVAdmissionRouter(Router):
    """KV admission: send the head where its prompt + *predicted* output fits in the KV cache without
    preempting anyone, else hold it.

    An instance's predicted peak KV, if every request on it reached its predicted length at once
    (an upper bound: requests finish at different times), is ``used blocks + blocks of the
    prompts still to prefill + predicted remaining decode tokens / 16 + one partly filled block per
    request``; the head fits when that plus ``ceil((prompt + predicted output) / 16)`` stays within
    the capacity less the scheduler's admission watermark (1 % under vLLM v0, none under v1), with a
    free batch slot. Among the instances it fits,
    the one with the most predicted room left (ties at random). An instance with nothing running or
    waiting always takes it (it can run nowhere better). Predicted lengths come from the predictor
    (``head_pred_tokens``, ``pred_remaining_tokens``), never the true ones: a request that outgrows
    its prediction can still cause a preemption.
    """

    name = "kv-admission"
    modes = ("tick",)
    holds = True
    source = ("KV admission control with predicted lengths (prompt + predicted output fits the free KV without "
              "preemption, else hold; cf. S3, Jin et al. 2023; vLLM v0's watermark)")

    def room_left_blocks(self, view, outstanding: np.ndarray | None = None) -> np.ndarray:
        """(B, N) blocks left at the predicted peak if the head were sent there (negative: no room);
        ``outstanding``: running + waiting requests per instance, if the caller has them."""
        cap = np.asarray(view.kv_capacity_blocks, dtype=np.float64)[None, :]
        if outstanding is None:
            outstanding = view.num_running + view.num_waiting
        peak = (view.kv_blocks_used + _blocks(view.pending_prefill_tokens)
                + view.pred_remaining_tokens.sum(axis=2) / KV_BLOCK_TOKENS + outstanding)
        need = _blocks(view.head_prompt_tokens + view.head_pred_tokens)[:, None]
        return cap - watermark_blocks(view) - peak - need

    def _choose(self, view, valid, go):
        outstanding = view.num_running + view.num_waiting
        left = self.room_left_blocks(view, outstanding)
        fits = ((left >= 0) & (outstanding < np.asarray(view.max_num_seqs)[None, :])) | (outstanding == 0)
        ok = valid & fits
        choice = self._argmin(-left, ok)
        return np.where(ok.any(axis=1), choice, -1)


# --------------------------------------------------------------------------------------------
# Cache-aware routers (issue #13): prefix affinity gated by load, as their projects ship them
# --------------------------------------------------------------------------------------------


def prefix_match_fraction(view) -> np.ndarray:
    """(B, N) the share of the head's prompt tokens each instance is believed to hold as a prefix
    (``head_prefix_hit_blocks`` x 16 / prompt tokens, under the environment's cache knowledge)."""
    prompt = np.asarray(view.head_prompt_tokens, dtype=np.float64)[:, None]
    hit_tokens = np.asarray(view.head_prefix_hit_blocks, dtype=np.float64) * KV_BLOCK_TOKENS
    return np.where(prompt > 0, hit_tokens / np.maximum(prompt, 1.0), 0.0)


class CacheAwareRouter(Router):
    """SGLang's ``cache_aware`` policy (sgl-model-gateway, the router's default policy).

    With ``load`` the in-flight requests of each instance (:func:`outstanding_requests`) and
    ``max``/``min`` over the allowed instances:

    1. **load gate**: the cluster is *imbalanced* when ``max - min > balance_abs_threshold`` and
       ``max > balance_rel_threshold x min``; then the head goes to the least loaded instance;
    2. otherwise the instance holding the longest prefix of the head's prompt, if its match rate
       (matched / prompt tokens, :func:`prefix_match_fraction`) is *strictly* above
       ``cache_threshold``;
    3. otherwise (a miss) the least loaded instance.

    Defaults: the launcher's (``sglang_router.launch_router`` / ``RouterArgs``: cache threshold 0.3,
    balance thresholds 64 requests and 1.5x), what a user who starts the router gets; the library's
    ``CacheAwareConfig::default()`` (0.5, 32, 1.1) is what only embedders see. The miss goes to the
    least loaded instance as in the current gateway (sglang PR #14650, "pick min load instead of min
    tenant size"), not to the smallest tree of the older router, whose over-loaded small-tree
    worker attracted every miss. The prefix index is the router's own routing history under
    ``cache_knowledge="approximate"`` (SGLang's approximate radix tree, which also records the
    requests sent on the load-balancing path), counted in 16-token blocks where SGLang counts
    characters. Ties (equal load, equal match) at random, where SGLang takes the first worker.
    """

    name = "cache-aware"
    cache_threshold = 0.3
    balance_abs_threshold = 64
    balance_rel_threshold = 1.5
    source = ("SGLang cache_aware router: imbalanced if max-min load > 64 and max > 1.5 min -> least load, else "
              "longest prefix if match > 0.3, else least load (sgl-project/sglang "
              "sgl-model-gateway/src/policies/cache_aware.rs @053b63ff; defaults of "
              "sgl-router/py_src/sglang_router/router_args.py @083d6013)")

    def imbalanced(self, view, valid) -> np.ndarray:
        """(B,) SGLang's load gate over the allowed instances."""
        max_load, min_load = valid_max_min(outstanding_requests(view), valid)
        return (max_load - min_load > self.balance_abs_threshold) & (max_load > self.balance_rel_threshold * min_load)

    def _choose(self, view, valid, go):
        least_loaded = self._argmin(outstanding_requests(view), valid)
        match = prefix_match_fraction(view)
        best_match = self._argmin(-match, valid)
        match_rate = match[np.arange(valid.shape[0]), best_match]
        cache_hit = match_rate > self.cache_threshold
        return np.where(~self.imbalanced(view, valid) & cache_hit, best_match, least_loaded)


class PrefixLoadRouter(Router):
    """llm-d's default scheduling profile: weighted scorers and the max-score picker.

    Per allowed instance, scores in [0, 1] summed with the default weights (``queue-scorer`` 2,
    ``kv-cache-utilization-scorer`` 2, ``prefix-cache-scorer`` 3):

    * queue: ``(max q - q) / (max q - min q)`` over the allowed instances with ``q`` the waiting
      requests (vLLM's ``num_requests_waiting``); 1 for all when the queues are equal;
    * KV cache: ``1 - used / capacity`` blocks (vLLM's ``kv_cache_usage_perc``: referenced
      blocks; cached free ones count as free);
    * prefix: matched blocks / the prompt's full blocks (both capped at the scorer's 256 blocks),
      from ``head_prefix_hit_blocks`` (llm-d's approximate index under ``cache_knowledge=
      "approximate"``, its precise KV-event scorer under ``"exact"``; blocks of 16 tokens, the
      engine's block size, which the scorer's auto-tune reads).

    The head goes to the highest total; ties at random (the picker shuffles before sorting). The
    load terms are the gate: a warm instance with a long queue and a full cache loses to an idle
    one once ``2 x (queue + KV)`` differences outweigh ``3 x`` the prefix share.
    """

    name = "prefix-load"
    queue_weight = 2.0
    kv_cache_weight = 2.0
    prefix_weight = 3.0
    max_prefix_blocks = 256
    source = ("llm-d inference scheduler default profile: queue-scorer 2 + kv-cache-utilization-scorer 2 + "
              "prefix-cache-scorer 3, max-score picker (llm-d/llm-d-inference-scheduler "
              "pkg/epp/config/loader/defaults.go @159e739b; scorer READMEs under "
              "pkg/epp/framework/plugins/scheduling/scorer/ @12cb9eea)")

    def scores(self, view, valid) -> np.ndarray:
        """(B, N) weighted score of each instance (higher is better)."""
        q = np.asarray(view.num_waiting, dtype=np.float64)
        q_max, q_min = valid_max_min(q, valid, keepdims=True)
        spread = q_max - q_min
        queue = np.where(spread > 0, (q_max - q) / np.where(spread > 0, spread, 1.0), 1.0)
        kv = 1.0 - view.kv_blocks_used / np.asarray(view.kv_capacity_blocks, dtype=np.float64)[None, :]
        total = np.minimum(np.asarray(view.head_prompt_tokens) // KV_BLOCK_TOKENS, self.max_prefix_blocks)[:, None]
        matched = np.minimum(np.asarray(view.head_prefix_hit_blocks), total)
        prefix = np.where(total > 0, matched / np.maximum(total, 1), 0.0)
        return (self.queue_weight * np.clip(queue, 0.0, 1.0) + self.kv_cache_weight * np.clip(kv, 0.0, 1.0)
                + self.prefix_weight * np.clip(prefix, 0.0, 1.0))

    def _choose(self, view, valid, go):
        return self._argmin(-self.scores(view, valid), valid)


class KVRouter(Router):
    """NVIDIA Dynamo's KV router (``--router-mode kv``): the lowest ``cost = overlap_score_weight x
    prefill_blocks + decode_blocks`` (weight 1, the default; temperature 0: the minimum, ties at random).

    * ``prefill_blocks``: the prompt blocks the instance must compute (prompt tokens less the
      blocks it holds, ``head_prefix_hit_blocks``, over 16) plus the prefill work already sent there
      (``pending_prefill_tokens`` / 16; Dynamo counts a prompt until its first token);
    * ``decode_blocks``: the instance's active KV blocks (``kv_blocks_used``) plus the head's blocks.

    Dynamo's current docs write the same cost as ``prefill_load_scale x max(active prefill + prompt
    blocks - overlap credit, 0) + decode_blocks`` with scale and device credit 1 (the defaults).
    The cache only lowers the prefill term, block for block against the instance's backlog: a warm
    instance with more than the prompt's worth of extra active or pending blocks loses (the load
    gate). Dynamo tracks active blocks router-side from its own dispatches (prompt blocks of the
    requests in flight); the view's used blocks are the engines' (prompts admitted plus generated
    tokens), the prompts still waiting counted in the pending prefill instead.
    """

    name = "kv-router"
    overlap_score_weight = 1.0
    source = ("NVIDIA Dynamo KV router: min overlap_score_weight (1) x uncached + pending prefill blocks + active "
              "blocks (ai-dynamo/dynamo docs/components/router/README.md @02a5f28f, router-concepts.md @03037af0)")

    def cost(self, view) -> np.ndarray:
        """(B, N) Dynamo's cost of sending the head to each instance, in 16-token blocks."""
        prompt_blocks = np.asarray(view.head_prompt_tokens, dtype=np.float64)[:, None] / KV_BLOCK_TOKENS
        uncached = np.maximum(prompt_blocks - np.asarray(view.head_prefix_hit_blocks, dtype=np.float64), 0.0)
        prefill = view.pending_prefill_tokens / KV_BLOCK_TOKENS + uncached
        decode = view.kv_blocks_used + np.ceil(prompt_blocks)
        return self.overlap_score_weight * prefill + decode

    def _choose(self, view, valid, go):
        return self._argmin(self.cost(view), valid)


def _hash64(text: str) -> int:
    """A stable 64-bit hash (KubeAI uses xxhash64; any fixed hash gives a consistent-hash ring)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class CHWBLRouter(Router):
    """Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018), as KubeAI's
    ``PrefixHash`` strategy ships it.

    A ring holds 256 virtual nodes per instance (``replication``). The head's key is hashed onto
    the ring; walking clockwise, the first allowed instance whose load is admissible takes it:
    ``in_flight + 1 <= load_factor x (total_in_flight + 1) / N`` with ``load_factor = 1.25``
    (``meanLoadFactor`` 125), or any instance when nothing is in flight; if none is admissible, the
    first allowed instance met (the key's home): below about one request in flight per instance
    no instance passes the test, so light load is pure hashing. In-flight counts are
    :func:`outstanding_requests`.

    The key: KubeAI hashes the first 100 characters of the first user message (chat API), so a
    conversation keeps its key; here a request with a session (``head_session >= 0``) is keyed by
    its session. A request without one is keyed by the start of its prompt, as KubeAI's completions
    API does (the first 100 characters, about 25 tokens: its first two prefix block ids,
    ``head_prefix_ids``), so requests sharing a system prompt share a key (the bound spreads them);
    a prompt with no prefix block ids is its own key (its request id).
    """

    name = "chwbl"
    load_factor = 1.25
    replication = 256
    key_blocks = 2
    source = ("consistent hashing with bounded loads, load factor 1.25, 256 virtual nodes (Mirrokni et al., "
              "arXiv 1608.01350; substratusai/kubeai internal/loadbalancer/balance_chwbl.go @08e69e54, "
              "defaults api/k8s/v1/model_types.go)")

    def __init__(self) -> None:
        super().__init__()
        self._rings: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def ring(self, N: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted virtual-node hashes (N x replication,), (positions, N) instances in the order a
        clockwise walk from each position first meets them)."""
        if N not in self._rings:
            hashes = np.array([_hash64(f"instance-{n}{i}") for n in range(N) for i in range(self.replication)],
                              dtype=np.uint64)
            owner = np.repeat(np.arange(N), self.replication)
            order = np.argsort(hashes, kind="stable")
            hashes, owner = hashes[order], owner[order]
            P = owner.size
            at = np.arange(P)
            distance = np.empty((P, N), dtype=np.int64)  # clockwise steps from each position to instance n
            for n in range(N):
                mine = np.flatnonzero(owner == n)
                nxt = np.searchsorted(mine, at)
                distance[:, n] = np.where(nxt < mine.size, mine[np.minimum(nxt, mine.size - 1)], mine[0] + P) - at
            self._rings[N] = (hashes, np.argsort(distance, axis=1, kind="stable"))
        return self._rings[N]

    def key(self, view, b: int) -> str:
        session = int(view.head_session[b])
        if session >= 0:
            return f"session:{session}"
        ids = np.asarray(view.head_prefix_ids(b))[: self.key_blocks]
        if ids.size:
            return "prefix:" + " ".join(str(int(x)) for x in ids)
        return f"request:{int(view.head_request[b])}"

    def admissible(self, view) -> np.ndarray:
        """(B, N) KubeAI's bounded-load test for every instance."""
        load = outstanding_requests(view)
        total = load.sum(axis=1, keepdims=True)
        N = load.shape[1]
        return (total == 0) | (load + 1.0 <= self.load_factor * (total + 1.0) / N)

    def _choose(self, view, valid, go):
        B, N = valid.shape
        hashes, walk = self.ring(N)
        rows = np.flatnonzero(go)
        position = np.searchsorted(hashes, np.array([_hash64(self.key(view, int(b))) for b in rows], dtype=np.uint64))
        order = walk[position % hashes.size]               # (rows, N) instances in walk order
        ok = np.take_along_axis(valid[rows], order, axis=1)
        fits = ok & np.take_along_axis(self.admissible(view)[rows], order, axis=1)
        pick = np.where(fits.any(axis=1), np.argmax(fits, axis=1), np.argmax(ok, axis=1))
        choice = np.full(B, -1, dtype=np.int64)
        choice[rows] = order[np.arange(rows.size), pick]
        return choice


class SessionAffinityRouter(Router):
    """Session affinity (sticky sessions): a request of a session already seen goes to the instance
    that session was sent to, as long as that instance is allowed; the first request of a session
    (and any request without a session id, ``head_session = -1``) goes to the instance with the
    fewest requests in flight (:func:`outstanding_requests`), ties at random, and binds its session
    there. Without session ids it is therefore ``lor``. There is no load gate: a session stays on
    its instance however loaded it gets (the herding that the gated routers avoid).
    """

    name = "session-affinity"
    source = ("session affinity: later requests of a session to the instance of its first, new sessions to the "
              "fewest requests in flight (llm-d/llm-d-inference-scheduler "
              "pkg/epp/framework/plugins/scheduling/scorer/sessionaffinity/README.md @06dd328d)")

    def _reset_state(self, num_envs):
        self.sessions: list[dict[int, int]] = [{} for _ in range(num_envs)]

    def _choose(self, view, valid, go):
        choice = self._argmin(outstanding_requests(view), valid)
        session = np.asarray(view.head_session)
        for b in np.flatnonzero(go & (session >= 0)):
            sid = int(session[b])
            bound = self.sessions[b].get(sid)
            if bound is not None and valid[b, bound]:
                choice[b] = bound
            else:
                self.sessions[b][sid] = int(choice[b])
        return choice


# --------------------------------------------------------------------------------------------
# Clairvoyant oracles (reported apart)
# --------------------------------------------------------------------------------------------


class OracleLWLRouter(LeastWorkLeftRouter):
    """O1, clairvoyant LWL: ``lwl`` with the TRUE remaining decode tokens of every request on each
    instance and the head's true output length (``ClairvoyantView``)."""

    name = "oracle-lwl"
    clairvoyant = True
    source = ("clairvoyant least work left with true lengths (LWL, Harchol-Balter, Crovella, Murta 1999, given "
              "the true sizes)")

    def remaining(self, view):
        return view.remaining_tokens.astype(np.float64), view.head_output_tokens.astype(np.float64)


class OracleLookaheadRouter(Router):
    """O2, clairvoyant one-step lookahead: for every allowed instance ``n``, copy cluster ``b``'s
    simulator state (``copy.deepcopy(view.simulator)`` with every other cluster reset), dispatch the head
    request (true output length) to ``n``, run until idle with no further arrivals and sum the E2E
    latency of every request dispatched in that cluster (completed ones add the same constant to
    every candidate); pick the smallest sum, ties at random. Requests still waiting at the router
    behind the head are not simulated.

    Expensive (N simulations to idle per decision): ``cost_s`` / ``decisions`` accumulate its own
    wall time, ``ms_per_decision`` reports it. ``max_batch = 1``: the evaluator runs it one
    episode per simulator, so each copy holds a single cluster."""

    name = "oracle-lookahead"
    clairvoyant = True
    max_batch = 1
    source = ("clairvoyant one-step what-if simulation with true lengths (simulates the decision on every "
              "instance; an upper reference)")

    def _reset_state(self, num_envs):
        self.cost_s = 0.0
        self.decisions = 0

    @property
    def ms_per_decision(self) -> float:
        return 1000.0 * self.cost_s / self.decisions if self.decisions else float("nan")

    def _choose(self, view, valid, go):
        t0 = time.perf_counter()
        sim = view.simulator
        B, N = valid.shape
        score = np.full((B, N), np.inf)
        for b in np.flatnonzero(go):
            rid, prompt = int(view.head_request[b]), int(view.head_prompt_tokens[b])
            output, arrival = int(view.head_output_tokens[b]), float(view.head_arrival_s[b])
            base = copy.deepcopy(sim)
            others = np.array([c for c in range(sim.B) if c != b], dtype=np.int64)
            if others.size:
                base.reset(others)
            for n in np.flatnonzero(valid[b]):
                trial = copy.deepcopy(base)
                trial.dispatch(int(b), rid, int(n), prompt, output, arrival)
                trial.run_until_idle()
                rec = trial.records(int(b))
                inside = rec.status != NOT_DISPATCHED
                score[b, n] = float(np.sum(rec.completion_s[inside] - rec.arrival_s[inside]))
            self.decisions += 1
        choice = self._argmin(score, valid & np.isfinite(score))
        self.cost_s += time.perf_counter() - t0
        return choice


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

ROUTERS: dict[str, type[Router]] = {cls.name: cls for cls in (
    RandomRouter, RoundRobinRouter, LeastOutstandingRequestsRouter, LeastWaitingRequestsRouter, PowerOfTwoRouter,
    LeastOutstandingTokensRouter, LeastKVRouter, LeastWorkLeftRouter, MaxCapacityRouter,
    MinMinRouter, ImpactRouter, BucketRouter, LateBindingRouter, KVAdmissionRouter, CacheAwareRouter,
    PrefixLoadRouter, KVRouter, CHWBLRouter, SessionAffinityRouter, OracleLWLRouter, OracleLookaheadRouter)}


def router_names(clairvoyant: bool | None = None) -> list[str]:
    """Registered router names in roster order (``clairvoyant=False``: heuristics only, True: oracles)."""
    return [n for n, c in ROUTERS.items() if clairvoyant is None or c.clairvoyant == clairvoyant]


def make_router(name: str, **kwargs) -> Router:
    """A new router by registry name; ValueError naming the known ones otherwise."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}; known routers: {', '.join(ROUTERS)} (or a model .zip)")
    return ROUTERS[name](**kwargs)
