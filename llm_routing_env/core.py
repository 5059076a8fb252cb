"""The routing episode logic, batched over B environments: the functional core behind the Env,
the VectorEnv and the evaluator.

One :class:`RoutingCore` holds B episodes of one scenario: a :class:`ClusterSimulator` with B
clusters, each episode's requests (true lengths and the predictor's outputs), the router queue, the
decision clock and the reward accounting. ``step(actions)`` applies one decision per environment
and advances simulated time; :meth:`view` says what a router can see (a :class:`RouterView`).

Decision modes
* ``tick`` (the paper's): a decision every ``decision_interval_s`` (0.02 s) of simulated time.
  Actions ``0..N-1`` send the head of the router queue to that instance, action ``N`` holds.
  Requests wait at the router until sent. With ``skip_idle_ticks`` (default) ticks at which the
  router queue is empty are skipped (the clock jumps to the first tick after the next arrival):
  nothing can be decided there and the paper's agent could only hold.
  With ``hold_until="event"`` a hold is an *option*: it lasts, tick by tick, until the first tick
  at which the router sees something that can change its decision: a request arrives, a request
  completes on some instance (as of the last finished iteration, like every router query), or no
  instance has work left; so each hold covers a change the router can see, and a semi-MDP learner
  discounts it by ``info["elapsed_s"]`` (docs/learning.md: at 20 req/s such events come every
  ~0.05 s). The hold ends at a tick the router reaches by polling what it sees: no look-ahead.
* ``arrival``: one decision per arriving request, at its arrival time; actions ``0..N-1``.

An episode ends (``terminated``) when every request has completed: once the last request is
dispatched, the step that dispatched it runs the cluster to completion.

With one environment (B = 1, the single ``gym.make`` env) ``single_env.py`` does what ``step``,
the view, the paper observation and the step's info do, in Python numbers, since NumPy's cost per
call would exceed the work; the tests hold the two paths to identical trajectories.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium.utils import seeding

from .config import EnvConfig
from .impact import guidance
from .metrics import summarize
from .predictors import DQN_STATE_BUCKETS, make_predictor
from .prefix_index import hit_blocks, new_index, record_dispatch
from .profiles import KV_BLOCK_TOKENS
from .sim import ClusterSimulator
from .sim.prefix_cache import max_hit_blocks
from .view import ClairvoyantView, RouterQueries, RouterView


class RoutingCore:
    """B episodes of one scenario advanced together (see the module docstring)."""

    def __init__(self, config: EnvConfig, num_envs: int = 1):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.config = config
        self.B, self.N, self.A = int(num_envs), config.num_instances, config.num_actions
        self.R = config.max_requests()
        cluster = config.scenario.cluster_config()
        self.buckets = DQN_STATE_BUCKETS
        self.K = self.buckets.n_buckets
        self.sim = ClusterSimulator(cluster, num_clusters=self.B, max_requests=self.R, prediction_classes=self.K)
        self.predictor = make_predictor(config.predictor, buckets=self.buckets, **config.predictor_kwargs)
        if hasattr(self.predictor, "fit"):  # task-prior, learned: trained on data no episode uses
            self.predictor.fit(config.scenario.predictor_training_workload())
        coeffs = cluster.coefficient_table()
        self.coefficients = coeffs
        self.kv_capacity = cluster.per_instance("kv_capacity_blocks")
        self.watermark_blocks = cluster.per_instance("watermark_blocks")
        self.max_num_seqs = cluster.per_instance("max_num_seqs")
        self.cache_knowledge = cluster.cache_knowledge
        # the approximate index's LRU size per instance (default: its KV capacity, llm-d's auto-tune)
        self.prefix_index_capacity = (self.kv_capacity if cluster.prefix_index_capacity_blocks is None
                                      else np.full(self.N, cluster.prefix_index_capacity_blocks, dtype=np.int64))
        # a long prompt's prefill cost per token: the linear terms above the knee
        self.prefill_s_per_token = (coeffs[:, 1] + coeffs[:, 2]) / 1000.0
        # for the B = 1 path (single_env.py): the action masks, and per instance max_num_seqs, KV
        # capacity and coefficients as Python numbers
        self.all_valid, self.hold_only = [True] * self.A, [False] * self.N + [True]
        self.instance_constants_one = list(zip(self.max_num_seqs.tolist(), self.kv_capacity.tolist(),
                                               [tuple(row) for row in coeffs.tolist()]))

        B, R = self.B, self.R
        self.rngs = [seeding.np_random(None)[0] for _ in range(B)]
        self.n_req = np.zeros(B, dtype=np.int64)
        self.arrival = np.full((B, R), np.inf)
        self.arrival_cumsum = np.zeros((B, R + 1))
        self.prompt = np.ones((B, R), dtype=np.int64)
        self.output = np.ones((B, R), dtype=np.int64)
        self.task = np.zeros((B, R), dtype=np.int64)
        self.pred_bucket = np.zeros((B, R), dtype=np.int64)
        self.pred_tokens = np.ones((B, R))
        self.task_names: list[tuple[str, ...]] = [()] * B
        # per env: how the episode's requests were fitted to the context (refused ones never enter)
        self.context_fits: list = [None] * B
        self.prefix_blocks: list = [None] * B  # per env: its workload's prefix block ids, or None
        self.has_prefixes = np.zeros(B, dtype=bool)  # per env: prefix_blocks is not None (read each step)
        self.prefix_len = np.zeros((B, R), dtype=np.int64)  # full prefix blocks each prompt declares
        self.session = np.full((B, R), -1, dtype=np.int64)  # chat session per request (-1: none)
        self.prefix_index: list = [None] * B  # per env: the router's approximate index (prefix_index.py)
        self.t = np.zeros(B)
        self.tick = np.zeros(B, dtype=np.int64)
        self.n_arrived = np.zeros(B, dtype=np.int64)
        self.n_dispatched = np.zeros(B, dtype=np.int64)
        self.latency_integral = np.zeros(B)  # F(t): time spent in the system so far, summed over requests
        self.completed = np.zeros(B, dtype=np.int64)
        self.steps = np.zeros(B, dtype=np.int64)
        self.episode_seed = np.zeros(B, dtype=np.int64)
        self.last_h = np.zeros(B)
        self.step_start_s = np.zeros(B)  # when the last step began: its elapsed time discounts it (semi-MDP)
        self._view: RouterView | None = None
        self._counters_one: dict | None = None
        # what a RouterView reads: the simulator's router queries (closures: the view keeps no
        # reference to the core or the simulator)
        sim = self.sim
        self._queries = RouterQueries(
            instance_state=lambda: sim.instance_state(), decode_totals=lambda: sim.decode_totals(),
            predicted_decode_sets=lambda: sim.predicted_decode_sets(), predicted_remaining=lambda: self._predicted_remaining(),
            prefix_cached_blocks=lambda: sim.prefix_cached_blocks(), head_prefix_hit_blocks=lambda: self._head_prefix_hits(),
            head_prefix_ids=lambda b: self._head_prefix_ids(b))

    # ----------------------------------------------------------------------------- episodes
    def reset(self, envs=None, seeds=None) -> None:
        """Start new episodes in ``envs`` (default all); ``seeds`` (one per env, or None) reseed them."""
        envs = np.arange(self.B) if envs is None else np.asarray(envs, dtype=np.int64).ravel()
        if seeds is None:
            seeds = [None] * envs.size
        self.sim.reset(envs)
        for b, seed in zip(envs, seeds):
            if seed is not None:
                self.rngs[b] = seeding.np_random(int(seed))[0]
            self._load_episode(int(b), int(self.rngs[b].integers(2**62)))
        cfg = self.config
        first = self.arrival[envs, 0]
        if cfg.mode == "arrival":
            self.t[envs] = first
        else:
            self.tick[envs] = self._first_tick_at_or_after(first) if cfg.skip_idle_ticks else 0
            self.t[envs] = self.tick[envs] * cfg.decision_interval_s
        self.n_dispatched[envs] = 0
        self.n_arrived[envs] = 0
        self.latency_integral[envs] = 0.0
        self.completed[envs] = 0
        self.steps[envs] = 0
        self.last_h[envs] = 0.0
        self.step_start_s[envs] = self.t[envs]
        target = self.sim.now_s.copy()
        target[envs] = self.t[envs]
        self.sim.advance_to(target)
        self._count_arrivals(envs)
        self._view = self._counters_one = None

    def _load_episode(self, b: int, seed: int) -> None:
        w = self.config.scenario.make_workload(seed)
        n = len(w)
        if n > self.R:
            raise RuntimeError(f"episode of {n} requests exceeds the environment's capacity of {self.R}; "
                               "give the scenario num_requests")
        if n == 0:
            raise RuntimeError("the scenario produced an episode without requests")
        self.episode_seed[b] = seed
        self.n_req[b] = n
        self.arrival[b] = np.inf
        self.arrival[b, :n] = w.arrival_s
        self.arrival_cumsum[b, 1:n + 1] = np.cumsum(w.arrival_s)
        self.arrival_cumsum[b, n + 1:] = self.arrival_cumsum[b, n]
        self.prompt[b, :n], self.output[b, :n], self.task[b, :n] = w.prompt_tokens, w.output_tokens, w.task
        self.task_names[b] = w.task_names
        self.context_fits[b] = w.context_fit
        # prefixes reach the instances' prefix caches in KV-cache blocks (Mooncake's 512-token
        # hashes are split by Workload.with_kv_blocks; a no-op for 16-token prefixes); a prompt
        # clipped to the context keeps the full blocks it still has
        w = w.with_kv_blocks()
        self.prefix_blocks[b] = (tuple(h[:p // KV_BLOCK_TOKENS] for h, p in zip(w.prefix_hashes, w.prompt_tokens.tolist()))
                                 if w.prefix_hashes is not None else None)
        self.has_prefixes[b] = self.prefix_blocks[b] is not None
        self.prefix_len[b] = 0
        if self.has_prefixes[b]:
            self.prefix_len[b, :n] = np.fromiter(map(len, self.prefix_blocks[b]), dtype=np.int64, count=n)
        self.session[b] = -1
        if w.session_ids is not None:
            self.session[b, :n] = w.session_ids
        self.prefix_index[b] = (new_index(self.prefix_blocks[b], self.prefix_index_capacity)
                                if self.has_prefixes[b] and self.cache_knowledge == "approximate" else None)
        if hasattr(self.predictor, "reset"):
            self.predictor.reset(seed=seed)
        pred = self.predictor.predict_workload(w)
        self.pred_bucket[b, :n] = pred.bucket
        self.pred_tokens[b, :n] = np.maximum(pred.point_tokens, 1.0)
        self.sim.set_predictions(b, self.pred_bucket[b, :n], self.pred_tokens[b, :n])
        if self.B == 1:  # the episode as Python lists, for single_env.py
            self._arrival_one, self._arrival_cumsum_one = self.arrival[0].tolist(), self.arrival_cumsum[0].tolist()
            self._prompt_one, self._output_one = self.prompt[0].tolist(), self.output[0].tolist()
            self._pred_bucket_one, self._pred_tokens_one = self.pred_bucket[0].tolist(), self.pred_tokens[0].tolist()

    def _first_tick_at_or_after(self, t_s: np.ndarray) -> np.ndarray:
        dt = self.config.decision_interval_s
        k = np.ceil(t_s / dt).astype(np.int64)
        return k + (k * dt < t_s)  # guard the float rounding of the division

    def _count_arrivals(self, envs) -> None:
        """Move n_arrived forward to every request that has arrived by t (arrivals are sorted)."""
        while True:
            i = np.minimum(self.n_arrived[envs], self.R - 1)
            more = (self.n_arrived[envs] < self.n_req[envs]) & (self.arrival[envs, i] <= self.t[envs])
            if not more.any():
                return
            self.n_arrived[envs] += more

    # --------------------------------------------------------------------------------- step
    def step(self, actions, envs=None):
        """Apply one decision in each of ``envs`` (default all). Returns (reward, terminated,
        truncated, h) for those envs; h is the impact guidance of the action (impact.py)."""
        cfg = self.config
        envs = np.arange(self.B) if envs is None else np.asarray(envs, dtype=np.int64).ravel()
        actions = np.asarray(actions)
        if actions.shape != envs.shape or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be {envs.size} integers, got {actions!r}")
        bad = (actions < 0) | (actions >= self.A)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"action {int(actions[i])} is outside the action space 0..{self.A - 1} "
                             f"({self.N} instances{' + hold' if cfg.mode == 'tick' else ''}) in env {int(envs[i])}")
        self.step_start_s[envs] = self.t[envs]
        arrived_before = self.n_arrived.copy()
        view = self.view()
        has_request = view.has_request[envs]
        h = guidance(view.impact[envs], actions, has_request)
        self.last_h[envs] = h

        # dispatch the head request where the action names an instance (hold or no request: nothing)
        go = has_request & (actions < self.N)
        if go.any():
            b = envs[go]
            rid = self.n_dispatched[b]
            prefixes = None
            if self.has_prefixes[b].any():
                prefixes = [None if self.prefix_blocks[i] is None else self.prefix_blocks[i][r]
                            for i, r in zip(b.tolist(), rid.tolist())]
            self.sim.dispatch(b, rid, actions[go], self.prompt[b, rid], self.output[b, rid], self.arrival[b, rid],
                              prefix_blocks=prefixes)
            if prefixes is not None:
                self.note_dispatches(b.tolist(), rid.tolist(), actions[go].tolist())
            self.n_dispatched[b] += 1

        # the next decision time
        routed_all = self.n_dispatched[envs] >= self.n_req[envs]
        if cfg.mode == "arrival":
            nxt = self.arrival[envs, np.minimum(self.n_dispatched[envs], self.R - 1)]
        else:
            self.tick[envs] += 1
            if cfg.skip_idle_ticks:
                idle = self.n_dispatched[envs] >= self.n_arrived[envs]
                # the episode's own next arrival (past its last request the arrays hold inf padding)
                nxt_arrival = self.arrival[envs, np.minimum(self.n_arrived[envs], self.n_req[envs] - 1)]
                jump = idle & ~routed_all
                self.tick[envs] = np.where(jump, np.maximum(self.tick[envs], self._first_tick_at_or_after(nxt_arrival)),
                                           self.tick[envs])
            nxt = self.tick[envs] * cfg.decision_interval_s
        nxt = np.where(routed_all, np.inf, nxt)
        if cfg.max_sim_time_s is not None:
            nxt = np.minimum(nxt, cfg.max_sim_time_s)
        target = self.sim.now_s.copy()
        target[envs] = nxt
        self.sim.advance_to(target)
        self.t[envs] = np.where(np.isfinite(nxt), nxt, self.sim.now_s[envs])
        self._count_arrivals(envs)
        if cfg.hold_until == "event":
            self._hold_until_event(envs[has_request & (actions >= self.N) & ~routed_all], arrived_before)

        # reward over the elapsed interval
        count, total = self.sim.completions()
        count, total = count[envs], total[envs]
        newly_completed = count - self.completed[envs]
        self.completed[envs] = count
        t = self.t[envs]
        n_arr = self.n_arrived[envs]
        integral = (n_arr - count) * t - self.arrival_cumsum[envs, n_arr] + total
        if cfg.reward == "latency":
            reward = -cfg.reward_scale * (integral - self.latency_integral[envs])
        else:
            reward = cfg.completion_reward * newly_completed - self._unfinished_fraction(envs)
        self.latency_integral[envs] = integral
        self.steps[envs] += 1
        terminated = count >= self.n_req[envs]
        truncated = ~terminated & (
            ((self.steps[envs] >= cfg.max_episode_steps) if cfg.max_episode_steps else False)
            | ((t >= cfg.max_sim_time_s) if cfg.max_sim_time_s is not None else False))
        self._view = self._counters_one = None
        return reward, terminated, np.asarray(truncated, dtype=bool), h

    def note_dispatches(self, envs, requests, instances) -> None:
        """What the router remembers of its dispatches (Python ints): the approximate index."""
        for b, r, n in zip(envs, requests, instances):
            index = self.prefix_index[b]
            if index is not None:
                record_dispatch(index, r, n)

    def _head_prefix_hits(self) -> np.ndarray:
        """(B, N) the head request's prefix blocks each instance holds, as the router knows it
        (``cache_knowledge``), capped as the engine caps a hit (one token is always computed)."""
        out = np.zeros((self.B, self.N), dtype=np.int64)
        head = np.minimum(self.n_dispatched, self.R - 1)
        on = (self.n_arrived > self.n_dispatched) & self.has_prefixes
        if self.cache_knowledge == "polled" or not on.any():
            return out
        if self.cache_knowledge == "approximate":
            for b in on.nonzero()[0].tolist():
                out[b] = hit_blocks(self.prefix_index[b], int(head[b]))
        else:  # exact: the KV events of the iterations finished
            out = self.sim.seen_prefix_hits([self.prefix_blocks[b][head[b]] if on[b] else None for b in range(self.B)])
        cap = max_hit_blocks(np.maximum(self.prompt[np.arange(self.B), head], 1))  # (no request: prompt 0, cap 0)
        return np.minimum(out, cap[:, None])

    def _head_prefix_ids(self, b: int) -> np.ndarray:
        """Env ``b``'s head request's prefix block ids (empty without a request or prefixes)."""
        head = int(self.n_dispatched[b])
        if head >= self.n_arrived[b] or not self.has_prefixes[b]:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.prefix_blocks[b][head], dtype=np.int64)

    def _hold_until_event(self, envs: np.ndarray, arrived_before: np.ndarray) -> None:
        """Extend the holds of ``envs`` tick by tick until the router sees an event (module docstring):
        an arrival since the step began, a completion since the last step, or every instance idle.
        Polls only what a router sees (``completions``, ``instance_state``) at each tick reached."""
        cfg, dt = self.config, self.config.decision_interval_s
        while envs.size:
            count, _ = self.sim.completions()
            state = self.sim.instance_state()
            idle = ((state.num_running + state.num_waiting)[envs] == 0).all(axis=1)
            ended = (self.n_arrived[envs] > arrived_before[envs]) | (count[envs] > self.completed[envs]) | idle
            if cfg.max_sim_time_s is not None:
                ended |= self.t[envs] >= cfg.max_sim_time_s
            envs = envs[~ended]
            if not envs.size:
                return
            self.tick[envs] += 1
            nxt = self.tick[envs] * dt
            if cfg.max_sim_time_s is not None:
                nxt = np.minimum(nxt, cfg.max_sim_time_s)
            target = self.sim.now_s.copy()
            target[envs] = nxt
            self.sim.advance_to(target)
            self.t[envs] = nxt
            self._count_arrivals(envs)

    def _unfinished_fraction(self, envs) -> np.ndarray:
        """The paper's progress penalty: sum over requests in the system of (1 - generated / predicted),
        with the tokens generated as the router sees them."""
        ir = self.sim.instance_requests()
        f_run = np.minimum(ir["running_generated"] / self.pred_tokens.ravel()[ir["running_request"]], 1.0)
        run = np.where(ir["running_valid"], 1.0 - f_run, 0.0).sum(axis=1)
        wq = ir["waiting_request"]
        f_wait = np.minimum(self.sim.generated[wq] / self.pred_tokens.ravel()[wq], 1.0)
        wait = np.where(ir["waiting_valid"], 1.0 - f_wait, 0.0).sum(axis=1)
        per_env = (run + wait).reshape(self.B, self.N).sum(axis=1)
        router_queue = self.n_arrived - self.n_dispatched
        return (per_env + router_queue)[envs]

    def _predicted_remaining(self) -> np.ndarray:
        """(B, N, K) predicted remaining decode tokens (predicted output - generated, at least 0) of
        the running and waiting requests of each instance, by predicted class."""
        ir = self.sim.instance_requests()
        pred_bucket, pred_tokens = self.pred_bucket.ravel(), self.pred_tokens.ravel()
        rq, wq = ir["running_request"], ir["waiting_request"]
        r_remaining = np.where(ir["running_valid"], np.maximum(pred_tokens[rq] - ir["running_generated"], 0.0), 0.0)
        w_remaining = np.where(ir["waiting_valid"], np.maximum(pred_tokens[wq] - self.sim.generated[wq], 0.0), 0.0)
        # (K, rows, width) by class, each row summed as a row of its own (the same rounding)
        classes = np.arange(self.K)[:, None, None]
        by_class = (np.where(pred_bucket[rq] == classes, r_remaining, 0.0).sum(axis=2)
                    + np.where(pred_bucket[wq] == classes, w_remaining, 0.0).sum(axis=2))
        return by_class.T.reshape(self.B, self.N, self.K)

    # --------------------------------------------------------------------------------- views
    def action_masks(self) -> np.ndarray:
        return self.view().action_mask

    def _view_fields(self) -> dict:
        """The router queue, the head request and the static facts, as of now."""
        B, R = self.B, self.R
        queue_len = self.n_arrived - self.n_dispatched
        has_request = queue_len > 0
        rows, head = np.arange(B), np.minimum(self.n_dispatched, R - 1)
        mask = np.ones((B, self.A), dtype=bool)
        if self.config.mode == "tick":
            mask[:, : self.N] = has_request[:, None]
        return {
            "time_s": self.t.copy(), "queue_len": queue_len, "has_request": has_request,
            "head_request": np.where(has_request, self.n_dispatched, -1),
            "head_prompt_tokens": np.where(has_request, self.prompt[rows, head], 0),
            "head_task": np.where(has_request, self.task[rows, head], 0),
            "head_pred_bucket": np.where(has_request, self.pred_bucket[rows, head], 0),
            "head_pred_tokens": np.where(has_request, self.pred_tokens[rows, head], 0.0),
            "head_wait_s": np.where(has_request, self.t - self.arrival[rows, head], 0.0),
            "head_prefix_blocks": np.where(has_request, self.prefix_len[rows, head], 0),
            "head_session": np.where(has_request, self.session[rows, head], -1),
            "action_mask": mask, "kv_capacity_blocks": self.kv_capacity, "watermark_blocks": self.watermark_blocks,
            "max_num_seqs": self.max_num_seqs,
            "prefill_s_per_token": self.prefill_s_per_token, "coefficients": self.coefficients,
            "impact_config": self.config.impact,
        }

    def view(self) -> RouterView:
        """The router's view now (cached until the next step or reset)."""
        if self._view is None:
            self._view = RouterView(self._queries, **self._view_fields())
        return self._view

    def clairvoyant_view(self) -> ClairvoyantView:
        """The router's view plus the truth, for clairvoyant oracles only (never cached)."""
        B, N, R = self.B, self.N, self.R
        ir = self.sim.instance_requests()
        output = self.output.ravel()
        run = np.where(ir["running_valid"], output[ir["running_request"]] - ir["running_generated"], 0).sum(axis=1)
        wq = ir["waiting_request"]
        wait = np.where(ir["waiting_valid"], output[wq] - self.sim.generated[wq], 0).sum(axis=1)
        fields = self._view_fields()
        rows, head = np.arange(B), np.minimum(self.n_dispatched, R - 1)
        return ClairvoyantView(
            self._queries, **fields, head_output_tokens=np.where(fields["has_request"], self.output[rows, head], 0),
            remaining_tokens=(run + wait).reshape(B, N), simulator=self.sim,
            head_arrival_s=np.where(fields["has_request"], self.arrival[rows, head], np.nan))

    def episode_metrics(self, b: int) -> dict:
        """The episode's latency summary (metrics.py) for env ``b``, with the requests refused for a
        prompt beyond the context (``rejected_overlong``: never served, not in ``arrived`` nor in
        the latencies) and those served cut at the context (``clipped_at_context``)."""
        rec = self.sim.records(b)  # (the requests completed by now: a truncated episode may have an iteration in flight)
        out = summarize(rec, arrived=int(self.n_arrived[b]), as_of_s=float(self.sim.now_s[b]))
        out["router_queue"] = int(self.n_arrived[b] - self.n_dispatched[b])
        fit = self.context_fits[b]
        out["rejected_overlong"] = fit.rejected_overlong if fit is not None else 0
        out["clipped_at_context"] = fit.clipped_at_context if fit is not None else 0
        return out


