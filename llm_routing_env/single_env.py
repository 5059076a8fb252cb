"""The single environment's fast path: ``gym.make``'s env (B = 1) steps in Python numbers.

At B = 1, NumPy's cost per call, not the work, sets the pace (benchmarks/bench_env.py), so the
single env does not call the batched code. Each function here is a scalar twin of the batched code
named in its docstring, line for line; ``tests/test_vector_env.py`` holds single envs and the
vector env to bit-identical trajectories (observations, rewards, infos), so a change to one side
that is not made to the other fails there.

=========================  ===============================================================
here                       mirrors
=========================  ===============================================================
``step_one``               ``RoutingCore.step`` (core.py)
``first_tick_one``         ``RoutingCore._first_tick_at_or_after`` (core.py)
``counters_one``           ``RouterView``'s counters (view.py) via ``ClusterSimulator.cluster_counters``
``mixing_penalty_one``     ``impact.mixing_penalty``
``paper_observation_one``  ``observations.paper_observation``
``rich_observation_one``   ``observations.rich_observation``
``step_info_one``          ``env._step_info``
=========================  ===============================================================
"""

from __future__ import annotations

import math

import numpy as np

from .core import RoutingCore
from .impact import ImpactConfig
from .observations import OBS_HIGH, RICH_LAYOUT
from .profiles import KV_BLOCK_TOKENS, iteration_time_ms


def step_one(core: RoutingCore, action: int) -> tuple[float, bool, bool, float]:
    """``step`` for B = 1 with a Python int action; returns Python numbers."""
    cfg, N = core.config, core.N
    if core.B != 1:
        raise ValueError(f"step_one steps a single environment; this core has {core.B} (use step)")
    if not 0 <= action < core.A:
        raise ValueError(f"action {action} is outside the action space 0..{core.A - 1} "
                         f"({N} instances{' + hold' if cfg.mode == 'tick' else ''}) in env 0")
    n_dispatched, n_arrived, n_req = core.n_dispatched.item(), core.n_arrived.item(), core.n_req.item()
    held = n_arrived > n_dispatched and action >= N
    arrived_before = n_arrived
    core.step_start_s[0] = core.t[0]
    last = core.R - 1
    arrival = core._arrival_one
    h = 0.0
    if n_arrived > n_dispatched and action < N:
        impact = counters_one(core)["impact"]
        h = impact[action] - max(impact)
        rid = n_dispatched
        prefixes = core.prefix_blocks[0]
        core.sim.dispatch(0, rid, action, core._prompt_one[rid], core._output_one[rid], arrival[rid],
                          prefix_blocks=None if prefixes is None else [prefixes[rid]])
        if prefixes is not None:
            core.note_dispatches((0,), (rid,), (action,))
        n_dispatched += 1
        core.n_dispatched[0] = n_dispatched
    core.last_h[0] = h

    routed_all = n_dispatched >= n_req
    if cfg.mode == "arrival":
        nxt = arrival[min(n_dispatched, last)]
    else:
        tick = core.tick.item() + 1
        if cfg.skip_idle_ticks and n_dispatched >= n_arrived and not routed_all:
            tick = max(tick, first_tick_one(core, arrival[min(n_arrived, last)]))
        core.tick[0] = tick
        nxt = tick * cfg.decision_interval_s
    if routed_all:
        nxt = math.inf
    if cfg.max_sim_time_s is not None:
        nxt = min(nxt, cfg.max_sim_time_s)
    core.sim.advance_to(np.array([nxt]))
    t = nxt if nxt < math.inf else core.sim.now_s.item()
    core.t[0] = t
    while n_arrived < n_req and arrival[n_arrived] <= t:
        n_arrived += 1
    if cfg.hold_until == "event" and held and not routed_all:
        # RoutingCore._hold_until_event: poll what the router sees, tick by tick
        completed_before, dt = core.completed.item(), cfg.decision_interval_s
        while True:
            c = core.sim.cluster_counters(0)
            if (n_arrived > arrived_before or c["completed"] > completed_before
                    or not any(c["num_running"]) and not any(c["num_waiting"])
                    or cfg.max_sim_time_s is not None and t >= cfg.max_sim_time_s):
                break
            tick += 1
            t = tick * dt
            if cfg.max_sim_time_s is not None:
                t = min(t, cfg.max_sim_time_s)
            core.sim.advance_to(np.array([t]))
            while n_arrived < n_req and arrival[n_arrived] <= t:
                n_arrived += 1
        core.tick[0], core.t[0] = tick, t
    core.n_arrived[0] = n_arrived

    core._view = core._counters_one = None  # the state has moved
    c = counters_one(core)
    count, total = c["completed"], c["completion_time_sum_s"]
    newly_completed = count - core.completed.item()
    core.completed[0] = count
    integral = (n_arrived - count) * t - core._arrival_cumsum_one[n_arrived] + total
    if cfg.reward == "latency":
        reward = -cfg.reward_scale * (integral - core.latency_integral.item())
    else:
        reward = cfg.completion_reward * newly_completed - core._unfinished_fraction([0])[0].item()
    core.latency_integral[0] = integral
    steps = core.steps.item() + 1
    core.steps[0] = steps
    terminated = count >= n_req
    truncated = not terminated and (
        (bool(cfg.max_episode_steps) and steps >= cfg.max_episode_steps)
        or (cfg.max_sim_time_s is not None and t >= cfg.max_sim_time_s))
    return reward, terminated, truncated, h

def first_tick_one(core: RoutingCore, t_s: float) -> int:
    dt = core.config.decision_interval_s
    k = math.ceil(t_s / dt)
    return k + (k * dt < t_s)

def counters_one(core: RoutingCore) -> dict:
    """For B = 1: the simulator's counters (``ClusterSimulator.cluster_counters``) and the
    routing facts built on them, as Python numbers: ``queue_len``, ``head_prompt_tokens``,
    ``head_pred_bucket``, ``head_pred_tokens`` (0 without a request) and ``impact`` (the view's
    mixing penalty per instance). Cached until the next step or reset."""
    if core._counters_one is None:
        c = core.sim.cluster_counters(0)
        head = core.n_dispatched.item()
        c["queue_len"] = queue = core.n_arrived.item() - head
        if queue > 0:
            prompt, bucket, pred = core._prompt_one[head], core._pred_bucket_one[head], core._pred_tokens_one[head]
        else:
            prompt, bucket, pred = 0, 0, 0.0
        c["head_prompt_tokens"], c["head_pred_bucket"], c["head_pred_tokens"] = prompt, bucket, pred
        c["impact"] = mixing_penalty_one(core.config.impact, float(prompt), pred, c["decode_context_tokens"],
                                         c["num_running"], c["num_waiting"])
        core._counters_one = c
    return core._counters_one


def mixing_penalty_one(cfg: ImpactConfig, prompt_tokens: float, predicted_decode_tokens: float,
                       decode_context_tokens: list, running: list, waiting: list) -> list[float]:
    """``mixing_penalty`` for one request in Python numbers (one environment; the same values);
    the requests on each instance are given as ``running`` and ``waiting``."""
    grad2, epsilon, tau, alpha = cfg.grad2_s_per_token, cfg.epsilon_s, cfg.tau_s, cfg.alpha
    per_prompt = cfg.grad1_s_per_prompt_token * prompt_tokens
    newcomer_s = per_prompt + grad2 * predicted_decode_tokens
    out = []
    for context, r, w in zip(decode_context_tokens, running, waiting):
        n = r + w
        prefill_s = per_prompt + grad2 * context
        r_prefill = -min(prefill_s, 1.0) if prefill_s > epsilon else 0.0
        out.append(alpha * r_prefill + (1.0 - alpha) * (1.0 - 2.0 * min(n * newcomer_s / tau, 1.0)))
    return out


def paper_observation_one(core: RoutingCore, max_model_len: int) -> np.ndarray:
    """``paper_observation`` of a single environment (B = 1) in Python numbers, from
    ``counters_one``: the same values (the tests hold them equal) for a fraction of the
    cost of NumPy calls on arrays of one row."""
    c = counters_one(core)
    out = [min(c["queue_len"], 512) / 512.0, c["head_prompt_tokens"] / max_model_len,
           c["head_pred_bucket"] / max(core.K - 1, 1)]
    # Every entry is >= 0 by construction and only the prefill count and the completion time can
    # exceed the upper bound; round(x * 100.0) / 100.0 is np.round(x, 2) (both round half to even).
    for (seqs, capacity_blocks, coefficients), running, waiting, decoding, counts, free, context, remaining in zip(
            core.instance_constants_one, c["num_running"], c["num_waiting"], c["num_decoding"],
            c["predicted_class_counts"], c["kv_blocks_free"], c["decode_context_tokens"],
            c["first_predicted_remaining"]):
        prefilling = (waiting + running - decoding) / seqs
        capacity = min(1.0 - running / seqs, free / capacity_blocks)
        capacity = 0.0 if capacity < 0.0 else (1.0 if capacity > 1.0 else capacity)
        earliest = 0.0
        if decoding > 0:
            iteration_s = iteration_time_ms(coefficients, decoding, 0, 0, context) / 1000.0
            earliest = round(max(remaining, 1.0) * iteration_s * 100.0) / 100.0 / 10.0
        out += [prefilling if prefilling < OBS_HIGH else OBS_HIGH, *[count / seqs for count in counts],
                round(capacity * 100.0) / 100.0, earliest if earliest < OBS_HIGH else OBS_HIGH]
    return np.array(out, dtype=np.float32)


def rich_observation_one(core: RoutingCore, max_model_len: int, layout: int = RICH_LAYOUT) -> np.ndarray:
    """``rich_observation`` of a single environment (B = 1) in Python numbers, from
    ``counters_one``, the simulator's visible pending prefill tokens and iteration ends, the
    predicted remaining tokens (``RoutingCore._predicted_remaining``, whose sums stay NumPy's) and,
    from layout 2 on, the head's prefix hits and the cache usage as the view has them: the same
    values (the tests hold them equal)."""
    c = counters_one(core)
    K = core.K
    queue, prompt, bucket = c["queue_len"], c["head_prompt_tokens"], c["head_pred_bucket"]
    has_request = queue > 0
    t = core.t.item()
    onehot = [0.0] * K
    if has_request:
        onehot[bucket] = 1.0
    wait_s = t - core._arrival_one[core.n_dispatched.item()] if has_request else 0.0
    out = [float(has_request), queue / 64.0,
           (np.log1p(np.array([prompt])) / np.log1p(max_model_len)).item(),  # (NumPy's log1p, as the batched code)
           *onehot, c["head_pred_tokens"] / 1000.0, wait_s / 10.0]
    state = core.sim.instance_state()
    remaining_by_class = core._predicted_remaining()[0].tolist()
    if layout >= 2:  # (the view's queries: the router's knowledge of the caches)
        view = core.view()
        hits, cached = iter(view.head_prefix_hit_blocks[0].tolist()), iter(view.prefix_cached_blocks[0].tolist())
    for ((seqs, capacity_blocks, coefficients), prefill_s_per_token, running, waiting, decoding, free, context,
         pending, busy_until, by_class, impact) in zip(
            core.instance_constants_one, core.prefill_s_per_token.tolist(), c["num_running"], c["num_waiting"],
            c["num_decoding"], c["kv_blocks_free"], c["decode_context_tokens"],
            state.pending_prefill_tokens[0].tolist(), state.busy_until_s[0].tolist(), remaining_by_class,
            c["impact"]):
        iteration_s = iteration_time_ms(coefficients, decoding, 0, 0, context) / 1000.0 if decoding > 0 else 0.0
        lone_decode_s = (coefficients[0] + coefficients[1] + coefficients[6]) / 1000.0
        batch = min(max(running + waiting, 1), seqs)
        drain_s = pending * prefill_s_per_token + sum(by_class) / batch * (
            iteration_s if iteration_s > 0 else lone_decode_s)
        busy = busy_until - t
        out += [running / seqs, waiting / seqs, (capacity_blocks - free) / capacity_blocks, pending / 4096.0,
                *[tokens / 10_000.0 for tokens in by_class], drain_s / 10.0, iteration_s / 0.1,
                busy if busy > 0.0 else 0.0, impact, prompt * prefill_s_per_token]
        if layout >= 2:
            out += [next(hits) * KV_BLOCK_TOKENS / max(prompt, 1), next(cached) / capacity_blocks]
    return np.clip(np.array(out), -1.0, OBS_HIGH).astype(np.float32)


def step_info_one(core: RoutingCore, h: float) -> dict:
    """``_step_info`` of a single env (B = 1) from ``counters_one``: the same entries."""
    c = counters_one(core)
    # in tick mode only hold is valid while the router queue is empty
    mask = np.array(core.hold_only if c["queue_len"] == 0 and core.config.mode == "tick" else core.all_valid)
    return {
        "action_mask": mask,
        "impact": np.array(c["impact"]),
        "impact_h": h,
        "time_s": core.t[0],
        "elapsed_s": core.t[0] - core.step_start_s[0],
        "queue_len": np.int64(c["queue_len"]),
        "arrived": core.n_arrived[0],
        "completed": core.completed[0],
    }
