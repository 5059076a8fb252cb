"""A router knows only the past: what it reads at time t is each instance as of its last iteration
finished by t. An iteration in flight counts its requests as running (its prefill as pending) but
has generated nothing, freed nothing and completed nothing (docs/simulator.md, "What a router sees").

Hand-computed cases on both simulators; the differential test holds the two together on random
workloads, and tests/test_env.py's property test holds every observation to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_routing_env.cluster import ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import get_profile
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator
from tests.test_reference_timings import SIMPLE

SIMULATORS = [ReferenceSimulator, ClusterSimulator]


def seen(sim) -> dict:
    """Everything a router reads of instance 0 of cluster 0, as Python numbers."""
    state = sim.instance_state()
    n_dec, context = sim.decode_totals()
    count, total = sim.completions()
    out = {"running": int(state.num_running[0, 0]), "waiting": int(state.num_waiting[0, 0]),
           "kv_free": int(state.kv_blocks_free[0, 0]), "pending_prefill": int(state.pending_prefill_tokens[0, 0]),
           "decoding": int(n_dec[0, 0]), "decode_context": int(context[0, 0]), "completed": int(count[0]),
           "completion_time_sum_s": float(total[0])}
    if isinstance(sim, ClusterSimulator):
        ir = sim.instance_requests()
        valid = ir["running_valid"][0]
        out["requests"] = sorted(zip(ir["running_request"][0][valid].tolist(), ir["running_generated"][0][valid].tolist(),
                                     ir["running_prefill_done"][0][valid].tolist()))
    else:
        out["requests"] = sim.router_requests(0)[0]["running"]
    return out


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_a_lone_request_as_a_router_sees_it(simulator):
    # SIMPLE: 10 ms + 1 ms per batched token. A: 90-token prompt, 3 output tokens.
    # Prefill [0, 0.100] -> token 1; decode [0.100, 0.111] -> token 2; decode [0.111, 0.122] ->
    # token 3, A completes at 0.122 and frees its 6 blocks (92 tokens of KV).
    sim = simulator(ClusterConfig([SIMPLE]), 1, 4)
    sim.dispatch(0, 0, 0, 90, 3, 0.0)
    sim.advance_to(0.05)  # the prefill is in flight: running, prefill pending, no token
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 100 - 6, "pending_prefill": 90, "decoding": 0,
                         "decode_context": 0, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 0, False)]}
    sim.advance_to(0.105)  # the prefill is done (token 1); the first decode is in flight
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 94, "pending_prefill": 0, "decoding": 1,
                         "decode_context": 91, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 1, True)]}
    sim.advance_to(0.119)  # 3 ms before A completes: token 2 only, still running, blocks held
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 94, "pending_prefill": 0, "decoding": 1,
                         "decode_context": 92, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 2, True)]}
    sim.advance_to(0.122)  # the last decode ends exactly now: finished by now, A is done
    assert seen(sim) == {"running": 0, "waiting": 0, "kv_free": 100, "pending_prefill": 0, "decoding": 0,
                         "decode_context": 0, "completed": 1, "completion_time_sum_s": pytest.approx(0.122, abs=1e-15),
                         "requests": []}


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_a_chunked_prefill_under_vllm_v1_as_a_router_sees_it(simulator):
    # SIMPLE, vLLM v1 with a 32-token budget. A: 90-token prompt, 2 output tokens. Chunks of 32
    # [0, 0.042], 32 [0.042, 0.084] and 26 [0.084, 0.120] (token 1), then a decode [0.120, 0.131].
    # Each chunk takes the blocks it fills when it is scheduled: 2, then 4, then 6 in all.
    sim = simulator(ClusterConfig([SIMPLE], SchedulerConfig(scheduler="vllm-v1", max_num_batched_tokens=32,
                                                            max_num_seqs=8)), 1, 4)
    sim.dispatch(0, 0, 0, 90, 2, 0.0)
    sim.advance_to(0.02)  # the first chunk is in flight: its 2 blocks are taken, nothing is computed
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 98, "pending_prefill": 90, "decoding": 0,
                         "decode_context": 0, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 0, False)]}
    sim.advance_to(0.05)  # the second chunk is in flight: 32 tokens computed, 4 blocks held
    assert seen(sim)["kv_free"] == 96 and seen(sim)["pending_prefill"] == 90 - 32
    sim.advance_to(0.1)   # the last chunk (26 tokens) is in flight
    assert seen(sim)["kv_free"] == 94 and seen(sim)["pending_prefill"] == 26
    sim.advance_to(0.125)  # the prefill is done (token 1); the decode is in flight
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 94, "pending_prefill": 0, "decoding": 1,
                         "decode_context": 91, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 1, True)]}
    sim.advance_to(0.131)
    assert seen(sim) == {"running": 0, "waiting": 0, "kv_free": 100, "pending_prefill": 0, "decoding": 0,
                         "decode_context": 0, "completed": 1, "completion_time_sum_s": pytest.approx(0.131, abs=1e-15),
                         "requests": []}


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_the_issue_case_a_long_prefill_and_an_unseen_output_length(simulator):
    """One llama2-7b-v100 instance: a 4,000-token prompt and a short request dispatched at 0. The
    joint prefill ends at 1.297 s; the short request (10 prompt tokens) then decodes. Whether its
    true output is 20 or 21 tokens, a router sees the same until its last token is generated."""
    profile = get_profile("llama2-7b-v100")

    def run(output):
        sim = simulator(ClusterConfig([profile]), 1, 4)
        sim.dispatch(0, [0, 1], 0, [4000, 10], [90, output], 0.0)
        return sim

    finished = run(20)
    finished.run_until_idle()
    rec = finished.records()
    assert rec.first_token_s[0, 1] == pytest.approx(1.297157, abs=1e-6)
    decision_s = rec.completion_s[0, 1] - 0.003  # 3 ms before the 20-token request completes
    views = {}
    for output in (20, 21):
        sim = run(output)
        sim.advance_to(0.001)
        early = seen(sim)
        assert early["running"] == 2 and early["decoding"] == 0 and early["pending_prefill"] == 4010
        assert early["requests"] == [(0, 0, False), (1, 0, False)]
        sim.advance_to(decision_s)
        views[output] = seen(sim)
    assert views[20] == views[21]
    assert views[20]["completed"] == 0 and (1, 19, True) in views[20]["requests"]


# --------------------------------------------------------------------------------------------
# The environment: changing what has not happened by t changes nothing a router sees up to t
# --------------------------------------------------------------------------------------------

import dataclasses  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agents.baselines import make_router, router_names  # noqa: E402
from llm_routing_env.env import LLMRoutingEnv  # noqa: E402
from llm_routing_env.observations import encode  # noqa: E402
from llm_routing_env.profiles import register_profile  # noqa: E402
from llm_routing_env.scenarios import Scenario  # noqa: E402

# A V100 with a small KV cache (400 blocks, 6,400 tokens): a few long requests preempt each other.
TIGHT = register_profile(dataclasses.replace(get_profile("llama2-7b-v100"), name="test-tight-v100",
                                             kv_capacity_blocks=400, max_model_len=2048))
HEURISTICS = router_names(clairvoyant=False)
SCHEDULERS = ("vllm-v0", "vllm-v0-chunked", "vllm-v1")


def _scenario(trace: str, train: str, instances, scheduler: str, cache_knowledge: str | None = None) -> Scenario:
    # the whole trace is the episode, at its own times; the predictor is fitted on another file;
    # with cache_knowledge (a trace with prefixes), prefix caching is on under every scheduler
    return Scenario("leak", instances=tuple(instances), scheduler="vllm-v1" if scheduler == "vllm-v1" else "vllm-v0",
                    chunked_prefill=scheduler == "vllm-v0-chunked", mix=None, trace=trace,
                    num_requests=10_000, predictor_train_trace=train,
                    prefix_caching=True if cache_knowledge else None, cache_knowledge=cache_knowledge or "approximate")


def _run(scenario: Scenario, env_kwargs: dict, driver: str, max_steps: int) -> list[dict]:
    """One episode routed by ``driver``; everything a router sees (and every heuristic's decision)
    at each decision, and what the simulator's router view says each request has generated."""
    env = LLMRoutingEnv(scenario=scenario, **env_kwargs)
    obs, info = env.reset(seed=7)
    core = env.unwrapped.core
    routers = {name: make_router(name) for name in HEURISTICS if env_kwargs["mode"] in make_router(name).modes}
    for name, r in routers.items():
        r.prepare(core.config)
        r.reset(1, 11)
    steps = []
    reward = None
    for _ in range(max_steps):
        view = env.router_view()
        decisions = {name: int(r.act(view)[0]) for name, r in routers.items()}
        ir = core.sim.instance_requests()
        generated = core.sim.generated[: core.R].copy()  # waiting requests: what they had when preempted
        run = ir["running_valid"]
        generated[ir["running_request"][run]] = ir["running_generated"][run]
        cache = {"hits": view.head_prefix_hit_blocks, "cached": view.prefix_cached_blocks,
                 "blocks": view.head_prefix_blocks, "session": view.head_session, "ids": view.head_prefix_ids(0)}
        steps.append({"t": float(core.t[0]), "obs": obs.copy(), "info": info, "mask": env.action_masks(),
                      "vector_obs": encode(core.config.obs, view, scenario.max_model_len)[0],
                      "decisions": decisions, "reward_before": reward, "generated": generated, "cache": cache})
        obs, reward, terminated, truncated, info = env.step(decisions[driver])
        if terminated or truncated:
            break
    env.close()
    return steps


def _same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(a, b) and np.asarray(a).dtype == np.asarray(b).dtype, f"{where}: {a!r} != {b!r}"
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


@st.composite
def worlds(draw):
    n = draw(st.integers(2, 14))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.003, 0.02, 0.1, 0.4, 1.5, 3.0]), min_size=n - 1, max_size=n - 1))
    arrival = np.concatenate([[0.0], np.cumsum(gaps)])
    prompt = draw(st.lists(st.integers(1, 1500), min_size=n, max_size=n))
    output = [min(draw(st.integers(1, 300)), 2048 - p) for p in prompt]
    mode = draw(st.sampled_from(["tick", "arrival"]))
    return {
        "arrival": arrival, "prompt": np.array(prompt), "output": np.array(output),
        "instances": [draw(st.sampled_from(["llama2-7b-v100", "test-tight-v100"]))] * draw(st.integers(1, 3)),
        "scheduler": draw(st.sampled_from(SCHEDULERS)),
        "env": {"mode": mode, "obs": draw(st.sampled_from(["paper", "rich"])),
                "reward": draw(st.sampled_from(["latency", "paper"])),
                "predictor": draw(st.sampled_from(["task-prior", "learned"]))},
        "driver": draw(st.sampled_from([h for h in HEURISTICS if mode in make_router(h).modes])),
        "cut": draw(st.floats(0.0, 1.0)), "cut_at_completion": draw(st.booleans()),
        "future_seed": draw(st.integers(0, 2**31)),
    }


@st.composite
def prefix_worlds(draw):
    """Worlds whose requests share prefixes (three families of up to 12 blocks, the last block
    sometimes differing), under one of the three cache_knowledge options."""
    world = draw(worlds())
    world["prefix"] = [_prefix_ids(draw(st.integers(0, 2)), draw(st.integers(0, 12)), draw(st.booleans()), p)
                       for p in world["prompt"]]
    world["cache_knowledge"] = draw(st.sampled_from(["approximate", "exact", "polled"]))
    return world


def _prefix_ids(family: int, length: int, variant: bool, prompt: int) -> str:
    ids = [100 * family + k for k in range(min(length, int(prompt) // 16))]
    if ids and variant:
        ids[-1] += 50
    return " ".join(map(str, ids))


def check_unseen_future_changes_nothing(world: dict, tmp_path, write_trace, max_steps: int = 300) -> None:
    """Run the episode, pick a decision at time t, change every true output length of a request
    not completed by t (to any length the tokens generated by then allow) and every request
    arriving after t, run again: everything up to t must be bit-identical."""
    train = write_trace(tmp_path / "train.csv", [0.0, 1.0, 2.0, 3.0], [100, 900, 30, 1500], [40, 300, 5, 120])
    knowledge, prefix = world.get("cache_knowledge"), world.get("prefix")
    trace_a = write_trace(tmp_path / "a.csv", world["arrival"], world["prompt"], world["output"], prefix)
    a = _run(_scenario(trace_a, train, world["instances"], world["scheduler"], knowledge), world["env"], world["driver"],
             max_steps)
    # world A's truth: when each request completes
    env = LLMRoutingEnv(scenario=_scenario(trace_a, train, world["instances"], world["scheduler"], knowledge),
                        **world["env"])
    env.reset(seed=7)
    for step in a[:-1]:
        env.step(step["decisions"][world["driver"]])
    completion = env.unwrapped.core.sim.records(0).completion_s[: len(world["output"])]
    k = min(int(world["cut"] * len(a)), len(a) - 1)
    if world.get("cut_at_completion"):  # the first decision from there on inside a completing iteration
        ahead = [i for i in range(k, len(a)) if ((completion > a[i]["t"]) & (completion <= a[i]["t"] + 0.012)).any()]
        k = ahead[0] if ahead else k
    t = a[k]["t"]
    rng = np.random.default_rng(world["future_seed"])
    prompt, output, arrival = world["prompt"].copy(), world["output"].copy(), world["arrival"].copy()
    prefix = None if prefix is None else list(prefix)
    generated = a[k]["generated"][: len(output)]
    for q in range(len(output)):
        if arrival[q] > t:  # not arrived by t: anything (its prefix too)
            arrival[q] = t + 1e-3 + rng.uniform(0.0, 2.0)
            prompt[q] = rng.integers(1, 1500)
            output[q] = min(int(rng.integers(1, 300)), 2048 - prompt[q])
            if prefix is not None:
                prefix[q] = _prefix_ids(int(rng.integers(0, 3)), int(rng.integers(0, 13)), bool(rng.integers(2)),
                                        prompt[q])
        elif not completion[q] <= t:  # arrived, not completed by t: at least one more token than seen
            output[q] = int(rng.integers(generated[q] + 1, 2048 - prompt[q] + 1))
    late = arrival > t
    order = np.argsort(arrival, kind="stable")  # (the late ones sorted, each keeping its prompt and prefix)
    arrival, prompt, output = arrival[order], prompt[order], output[order]
    if prefix is not None:
        prefix = [prefix[i] for i in order]
    changed = (f"t={t}, step {k} of {len(a)}; outputs changed {np.flatnonzero(output != world['output']).tolist()}, "
               f"arrivals after t {np.flatnonzero(late).tolist()}")
    trace_b = write_trace(tmp_path / "b.csv", arrival, prompt, output, prefix)
    b = _run(_scenario(trace_b, train, world["instances"], world["scheduler"], knowledge), world["env"], world["driver"],
             k + 1)
    assert len(b) == k + 1, f"world B ended before t ({changed})"
    for i in range(k + 1):
        for name in ("t", "obs", "vector_obs", "info", "mask", "decisions", "reward_before", "cache"):
            _same(a[i][name], b[i][name], f"{changed}: step {i} (t={a[i]['t']:.4f}): {name}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(world=worlds())
def test_nothing_a_router_sees_depends_on_the_unseen_future(world, tmp_path, write_trace):
    check_unseen_future_changes_nothing(world, tmp_path, write_trace)


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(world=prefix_worlds())
def test_nothing_a_router_sees_of_the_caches_depends_on_the_unseen_future(world, tmp_path, write_trace):
    """Shared prefixes, prefix caching on, every scheduler and every cache_knowledge: the cache
    fields of the view (head_prefix_hit_blocks, prefix_cached_blocks, ...) and the observations
    are the same up to t whatever has not happened by then."""
    check_unseen_future_changes_nothing(world, tmp_path, write_trace)


@pytest.mark.parametrize("knowledge", ["approximate", "exact", "polled"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_cache_views_without_the_future_on_a_dense_prefix_workload(knowledge, scheduler, tmp_path, write_trace):
    """A fixed preempting workload of shared prefixes, decisions every 20 ms, cut inside an
    iteration that completes a request: under each option and scheduler, nothing seen moves."""
    rng = np.random.default_rng(9)
    n = 40
    prompt = rng.integers(300, 1800, n)
    world = {"arrival": np.concatenate([[0.0], np.cumsum(rng.exponential(0.2, n - 1))]),
             "prompt": prompt, "output": rng.integers(5, 200, n),
             "prefix": [_prefix_ids(int(rng.integers(0, 3)), int(rng.integers(4, 30)), bool(rng.integers(2)), p)
                        for p in prompt],
             "cache_knowledge": knowledge, "instances": ["test-tight-v100"] * 2, "scheduler": scheduler,
             "env": {"mode": "tick", "obs": "rich", "reward": "paper", "predictor": "task-prior",
                     "skip_idle_ticks": False},
             "driver": "lor", "cut": 0.5, "cut_at_completion": True, "future_seed": 4}
    check_unseen_future_changes_nothing(world, tmp_path, write_trace, max_steps=2000)


@pytest.mark.parametrize("driver", HEURISTICS)
@pytest.mark.parametrize("mode", ["tick", "arrival"])
@pytest.mark.parametrize("scheduler", ["vllm-v0", "vllm-v1"])
def test_every_roster_policy_decides_the_same_without_the_future(scheduler, driver, mode, tmp_path, write_trace):
    """Every heuristic of the roster (each in turn routing, all deciding at every step) on a
    preempting cluster: two workloads that differ only in what has not happened by t. Decisions
    are dense (every 20 ms tick; in arrival mode, 80 arrivals) so that many fall inside an
    iteration that completes a request. Routers made for tick mode only are checked in tick mode."""
    if mode not in make_router(driver).modes:
        return
    rng = np.random.default_rng(5)
    n = 30 if mode == "tick" else 80
    world = {"arrival": np.concatenate([[0.0], np.cumsum(rng.exponential(0.3 if mode == "tick" else 0.1, n - 1))]),
             "prompt": rng.integers(300, 1800, n), "output": rng.integers(5, 250, n),
             "instances": ["test-tight-v100"] * 2, "scheduler": scheduler,
             "env": {"mode": mode, "obs": "rich", "reward": "paper", "predictor": "task-prior"},
             "driver": driver, "cut": 0.5, "cut_at_completion": True, "future_seed": 3}
    if mode == "tick":
        world["env"]["skip_idle_ticks"] = False
    check_unseen_future_changes_nothing(world, tmp_path, write_trace, max_steps=2000)
