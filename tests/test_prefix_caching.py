"""Prefix caching in both simulators: hand-computed timings of hits, the hit cap, eviction and
sharing of blocks; configuration and dispatch errors; no effect without prefixes.

The profile's iteration takes ``10 ms + 1 ms per batched token`` (plus ``c4`` per chunk token and
prior token where given): a prefill of ``x`` uncached tokens alone lasts ``10 + x`` ms.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_routing_env.cluster import COMPLETED, ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import LatencyProfile
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator

SIMS = (ReferenceSimulator, ClusterSimulator)


def profile(kv_capacity_blocks=100, c4=0.0, max_model_len=256) -> LatencyProfile:
    return LatencyProfile(
        name="prefix-simple", c0_ms=10.0, c1_ms_per_token=1.0, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
        c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=c4, c5_ms_per_decode_context_token=0.0,
        kv_capacity_blocks=kv_capacity_blocks, max_model_len=max_model_len,
    )


def make(sim_cls, prof=None, **scheduler):
    scheduler.setdefault("scheduler", "vllm-v1")
    return sim_cls(ClusterConfig([prof or profile()], SchedulerConfig(**scheduler)), 1, 8)


def close(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def rec(sim, rid):
    r = sim.records()
    return {name: getattr(r, name)[0, rid].item() for name in r.__dataclass_fields__}


@pytest.mark.parametrize("sim_cls", SIMS)
@pytest.mark.parametrize("scheduler", [dict(scheduler="vllm-v1"), dict(scheduler="vllm-v0", prefix_caching=True),
                                       dict(scheduler="vllm-v0", chunked_prefill=True, prefix_caching=True)])
def test_a_hit_skips_the_cached_prefill(sim_cls, scheduler):
    sim = make(sim_cls, profile(c4=0.01), **scheduler)
    sim.dispatch(0, 0, 0, 40, 1, 0.0, prefix_blocks=[[7, 8]])
    sim.run_until_idle()
    # A: 40 tokens, nothing cached: 10 + 40 = 50 ms; it completes with its first token and its
    # two prefix blocks (keys 7 and 7-8) stay cached, free.
    assert rec(sim, 0)["completion_s"] == close(0.050)
    sim.dispatch(0, 1, 0, 40, 2, sim.now_s[0], prefix_blocks=[[7, 8]])
    sim.run_until_idle()
    b = rec(sim, 1)
    # B hits both blocks (32 tokens; the cap (40 - 1) // 16 = 2 blocks): it computes 8 tokens with
    # 32 prior: 10 + 8 + 0.01 * 8 * 32 = 20.56 ms, then one decode of 10 + 1 = 11 ms.
    assert b["first_token_s"] == close(0.050 + 0.02056)
    assert b["completion_s"] == close(0.050 + 0.02056 + 0.011)
    assert (b["prefix_hit_tokens"], b["prefill_tokens"]) == (32, 8)
    assert (rec(sim, 0)["prefix_hit_tokens"], rec(sim, 0)["prefill_tokens"]) == (0, 40)


@pytest.mark.parametrize("sim_cls", SIMS)
def test_the_last_token_is_always_computed(sim_cls):
    sim = make(sim_cls)
    sim.dispatch(0, 0, 0, 32, 1, 0.0, prefix_blocks=[[7, 8]])
    sim.run_until_idle()                      # 10 + 32 = 42 ms
    sim.dispatch(0, 1, 0, 32, 1, sim.now_s[0], prefix_blocks=[[7, 8]])
    sim.run_until_idle()
    # both blocks are cached, but a 32-token prompt may hit (32 - 1) // 16 = 1 block: 16 computed
    assert rec(sim, 1)["completion_s"] == close(0.042 + 0.026)
    assert rec(sim, 1)["prefix_hit_tokens"] == 16


@pytest.mark.parametrize("sim_cls", SIMS)
def test_new_blocks_evict_the_least_recently_freed_first(sim_cls):
    sim = make(sim_cls, profile(kv_capacity_blocks=6, max_model_len=96))
    sim.dispatch(0, 0, 0, 40, 1, 0.0, prefix_blocks=[[7, 8]])
    sim.run_until_idle()  # 50 ms; A's 3 blocks are free, 2 of them cached: 7-8 freed first, then 7
    sim.dispatch(0, 1, 0, 80, 1, sim.now_s[0])
    sim.run_until_idle()  # D takes 5 blocks: the 4 uncached, then evicts 7-8; 10 + 80 = 90 ms
    sim.dispatch(0, 2, 0, 40, 1, sim.now_s[0], prefix_blocks=[[7, 8]])
    sim.run_until_idle()
    # E hits block 7 only (16 tokens; its chain stops at the evicted 7-8): 10 + 24 = 34 ms
    e = rec(sim, 2)
    assert e["completion_s"] == close(0.050 + 0.090 + 0.034)
    assert e["prefix_hit_tokens"] == 16


@pytest.mark.parametrize("sim_cls", SIMS)
@pytest.mark.parametrize("shared", [True, False])
def test_running_requests_share_blocks(sim_cls, shared):
    sim = make(sim_cls)
    # A and B are admitted in one step: neither finds the other's blocks (B keeps its own copy)
    sim.dispatch(0, [0, 1], 0, 40, 10, 0.0, prefix_blocks=[[7, 8], [7, 8]])
    sim.advance_to(0.1)  # prefill 10 + 80 = 90 ms, then a decode of both: 10 + 2 = 12 ms (to 0.102)
    sim.dispatch(0, 2, 0, 40, 1, 0.1, prefix_blocks=[[7, 8]] if shared else None)
    sim.advance_to(0.11)  # 0.102: the decodes of A and B with C's admission, in flight
    state = sim.instance_state()
    # A and B hold 3 blocks each (42 tokens); C's 40 tokens need 3, 2 of which it shares with A
    assert state.kv_blocks_used[0, 0] == (7 if shared else 9)
    sim.run_until_idle()
    # C: 8 uncached tokens with the two decodes: 10 + 2 + 8 = 20 ms (else 10 + 2 + 40)
    assert rec(sim, 2)["first_token_s"] == close(0.102 + (0.020 if shared else 0.052))
    assert sim.instance_state().kv_blocks_free[0, 0] == 100


@pytest.mark.parametrize("sim_cls", SIMS)
def test_caching_off_ignores_prefixes(sim_cls):
    sim = make(sim_cls, scheduler="vllm-v1", prefix_caching=False)
    for rid in range(2):
        sim.dispatch(0, rid, 0, 40, 1, sim.now_s[0], prefix_blocks=[[7, 8]])
        sim.run_until_idle()
    assert rec(sim, 1)["completion_s"] == close(0.100)  # two prefills of 50 ms
    assert rec(sim, 1)["prefix_hit_tokens"] == 0


def test_defaults_per_scheduler():
    assert SchedulerConfig(scheduler="vllm-v1").caches_prefixes
    assert not SchedulerConfig(scheduler="vllm-v0").caches_prefixes
    assert SchedulerConfig(scheduler="vllm-v0", prefix_caching=True).caches_prefixes
    with pytest.raises(ValueError, match="prefix_caching must be True, False or None"):
        SchedulerConfig(prefix_caching="yes")


@pytest.mark.parametrize("sim_cls", SIMS)
def test_bad_prefix_blocks_are_named(sim_cls):
    sim = make(sim_cls)
    with pytest.raises(ValueError, match=r"prefix_blocks of dispatch #1: 3 block ids for a prompt of 40 tokens"):
        sim.dispatch(0, [0, 1], 0, 40, 1, 0.0, prefix_blocks=[None, [1, 2, 3]])
    with pytest.raises(ValueError, match=r"prefix_blocks of dispatch #0 must be a 1-D sequence of non-negative"):
        sim.dispatch(0, 0, 0, 40, 1, 0.0, prefix_blocks=[[-1]])
    with pytest.raises(ValueError, match=r"one entry \(None or block ids\) per dispatch \(2\)"):
        sim.dispatch(0, [0, 1], 0, 40, 1, 0.0, prefix_blocks=[[1]])
    assert (sim.records().status == 0).all()  # nothing dispatched


@pytest.mark.parametrize("scheduler", ["vllm-v0", "vllm-v1"])
def test_without_prefixes_caching_changes_nothing(scheduler):
    """The same requests with caching on and off (no prefix ids): bit-identical records."""
    out = []
    for caching in (True, False):
        sim = ClusterSimulator(ClusterConfig([profile(kv_capacity_blocks=30)] * 2,
                                             SchedulerConfig(scheduler=scheduler, prefix_caching=caching)), 1, 64)
        r = np.random.default_rng(5)
        for rid in range(64):
            sim.advance_to(rid * 0.01)
            sim.dispatch(0, rid, rid % 2, int(r.integers(1, 200)), int(r.integers(1, 50)), rid * 0.01)
        sim.run_until_idle()
        out.append(sim.records())
    for name in out[0].__dataclass_fields__:
        assert np.array_equal(getattr(out[0], name), getattr(out[1], name), equal_nan=True), name
    assert (out[0].status == COMPLETED).all() and out[0].preemptions.sum() > 0


@pytest.mark.parametrize("caching", [None, False])
def test_an_episode_on_a_trace_with_prefixes(tmp_path, caching):
    """A generic CSV trace with a shared 64-token system prompt (4 blocks) and per-session blocks,
    played through the environment under vLLM v1: the instances' caches hit (on by default), and
    the episode's metrics report it; with prefix_caching = false nothing hits."""
    import gymnasium as gym

    from llm_routing_env.scenarios import Scenario

    rows = ["arrival_s,prompt_tokens,output_tokens,prefix_blocks"]
    for i in range(60):
        session = i % 3
        rows.append(f"{0.05 * i:.2f},{100 + i},{5 + i % 7},1 2 3 4 {10 + session} {20 + session}")
    path = tmp_path / "prefixed.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    scenario = Scenario("prefixed", instances=("llama2-7b-a100",) * 2, scheduler="vllm-v1", prefix_caching=caching,
                        mix=None, trace=str(path), num_requests=40, predictor_train_fraction=0.2)
    env = gym.make("llm_routing_env/LLMRouting-v0", scenario=scenario, mode="arrival")
    env.reset(seed=0)
    done, info, k = False, {}, 0
    while not done:  # round-robin
        _, _, terminated, truncated, info = env.step(k % 2)
        k += 1
        done = terminated or truncated
    m = info["metrics"]
    assert m["completed"] == 40
    if caching is None:
        # round-robin over 2 instances, sessions i % 3: each instance serves 20 requests of all three
        # sessions; its first hits nothing, the first of each other session the 4 shared blocks
        # (64 tokens), the 17 others all 6 blocks (96 tokens; prompts >= 100, so the cap does not
        # bind): 2 * (2 * 64 + 17 * 96) = 3520 hit tokens
        assert m["prefix_hit_rate"] == pytest.approx(3520 / (3520 + m["prefill_tokens"]), rel=1e-12)
    else:
        assert m["prefix_hit_rate"] == 0.0
    assert m["prefill_tokens"] > 0
    env.close()


def test_scenario_files_set_prefix_caching(tmp_path):
    from llm_routing_env.scenarios import load_scenario

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[cluster]\nprofile = "llama2-7b-a100"\nnum_instances = 2\nscheduler = "vllm-v1"\n'
                    'prefix_caching = false\n[workload]\nmix = "paper-mix"\nrate_per_s = 5.0\n', encoding="utf-8")
    assert not load_scenario(path).cluster_config().scheduler.caches_prefixes
    path.write_text(path.read_text().replace("prefix_caching = false\n", ""), encoding="utf-8")
    assert load_scenario(path).cluster_config().scheduler.caches_prefixes
    path.write_text(path.read_text().replace('scheduler = "vllm-v1"\n', 'prefix_caching = "on"\n'), encoding="utf-8")
    with pytest.raises(ValueError, match="prefix_caching must be True, False or None"):
        load_scenario(path)


@pytest.mark.parametrize("sim_cls", SIMS)
def test_blocks_taken_earlier_in_the_step_evict_before_the_look_up(sim_cls):
    sim = make(sim_cls, profile(kv_capacity_blocks=8, max_model_len=128))
    sim.dispatch(0, 0, 0, 17, 1, 0.0, prefix_blocks=[[5]])
    sim.run_until_idle()  # 10 + 17 = 27 ms; its block c (key 5) is cached free
    sim.dispatch(0, 1, 0, 49, 1, sim.now_s[0], prefix_blocks=[[1, 2, 3]])
    sim.run_until_idle()  # 10 + 49 = 59 ms; free queue, least recent first: c, x3, x2, x1 (4 uncached)
    sim.dispatch(0, 2, 0, 64, 3, sim.now_s[0])  # D takes the 4 uncached blocks: 10 + 64 = 74 ms
    sim.advance_to(sim.now_s[0] + 0.01)
    sim.dispatch(0, 3, 0, 17, 1, sim.now_s[0], prefix_blocks=[[5]])
    sim.run_until_idle()
    # Next step (0.086 + 0.074): D's decode needs a 5th block, which evicts c before C looks the
    # cache up: C hits nothing and computes its 17 tokens beside D's decode: 10 + 1 + 17 = 28 ms
    c = rec(sim, 3)
    assert c["prefix_hit_tokens"] == 0
    assert c["first_token_s"] == close(0.027 + 0.059 + 0.074 + 0.028)


def test_a_clipped_prompt_keeps_its_full_prefix_blocks(tmp_path):
    """A prompt clipped to the context (4,200 -> 4,095 tokens) keeps the 255 full blocks it still
    has of its 262 prefix blocks; the second request on the instance hits all 255."""
    import gymnasium as gym

    from llm_routing_env.scenarios import Scenario

    ids = " ".join(str(i) for i in range(262))
    rows = ["arrival_s,prompt_tokens,output_tokens,prefix_blocks"] + [f"{i}.0,4200,3,{ids}" for i in range(10)]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    scenario = Scenario("long", instances=("llama2-7b-v100",), scheduler="vllm-v1", mix=None, trace=str(path),
                        num_requests=2, overlong="clip", predictor_train_fraction=0.2)
    env = gym.make("llm_routing_env/LLMRouting-v0", scenario=scenario, mode="arrival")
    env.reset(seed=0)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    m = info["metrics"]
    assert m["completed"] == 2 and m["clipped_at_context"] == 2
    assert m["prefix_hit_rate"] == pytest.approx(255 * 16 / (2 * 4095), rel=1e-12)
    env.close()


def test_mooncake_blocks_reach_the_prefix_cache(tmp_path):
    """A Mooncake trace (512-token hash blocks) played through the environment: its blocks are
    split into 16-token KV blocks (Workload.with_kv_blocks), so the episode's second request, whose chain
    agrees with the first one's on 2 of 3 hash blocks, hits exactly those 2 x 32 blocks."""
    import gymnasium as gym

    from llm_routing_env.scenarios import Scenario

    path = tmp_path / "mc.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 700, "output_length": 2, "hash_ids": [8, 9]}\n'
                    '{"timestamp": 0, "input_length": 1100, "output_length": 2, "hash_ids": [0, 1, 2]}\n'
                    '{"timestamp": 5000, "input_length": 1536, "output_length": 2, "hash_ids": [0, 1, 3]}\n'
                    '{"timestamp": 9000, "input_length": 600, "output_length": 2, "hash_ids": [5, 6]}\n',
                    encoding="utf-8")
    scenario = Scenario("mc", instances=("llama3.1-8b-a100",), scheduler="vllm-v1", mix=None, trace=str(path),
                        num_requests=3, predictor_train_fraction=0.25)
    env = gym.make("llm_routing_env/LLMRouting-v0", scenario=scenario, mode="arrival")
    env.reset(seed=0)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    m = info["metrics"]
    assert m["completed"] == 3
    assert m["prefix_hit_rate"] == pytest.approx(64 * 16 / (64 * 16 + m["prefill_tokens"]), rel=1e-12)
    assert m["prefix_hit_rate"] > 0
    env.close()
