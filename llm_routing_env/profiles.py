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
                                       max_num_batched_tokens=2048, max_num_seqs=128)
register_profile(
    dataclasses.replace(
        _PROFILES["llama2-7b-v100"],
        name="llama2-7b-v100-16gb",
        kv_capacity_blocks=_V100_16GB_PLAN.num_kv_blocks,
        max_model_len=2048,
        max_num_batched_tokens=2048,
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
# KV: (4 x 80 GB x 0.9 - 140 GB of fp16 weights) / 320 KiB per token = 451,660 tokens.
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
        kv_capacity_blocks=28228,
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
# Llama-2-70B on 4 x H100-80GB (TP4), same source and KV as above.
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
        kv_capacity_blocks=28228,
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
# Llama-3.1-8B on one A100-80GB: no table; derived from llama2-7b-a100 (see tools/fit_profiles.py).
# KV: (80 GB x 0.9 - 16.06 GB of bf16 weights) / 128 KiB per token = 426,788 tokens.
register_profile(
    LatencyProfile(
        name="llama3.1-8b-a100",
        c0_ms=11.53,
        c1_ms_per_token=0.0483,
        c2_ms_per_token_above_knee=0.02494,
        knee_tokens=256,
        c3_ms_per_chunk_token_sq=6.367e-06,
        c4_ms_per_chunk_prior_token=2.227e-06,
        c5_ms_per_decode_context_token=6.878e-05,
        kv_capacity_blocks=26674,
        max_model_len=8192,
        max_num_batched_tokens=8192,
        source=(
            "derived from llama2-7b-a100 by architecture scaling (tools/fit_profiles.py, "
            "docs/profiles.md); no table"
        ),
        fit_mape_pct=float("nan"),
        fit_max_ape_pct=float("nan"),
        notes=(
            "Not fitted: llama2-7b-a100 with c0 x 1.192 (weight bytes), c1, c2 x 1.136 (matmul "
            "parameters) and c5 x 0.25 (GQA KV cache)."
        ),
    )
)
