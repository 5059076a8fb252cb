"""Latency profiles: how long one iteration of a serving instance takes, and how much KV it holds.

This module is the one place that owns the latency model. An iteration processes a batch made of
prefill chunks (``chunk_i`` new prompt tokens of a request that already has ``prior_i`` tokens in
its KV cache) and decodes (one new token for each decoding request whose KV cache holds
``context_j`` tokens, the token being fed included). Its duration is the closed form

    t_ms = c0 + c1 * Ntok + c2 * max(Ntok - knee_tokens, 0)
           + c3 * sum(chunk_i ** 2) + c4 * sum(chunk_i * prior_i) + c5 * sum(context_j)

with ``Ntok = sum(chunk_i) + number of decodes``. ``c1``/``c2`` are the linear layers (memory
bound below the knee, compute bound above it), ``c3``/``c4`` prefill attention and ``c5`` decode
attention (reading the KV cache). Every profile says where its numbers come from and how well the
form reproduces its source (``fit_mape_pct``); ``docs/profiles.md`` has the derivations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from . import memory

KV_BLOCK_TOKENS = memory.VLLM_BLOCK_TOKENS


@dataclass(frozen=True)
class LatencyProfile:
    """One (model, hardware) pair: iteration-time coefficients plus memory and batch limits."""

    name: str
    c0_ms: float
    c1_ms_per_token: float
    c2_ms_per_token_above_knee: float
    knee_tokens: int
    c3_ms_per_chunk_token_sq: float
    c4_ms_per_chunk_prior_token: float
    c5_ms_per_decode_context_token: float
    kv_capacity_blocks: int
    max_model_len: int
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 4096
    source: str = ""
    fit_mape_pct: float = float("nan")
    fit_max_ape_pct: float = float("nan")
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr in (
            "c0_ms",
            "c1_ms_per_token",
            "c2_ms_per_token_above_knee",
            "c3_ms_per_chunk_token_sq",
            "c4_ms_per_chunk_prior_token",
            "c5_ms_per_decode_context_token",
        ):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"profile {self.name!r}: {attr} must be a finite number >= 0, got {value!r}")
        for attr in ("knee_tokens", "kv_capacity_blocks", "max_model_len", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if attr == "knee_tokens" else 1):
                raise ValueError(f"profile {self.name!r}: {attr} must be a positive integer, got {value!r}")
        if self.c0_ms + self.c1_ms_per_token <= 0:
            raise ValueError(f"profile {self.name!r}: an iteration must take a positive time (c0_ms + c1 > 0)")
        kv_capacity_tokens = self.kv_capacity_blocks * KV_BLOCK_TOKENS
        if self.max_model_len > kv_capacity_tokens:  # vLLM refuses to start (worker.raise_if_cache_size_invalid)
            raise ValueError(
                f"profile {self.name!r}: max_model_len={self.max_model_len} is larger than the KV cache "
                f"(kv_capacity_blocks={self.kv_capacity_blocks} = {kv_capacity_tokens} tokens), as vLLM "
                f"refuses: a request of max_model_len tokens could never be held"
            )

    @property
    def coefficients(self) -> tuple[float, float, float, int, float, float, float]:
        return (
            self.c0_ms,
            self.c1_ms_per_token,
            self.c2_ms_per_token_above_knee,
            self.knee_tokens,
            self.c3_ms_per_chunk_token_sq,
            self.c4_ms_per_chunk_prior_token,
            self.c5_ms_per_decode_context_token,
        )


def blocks_for_tokens(tokens):
    """KV blocks needed to hold ``tokens`` tokens (works on ints and integer arrays)."""
    return -(-tokens // KV_BLOCK_TOKENS)


def iteration_time_ms(coefficients, ntok, sum_chunk_sq, sum_chunk_prior, sum_decode_context):
    """Duration of one iteration in ms; arguments may be scalars or NumPy arrays (elementwise).

    Both simulators call this one function, so that they agree to the last bit on every
    iteration they do not skip over.
    """
    c0, c1, c2, knee, c3, c4, c5 = coefficients
    over_knee = ntok - knee
    if type(over_knee) is np.ndarray:
        over_knee = np.maximum(over_knee, 0)
    elif not over_knee > 0:  # a Python or NumPy scalar: the same value, without NumPy's per-call cost
        over_knee = 0
    return (
        c0
        + c1 * ntok
        + c2 * over_knee
        + c3 * sum_chunk_sq
        + c4 * sum_chunk_prior
        + c5 * sum_decode_context
    )


# --------------------------------------------------------------------------------------------
# Shipped profiles. Coefficients are fitted by tools/fit_profiles.py; docs/profiles.md explains
# each source and fit.
# --------------------------------------------------------------------------------------------

_PROFILES: dict[str, LatencyProfile] = {}


def register_profile(profile: LatencyProfile) -> LatencyProfile:
    _PROFILES[profile.name] = profile
    return profile


def get_profile(name_or_profile) -> LatencyProfile:
    """Look a profile up by name (a LatencyProfile passes through)."""
    if isinstance(name_or_profile, LatencyProfile):
        return name_or_profile
    if isinstance(name_or_profile, str) and name_or_profile in _PROFILES:
        return _PROFILES[name_or_profile]
    raise ValueError(f"unknown profile {name_or_profile!r}; known profiles: {', '.join(sorted(_PROFILES))}")


def profile_names() -> list[str]:
    return sorted(_PROFILES)


# --- llama2-7b-v100: the paper's own setup (owner: the simulator maintainer; fitted in tools/fit_profiles.py) ---
register_profile(
    LatencyProfile(
        name="llama2-7b-v100",
        # Solved by tools/fit_profiles.py (fit_paper_v100): prefill slope = the paper's 3.2e-4 s per
        # prompt token; c0 and c5 so that the paper's two interference figures come out (17 s, 31 s).
        c0_ms=13.957,
        c1_ms_per_token=0.32,
        c2_ms_per_token_above_knee=0.0,
        knee_tokens=0,
        c3_ms_per_chunk_token_sq=0.0,
        c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=1.604e-3,
        # (0.9 * 32 GiB - 13.5 GiB of fp16 weights) / 0.5 MiB of KV per token = 31,334 tokens
        kv_capacity_blocks=1958,
        max_model_len=4096,
        source="paper arXiv 2408.13510 §4 (Fig. 4a slope, Fig. 4c 17 s / 31 s), Llama-2-7B on V100-32GB",
    )
)
# --- llama2-7b-v100-16gb: the same V100 timings on the 16 GB card (owner: issue #12 regime, docs/paper-regime.md) ---
# Its KV comes from vLLM's memory arithmetic (memory.py): 0.95 x 16,160 MiB - 12.55 GiB of weights -
# the 2,048-token profile run leaves 292 blocks (4,672 tokens). At vLLM's default 0.9 it would be 191
# blocks (3,056 tokens, below Llama-2's 4,096 context); either way the deployment lowers
# max_model_len to 2,048 on this card, and vLLM's max_num_batched_tokens follows it.
_V100_16GB_PLAN = memory.kv_cache_plan(memory.LLAMA2_7B, memory.V100_16GB, gpu_memory_utilization=0.95,
                                       max_num_batched_tokens=memory.v0_default_batched_tokens(2048), max_num_seqs=128)
register_profile(
    dataclasses.replace(
        _PROFILES["llama2-7b-v100"],
        name="llama2-7b-v100-16gb",
        kv_capacity_blocks=_V100_16GB_PLAN.num_kv_blocks,
        max_model_len=2048,
        max_num_batched_tokens=memory.v0_default_batched_tokens(2048),
        source="llama2-7b-v100's timings; KV of a V100-16GB by memory.kv_cache_plan (gpu_memory_utilization "
               "0.95, max_num_seqs 128, max_model_len 2,048)",
    )
)

# --- profiles fitted to tables (owner: tools/fit_profiles.py) ---
# Llama-2-7B on one A100-80GB, fitted to Vidur's predicted batch times (163 rows).
register_profile(
    LatencyProfile(
        name="llama2-7b-a100",
        c0_ms=9.672,
        c1_ms_per_token=0.04252,
        c2_ms_per_token_above_knee=0.02196,
        knee_tokens=256,
        c3_ms_per_chunk_token_sq=6.367e-06,
        c4_ms_per_chunk_prior_token=2.227e-06,
        c5_ms_per_decode_context_token=0.0002751,
        kv_capacity_blocks=7424,
        max_model_len=4096,
        source=(
            "Vidur execution-time predictor (github.com/microsoft/vidur @ 7d47513, MIT), Llama-2-7B "
            "fp16 on A100-80GB TP1, queried on 163 batch compositions (vidur_batch_times.csv)"
        ),
        fit_mape_pct=6.49,
        fit_max_ape_pct=30.68,
        notes="NNLS on relative error over all 163 rows, knee 256 picked by grid search (MAPE).",
    )
)
# Llama-2-70B on 4 x A100-80GB (TP4), fitted to SplitwiseSim's measured prefill/decode latencies.
# KV: vLLM's arithmetic (llm_routing_env/memory.py) per GPU at TP4: 32,433 blocks on the A100, 32,173 on the H100.
register_profile(
    LatencyProfile(
        name="llama2-70b-a100-tp4",
        c0_ms=43.05,
        c1_ms_per_token=0.1828,
        c2_ms_per_token_above_knee=0.1512,
        knee_tokens=2000,
        c3_ms_per_chunk_token_sq=0.0,
        c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=0.0003897,
        kv_capacity_blocks=32433,
        max_model_len=4096,
        source=(
            "SplitwiseSim perf model (github.com/Mutinifni/splitwise-sim data/perf_model.csv @ 8f99e7d,"
            " MIT), llama2-70b a100-80gb tensor_parallel=4"
        ),
        fit_mape_pct=4.61,
        fit_max_ape_pct=20.13,
        notes=(
            "NNLS on relative error over 32 repeat-averaged prefill and decode rows jointly (MAPE "
            "prefill 7.84%, decode 2.40%), knee 2000 by grid search; decode context = prompt + "
            "tokens/2."
        ),
    )
)
# Llama-2-70B on 4 x H100-80GB (TP4), same source as above.
register_profile(
    LatencyProfile(
        name="llama2-70b-h100-tp4",
        c0_ms=28.82,
        c1_ms_per_token=0.07442,
        c2_ms_per_token_above_knee=0.03456,
        knee_tokens=1488,
        c3_ms_per_chunk_token_sq=1.239e-06,
        c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=0.0003845,
        kv_capacity_blocks=32173,
        max_model_len=4096,
        source=(
            "SplitwiseSim perf model (github.com/Mutinifni/splitwise-sim data/perf_model.csv @ 8f99e7d,"
            " MIT), llama2-70b h100-80gb tensor_parallel=4"
        ),
        fit_mape_pct=3.38,
        fit_max_ape_pct=21.52,
        notes=(
            "NNLS on relative error over 32 repeat-averaged prefill and decode rows jointly (MAPE "
            "prefill 4.92%, decode 2.33%), knee 1488 by grid search; decode context = prompt + "
            "tokens/2."
        ),
    )
)
# Profiles composed from Vidur's per-operation GPU profiles (tools/fit_profiles.py --vidur-repo,
# docs/profiles.md): the token-count ops measured for the pair, attention carried over from
# Llama-2-7B/A100; KV from vLLM's arithmetic (memory.py) with vLLM v0's default token budget.
register_profile(
    LatencyProfile(
        name="llama3.1-8b-a100",
        c0_ms=10.19,
        c1_ms_per_token=0.03294,
        c2_ms_per_token_above_knee=0.03428,
        knee_tokens=128,
        c3_ms_per_chunk_token_sq=6.85e-06,
        c4_ms_per_chunk_prior_token=5.438e-07,
        c5_ms_per_decode_context_token=7.165e-05,
        kv_capacity_blocks=22805,
        max_model_len=131072,
        max_num_batched_tokens=131072,
        source=(
            "composed from Vidur's per-operation profiles (github.com/microsoft/vidur @ 7d47513, MIT) "
            "the way its execution-time predictor sums them, on the 163 batches of "
            "vidur_batch_times.csv: Meta-Llama-3-8B A100 token ops (measured); attention = "
            "Llama-2-7B/A100's x 0.2500 (decode: KV bytes x 0.25, memory-bound speed-up 1.000) and x "
            "1.0000 (prefill: FLOPs x 1.00, compute-bound speed-up 1.000)"
        ),
        fit_mape_pct=4.73,
        fit_max_ape_pct=20.75,
        notes=(
            "NNLS on relative error over the 163 composed batches, knee 128 by grid search (MAPE); "
            "error is against the composition, not against hardware."
        ),
    )
)
register_profile(
    LatencyProfile(
        name="llama2-7b-h100",
        c0_ms=5.985,
        c1_ms_per_token=0.01516,
        c2_ms_per_token_above_knee=0.002531,
        knee_tokens=400,
        c3_ms_per_chunk_token_sq=2.655e-06,
        c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=0.0001719,
        kv_capacity_blocks=7528,
        max_model_len=4096,
        source=(
            "composed from Vidur's per-operation profiles (github.com/microsoft/vidur @ 7d47513, MIT) "
            "the way its execution-time predictor sums them, on the 163 batches of "
            "vidur_batch_times.csv: Llama-2-7b-hf H100 token ops (measured); attention = "
            "Llama-2-7B/A100's x 0.6078 (decode: KV bytes x 1.00, memory-bound speed-up 1.645) and x "
            "0.3201 (prefill: FLOPs x 1.00, compute-bound speed-up 3.124)"
        ),
        fit_mape_pct=7.23,
        fit_max_ape_pct=29.42,
        notes=(
            "NNLS on relative error over the 163 composed batches, knee 400 by grid search (MAPE); "
            "error is against the composition, not against hardware."
        ),
    )
)
register_profile(
    LatencyProfile(
        name="llama3.1-8b-h100",
        c0_ms=6.296,
        c1_ms_per_token=0.01205,
        c2_ms_per_token_above_knee=0.007528,
        knee_tokens=128,
        c3_ms_per_chunk_token_sq=2.348e-06,
        c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=4.614e-05,
        kv_capacity_blocks=22643,
        max_model_len=131072,
        max_num_batched_tokens=131072,
        source=(
            "composed from Vidur's per-operation profiles (github.com/microsoft/vidur @ 7d47513, MIT) "
            "the way its execution-time predictor sums them, on the 163 batches of "
            "vidur_batch_times.csv: Meta-Llama-3-8B A100 token ops x Llama-2-7B's H100/A100 ratio per "
            "token count (derived); attention = Llama-2-7B/A100's x 0.1519 (decode: KV bytes x 0.25, "
            "memory-bound speed-up 1.645) and x 0.3201 (prefill: FLOPs x 1.00, compute-bound speed-up "
            "3.124)"
        ),
        fit_mape_pct=4.97,
        fit_max_ape_pct=21.01,
        notes=(
            "NNLS on relative error over the 163 composed batches, knee 128 by grid search (MAPE); "
            "error is against the composition, not against hardware."
        ),
    )
)
# Llama-3.1-8B on one RTX 4090 (24 GB), composed from LLMServingSim's per-layer profiles taken with
# vLLM 0.19 (tools/fit_profiles.py --llmservingsim-repo); KV from memory.py with vLLM v0's default
# budget, which memory limits to a 27,648-token context (docs/profiles.md).
register_profile(
    LatencyProfile(
        name="llama3.1-8b-rtx4090",
        c0_ms=17.19,
        c1_ms_per_token=0.04086,
        c2_ms_per_token_above_knee=0.04954,
        knee_tokens=256,
        c3_ms_per_chunk_token_sq=0.0,
        c4_ms_per_chunk_prior_token=4.692e-06,
        c5_ms_per_decode_context_token=0.0002164,
        kv_capacity_blocks=1828,
        max_model_len=27648,
        max_num_batched_tokens=27648,
        source=(
            "composed from LLMServingSim's per-layer profiles of Llama-3.1-8B on an RTX 4090 with vLLM "
            "0.19 (github.com/casys-kaist/LLMServingSim @ 5daddb2, MIT, profiler/perf/RTX4090), as its "
            "trace generator walks an iteration"
        ),
        fit_mape_pct=8.07,
        fit_max_ape_pct=44.16,
        notes=(
            "NNLS on relative error over 5143 profiled batches, each batch type (decode-only, "
            "prefill-only, mixed) weighted equally, knee 256 by grid search (mean of the types' MAPEs);"
            " profiles taken in eager mode (no CUDA graphs)."
        ),
    )
)
