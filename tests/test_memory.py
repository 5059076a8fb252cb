"""vLLM's KV-capacity arithmetic (llm_routing_env/memory.py), checked against hand arithmetic."""

import pytest

from llm_routing_env.memory import (
    A100_80GB, LLAMA2_7B, LLAMA3_8B, V100_16GB, V100_32GB, GpuSpec, ModelSpec, kv_cache_plan,
)

MIB = 1 << 20


def test_llama2_7b_on_v100_32gb_by_hand():
    plan = kv_cache_plan(LLAMA2_7B, V100_32GB, max_num_batched_tokens=4096, max_num_seqs=256)
    # 32,510 MiB x 0.9 = 30,680,285,184 B of budget
    assert plan.budget_bytes == 30_680_285_184
    # 6,738,415,616 fp16 parameters
    assert plan.weights_bytes == 13_476_831_232
    # MLP peak: 4,096 tokens x (2 x 4,096 + 3 x 11,008) x 2 B; the sampler's 4,096 x 4,096 x 2
    # + 256 x 32,000 x 24 = 230,162,432 is smaller
    assert plan.activation_peak_bytes == 4096 * (2 * 4096 + 3 * 11008) * 2 == 337_641_472
    # K and V x 32 layers x 32 heads x 128 x 2 B x 16 tokens
    assert plan.kv_bytes_per_block == 8_388_608
    # (30,680,285,184 - 13,476,831,232 - 337,641,472) / 8,388,608 = 2,010.56
    assert plan.num_kv_blocks == 2010
    assert plan.kv_tokens == 32_160
    assert plan.max_model_len_tokens == 4096  # the model's context is the limit here


def test_llama2_7b_on_a100_80gb_by_hand():
    plan = kv_cache_plan(LLAMA2_7B, A100_80GB, max_num_batched_tokens=4096, max_num_seqs=256)
    assert plan.budget_bytes == 77_309_411_328  # 81,920 MiB x 0.9
    # (77,309,411,328 - 13,476,831,232 - 337,641,472) / 8,388,608 = 7,569.06
    assert plan.num_kv_blocks == 7569
    assert plan.max_model_len_tokens == 4096


def test_v100_16gb_cannot_hold_the_full_llama2_context():
    # 16,160 MiB x 0.9 = 15,250,489,344; minus weights and the 4,096-token profile's 337,641,472
    # leaves 1,436,016,640 B = 171.19 blocks: 2,736 tokens, less than Llama-2's 4,096 context, so
    # vLLM refuses max_model_len 4,096 on this GPU.
    plan = kv_cache_plan(LLAMA2_7B, V100_16GB, max_num_batched_tokens=4096, max_num_seqs=256)
    assert plan.num_kv_blocks == 171
    assert plan.max_model_len_tokens == 2736
    assert "the KV cache, not the model's context, is the limit" in plan.explain()
    # with max_model_len 2,048 the profile batch is 2,048 tokens (vLLM's max(max_model_len, 2048));
    # with the paper's 128 sequences the MLP (168,820,736 B) outweighs the sampler (115,073,024 B)
    smaller = kv_cache_plan(LLAMA2_7B, V100_16GB, max_num_batched_tokens=2048, max_num_seqs=128)
    assert smaller.activation_peak_bytes == 2048 * (2 * 4096 + 3 * 11008) * 2
    assert smaller.num_kv_blocks == (15_250_489_344 - 13_476_831_232 - 168_820_736) // 8_388_608 == 191


def test_gqa_and_tensor_parallel_shrink_the_kv_block():
    # Llama-3-8B keeps 8 KV heads: a quarter of Llama-2-7B's KV per token
    assert LLAMA3_8B.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == LLAMA2_7B.kv_bytes_per_token() // 4
    assert LLAMA2_7B.kv_bytes_per_token(tensor_parallel=2) == LLAMA2_7B.kv_bytes_per_token() // 2
    plan = kv_cache_plan(LLAMA2_7B, V100_16GB, tensor_parallel=2, max_num_batched_tokens=4096, max_num_seqs=256)
    assert plan.weights_bytes == 13_476_831_232 // 2


def test_sampler_peak_dominates_with_a_large_vocabulary_and_many_sequences():
    # 256 sequences at 2,048 tokens: 2,048 x 4,096 x 2 + 256 x 32,000 x 24 > the MLP's 168,820,736
    seqs_256 = kv_cache_plan(LLAMA2_7B, V100_16GB, max_num_batched_tokens=2048, max_num_seqs=256)
    assert seqs_256.activation_peak_bytes == 2048 * 4096 * 2 + 256 * 32000 * 24 == 213_385_216
    plan = kv_cache_plan(LLAMA3_8B, A100_80GB, max_num_batched_tokens=2048, max_num_seqs=256)
    assert plan.activation_peak_bytes == 2048 * 4096 * 2 + 256 * 128256 * 24


def test_more_memory_more_blocks_and_non_torch_memory_is_subtracted():
    base = kv_cache_plan(LLAMA2_7B, V100_32GB, max_num_batched_tokens=4096, max_num_seqs=256)
    more = kv_cache_plan(LLAMA2_7B, V100_32GB, gpu_memory_utilization=0.95, max_num_batched_tokens=4096,
                         max_num_seqs=256)
    assert more.num_kv_blocks > base.num_kv_blocks
    less = kv_cache_plan(LLAMA2_7B, V100_32GB, max_num_batched_tokens=4096, max_num_seqs=256,
                         non_torch_bytes=10 * 8 * MIB)
    assert less.num_kv_blocks == base.num_kv_blocks - 10


def test_a_model_that_does_not_fit_gets_zero_blocks():
    plan = kv_cache_plan(LLAMA2_7B, GpuSpec("tiny", 8 * 1024 * MIB), max_num_batched_tokens=2048, max_num_seqs=128)
    assert plan.num_kv_blocks == 0 and plan.max_model_len_tokens == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization must be in (0, 1]"),
    (dict(tensor_parallel=0), "tensor_parallel must be a positive integer"),
    (dict(max_num_seqs=0), "max_num_seqs must be a positive integer"),
    (dict(non_torch_bytes=-1), "non_torch_bytes must be an integer >= 0"),
])
def test_bad_options_are_named(kwargs, message):
    args = dict(max_num_batched_tokens=2048, max_num_seqs=128) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        kv_cache_plan(LLAMA2_7B, V100_32GB, **args)


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="num_attention_heads=32 must be a multiple of num_kv_heads=5"):
        ModelSpec("odd", 1, 64, 32, 5, 2, 128, 100, 1000, 128)
    with pytest.raises(ValueError, match="memory_bytes must be a positive integer"):
        GpuSpec("none", 0)


def test_paper_regime_tool_uses_the_shipped_16gb_profile_that_its_memory_plan_describes():
    """tools/paper_regime.py's paper-v100-regime candidates run the shipped profile (one place owns
    it), and that profile's KV is what the candidate's memory arithmetic gives."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import paper_regime
    from llm_routing_env.profiles import get_profile

    shipped = [c for c in paper_regime.CANDIDATES + paper_regime.EIGHT_X if c.shipped_profile == "llama2-7b-v100-16gb"]
    assert len(shipped) == 2
    for c in shipped:
        p = c.profile()
        assert p is get_profile("llama2-7b-v100-16gb")
        assert (p.kv_capacity_blocks, p.max_model_len, p.max_num_seqs) == (c.plan().num_kv_blocks, c.max_model_len,
                                                                           c.max_num_seqs)
