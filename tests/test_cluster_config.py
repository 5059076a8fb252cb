"""Cluster configurations under which some request could never be admitted are refused when built,
with a message naming the setting (as vLLM refuses to start); each scheduler's defaults; at the
limit both simulators serve the longest requests under each scheduler."""

import dataclasses

import numpy as np
import pytest

from llm_routing_env.cluster import COMPLETED, ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import LatencyProfile, get_profile
from llm_routing_env.scenarios import load_scenario, scenario_names
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator

# 4 KV blocks = 64 tokens = max_model_len: the longest prefill (63 tokens) needs all 4 blocks
TINY = LatencyProfile(name="tiny-kv", c0_ms=5.0, c1_ms_per_token=0.1, c2_ms_per_token_above_knee=0.0,
                      knee_tokens=0, c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0,
                      c5_ms_per_decode_context_token=0.01, kv_capacity_blocks=4, max_model_len=64,
                      max_num_seqs=4, max_num_batched_tokens=64)


def test_every_shipped_scenario_builds():
    from llm_routing_env.scenarios import FILE_SCENARIOS

    for name in scenario_names():
        if name in FILE_SCENARIOS and FILE_SCENARIOS[name].missing():  # a trace we do not ship (test_scenarios)
            continue
        config = load_scenario(name).cluster_config()
        assert config.num_instances >= 1


def test_a_kv_cache_smaller_than_the_context_is_refused():
    with pytest.raises(ValueError, match=r"max_model_len=64 is larger than the KV cache \(kv_capacity_blocks=3 = 48 tokens\)"):
        dataclasses.replace(TINY, kv_capacity_blocks=3)


def test_a_watermark_that_leaves_no_room_for_the_longest_prefill_is_refused():
    ClusterConfig([TINY], SchedulerConfig(watermark_frac=0.2))  # int(0.2 * 4) = 0 blocks kept: fine
    with pytest.raises(ValueError, match=r"watermark_frac=0.25 keeps 1 of the 4 KV blocks of profile 'tiny-kv'.*"
                                         r"max_model_len - 1 = 63 tokens needs 4 blocks"):
        ClusterConfig([TINY], SchedulerConfig(watermark_frac=0.25))
    # a shipped profile: llama2-7b-v100 (4096 tokens = 256 blocks of its KV cache)
    v100 = get_profile("llama2-7b-v100")
    with pytest.raises(ValueError, match=r"watermark_frac=0.9 keeps 1762 of the 1958 KV blocks of profile 'llama2-7b-v100'"):
        ClusterConfig([v100, v100], SchedulerConfig(watermark_frac=0.9))
    with pytest.raises(ValueError, match=r"watermark_frac=0.25 keeps"):  # any instance of a mixed cluster
        ClusterConfig([get_profile("llama2-7b-a100"), TINY], SchedulerConfig(watermark_frac=0.25))


def test_a_token_budget_below_the_context_without_chunked_prefill_is_refused():
    with pytest.raises(ValueError, match=r"max_num_batched_tokens \(2048\) is smaller than max_model_len "
                                         r"\(4096\) of profile 'llama2-7b-v100'"):
        ClusterConfig(["llama2-7b-v100"], SchedulerConfig(max_num_batched_tokens=2048))
    # vLLM v0's chunked prefill takes a long prompt in chunks: a small budget is fine there
    ClusterConfig(["llama2-7b-v100"], SchedulerConfig(chunked_prefill=True, max_num_batched_tokens=256))


def test_a_chunked_budget_that_a_full_decode_batch_takes_whole_is_refused():
    with pytest.raises(ValueError, match=r"max_num_batched_tokens \(128\) must exceed max_num_seqs \(128\)"):
        ClusterConfig(["llama2-7b-v100"], SchedulerConfig(chunked_prefill=True, max_num_batched_tokens=128))


def test_scheduler_names_and_their_options_are_checked():
    with pytest.raises(ValueError, match=r"scheduler must be one of vllm-v0, vllm-v1; got 'vllm-v2'"):
        SchedulerConfig(scheduler="vllm-v2")
    with pytest.raises(ValueError, match=r"chunked_prefill is a vllm-v0 option .* vllm-v1 scheduler always chunks"):
        SchedulerConfig(scheduler="vllm-v1", chunked_prefill=True)
    with pytest.raises(ValueError, match=r"watermark_frac is a vllm-v0 option; the vllm-v1 scheduler keeps no"):
        SchedulerConfig(scheduler="vllm-v1", watermark_frac=0.01)
    with pytest.raises(ValueError, match=r"with scheduler vllm-v1, max_num_batched_tokens \(128\) must be greater "
                                         r"than or equal to max_num_seqs \(256\)"):
        ClusterConfig(["llama2-7b-a100"], SchedulerConfig(scheduler="vllm-v1", max_num_batched_tokens=128))


def test_each_scheduler_has_its_engines_defaults():
    def limits(profile, **scheduler):
        lim = ClusterConfig([profile], SchedulerConfig(**scheduler)).limits[0]
        return lim.max_num_batched_tokens, lim.max_num_seqs, lim.watermark_blocks

    a100 = get_profile("llama2-7b-a100")
    # vLLM v0: the profile's 4096 tokens and 128 sequences, 1% of the KV blocks kept free
    assert limits(a100) == (4096, 128, int(0.01 * a100.kv_capacity_blocks))
    assert limits(a100, chunked_prefill=True)[:2] == (512, 128)
    # vLLM v1's `vllm serve` defaults: 2048 / 256 (A100 and smaller GPUs), 8192 / 1024 (H100), no watermark
    assert limits(a100, scheduler="vllm-v1") == (2048, 256, 0)
    assert limits("llama2-70b-h100-tp4", scheduler="vllm-v1") == (8192, 1024, 0)
    assert limits(a100, scheduler="vllm-v1", max_num_batched_tokens=512, max_num_seqs=64) == (512, 64, 0)


@pytest.mark.parametrize("scheduler_name", ["vllm-v0", "vllm-v0-chunked", "vllm-v1"])
@pytest.mark.parametrize("simulator_class", [ClusterSimulator, ReferenceSimulator])
def test_at_the_limit_the_longest_requests_are_served(simulator_class, scheduler_name):
    """With every KV block needed by a request of max_model_len tokens (watermark 0), requests
    that fill the context complete, alone and competing (preempting one another)."""
    if scheduler_name == "vllm-v1":
        scheduler = SchedulerConfig(scheduler="vllm-v1", max_num_batched_tokens=16, max_num_seqs=4)
    else:
        chunked = scheduler_name == "vllm-v0-chunked"
        scheduler = SchedulerConfig(chunked_prefill=chunked, max_num_batched_tokens=16 if chunked else None,
                                    watermark_frac=0.2)
    sim = simulator_class(ClusterConfig([TINY], scheduler), num_clusters=1, max_requests=4)
    prompt, output = np.array([63, 40, 1, 32]), np.array([1, 24, 63, 32])
    sim.dispatch(0, np.arange(4), 0, prompt, output, 0.0)
    sim.run_until_idle()
    rec = sim.records()
    assert (rec.status == COMPLETED).all()
    assert np.array_equal(rec.generated_tokens[0], output)
