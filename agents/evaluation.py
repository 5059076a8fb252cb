"""Evaluate routers (heuristics, oracles, learned agents) on a scenario: the logic behind evaluate.py.

    from agents.evaluation import evaluate
    from agents.reporting import format_table
    results = evaluate(["rr", "lor", "lwl", "models/dqn-guided.zip"], "paper-v100", episodes=20, seed=0)
    print(format_table(results))

**Episodes.** Each policy runs through a :class:`~llm_routing_env.core.RoutingCore` holding a
batch of episodes (one simulator for the batch); episode ``i`` is env seed ``seed + i`` of the
evaluation seed stream (llm_routing_env/seeds.py: env seeds 0 .. 2**32 - 1, disjoint from the
training and validation streams train.py draws from), exactly what
``LLMRoutingVectorEnv.reset(seed=seed)`` gives sub-env ``i``. So for a given seed every
policy sees the same request sequences (common random numbers), and the per-episode comparisons
with round-robin are paired. A router's own randomness (ties, random, p2c) comes from a Generator
per episode (``default_rng([seed, i, 7])``), so results do not depend on how episodes are batched
or spread over worker processes. An episode ends when every request has completed; a policy that
holds requests forever is cut off: after holding requests for 60 simulated seconds while every
instance is idle (tick mode), when the request at the head of the router queue has waited there
300 simulated seconds (a policy that dispatches only now and then, e.g. only when the cluster is
idle: without this cap such a policy ran about 185,000 tick decisions per 2,000-request episode
before the next cap), or 3600 s after the last arrival. Such a *truncated* episode is counted
(``truncated_episodes``; ``completed`` < ``arrived``; its ``truncated_reason`` says which cap ended
it); its latencies cover the completed requests only, so Δ is not reported (n/a,
``improvement_note`` says why) for a policy, or against a round-robin, with a truncated episode.

**Training seeds.** A learned agent's model card records the env seeds it was trained and
validated on (``seeds``, written by train.py); ``training_seeds`` in its result says whether they
meet the evaluated episodes (``overlap``), or that the card records none (``known: false``,
"training seeds unknown").

**Decision modes.** Heuristics and oracles run in ``mode`` (default ``arrival``), except a router
made for one mode only (``late-binding``, ``kv-admission``: ``tick``), which runs in it; a learned agent
runs in the mode and with the observation it was trained with (its model card, agents/learned.py)
and with the card's predictor settings.

**Statistics.** Per episode, the metrics of llm_routing_env/metrics.py (mean and percentiles over
the episode's requests). Reported: their mean over episodes with a 95 % t-interval (half-width in
``KEY_ci95``). Throughput is generated tokens per second over the makespan (also prompt tokens/s
and completed requests/s). The improvement over round-robin, Δ, is paired over episodes (common
random numbers): ``100 * (1 - mean(p_i) / mean(rr_i))`` on mean E2E (the relative change of the
mean, the paper's measure), with a 95 % interval by the delta method for the ratio of the two
paired means (see :func:`paired_improvement`): both means are estimated, neither is a constant.
Round-robin is added as the reference when it is not in the list (``"reference": true``).

**Parallelism.** ``workers`` > 1 runs chunks of episodes in spawned processes; chunks are as large
as possible while keeping every worker busy (at most 32 episodes; ``Router.max_batch`` caps it,
e.g. 1 for oracle-lookahead). Results are identical for any ``workers``.

**Requests beyond the context** (issue #11 §4; ``overlong``, the scenario's choice unless given):
with ``"reject"`` a request whose prompt leaves no room for one output token is refused and never
served (not in ``arrived``, ``completed`` nor any latency), one whose prompt + output exceeds the
context is served with its output stopped there; ``"clip"`` truncates instead. Each result holds
the totals over its episodes (``rejected_overlong``, ``clipped_at_context``), the table prints
them, and the requests CSV has a row per refused request and both flags.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from llm_routing_env.config import SCENARIO_OVERRIDES, EnvConfig
from llm_routing_env.core import RoutingCore
from llm_routing_env.predictors import predictor_is_clairvoyant
from llm_routing_env.scenarios import Scenario, load_scenario
from llm_routing_env.seeds import EVALUATION, SeedStream, card_seed_overlap

from .baselines import ROUTERS, make_router, router_names

__all__ = ["PolicySpec", "PolicyError", "evaluate", "resolve_policies", "build_scenario", "model_card_evaluation",
           "METRICS", "EXTRA_METRICS", "default_workers"]

#: (result key, table header, per-episode source key)
METRICS = (
    ("mean_e2e_s", "E2E mean", "mean_e2e_s"),
    ("p50_e2e_s", "E2E p50", "p50_e2e_s"),
    ("p90_e2e_s", "E2E p90", "p90_e2e_s"),
    ("p99_e2e_s", "E2E p99", "p99_e2e_s"),
    ("mean_ttft_s", "TTFT mean", "mean_ttft_s"),
    ("p99_ttft_s", "TTFT p99", "p99_ttft_s"),
    ("mean_tpot_s", "TPOT mean", "mean_tpot_s"),
    ("mean_router_wait_s", "router wait", "mean_router_wait_s"),
    ("preemptions", "preempt", "preemptions"),
    ("throughput_tok_s", "out tok/s", "generated_tokens_per_s"),
)
EXTRA_METRICS = (("mean_instance_wait_s", "mean_instance_wait_s"), ("p99_tpot_s", "p99_tpot_s"),
                 ("prompt_tokens_per_s", "prompt_tokens_per_s"), ("throughput_req_s", "throughput_req_s"),
                 ("makespan_s", "makespan_s"), ("completed", "completed"), ("arrived", "arrived"))
#: other names of a router: the paper's JSQ (A.2.1, fewest prompt + decode tokens still to process)
#: is ``lot`` scored from what a router sees; ``--policies jsq`` gives the ``lot`` row
ROUTER_ALIASES = {"jsq": "lot"}
MAX_CHUNK = 32
HOLD_GUARD_S = 3600.0
IDLE_HOLD_GUARD_S = 60.0
ROUTER_WAIT_GUARD_S = 300.0
ROUTER_STREAM = 7
#: EnvConfig settings that change the scenario (a model card's ``env`` may hold them)
CARD_SEED = 20_000  # model cards are evaluated on evaluation-stream seeds 20000+, apart from evaluate.py's usual 0-19


class PolicyError(ValueError):
    """An unknown policy or an unusable model: reported before any simulation starts."""


@dataclass(frozen=True)
class PolicySpec:
    """One policy to evaluate, resolved and validated (picklable: workers rebuild the router)."""

    label: str                     # as given (a router name or a model path)
    name: str                      # shown in tables
    kind: str                      # "heuristic" | "learned"
    mode: str
    obs: str = "paper"
    clairvoyant: bool = False
    source: str = ""
    env: dict = field(default_factory=dict)
    max_batch: int | None = None
    card: dict | None = None
    reference: bool = False
    stochastic: bool = False       # a learned policy sampled from its action distribution (seeded)
    notes: tuple = ()              # (level, message) for the user, e.g. the VecNormalize statistics used


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------------- scenarios
def build_scenario(scenario=None, trace=None, rate=None, profile=None, instances=None, chunked_prefill=None,
                   num_requests=None, overlong=None, scheduler=None, cache_knowledge=None) -> Scenario:
    """The scenario to evaluate on: a shipped name / file (default ``paper-v100``'s cluster when only a
    trace is given) with the trace and cluster overrides. A trace file without ``rate`` plays at
    its own times; ``rate`` rescales each episode's window to that mean rate."""
    if scenario is None and trace is None:
        raise ValueError("give a scenario (--scenario) or a trace (--trace)")
    base = load_scenario(scenario if scenario is not None else "paper-v100")
    changes: dict = {"profile": profile, "num_instances": instances, "num_requests": num_requests,
                     "overlong": overlong, "scheduler": scheduler,
                     "cache_knowledge": cache_knowledge}  # (None keeps the scenario's choice)
    if chunked_prefill is not None:
        changes["chunked_prefill"] = bool(chunked_prefill)
    if trace is not None:  # the scenario validates it (a missing or malformed file is named); no rate: its own
        changes.update(trace=str(trace), rate_per_s=rate,
                       name=f"{base.name if scenario is not None else 'trace'}:{Path(str(trace)).stem}")
    elif rate is not None:
        changes["rate_per_s"] = rate
    try:
        return base.with_overrides(**changes)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scenario overrides: {e}") from e


def _pinned(scenario: Scenario) -> Scenario:
    """The scenario at a fixed rate (``load`` resolved once here, so workers need no saturation run)."""
    if scenario.load is None:
        return scenario
    return replace(scenario, rate_per_s=float(scenario.offered_rate()), load=None)


# -------------------------------------------------------------------------------- policies
def resolve_policies(policies, num_instances: int, mode: str = "arrival", stochastic: bool = False) -> list[PolicySpec]:
    """Validate and describe every policy (router names or model paths); PolicyError otherwise.
    ``stochastic``: learned policies sample their actions (agents/learned.py) and are named ``NAME (stochastic)``."""
    from .learned import ModelError, check_compatible, describe_model, is_model_path

    if mode not in ("arrival", "tick"):
        raise PolicyError(f"mode must be 'arrival' or 'tick', got {mode!r}")
    specs, seen = [], set()
    if isinstance(policies, str):
        policies = [p for p in policies.split(",")]
    for p in policies:
        if isinstance(p, PolicySpec):
            spec = p
        else:
            p = str(p).strip()
            if not p:
                continue
            p = ROUTER_ALIASES.get(p, p)
            if p in ROUTERS:
                cls = ROUTERS[p]
                # a router made for one mode (late-binding, kv-admission: tick) runs in it, as a
                # learned agent runs in its own; the table marks the mode
                spec = PolicySpec(label=p, name=p, kind="heuristic", mode=mode if mode in cls.modes else cls.modes[0],
                                  clairvoyant=cls.clairvoyant,
                                  source=cls.source, max_batch=cls.max_batch)
            elif is_model_path(p):
                try:
                    info = describe_model(p)
                    m_mode, m_obs = check_compatible(info, num_instances)
                except ModelError as e:
                    raise PolicyError(str(e)) from e
                # an agent trained and run with a predictor that reads true lengths (oracle, noisy)
                # is clairvoyant: reported with the oracles, never in the main table
                predictor = info.env_settings.get("predictor", "task-prior")
                try:
                    clairvoyant = predictor_is_clairvoyant(predictor)
                except ValueError as e:
                    raise PolicyError(f"{p}: its model card names {e}") from e
                how = ", actions sampled from its policy" if stochastic else ""
                spec = PolicySpec(label=p, name=info.name + (" (stochastic)" if stochastic else ""), kind="learned",
                                  mode=m_mode, obs=m_obs, source=f"Stable-Baselines3 {info.algo} model {p}{how}",
                                  env=info.env_settings, card=info.card or None, clairvoyant=clairvoyant,
                                  stochastic=bool(stochastic), notes=info.notes)
            else:
                raise PolicyError(f"unknown policy {p!r}; known routers: {', '.join(router_names())}; "
                                  "or the path of a model .zip")
        if spec.label in seen:
            continue
        seen.add(spec.label)
        specs.append(spec)
    if not specs:
        raise PolicyError("no policy to evaluate")
    # the network must load too (a corrupt file stops everything before the simulation)
    for spec in specs:
        if spec.kind == "learned":
            try:
                _build_router(spec)
            except ModelError as e:
                raise PolicyError(str(e)) from e
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    return [replace(s, name=s.label) if s.name in dup else s for s in specs]


def env_config(spec: PolicySpec, scenario: Scenario) -> EnvConfig:
    """The EnvConfig a policy runs in (its mode and observation, a learned agent's predictor settings)."""
    env = dict(spec.env)
    if isinstance(env.get("impact"), dict):
        from llm_routing_env.impact import ImpactConfig

        env["impact"] = ImpactConfig(**env["impact"])
    return EnvConfig(scenario=scenario, mode=spec.mode, obs=spec.obs, **env)


def _build_router(spec: PolicySpec):
    if spec.kind == "learned":
        from .learned import LearnedRouter, describe_model

        try:
            import torch

            torch.set_num_threads(1)  # tiny MLPs: threads only contend with the other workers
        except ImportError:  # pragma: no cover
            pass
        return LearnedRouter(describe_model(spec.label, spec.card), stochastic=spec.stochastic)
    return make_router(spec.label)


# -------------------------------------------------------------------------------- episodes
_PROGRESS = None  # a multiprocessing queue in workers


def _init_worker(queue) -> None:
    global _PROGRESS
    _PROGRESS = queue
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_episodes(spec: PolicySpec, scenario: Scenario, seed: int, episodes, collect_requests: bool = False,
                 on_episode=None, guard_s: float | None = None, idle_guard_s: float | None = None,
                 router_wait_guard_s: float | None = None, stream: SeedStream = EVALUATION) -> dict:
    """Run ``spec`` on episodes ``episodes`` (indices ``i``; env seed ``seed + i`` of ``stream``,
    llm_routing_env/seeds.py: the evaluation stream, or train.py's validation stream) batched in one core.

    Returns ``{"episodes": [per-episode dict], "act_s": router time, "decisions": dispatches,
    "wall_s": ...}``; each per-episode dict holds the metrics.py summary plus ``episode``,
    ``truncated``, ``truncated_reason`` (None, or which cap of the module docstring ended it) and, with
    ``collect_requests``, ``requests`` (column arrays)."""
    t_start = time.perf_counter()
    guard_s = HOLD_GUARD_S if guard_s is None else guard_s
    idle_guard_s = IDLE_HOLD_GUARD_S if idle_guard_s is None else idle_guard_s
    router_wait_guard_s = ROUTER_WAIT_GUARD_S if router_wait_guard_s is None else router_wait_guard_s
    episodes = [int(e) for e in episodes]
    B = len(episodes)
    cfg = env_config(spec, scenario)
    core = RoutingCore(cfg, num_envs=B)
    router = _build_router(spec)
    router.prepare(cfg)
    router.reset(B, [np.random.default_rng([seed, e, ROUTER_STREAM]) for e in episodes])
    first_env_seed = stream.env_seeds(seed, max(episodes) + 1).start
    core.reset(seeds=[first_env_seed + e for e in episodes])
    N = core.N
    last_arrival = core.arrival[np.arange(B), core.n_req - 1]
    done = np.zeros(B, dtype=bool)
    truncated = np.zeros(B, dtype=bool)
    reasons: list[str | None] = [None] * B
    idle_since = np.full(B, np.inf)  # since when the router has held requests on an idle cluster
    out: list[dict | None] = [None] * B
    act_s, decisions = 0.0, 0

    def finish(b: int) -> None:
        m = core.episode_metrics(b)
        m["throughput_req_s"] = m["completed"] / m["makespan_s"] if m.get("makespan_s", 0) > 0 else float("nan")
        m["episode"] = episodes[b]
        m["truncated"] = bool(truncated[b])
        m["truncated_reason"] = reasons[b]
        if collect_requests:
            rec = core.sim.records(b)
            n = int(core.n_req[b])
            m["requests"] = {
                "request_id": np.arange(n), "instance": rec.instance[:n], "arrival_s": rec.arrival_s[:n],
                "dispatch_s": rec.dispatch_s[:n], "first_token_s": rec.first_token_s[:n],
                "completion_s": rec.completion_s[:n], "prompt_tokens": rec.prompt_tokens[:n],
                "output_tokens": rec.output_tokens[:n], "preemptions": rec.preemptions[:n]}
            _add_overlong_requests(m["requests"], core.context_fits[b])
        out[b] = m
        if on_episode is not None:
            on_episode()
        if _PROGRESS is not None:
            _PROGRESS.put(1)

    while not done.all():
        envs = np.flatnonzero(~done)
        view = core.clairvoyant_view() if router.clairvoyant else core.view()
        t0 = time.perf_counter()
        actions = np.asarray(router.act(view), dtype=np.int64)
        act_s += time.perf_counter() - t0
        decisions += int((view.has_request[envs] & (actions[envs] < N)).sum())
        if cfg.mode == "tick":
            idle = (view.num_running + view.num_waiting).sum(axis=1) == 0
            holding_idle = view.has_request & (actions >= N) & idle
            idle_since = np.where(holding_idle, np.minimum(idle_since, core.t), np.inf)
        _, terminated, trunc, _ = core.step(actions[envs], envs=envs)
        after = core.view()
        caps = ((core.t[envs] - idle_since[envs] > idle_guard_s,
                 f"held requests for {idle_guard_s:g} s of simulated time while every instance was idle"),
                (after.has_request[envs] & (after.head_wait_s[envs] > router_wait_guard_s),
                 f"a request waited {router_wait_guard_s:g} s at the router"),
                (core.t[envs] > last_arrival[envs] + guard_s, f"{guard_s:g} s after the last arrival"),
                (trunc, "the environment's own limit (max_sim_time_s / max_episode_steps)"))
        stuck = np.zeros(envs.size, dtype=bool)
        for hit, reason in caps:
            for k in np.flatnonzero(hit & ~terminated & ~stuck):
                reasons[envs[k]] = f"cut off: {reason}"
            stuck |= hit & ~terminated
        ended = terminated | stuck
        truncated[envs] = ~terminated & ended
        for b in envs[ended]:
            done[b] = True
            finish(int(b))
    extra = {}
    if hasattr(router, "ms_per_decision"):
        extra["router_reported_ms_per_decision"] = router.ms_per_decision
    return {"episodes": out, "act_s": act_s, "decisions": decisions, "wall_s": time.perf_counter() - t_start, **extra}


def _add_overlong_requests(requests: dict, fit) -> None:
    """(issue #11 §4) Request ids become positions in the episode's arrival stream; the refused
    requests get a row each (their lengths as asked, no instance nor times) and both flags a column."""
    n = len(requests["request_id"])
    zeros = np.zeros(n, dtype=np.int64)
    if fit is None:
        requests["rejected_overlong"], requests["clipped_at_context"] = zeros, zeros
        return
    refused = fit.source.subset(fit.rejected_index)
    k = len(refused)
    nan = np.full(k, np.nan)
    extra = {"request_id": fit.rejected_index, "instance": np.full(k, -1), "arrival_s": refused.arrival_s,
             "dispatch_s": nan, "first_token_s": nan, "completion_s": nan, "prompt_tokens": refused.prompt_tokens,
             "output_tokens": refused.output_tokens, "preemptions": np.zeros(k, dtype=np.int64)}
    requests["request_id"] = fit.served_index
    for c, values in extra.items():
        requests[c] = np.concatenate([requests[c], values])
    requests["rejected_overlong"] = np.concatenate([zeros, np.ones(k, dtype=np.int64)])
    requests["clipped_at_context"] = np.concatenate([fit.clipped.astype(np.int64), np.zeros(k, dtype=np.int64)])


def _run_task(task) -> tuple:
    key, spec, scenario, seed, episodes, collect = task
    return key, run_episodes(spec, scenario, seed, episodes, collect)


# ------------------------------------------------------------------------------- statistics
def _t_crit(n: int) -> float:
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (NaN episodes ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(_t_crit(v.size) * v.std(ddof=1) / math.sqrt(v.size))


def paired_improvement(reference, values) -> tuple[float, float]:
    """Δ = ``100 * (1 - mean(x) / mean(ref))`` over paired episodes (the same env seeds) and the
    half-width of its 95 % interval by the delta method for the ratio of the two means.

    With ``R = mean(x) / mean(ref)`` and ``z_i = x_i - R * ref_i``, the ratio's standard error is
    ``sd(z) / (sqrt(n) * mean(ref))`` (sd with n - 1); the half-width is ``100 * t(0.975, n - 1)``
    times it. Both means vary and are correlated through the shared episodes; treating
    ``mean(ref)`` as a constant would leave out its own noise."""
    r, x = np.asarray(reference, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if r.shape != x.shape:
        raise ValueError(f"paired improvement needs one value per episode for both, got {r.size} and {x.size}")
    ok = np.isfinite(r) & np.isfinite(x)
    r, x = r[ok], x[ok]
    if r.size == 0 or not r.mean() > 0:
        return float("nan"), float("nan")
    ratio = x.mean() / r.mean()
    z = x - ratio * r
    half = _t_crit(z.size) * z.std(ddof=1) / (math.sqrt(z.size) * r.mean()) if z.size > 1 else float("nan")
    return float(100.0 * (1.0 - ratio)), float(100.0 * half)


def improvement_over(reference: dict, result: dict) -> tuple[float, float, str | None]:
    """(Δ %, 95 % half-width, why it is n/a or None) of ``result`` over ``reference`` on mean E2E.

    n/a (NaN) when either left requests unfinished in some episode: its latencies then cover the
    completed requests only, which favours the policy that left work unfinished."""
    cut = [f"{r['policy']} has {r['truncated_episodes']} truncated episode(s)" for r in (reference, result)
           if r.get("truncated_episodes")]
    if cut:
        return float("nan"), float("nan"), "n/a: " + "; ".join(dict.fromkeys(cut))
    imp, half = paired_improvement(reference["per_episode"]["mean_e2e_s"], result["per_episode"]["mean_e2e_s"])
    return imp, half, None


def _aggregate(spec: PolicySpec, scenario: Scenario, load, seed: int, eps: list[dict], meta: dict) -> dict:
    eps = sorted(eps, key=lambda m: m["episode"])
    res: dict = {"policy": spec.name, "label": spec.label, "kind": spec.kind, "clairvoyant": spec.clairvoyant,
                 "stochastic": spec.stochastic,
                 "reference": spec.reference, "source": spec.source, "mode": spec.mode,
                 "obs": spec.obs if spec.kind == "learned" else None, "scenario": scenario.name, "load": load,
                 "rate_per_s": scenario.offered_rate(), "episodes": len(eps), "seed": seed,
                 "predictor_training_data": scenario.predictor_training_data,
                 "truncated_episodes": int(sum(m["truncated"] for m in eps)),
                 "truncated_reasons": sorted({m["truncated_reason"] for m in eps if m.get("truncated_reason")})}
    per_episode = {"episode": [m["episode"] for m in eps]}
    for key, _, src in METRICS:
        vals = [m.get(src, float("nan")) for m in eps]
        res[key], res[key + "_ci95"] = mean_ci(vals)
        per_episode[key] = vals
    for key, src in EXTRA_METRICS:
        vals = [m.get(src, float("nan")) for m in eps]
        res[key], res[key + "_ci95"] = mean_ci(vals)
        per_episode[key] = vals
    for key in ("completed", "arrived"):
        res[key] = int(sum(m[key] for m in eps))  # totals over the episodes
    # (issue #11 §4) requests beyond the context, totals over the episodes
    res["overlong"], res["max_model_len"] = scenario.overlong, scenario.max_model_len
    for key in ("rejected_overlong", "clipped_at_context"):
        res[key] = int(sum(m[key] for m in eps))
    res["completed_per_episode"] = res["completed"] / max(len(eps), 1)
    res["router_ms_per_decision"] = 1000.0 * meta["act_s"] / meta["decisions"] if meta["decisions"] else float("nan")
    if "router_reported_ms_per_decision" in meta:
        res["oracle_ms_per_decision"] = meta["router_reported_ms_per_decision"]
    res["wall_s"] = meta["wall_s"]
    res["per_episode"] = per_episode
    if any("requests" in m for m in eps):
        res["requests"] = [(m["episode"], m["requests"]) for m in eps]
    return res


def training_seed_checks(specs, seed: int, episodes: int) -> dict[str, dict]:
    """For every learned policy: does its model card's training / validation env seeds meet the
    evaluated episodes (env seeds ``seed .. seed + episodes - 1`` of the evaluation stream)? A
    dict per model label (llm_routing_env.seeds.card_seed_overlap); PolicyError for a malformed
    card field or a seed outside the evaluation stream."""
    try:
        evaluated = EVALUATION.env_seeds(seed, episodes)
        return {s.label: card_seed_overlap(s.card, evaluated, s.label) for s in specs if s.kind == "learned"}
    except ValueError as e:
        raise PolicyError(str(e)) from e


# ------------------------------------------------------------------------------------ main
def _chunks(n_episodes: int, n_pairs: int, workers: int, max_batch: int | None) -> list[list[int]]:
    per_pair = max(1, math.ceil(workers / max(n_pairs, 1))) if workers > 1 else 1
    size = min(math.ceil(n_episodes / per_pair), MAX_CHUNK, max_batch or MAX_CHUNK)
    size = max(1, size)
    return [list(range(i, min(i + size, n_episodes))) for i in range(0, n_episodes, size)]


def evaluate(policies, scenario="paper-v100", episodes: int = 20, seed: int = 0, mode: str = "arrival",
             loads=None, rate=None, workers: int | None = 1, progress: bool = False, collect_requests: bool = False,
             trace=None, profile=None, instances=None, chunked_prefill=None, num_requests=None,
             overlong=None, scheduler=None, stochastic: bool = False) -> list[dict]:
    """Evaluate ``policies`` (router names, model paths or PolicySpecs) on ``scenario`` (a name, a
    file or a Scenario; ``trace``/``rate``/``profile``/``instances``/``scheduler``/``chunked_prefill``/
    ``num_requests``/``overlong`` override it, see build_scenario) over ``episodes`` episodes from ``seed``, at each load of
    ``loads`` (a list; None: the scenario's own rate); ``stochastic``: learned policies sample their
    actions. Returns one result dict per policy (and load), keys described in the module docstring
    and evaluate.py. ``workers=None`` uses every core.
    Raises PolicyError / ValueError before simulating anything if a policy or setting is unusable."""
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    base = build_scenario(scenario, trace=trace, rate=rate, profile=profile, instances=instances,
                          chunked_prefill=chunked_prefill, num_requests=num_requests, overlong=overlong,
                          scheduler=scheduler)
    if loads is not None:
        loads = [float(x) for x in loads]
        if rate is not None:
            raise ValueError("give either a rate or loads, not both")
        if not loads or any(not math.isfinite(x) or x <= 0 for x in loads):
            raise ValueError(f"loads must be positive numbers, got {loads!r}")
    specs = resolve_policies(policies, base.num_instances, mode, stochastic=stochastic)
    seed_checks = training_seed_checks(specs, seed, episodes)
    if not any(s.label == "rr" for s in specs):
        cls = ROUTERS["rr"]
        specs = [PolicySpec(label="rr", name="rr", kind="heuristic", mode=mode, source=cls.source, reference=True),
                 *specs]
    scenarios = ([(None, _pinned(base))] if loads is None
                 else [(x, _pinned(base.with_overrides(load=x, name=base.name))) for x in loads])
    workers = default_workers() if workers is None else max(1, int(workers))
    for spec in specs:  # settings errors surface here, not in a worker
        for _, sc in scenarios:
            try:
                env_config(spec, sc)
            except (TypeError, ValueError) as e:
                raise PolicyError(f"{spec.label}: {e}") from e

    tasks = []
    for li, (load, sc) in enumerate(scenarios):
        for si, spec in enumerate(specs):
            for chunk in _chunks(episodes, len(specs) * len(scenarios), workers, spec.max_batch):
                tasks.append(((li, si), spec, sc, seed, chunk, collect_requests))
    # slow routers first, so that the pool does not wait on one long task at the end
    tasks.sort(key=lambda t: 0 if t[1].max_batch == 1 else 1)

    from tqdm import tqdm

    bar = tqdm(total=episodes * len(specs) * len(scenarios), desc="episodes", unit="ep", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    collected: dict[tuple, list] = {}
    try:
        if workers == 1 or len(tasks) == 1:
            for task in tasks:
                key, spec, sc, s, chunk, coll = task
                collected.setdefault(key, []).append(run_episodes(spec, sc, s, chunk, coll, on_episode=lambda: bar.update(1)))
        else:
            _run_pool(tasks, min(workers, len(tasks)), bar, collected)
    finally:
        bar.close()

    results = []
    for li, (load, sc) in enumerate(scenarios):
        block = []
        for si, spec in enumerate(specs):
            runs = collected[(li, si)]
            eps = [m for r in runs for m in r["episodes"]]
            meta = {"act_s": sum(r["act_s"] for r in runs), "decisions": sum(r["decisions"] for r in runs),
                    "wall_s": sum(r["wall_s"] for r in runs)}
            reported = [r["router_reported_ms_per_decision"] for r in runs if "router_reported_ms_per_decision" in r]
            if reported:
                meta["router_reported_ms_per_decision"] = float(np.nanmean(reported))
            block.append(_aggregate(spec, sc, load, seed, eps, meta))
        rr = next(r for r in block if r["label"] == "rr")
        for r in block:
            r["improvement_vs_rr_pct"], r["improvement_ci95_pct"], r["improvement_note"] = improvement_over(rr, r)
            if r["label"] in seed_checks:
                r["training_seeds"] = seed_checks[r["label"]]
        results.extend(block)
    return results


def _run_pool(tasks, workers: int, bar, collected: dict) -> None:
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    q = ctx.Queue()

    def drain():
        while True:
            try:
                bar.update(q.get_nowait())
            except queue_mod.Empty:
                return

    with ctx.Pool(workers, initializer=_init_worker, initargs=(q,)) as pool:
        pending = [pool.apply_async(_run_task, (t,)) for t in tasks]
        while pending:
            drain()
            still = []
            for p in pending:
                if p.ready():
                    key, run = p.get()  # re-raises a worker's exception
                    collected.setdefault(key, []).append(run)
                else:
                    still.append(p)
            pending = still
            if pending:
                time.sleep(0.05)
        time.sleep(0.05)
        drain()


# ------------------------------------------------------------------------------- model cards
def model_card_evaluation(model_path: str, card: dict, episodes: int = 20, seed: int = CARD_SEED,
                          heuristics=None, workers: int | None = None) -> dict:
    """The evaluation train.py stores in a model card: the model against round-robin and the best
    heuristic (lowest mean E2E among ``heuristics`` without truncated episodes, default every
    non-clairvoyant router) on the card's scenario (with the scenario overrides of its ``env``),
    ``episodes`` episodes from ``seed`` of the evaluation seed stream (llm_routing_env/seeds.py:
    never a training or validation workload), heuristics in arrival mode, the model in its own.
    Paired improvements with 95 % intervals. ``card`` is the card being written (the JSON file
    need not exist yet)."""
    from .learned import ModelError, check_compatible, describe_model
    from .reporting import nan_to_none

    env = card.get("env") or {}
    scenario = load_scenario(card.get("scenario", "paper-v100")).with_overrides(
        **{k: env[k] for k in SCENARIO_OVERRIDES if k in env})
    try:
        info = describe_model(model_path, card)
        m_mode, m_obs = check_compatible(info, scenario.num_instances)
    except ModelError as e:
        raise PolicyError(str(e)) from e
    spec = PolicySpec(label=str(model_path), name=info.name, kind="learned", mode=m_mode, obs=m_obs,
                      source=f"Stable-Baselines3 {info.algo} model {model_path}", env=info.env_settings, card=card)
    names = list(heuristics) if heuristics is not None else router_names(clairvoyant=False)
    results = evaluate([spec, *names], scenario, episodes=episodes, seed=seed, mode="arrival", workers=workers)
    model = next(r for r in results if r["label"] == spec.label)
    rr = next(r for r in results if r["label"] == "rr")
    heur = [r for r in results if r["kind"] == "heuristic" and not r["clairvoyant"]]
    # a heuristic that left requests unfinished has a mean E2E over the completed ones only: not the best
    finished = [r for r in heur if not r["truncated_episodes"]]
    best = min(finished, key=lambda r: r["mean_e2e_s"]) if finished else None
    if best is None:
        vs_best, vs_best_ci, vs_best_note = float("nan"), float("nan"), "n/a: every heuristic has truncated episodes"
    else:
        vs_best, vs_best_ci, vs_best_note = improvement_over(best, model)

    def brief(r):
        return {k: r[k] for k in ("policy", "mode", "mean_e2e_s", "mean_e2e_s_ci95", "p99_e2e_s", "mean_ttft_s",
                                  "mean_router_wait_s", "preemptions", "truncated_episodes", "improvement_vs_rr_pct",
                                  "improvement_ci95_pct", "improvement_note")}

    return nan_to_none({
        "scenario": scenario.name, "episodes": episodes, "seed": seed, "heuristic_mode": "arrival",
        "model": brief(model), "round_robin": brief(rr), "best_heuristic": brief(best) if best else None,
        "improvement_vs_rr_pct": model["improvement_vs_rr_pct"], "improvement_vs_rr_ci95_pct": model["improvement_ci95_pct"],
        "improvement_vs_rr_note": model["improvement_note"],
        "improvement_vs_best_heuristic_pct": vs_best, "improvement_vs_best_heuristic_ci95_pct": vs_best_ci,
        "improvement_vs_best_heuristic_note": vs_best_note, "training_seeds": model.get("training_seeds"),
        "heuristics": [brief(r) for r in heur],
    })
