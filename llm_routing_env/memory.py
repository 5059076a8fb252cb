"""vLLM's KV-cache capacity arithmetic: how many KV blocks a (model, GPU, engine options) leaves.

This module is the one place that owns that arithmetic; profiles and scenarios take their
``kv_capacity_blocks`` / ``max_model_len`` from it (``docs/paper-regime.md`` shows its use).

What vLLM does (read in github.com/vllm-project/vllm, the V0 worker of the paper's era:
``vllm/worker/worker.py`` ``Worker.init_device`` / ``Worker.determine_num_available_blocks``, stored
copy at commit 002a0ba9, whose budget formula is the v0.4-v0.5 one; the profile batch as in
``ModelRunner.profile_run`` of ``vllm/worker/model_runner.py``; v1 keeps the same budget in
``vllm/v1/worker/gpu_worker.py`` ``Worker.determine_available_memory``):

1. ``init_device`` records the free memory once the CUDA context exists; the weights are loaded.
2. ``profile_run`` runs one forward pass of a dummy prefill batch of ``max_num_seqs`` sequences
   holding ``max_num_batched_tokens`` tokens in all, with no KV cache, and samples one token per
   sequence (top-k = vocab - 1, so the sampler's sort runs too).
3. ``peak_memory`` = free memory before - free memory after (the caching allocator keeps the
   forward's peak reserved), i.e. weights + activation peak + whatever else was allocated
   (cuBLAS workspaces, NCCL buffers: "non-torch" memory in later versions).
4. ``num_gpu_blocks = (total_gpu_memory * gpu_memory_utilization - peak_memory) // block_bytes``
   with ``block_bytes = 2 (K and V) * num_layers * num_kv_heads/TP * head_dim * block_size * dtype``.
5. ``raise_if_cache_size_invalid``: vLLM refuses to start if ``max_model_len`` exceeds
   ``num_gpu_blocks * block_size`` ("The model's max seq len (...) is larger than the maximum number
   of tokens that can be stored in KV cache"). So the largest context one request can hold is
   ``min(max_position_embeddings, num_gpu_blocks * block_size)``.

We cannot run the profile, so the activation peak is computed from the shapes the profile run
creates (``activation_peak_bytes`` below says which tensors); the CUDA context (created before
the baseline is read) is not in ``peak_memory``, which is why v0.4-v0.5 leave it, and the CUDA
graphs captured afterwards, inside the ``1 - gpu_memory_utilization`` headroom. The estimate
ignores allocator fragmentation, so it gives a few blocks more than a real start would.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
VLLM_BLOCK_TOKENS = 16  # vLLM's default paged-attention block size (--block-size)
MIB = 1 << 20

# Bytes per (sequence, vocabulary entry) the profile run's sampler holds at once: fp32 logits (4),
# the top-p/top-k sort's fp32 values (4) and int64 indices (8), the fp32 softmax of the sorted
# logits (4) and its cumulative sum (4), then fp32 probs (4) and logprobs (4) of the result.
# Not all are alive together; we count the sort phase (logits + values + indices + softmax +
# cumsum = 24) as the peak.
_SAMPLER_BYTES_PER_VOCAB_ENTRY = 24


# vLLM v0 without chunked prefill: max_num_batched_tokens defaults to max(max_model_len, 2048)
# (SchedulerConfig's _DEFAULT_MAX_NUM_BATCHED_TOKENS); the profile run's activations follow it
V0_MIN_BATCHED_TOKENS = 2048


def v0_default_batched_tokens(max_model_len: int) -> int:
    """vLLM v0's default token budget without chunked prefill for a given ``max_model_len``."""
    return max(int(max_model_len), V0_MIN_BATCHED_TOKENS)


def _check_int(name: str, value, minimum: int, owner: str = "") -> None:
    """ValueError naming the setting unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """The architecture numbers that decide a dense decoder's memory (a HF ``config.json``)."""

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int  # < num_attention_heads for grouped-query attention (GQA)
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_parameters: int
    max_position_embeddings: int
    dtype_bytes: int = 2  # fp16 / bf16

    def __post_init__(self) -> None:
        for attr in ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vocab_size", "num_parameters", "max_position_embeddings",
                     "dtype_bytes"):
            _check_int(attr, getattr(self, attr), minimum=1, owner=f"model {self.name!r}: ")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"model {self.name!r}: num_attention_heads={self.num_attention_heads} must be a multiple "
                f"of num_kv_heads={self.num_kv_heads}"
            )

    def kv_bytes_per_token(self, tensor_parallel: int = 1) -> int:
        """KV-cache bytes one token takes on one GPU: K and V, every layer, this GPU's KV heads."""
        return 2 * self.num_layers * _kv_heads_per_gpu(self, tensor_parallel) * self.head_dim * self.dtype_bytes


@dataclass(frozen=True)
class GpuSpec:
    """One GPU: its total memory as CUDA reports it (``torch.cuda.mem_get_info()[1]``)."""

    name: str
    memory_bytes: int

    def __post_init__(self) -> None:
        _check_int("memory_bytes", self.memory_bytes, minimum=1, owner=f"GPU {self.name!r}: ")


# Architectures from the models' Hugging Face config.json; parameter counts are the checkpoints'.
LLAMA2_7B = ModelSpec(
    name="Llama-2-7B", num_layers=32, hidden_size=4096, num_attention_heads=32, num_kv_heads=32,
    head_dim=128, intermediate_size=11008, vocab_size=32000, num_parameters=6_738_415_616,
    max_position_embeddings=4096,
)
LLAMA2_70B = ModelSpec(
    name="Llama-2-70B", num_layers=80, hidden_size=8192, num_attention_heads=64, num_kv_heads=8,
    head_dim=128, intermediate_size=28672, vocab_size=32000, num_parameters=68_976_648_192,
    max_position_embeddings=4096,
)
LLAMA3_8B = ModelSpec(
    name="Llama-3-8B", num_layers=32, hidden_size=4096, num_attention_heads=32, num_kv_heads=8,
    head_dim=128, intermediate_size=14336, vocab_size=128256, num_parameters=8_030_261_248,
    max_position_embeddings=8192,
)

# Total memory as nvidia-smi / cudaMemGetInfo report it (MiB), not the marketing "GB".
V100_16GB = GpuSpec("V100-16GB", 16160 * MIB)
V100_32GB = GpuSpec("V100-32GB", 32510 * MIB)
A100_40GB = GpuSpec("A100-40GB", 40960 * MIB)
A100_80GB = GpuSpec("A100-80GB", 81920 * MIB)
H100_80GB = GpuSpec("H100-80GB", 81559 * MIB)


def _kv_heads_per_gpu(model: ModelSpec, tensor_parallel: int) -> int:
    # vLLM replicates KV heads when TP exceeds their number (each GPU keeps at least one).
    return max(1, model.num_kv_heads // tensor_parallel)


def weights_bytes(model: ModelSpec, tensor_parallel: int = 1) -> int:
    """Weight bytes on one GPU; vLLM shards every matrix (embeddings included) over TP."""
    return -(-model.num_parameters * model.dtype_bytes // tensor_parallel)


def activation_peak_bytes(model: ModelSpec, *, max_num_batched_tokens: int, max_num_seqs: int,
                          tensor_parallel: int = 1) -> int:
    """Peak activation bytes of vLLM's profile run (``max_num_batched_tokens`` tokens in one batch).

    Two phases, whichever is larger:
    * the MLP of one decoder layer, where the most is alive: the residual stream and the normed
      hidden states (2 x hidden), the fused gate/up projection (2 x intermediate/TP) and the
      SiLU-and-mul output (intermediate/TP), per token, in the model's dtype;
    * the sampler: the final hidden states plus, per sequence (one sampled token each), the
      vocabulary-sized fp32/int64 tensors of the top-p/top-k sort.
    Attention holds less than the MLP (q, k, v and its output: under 5 x hidden per token; the
    prefill kernels do not build a tokens x tokens matrix).
    """
    tokens = max_num_batched_tokens
    seqs = min(max_num_seqs, tokens)  # the profile run never has an empty sequence
    intermediate = model.intermediate_size // tensor_parallel
    mlp = tokens * (2 * model.hidden_size + 3 * intermediate) * model.dtype_bytes
    sampler = tokens * model.hidden_size * model.dtype_bytes + seqs * model.vocab_size * _SAMPLER_BYTES_PER_VOCAB_ENTRY
    return max(mlp, sampler)


@dataclass(frozen=True)
class KvCachePlan:
    """What one vLLM instance (one GPU of it under TP) does with its memory."""

    model: ModelSpec
    gpu: GpuSpec
    tensor_parallel: int
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    block_tokens: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    kv_bytes_per_block: int
    num_kv_blocks: int

    @property
    def budget_bytes(self) -> int:
        """``total * gpu_memory_utilization``: what vLLM lets itself use."""
        return int(self.gpu.memory_bytes * self.gpu_memory_utilization)

    @property
    def kv_tokens(self) -> int:
        return self.num_kv_blocks * self.block_tokens

    @property
    def max_model_len_tokens(self) -> int:
        """The largest context one request can hold: vLLM refuses a longer ``max_model_len``."""
        return min(self.model.max_position_embeddings, self.kv_tokens)

    def explain(self) -> str:
        gib = lambda b: f"{b / GIB:.3f} GiB"  # noqa: E731 (a local formatter)
        tp = f" x TP{self.tensor_parallel} (per GPU)" if self.tensor_parallel > 1 else ""
        free = self.budget_bytes - self.weights_bytes - self.activation_peak_bytes - self.non_torch_bytes
        return "\n".join([
            f"{self.model.name} on {self.gpu.name}{tp}, gpu_memory_utilization {self.gpu_memory_utilization}, "
            f"max_num_batched_tokens {self.max_num_batched_tokens}, max_num_seqs {self.max_num_seqs}",
            f"  budget      {self.gpu.memory_bytes / GIB:.3f} GiB x {self.gpu_memory_utilization} = {gib(self.budget_bytes)}",
            f"  weights     - {gib(self.weights_bytes)} ({self.model.num_parameters:,} params x {self.model.dtype_bytes} B"
            + (f" / {self.tensor_parallel}" if self.tensor_parallel > 1 else "") + ")",
            f"  activations - {gib(self.activation_peak_bytes)} (profile run, {self.max_num_batched_tokens} tokens)",
            f"  non-torch   - {gib(self.non_torch_bytes)}",
            f"  = KV cache  {gib(max(free, 0))} / {self.kv_bytes_per_block / MIB:.3f} MiB per {self.block_tokens}-token block "
            f"= {self.num_kv_blocks:,} blocks = {self.kv_tokens:,} tokens",
            f"  max_model_len <= {self.max_model_len_tokens:,} tokens"
            + (" (the KV cache, not the model's context, is the limit)"
               if self.kv_tokens < self.model.max_position_embeddings else " (the model's context)"),
        ])


def kv_cache_plan(model: ModelSpec, gpu: GpuSpec, *, tensor_parallel: int = 1,
                  gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int, max_num_seqs: int,
                  block_tokens: int = VLLM_BLOCK_TOKENS, non_torch_bytes: int = 0) -> KvCachePlan:
    """vLLM's ``determine_num_available_blocks`` on paper: KV blocks one GPU gets.

    ``non_torch_bytes``: memory the profile sees beyond the weights and activations (cuBLAS / NCCL
    buffers; 0 by default, the v0.4-v0.5 accounting for one GPU, where the CUDA context is taken
    before the baseline and so is not counted). vLLM's defaults: ``max_num_seqs`` 256,
    ``max_num_batched_tokens`` = :func:`v0_default_batched_tokens` (max(max_model_len, 2048)) without chunked prefill.
    """
    _check_int("tensor_parallel", tensor_parallel, minimum=1)
    if not isinstance(gpu_memory_utilization, (int, float)) or not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}")
    for name, value in (("max_num_batched_tokens", max_num_batched_tokens), ("max_num_seqs", max_num_seqs),
                        ("block_tokens", block_tokens)):
        _check_int(name, value, minimum=1)
    _check_int("non_torch_bytes", non_torch_bytes, minimum=0)
    weights = weights_bytes(model, tensor_parallel)
    activations = activation_peak_bytes(model, max_num_batched_tokens=max_num_batched_tokens,
                                        max_num_seqs=max_num_seqs, tensor_parallel=tensor_parallel)
    block_bytes = model.kv_bytes_per_token(tensor_parallel) * block_tokens
    budget = int(gpu.memory_bytes * gpu_memory_utilization)
    num_blocks = max(0, (budget - weights - activations - non_torch_bytes) // block_bytes)
    return KvCachePlan(
        model=model, gpu=gpu, tensor_parallel=tensor_parallel, gpu_memory_utilization=gpu_memory_utilization,
        max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, block_tokens=block_tokens,
        weights_bytes=weights, activation_peak_bytes=activations, non_torch_bytes=non_torch_bytes,
        kv_bytes_per_block=block_bytes, num_kv_blocks=num_blocks,
    )
