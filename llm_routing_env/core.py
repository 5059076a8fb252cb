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
* ``arrival``: one decision per arriving request, at its arrival time; actions ``0..N-1``.

An episode ends (``terminated``) when every request has completed: once the last request is
dispatched, the step that dispatched it runs the cluster to completion.

With one environment (B = 1, the single ``gym.make`` env) ``step_one`` and ``counters_one`` do what
``step`` and the view do in Python numbers, since NumPy's cost per call would exceed the work; the
tests hold the two paths to identical trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
from gymnasium.utils import seeding

from .impact import ImpactConfig, guidance, mixing_penalty, mixing_penalty_one
from .metrics import summarize
from .predictors import DQN_STATE_BUCKETS, make_predictor, predictor_names
from .profiles import iteration_time_ms
from .scenarios import Scenario, load_scenario
from .simulator import ClusterSimulator

MODES = ("tick", "arrival")
OBSERVATIONS = ("paper", "rich")
REWARDS = ("latency", "paper")
PREDICTOR_TRAIN_SEED = 1_000_003  # the predictor's training sample never equals an episode seed
# environment settings that change the scenario rather than the environment
SCENARIO_OVERRIDES = ("rate_per_s", "load", "num_instances", "profile", "chunked_prefill", "num_requests", "overlong")


@dataclass(frozen=True)
class EnvConfig:
    """Everything ``gym.make`` accepts; validated on construction (errors name the setting)."""

    scenario: Scenario
    mode: str = "tick"
    obs: str = "paper"
    reward: str = "latency"
    reward_scale: float = 0.01
    completion_reward: float = 60.0
    predictor: str = "task-prior"
    predictor_kwargs: dict = field(default_factory=dict)
    decision_interval_s: float = 0.02
    skip_idle_ticks: bool = True
    max_sim_time_s: float | None = None
    max_episode_steps: int | None = None
    impact: ImpactConfig = ImpactConfig()

    @classmethod
    def from_kwargs(cls, scenario="paper-v100", **kwargs) -> "EnvConfig":
        """Build from ``gym.make`` keyword arguments. Scenario overrides (``rate_per_s``, ``load``,
        ``num_instances``, ``profile``, ``chunked_prefill``, ``num_requests``, ``overlong``) change the scenario."""
        known = {f.name for f in fields(cls)} - {"scenario"}
        overrides = {k: kwargs.pop(k) for k in SCENARIO_OVERRIDES if k in kwargs}
        unknown = set(kwargs) - known
        if unknown:
            raise ValueError(f"unknown environment setting(s) {sorted(unknown)}; known: "
                             f"{sorted(known | {'scenario', *SCENARIO_OVERRIDES})}")
        if isinstance(kwargs.get("impact"), dict):
            kwargs["impact"] = ImpactConfig(**kwargs["impact"])
        return cls(scenario=load_scenario(scenario).with_overrides(**overrides), **kwargs)

    def __post_init__(self) -> None:
        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

        choice("mode", MODES)
        choice("obs", OBSERVATIONS)
        choice("reward", REWARDS)
        choice("predictor", tuple(predictor_names()))
        for name in ("reward_scale", "decision_interval_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        v = self.completion_reward
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"completion_reward must be a finite number, got {v!r}")
        if not isinstance(self.skip_idle_ticks, bool):
            raise ValueError(f"skip_idle_ticks must be True or False, got {self.skip_idle_ticks!r}")
        v = self.max_sim_time_s
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"max_sim_time_s must be a positive number or None, got {v!r}")
        v = self.max_episode_steps
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {v!r}")
        if not isinstance(self.predictor_kwargs, dict):
            raise ValueError(f"predictor_kwargs must be a dict, got {self.predictor_kwargs!r}")
        if not isinstance(self.impact, ImpactConfig):
            raise ValueError(f"impact must be an ImpactConfig or a dict of its fields, got {self.impact!r}")

    @property
    def num_instances(self) -> int:
        return self.scenario.num_instances

    @property
    def num_actions(self) -> int:
        return self.num_instances + (1 if self.mode == "tick" else 0)

    def max_requests(self) -> int:
        s = self.scenario
        if s.num_requests is not None:
            return s.num_requests
        return int(2 * s.offered_rate() * s.duration_s + 100)


class RouterView:
    """What a router can see, for B environments (arrays lead with B; instances are (B, N)).

    Only observable state: the router queue, each instance's queues and KV cache, tokens generated
    so far, and the length predictor's outputs. True output lengths are not here (see
    :meth:`RoutingCore.oracle_view`). Fields are computed on first access (an observation encoder
    or a heuristic reads only what it needs); tests may pass any field as a keyword argument.

    Router queue and the request to route: ``time_s``, ``queue_len``, ``has_request`` (bool),
    ``head_request`` (id, -1 if none), ``head_prompt_tokens``, ``head_task``, ``head_pred_bucket``
    (DQN buckets 0-256, 256-2048, 2048+), ``head_pred_tokens`` (point estimate), ``head_wait_s``.
    Per instance (B, N): ``num_running``, ``num_waiting``, ``num_prefilling`` (waiting + running
    with an unfinished prefill), ``kv_blocks_used``, ``kv_blocks_free``, ``pending_prefill_tokens``,
    ``decode_context_tokens`` (KV of the decoding requests), ``decode_bucket_counts`` (B, N, K:
    decoding requests by predicted bucket), ``pred_remaining_tokens`` (B, N, K: predicted remaining
    decode tokens of running and waiting requests by bucket), ``decode_iteration_s`` (the current
    decode batch's iteration time), ``earliest_completion_s`` (predicted time to the first
    completion, 0 if none), ``busy_for_s`` (until the iteration in flight ends), ``impact`` (the
    head request's mixing penalty, larger is better), ``action_mask`` (B, A). Static per instance:
    ``kv_capacity_blocks``, ``max_num_seqs``, ``prefill_s_per_token``, ``coefficients`` (N, 7).
    """

    FIELDS = ("time_s", "queue_len", "has_request", "head_request", "head_prompt_tokens", "head_task",
              "head_pred_bucket", "head_pred_tokens", "head_wait_s", "num_running", "num_waiting",
              "num_prefilling", "kv_blocks_used", "kv_blocks_free", "pending_prefill_tokens",
              "decode_context_tokens", "decode_bucket_counts", "pred_remaining_tokens", "decode_iteration_s",
              "earliest_completion_s", "busy_for_s", "impact", "action_mask", "kv_capacity_blocks",
              "max_num_seqs", "prefill_s_per_token", "coefficients")

    def __init__(self, core: "RoutingCore | None" = None, **fields):
        unknown = set(fields) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"RouterView has no field(s) {sorted(unknown)}")
        self._core = core
        self.__dict__.update(fields)
        if core is not None:
            B, R = core.B, core.R
            self.time_s = core.t.copy()
            self.queue_len = core.n_arrived - core.n_dispatched
            self.has_request = self.queue_len > 0
            self._head = np.minimum(core.n_dispatched, R - 1)
            self._rows = np.arange(B)
            self.kv_capacity_blocks = core.kv_capacity
            self.max_num_seqs = core.max_num_seqs
            self.prefill_s_per_token = core.prefill_s_per_token
            self.coefficients = core.coefficients

    def _head_field(self, table, empty):
        return np.where(self.has_request, table[self._rows, self._head], empty)

    # -- the request to route
    @cached_property
    def head_request(self):
        return np.where(self.has_request, self._core.n_dispatched, -1)

    @cached_property
    def head_prompt_tokens(self):
        return self._head_field(self._core.prompt, 0)

    @cached_property
    def head_task(self):
        return self._head_field(self._core.task, 0)

    @cached_property
    def head_pred_bucket(self):
        return self._head_field(self._core.pred_bucket, 0)

    @cached_property
    def head_pred_tokens(self):
        return self._head_field(self._core.pred_tokens, 0.0)

    @cached_property
    def head_wait_s(self):
        return np.where(self.has_request, self.time_s - self._core.arrival[self._rows, self._head], 0.0)

    @cached_property
    def action_mask(self):
        core = self._core
        mask = np.ones((core.B, core.A), dtype=bool)
        if core.config.mode == "tick":
            mask[:, : core.N] = self.has_request[:, None]
        return mask

    # -- instance counters kept by the simulator
    @cached_property
    def _state(self):
        return self._core.sim.instance_state()

    @cached_property
    def num_running(self):
        return self._state.num_running

    @cached_property
    def num_waiting(self):
        return self._state.num_waiting

    @cached_property
    def kv_blocks_used(self):
        return self._state.kv_blocks_used

    @cached_property
    def kv_blocks_free(self):
        return self._state.kv_blocks_free

    @cached_property
    def pending_prefill_tokens(self):
        return self._state.pending_prefill_tokens

    @cached_property
    def busy_for_s(self):
        return np.maximum(self._state.busy_until_s - self.time_s[:, None], 0.0)

    # -- per-request features joined with the predictor's outputs (computed only when read)
    @cached_property
    def _running(self):
        """Running and waiting requests of every instance row (simulator.instance_requests)."""
        return self._core.sim.instance_requests()

    @cached_property
    def _running_bucket(self):
        return self._core.pred_bucket.ravel()[self._running["running_request"]]

    @cached_property
    def _running_remaining(self):
        r = self._running
        pred = self._core.pred_tokens.ravel()[r["running_request"]]
        return np.where(r["running_valid"], np.maximum(pred - r["running_generated"], 0.0), 0.0)

    def _per_instance(self, rows_values):
        core = self._core
        return rows_values.reshape(core.B, core.N, *rows_values.shape[1:])

    @cached_property
    def num_prefilling(self):
        # the running requests outside the decode set are the ones whose prefill is unfinished
        return self.num_waiting + self.num_running - self._n_decoding

    @cached_property
    def _decode_totals(self):
        return self._core.sim.decode_totals()  # (number decoding, their context sum), kept by the simulator

    @cached_property
    def decode_context_tokens(self):
        return self._decode_totals[1]

    @cached_property
    def _predicted_decode_sets(self):
        return self._core.sim.predicted_decode_sets()  # kept by the simulator

    @cached_property
    def decode_bucket_counts(self):
        return self._predicted_decode_sets[0]

    @cached_property
    def pred_remaining_tokens(self):
        core, r = self._core, self._running
        wq, wvalid = r["waiting_request"], r["waiting_valid"]
        w_bucket = core.pred_bucket.ravel()[wq]
        w_remaining = np.where(wvalid, np.maximum(core.pred_tokens.ravel()[wq] - core.sim.generated[wq], 0.0), 0.0)
        return self._per_instance(np.stack(
            [np.where(self._running_bucket == k, self._running_remaining, 0.0).sum(axis=1)
             + np.where(w_bucket == k, w_remaining, 0.0).sum(axis=1) for k in range(core.K)], axis=1))

    @cached_property
    def _n_decoding(self):
        return self._decode_totals[0]

    @cached_property
    def decode_iteration_s(self):
        coeffs = self.coefficients.T[:, None, :]  # (7, 1, N) broadcast over B
        t_ms = iteration_time_ms(coeffs, self._n_decoding, 0, 0, self.decode_context_tokens)
        return np.where(self._n_decoding > 0, t_ms / 1000.0, 0.0)

    @cached_property
    def earliest_completion_s(self):
        decoding = self._n_decoding > 0
        # at least the token of the next iteration (an empty decode set has no first: inf)
        to_first = np.maximum(np.where(decoding, self._predicted_decode_sets[1], 0.0), 1.0)
        return np.where(decoding, to_first * self.decode_iteration_s, 0.0)

    @cached_property
    def impact(self):
        core = self._core
        return mixing_penalty(core.config.impact, self.head_prompt_tokens, self.head_pred_tokens,
                              self.decode_context_tokens, self.num_running + self.num_waiting)


@dataclass
class OracleView:
    """Clairvoyant extras, for the oracles only (flagged and reported apart)."""

    head_output_tokens: np.ndarray      # (B,) true output length of the head request
    remaining_tokens: np.ndarray        # (B, N) true remaining decode tokens of each instance's requests


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
        if hasattr(self.predictor, "fit"):  # task-prior, learned: trained on a sample no episode uses
            self.predictor.fit(config.scenario.make_workload(PREDICTOR_TRAIN_SEED))
        coeffs = cluster.coefficient_table()
        self.coefficients = coeffs
        self.kv_capacity = cluster.per_instance("kv_capacity_blocks")
        self.max_num_seqs = cluster.per_instance("max_num_seqs")
        # a long prompt's prefill cost per token: the linear terms above the knee
        self.prefill_s_per_token = (coeffs[:, 1] + coeffs[:, 2]) / 1000.0
        # for the B = 1 path: the action masks, and per instance max_num_seqs, KV capacity and
        # coefficients as Python numbers
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
        self.t = np.zeros(B)
        self.tick = np.zeros(B, dtype=np.int64)
        self.n_arrived = np.zeros(B, dtype=np.int64)
        self.n_dispatched = np.zeros(B, dtype=np.int64)
        self.latency_integral = np.zeros(B)  # F(t): time spent in the system so far, summed over requests
        self.completed = np.zeros(B, dtype=np.int64)
        self.steps = np.zeros(B, dtype=np.int64)
        self.episode_seed = np.zeros(B, dtype=np.int64)
        self.last_h = np.zeros(B)
        self._view: RouterView | None = None
        self._counters_one: dict | None = None

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
        if hasattr(self.predictor, "reset"):
            self.predictor.reset(seed=seed)
        pred = self.predictor.predict_workload(w)
        self.pred_bucket[b, :n] = pred.bucket
        self.pred_tokens[b, :n] = np.maximum(pred.point_tokens, 1.0)
        self.sim.set_predictions(b, self.pred_bucket[b, :n], self.pred_tokens[b, :n])
        if self.B == 1:  # the episode as Python lists, for step_one and counters_one
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
        view = self.view()
        has_request = view.has_request[envs]
        h = guidance(view.impact[envs], actions, has_request)
        self.last_h[envs] = h

        # dispatch the head request where the action names an instance (hold or no request: nothing)
        go = has_request & (actions < self.N)
        if go.any():
            b = envs[go]
            rid = self.n_dispatched[b]
            self.sim.dispatch(b, rid, actions[go], self.prompt[b, rid], self.output[b, rid], self.arrival[b, rid])
            self.n_dispatched[b] += 1

        # the next decision time
        routed_all = self.n_dispatched[envs] >= self.n_req[envs]
        if cfg.mode == "arrival":
            nxt = self.arrival[envs, np.minimum(self.n_dispatched[envs], self.R - 1)]
        else:
            self.tick[envs] += 1
            if cfg.skip_idle_ticks:
                idle = self.n_dispatched[envs] >= self.n_arrived[envs]
                nxt_arrival = self.arrival[envs, np.minimum(self.n_arrived[envs], self.R - 1)]
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

        # reward over the elapsed interval
        count, total = self.sim.completions_by(self.sim.now_s)
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

    # A single environment's step, line for line ``step`` in Python numbers: at B = 1 NumPy's cost
    # per call, not the work, sets the pace (benchmarks/bench_env.py). The tests hold single envs
    # and the vector env (which runs ``step``) to identical trajectories.
    def step_one(self, action: int) -> tuple[float, bool, bool, float]:
        """``step`` for B = 1 with a Python int action; returns Python numbers."""
        cfg, N = self.config, self.N
        if self.B != 1:
            raise ValueError(f"step_one steps a single environment; this core has {self.B} (use step)")
        if not 0 <= action < self.A:
            raise ValueError(f"action {action} is outside the action space 0..{self.A - 1} "
                             f"({N} instances{' + hold' if cfg.mode == 'tick' else ''}) in env 0")
        n_dispatched, n_arrived, n_req = self.n_dispatched.item(), self.n_arrived.item(), self.n_req.item()
        last = self.R - 1
        arrival = self._arrival_one
        h = 0.0
        if n_arrived > n_dispatched and action < N:
            impact = self.counters_one()["impact"]
            h = impact[action] - max(impact)
            rid = n_dispatched
            self.sim.dispatch(0, rid, action, self._prompt_one[rid], self._output_one[rid], arrival[rid])
            n_dispatched += 1
            self.n_dispatched[0] = n_dispatched
        self.last_h[0] = h

        routed_all = n_dispatched >= n_req
        if cfg.mode == "arrival":
            nxt = arrival[min(n_dispatched, last)]
        else:
            tick = self.tick.item() + 1
            if cfg.skip_idle_ticks and n_dispatched >= n_arrived and not routed_all:
                tick = max(tick, self._first_tick_one(arrival[min(n_arrived, last)]))
            self.tick[0] = tick
            nxt = tick * cfg.decision_interval_s
        if routed_all:
            nxt = math.inf
        if cfg.max_sim_time_s is not None:
            nxt = min(nxt, cfg.max_sim_time_s)
        self.sim.advance_to(np.array([nxt]))
        t = nxt if nxt < math.inf else self.sim.now_s.item()
        self.t[0] = t
        while n_arrived < n_req and arrival[n_arrived] <= t:
            n_arrived += 1
        self.n_arrived[0] = n_arrived

        self._view = self._counters_one = None  # the state has moved
        c = self.counters_one()
        count, total = c["completed"], c["completion_time_sum_s"]
        newly_completed = count - self.completed.item()
        self.completed[0] = count
        integral = (n_arrived - count) * t - self._arrival_cumsum_one[n_arrived] + total
        if cfg.reward == "latency":
            reward = -cfg.reward_scale * (integral - self.latency_integral.item())
        else:
            reward = cfg.completion_reward * newly_completed - self._unfinished_fraction([0])[0].item()
        self.latency_integral[0] = integral
        steps = self.steps.item() + 1
        self.steps[0] = steps
        terminated = count >= n_req
        truncated = not terminated and (
            (bool(cfg.max_episode_steps) and steps >= cfg.max_episode_steps)
            or (cfg.max_sim_time_s is not None and t >= cfg.max_sim_time_s))
        return reward, terminated, truncated, h

    def _first_tick_one(self, t_s: float) -> int:
        dt = self.config.decision_interval_s
        k = math.ceil(t_s / dt)
        return k + (k * dt < t_s)

    def counters_one(self) -> dict:
        """For B = 1: the simulator's counters (``ClusterSimulator.cluster_counters``) and the
        routing facts built on them, as Python numbers: ``queue_len``, ``head_prompt_tokens``,
        ``head_pred_bucket``, ``head_pred_tokens`` (0 without a request) and ``impact`` (the view's
        mixing penalty per instance). Cached until the next step or reset."""
        if self._counters_one is None:
            c = self.sim.cluster_counters(0)
            head = self.n_dispatched.item()
            c["queue_len"] = queue = self.n_arrived.item() - head
            if queue > 0:
                prompt, bucket, pred = self._prompt_one[head], self._pred_bucket_one[head], self._pred_tokens_one[head]
            else:
                prompt, bucket, pred = 0, 0, 0.0
            c["head_prompt_tokens"], c["head_pred_bucket"], c["head_pred_tokens"] = prompt, bucket, pred
            c["impact"] = mixing_penalty_one(self.config.impact, float(prompt), pred, c["decode_context_tokens"],
                                             c["num_running"], c["num_waiting"])
            self._counters_one = c
        return self._counters_one

    def _unfinished_fraction(self, envs) -> np.ndarray:
        """The paper's progress penalty: sum over requests in the system of (1 - generated / predicted)."""
        ir = self.sim.instance_requests()
        f_run = np.minimum(ir["running_generated"] / self.pred_tokens.ravel()[ir["running_request"]], 1.0)
        run = np.where(ir["running_valid"], 1.0 - f_run, 0.0).sum(axis=1)
        wq = ir["waiting_request"]
        f_wait = np.minimum(self.sim.generated[wq] / self.pred_tokens.ravel()[wq], 1.0)
        wait = np.where(ir["waiting_valid"], 1.0 - f_wait, 0.0).sum(axis=1)
        per_env = (run + wait).reshape(self.B, self.N).sum(axis=1)
        router_queue = self.n_arrived - self.n_dispatched
        return (per_env + router_queue)[envs]

    # --------------------------------------------------------------------------------- views
    def action_masks(self) -> np.ndarray:
        return self.view().action_mask

    def view(self) -> RouterView:
        """The router's view now (cached until the next step or reset)."""
        if self._view is None:
            self._view = RouterView(self)
        return self._view

    def oracle_view(self) -> OracleView:
        """True lengths, for clairvoyant oracles only."""
        B, N, R = self.B, self.N, self.R
        ir = self.sim.instance_requests()
        output = self.output.ravel()
        run = np.where(ir["running_valid"], output[ir["running_request"]] - ir["running_generated"], 0).sum(axis=1)
        wq = ir["waiting_request"]
        wait = np.where(ir["waiting_valid"], output[wq] - self.sim.generated[wq], 0).sum(axis=1)
        has = self.n_arrived > self.n_dispatched
        head = self.output[np.arange(B), np.minimum(self.n_dispatched, R - 1)]
        return OracleView(head_output_tokens=np.where(has, head, 0), remaining_tokens=(run + wait).reshape(B, N))

    def episode_metrics(self, b: int) -> dict:
        """The episode's latency summary (metrics.py) for env ``b``, with the requests refused for a
        prompt beyond the context (``rejected_overlong``: never served, not in ``arrived`` nor in
        the latencies) and those served cut at the context (``clipped_at_context``)."""
        rec = self.sim.records(b)
        out = summarize(rec, arrived=int(self.n_arrived[b]))
        out["router_queue"] = int(self.n_arrived[b] - self.n_dispatched[b])
        fit = self.context_fits[b]
        out["rejected_overlong"] = fit.rejected_overlong if fit is not None else 0
        out["clipped_at_context"] = fit.clipped_at_context if fit is not None else 0
        return out


