"""Fit the iteration-time closed form of ``llm_routing_env/profiles.py`` to the shipped tables.

Usage (from the repository root)::

    .venv/bin/python tools/fit_profiles.py [--vidur PATH] [--splitwise PATH] [--vidur-repo PATH]

It reads the two tables (not shipped: other projects' data) from the given paths, by default
``../shared/data/vidur_batch_times/vidur_batch_times.csv`` and
``../shared/data/splitwise_perf_model/perf_model.csv`` relative to the project root (sources:
github.com/microsoft/vidur's execution-time predictor and github.com/Mutinifni/splitwise-sim
``data/perf_model.csv``; see ``docs/profiles.md``), and prints, for every profile, how it was
obtained, its coefficients as a ready-to-paste ``register_profile(...)`` block, and its error on
its table. ``docs/profiles.md`` explains the results; ``tests/test_profiles.py`` re-checks the
shipped coefficients against the same tables.

The closed form (see ``profiles.py``)::

    t_ms = c0 + c1*Ntok + c2*max(Ntok - knee, 0) + c3*sum(chunk^2) + c4*sum(chunk*prior)
           + c5*sum(decode_context)          with Ntok = sum(chunk) + number of decodes

is linear in c0..c5 once the knee is fixed. So for every knee of a small grid we solve a
non-negative least-squares problem (all c >= 0, so that no term can make an iteration faster as
work grows) and keep the knee with the lowest MAPE. The least-squares problem is on *relative*
error: every row is divided by its measured time, so a 10 ms decode and a 10 s prefill count the
same, which is what MAPE (the figure we report) measures. The coefficients are then rounded to 4
significant digits, and every error printed is that of the rounded coefficients, evaluated with
``profiles.iteration_time_ms`` (the function the simulators call).

Profiles
--------
* ``llama2-7b-a100``: Vidur's predicted batch times (163 rows; Llama-2-7B, A100-80GB, TP1). A row
  with ``num_prefill_requests = r > 0`` has r prefill chunks of ``num_prefill_tokens / r`` tokens,
  each with ``prior = prefill_prior_context``; its ``num_decode_tokens = d`` decodes each have a
  KV context of ``decode_avg_context``. KV capacity 7,424 blocks (Vidur's memory planner).
* ``llama2-70b-a100-tp4`` / ``llama2-70b-h100-tp4``: SplitwiseSim's measured perf model, rows
  with ``model == llama2-70b`` and ``tensor_parallel == 4``. Repeats are averaged first:
  ``prompt_time`` by (prompt_size, batch_size) -- it does not depend on token_size, which only
  sets how long the run continues afterwards -- and ``token_time`` by (prompt_size, batch_size,
  token_size). A ``prompt_time`` row is a prefill-only batch of ``batch_size`` chunks of
  ``prompt_size`` tokens with prior 0. A ``token_time`` row is one decode iteration of
  ``batch_size`` requests; the context of a request changes during its generation (from
  prompt_size to prompt_size + token_size), so we give each request the average over the
  generation, ``prompt_size + token_size / 2``. Both row types are fitted together with one set of
  coefficients. KV capacity from ``llm_routing_env/memory.py`` (``kv_plan``). Caveat: in this table a
  decode's time does not vary with its context, only with the batch size, and the batch-size rows
  all have short contexts; so c5 ends up standing for batch-size growth rather than KV reads.
* ``llama3.1-8b-a100``, ``llama2-7b-h100``, ``llama3.1-8b-h100`` (with ``--vidur-repo PATH``, a
  checkout of github.com/microsoft/vidur): iteration times composed the way Vidur's execution-time
  predictor sums its per-operation profiles, on the 163 batch compositions of the Vidur table, then
  fitted like the tables (see ``compose_vidur``, ``attention_scales``, ``composed_tables``).
* ``llama2-7b-v100`` (the paper's setup) is not fitted here: its coefficients are set by the
  simulator maintainer from the paper's figures.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_routing_env.memory import (  # noqa: E402
    A100_80GB, H100_80GB, LLAMA2_7B, LLAMA2_70B, LLAMA3_8B, GpuSpec, ModelSpec, kv_cache_plan,
    v0_default_batched_tokens)
from llm_routing_env.profiles import LatencyProfile, get_profile, iteration_time_ms  # noqa: E402

DATA = REPO.parent / "shared" / "data"
VIDUR_CSV = DATA / "vidur_batch_times" / "vidur_batch_times.csv"
SPLITWISE_CSV = DATA / "splitwise_perf_model" / "perf_model.csv"

SIG_DIGITS = 4  # coefficients are shipped rounded to this many significant digits


# ------------------------------------------------------------------------------------------
# Tables as closed-form features
# ------------------------------------------------------------------------------------------


@dataclass
class Table:
    """One row per measured iteration, already reduced to the closed form's features."""

    ntok: np.ndarray
    sum_chunk_sq: np.ndarray
    sum_chunk_prior: np.ndarray
    sum_decode_context: np.ndarray
    measured_ms: np.ndarray
    kind: np.ndarray  # row type, used only to report errors per type


def load_vidur(path: Path = VIDUR_CSV) -> Table:
    rows = list(csv.DictReader(path.open()))
    col = lambda name: np.array([float(r[name]) for r in rows])  # noqa: E731
    n_prefills = col("num_prefill_requests")
    prefill_tokens = col("num_prefill_tokens")
    prior = col("prefill_prior_context")
    n_decodes = col("num_decode_tokens")
    decode_context = col("decode_avg_context")
    chunk = np.where(n_prefills > 0, prefill_tokens / np.maximum(n_prefills, 1), 0.0)
    table = Table(
        ntok=prefill_tokens + n_decodes,
        sum_chunk_sq=n_prefills * chunk**2,
        sum_chunk_prior=n_prefills * chunk * prior,
        sum_decode_context=n_decodes * decode_context,
        measured_ms=col("model_time_ms"),
        kind=np.array([r["scenario"] for r in rows]),
    )
    assert np.array_equal(table.ntok, col("total_tokens")), "Ntok must equal the table's total_tokens"
    return table


def load_splitwise(hardware: str, tensor_parallel: int = 4, path: Path = SPLITWISE_CSV) -> Table:
    prefill_runs = defaultdict(list)  # (prompt, batch) -> prompt_time repeats
    decode_runs = defaultdict(list)  # (prompt, batch, tokens) -> token_time repeats
    for r in csv.DictReader(path.open()):
        if r["model"] != "llama2-70b" or r["hardware"] != hardware or int(r["tensor_parallel"]) != tensor_parallel:
            continue
        prompt, batch, tokens = int(r["prompt_size"]), int(r["batch_size"]), int(r["token_size"])
        prefill_runs[prompt, batch].append(float(r["prompt_time"]))
        decode_runs[prompt, batch, tokens].append(float(r["token_time"]))
    if not prefill_runs:
        raise ValueError(f"no llama2-70b rows for hardware={hardware!r}, tensor_parallel={tensor_parallel}")
    feats = []  # (ntok, sum_chunk_sq, sum_chunk_prior, sum_decode_context, ms, kind)
    for (prompt, batch), times in sorted(prefill_runs.items()):
        feats.append((batch * prompt, batch * prompt**2, 0.0, 0.0, np.mean(times), "prefill"))
    for (prompt, batch, tokens), times in sorted(decode_runs.items()):
        feats.append((batch, 0.0, 0.0, batch * (prompt + tokens / 2), np.mean(times), "decode"))
    cols = list(zip(*feats))
    return Table(*(np.array(c, dtype=float) for c in cols[:5]), kind=np.array(cols[5]))


# ------------------------------------------------------------------------------------------
# Fitting
# ------------------------------------------------------------------------------------------


def design_matrix(t: Table, knee: int) -> np.ndarray:
    """Columns in the order of c0..c5."""
    columns = [np.ones_like(t.ntok), t.ntok, np.maximum(t.ntok - knee, 0)]
    return np.column_stack(columns + [t.sum_chunk_sq, t.sum_chunk_prior, t.sum_decode_context])


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0, by trying every set of active columns.

    The optimum is the unconstrained least-squares solution on its own support (the KKT
    conditions), and any non-negative solution on any support is feasible; so the feasible
    subset solution with the smallest residual is the optimum. With 6 columns that is 63 small
    solves: exact, dependency-free and obviously right. Columns are scaled to unit norm first.
    """
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0  # an all-zero feature (e.g. no chunk has a prior): coefficient stays 0
    a = a / scale
    best_x, best_res = np.zeros(a.shape[1]), float(np.sum(b**2))
    for k in range(1, a.shape[1] + 1):
        for support in itertools.combinations(range(a.shape[1]), k):
            sub = a[:, support]
            if np.linalg.matrix_rank(sub) < k:
                continue  # a smaller support reaches the same residual
            x_sub = np.linalg.lstsq(sub, b, rcond=None)[0]
            if np.any(x_sub < 0):
                continue
            res = float(np.sum((sub @ x_sub - b) ** 2))
            if res < best_res:
                best_res = res
                best_x = np.zeros(a.shape[1])
                best_x[list(support)] = x_sub
    return best_x / scale


def round_sig(x: float, digits: int = SIG_DIGITS) -> float:
    return float(f"{x:.{digits}g}")


def predict_ms(t: Table, coefficients) -> np.ndarray:
    return iteration_time_ms(coefficients, t.ntok, t.sum_chunk_sq, t.sum_chunk_prior, t.sum_decode_context)


def ape_pct(t: Table, coefficients) -> np.ndarray:
    """Absolute percentage error of every row."""
    return 100 * np.abs(predict_ms(t, coefficients) - t.measured_ms) / t.measured_ms


def fit(t: Table, knee_grid, balance_kinds: bool = False) -> tuple:
    """Best (by MAPE) rounded coefficients (c0, c1, c2, knee, c3, c4, c5) over the knee grid.

    ``balance_kinds``: give every row type (``t.kind``) the same total weight in the least squares
    and pick the knee by the mean of the per-type MAPEs -- for a grid where one type has most rows.
    """
    kinds = list(dict.fromkeys(t.kind))
    w = np.ones_like(t.measured_ms)
    if balance_kinds:
        counts = {k: int(np.sum(t.kind == k)) for k in kinds}
        w = np.array([len(t.kind) / (len(kinds) * counts[k]) for k in t.kind])
    best = None
    for knee in knee_grid:
        x = design_matrix(t, knee)
        root_w = np.sqrt(w)
        c = nnls(x / t.measured_ms[:, None] * root_w[:, None], root_w)  # relative residuals
        c0, c1, c2, c3, c4, c5 = (round_sig(v) for v in c)
        coefficients = (c0, c1, c2, int(knee), c3, c4, c5)
        ape = ape_pct(t, coefficients)
        score = float(np.mean([ape[t.kind == k].mean() for k in kinds])) if balance_kinds else float(ape.mean())
        if best is None or score < best[0]:
            best = (score, coefficients)
    return best[1]


# ------------------------------------------------------------------------------------------
# Iteration times composed from Vidur's per-operation profiles
# ------------------------------------------------------------------------------------------

# Per-layer operations Vidur sums for one iteration (vidur/entities/execution_time.py @ 7d47513:
# attention layer = pre_proj + post_proj + rope + kv_cache_save + decode + prefill attention + attn
# norm; MLP layer = up_proj + down_proj + act + mlp norm; block = both + add; model time = block x
# num_layers; no embedding or LM head; CPU overheads off by default, skip_cpu_overhead_modeling=True).
# These are the ones profiled in mlp.csv, as a function of the batch's token count.
VIDUR_TOKEN_OPS = ("attn_pre_proj", "attn_post_proj", "attn_rope", "input_layernorm", "mlp_up_proj",
                   "mlp_down_proj", "mlp_act", "post_attention_layernorm", "add")
VIDUR_MODELS = {  # our architecture name -> Vidur's model directory
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama2-70b": "meta-llama/Llama-2-70b-hf",
}
NCCL_LAUNCH_MS = 0.02  # Vidur's nccl_cpu_launch_overhead_ms, added to every all-reduce
GQA_BATCHING_OVERHEAD = 0.1  # Vidur's attention_{decode,prefill}_batching_overhead_fraction (GQA models only)


@dataclass
class TokenOps:
    """Measured time of all token-count-dependent ops of one layer, summed, per profiled token count."""

    num_tokens: np.ndarray
    layer_ms: np.ndarray
    num_layers: int

    def iteration_ms(self, ntok) -> np.ndarray:
        """All layers at ``ntok`` tokens: Vidur rounds the batch's tokens up to a multiple of 8 and
        predicts from the profile (a random forest); we interpolate the profile linearly instead."""
        rounded = (np.asarray(ntok, dtype=float) + 7) // 8 * 8
        if np.any(rounded > self.num_tokens[-1]):
            raise ValueError(f"{rounded.max():.0f} tokens is beyond the profiled {self.num_tokens[-1]:.0f}")
        return self.num_layers * np.interp(rounded, self.num_tokens, self.layer_ms)

    def plus(self, other: "TokenOps") -> "TokenOps":
        """Both ops per layer, on this one's token counts (``other`` interpolated)."""
        assert other.num_layers == self.num_layers and other.num_tokens[-1] >= self.num_tokens[-1]
        return TokenOps(self.num_tokens, self.layer_ms + np.interp(self.num_tokens, other.num_tokens, other.layer_ms),
                        self.num_layers)


def load_vidur_token_ops(vidur_repo: Path, device: str, model: str, num_layers: int,
                         tensor_parallel: int = 1) -> TokenOps:
    """Vidur's ``data/profiling/compute/{device}/{model}/mlp.csv``: median time of each op per
    num_tokens (duplicates of a token count averaged)."""
    path = Path(vidur_repo) / "data" / "profiling" / "compute" / device / VIDUR_MODELS[model] / "mlp.csv"
    if not path.is_file():
        raise SystemExit(f"no Vidur profile at {path}: pass --vidur-repo, a checkout of github.com/microsoft/vidur")
    per_count = defaultdict(list)
    for r in csv.DictReader(path.open()):
        if int(r["num_tensor_parallel_workers"]) != tensor_parallel:
            continue
        per_count[int(r["num_tokens"])].append(sum(float(r[f"time_stats.{op}.median"] or 0) for op in VIDUR_TOKEN_OPS))
    counts = np.array(sorted(per_count), dtype=float)
    return TokenOps(counts, np.array([np.mean(per_count[int(n)]) for n in counts]), num_layers)


def load_vidur_all_reduce(vidur_repo: Path, network_device: str, tensor_parallel: int, hidden_size: int,
                          num_layers: int) -> TokenOps:
    """Tensor-parallel all-reduce as Vidur adds it: two per layer (after attention, after the MLP),
    each the profiled median for ``tokens x hidden x 2`` bytes among ``tensor_parallel`` GPUs of one
    node (``data/profiling/network/{network_device}/all_reduce.csv``) plus its 0.02 ms NCCL launch
    overhead (``nccl_cpu_launch_overhead_ms``; the skew term defaults to 0)."""
    path = Path(vidur_repo) / "data" / "profiling" / "network" / network_device / "all_reduce.csv"
    if not path.is_file():
        raise SystemExit(f"no Vidur network profile at {path}: pass --vidur-repo, a checkout of github.com/microsoft/vidur")
    per_size = defaultdict(list)
    for r in csv.DictReader(path.open()):
        if (r["collective"], int(r["num_workers"]), int(r["devices_per_node"])) == ("all_reduce", tensor_parallel, tensor_parallel):
            per_size[int(r["size"]) / hidden_size / 2].append(float(r["time_stats.all_reduce.median"]))
    counts = np.array(sorted(per_size))
    return TokenOps(counts, np.array([2 * (np.mean(per_size[n]) + NCCL_LAUNCH_MS) for n in counts]), num_layers)


@dataclass
class VidurBatches:
    """The 163 batch compositions of the Vidur table, with its attention columns (Llama-2-7B, A100)."""

    table: Table
    n_prefills: np.ndarray
    n_decodes: np.ndarray
    attn_prefill_ms: np.ndarray
    attn_decode_ms: np.ndarray
    token_ops_ms: np.ndarray  # the table's linear_ops_ms + other_ops_ms


def load_vidur_batches(path: Path = VIDUR_CSV) -> VidurBatches:
    rows = list(csv.DictReader(path.open()))
    col = lambda name: np.array([float(r[name]) for r in rows])  # noqa: E731
    return VidurBatches(load_vidur(path), col("num_prefill_requests"), col("num_decode_tokens"),
                        col("attn_prefill_ms"), col("attn_decode_ms"), col("linear_ops_ms") + col("other_ops_ms"))


def compose_vidur(batches: VidurBatches, ops: TokenOps, decode_attention_scale: float,
                  prefill_attention_scale: float, gqa: bool) -> Table:
    """Iteration times of the same batches for another (model, GPU): the token-count ops measured for
    that pair, plus the Llama-2-7B/A100 attention times scaled (see ``attention_scales``), with
    Vidur's 10% batching overhead for GQA models (decode batches of >1, prefills of >1 chunk)."""
    t = batches.table
    decode = batches.attn_decode_ms * decode_attention_scale
    prefill = batches.attn_prefill_ms * prefill_attention_scale
    if gqa:
        decode = decode * np.where(batches.n_decodes > 1, 1 + GQA_BATCHING_OVERHEAD, 1.0)
        prefill = prefill * np.where(batches.n_prefills > 1, 1 + GQA_BATCHING_OVERHEAD, 1.0)
    ms = ops.iteration_ms(t.ntok) + decode + prefill
    return Table(t.ntok, t.sum_chunk_sq, t.sum_chunk_prior, t.sum_decode_context, ms, t.kind)


def attention_scales(arch, ops_7b_a100: TokenOps, ops_7b_gpu: TokenOps) -> tuple[float, float, dict]:
    """How Llama-2-7B/A100 attention times carry over to ``arch`` on another GPU.

    * decode attention reads the KV cache (memory bound): x the ratio of KV bytes per token (GQA) x
      the GPU's memory-bound speed-up, measured as the ratio of Llama-2-7B's token ops at 8 tokens
      (streaming the weights; 1.0 on the A100 itself);
    * prefill attention is compute bound: x the ratio of query heads x head_dim x layers (the score
      and value FLOPs per (query, key) pair) x the GPU's compute-bound speed-up, measured as the ratio
      of Llama-2-7B's token ops at 4,096 tokens (large GEMMs).
    """
    memory_speedup = float(ops_7b_a100.iteration_ms(8) / ops_7b_gpu.iteration_ms(8))
    compute_speedup = float(ops_7b_a100.iteration_ms(4096) / ops_7b_gpu.iteration_ms(4096))
    kv_ratio = arch.kv_bytes_per_token() / LLAMA2_7B.kv_bytes_per_token()
    flop_ratio = (arch.num_attention_heads * arch.head_dim * arch.num_layers) / (
        LLAMA2_7B.num_attention_heads * LLAMA2_7B.head_dim * LLAMA2_7B.num_layers)
    info = {"memory_speedup": memory_speedup, "compute_speedup": compute_speedup, "kv_ratio": kv_ratio,
            "flop_ratio": flop_ratio}
    return kv_ratio / memory_speedup, flop_ratio / compute_speedup, info


# ------------------------------------------------------------------------------------------
# Iteration times composed from LLMServingSim's per-layer profiles (real vLLM 0.19 kernels)
# ------------------------------------------------------------------------------------------

# How LLMServingSim walks one iteration of a Llama (profiler/models/llama.yaml ``sequence``, commit
# 5daddb2): embedding; per layer layernorm, qkv_proj, rotary_emb, attention, o_proj, layernorm,
# gate_up_proj, act_fn, down_proj; then final_layernorm, lm_head and sampler. Dense ops are profiled
# per token count, lm_head and sampler per number of sequences, attention per (prefill chunk, its
# prior KV, number of decodes, their KV).
LSS_LAYER_OPS = {"layernorm": 2, "qkv_proj": 1, "rotary_emb": 1, "o_proj": 1, "gate_up_proj": 1, "act_fn": 1,
                 "down_proj": 1}
LSS_MODEL_OPS = ("embedding", "final_layernorm")
LSS_SEQUENCE_OPS = ("lm_head", "sampler")


def _curves(path: Path, key: str) -> dict:
    """op -> (sorted x, mean time in us per x) of one LLMServingSim profile CSV."""
    raw = defaultdict(lambda: defaultdict(list))
    for r in csv.DictReader(path.open()):
        raw[r["layer"]][int(r[key])].append(float(r["time_us"]))
    return {op: (np.array(sorted(v), dtype=float), np.array([np.mean(v[x]) for x in sorted(v)])) for op, v in raw.items()}


def load_llmservingsim(repo: Path, hardware: str, kv_tokens: int, model: str = "meta-llama/Llama-3.1-8B",
                       num_layers: int = 32) -> Table:
    """Iteration times of every profiled attention batch that fits the token budget of the dense
    profile (<= 2,048 tokens) and the instance's KV cache, composed as LLMServingSim walks a
    Llama iteration (dense ops interpolated linearly at the batch's token count, per-sequence ops at
    its number of sequences). The profiles were taken with real vLLM 0.19 kernels, eager mode."""
    base = Path(repo) / "profiler" / "perf" / hardware / model / "bf16" / "tp1"
    if not (base / "attention.csv").is_file():
        raise SystemExit(f"no LLMServingSim profile at {base}: pass --llmservingsim-repo, a checkout of "
                         "github.com/casys-kaist/LLMServingSim")
    dense, per_seq = _curves(base / "dense.csv", "tokens"), _curves(base / "per_sequence.csv", "sequences")
    feats = []
    for r in csv.DictReader((base / "attention.csv").open()):
        pc, kp, nd, kvd = (int(r[k]) for k in ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"))
        ntok, seqs = pc + nd, nd + (pc > 0)
        if ntok == 0 or ntok > dense["qkv_proj"][0][-1] or pc + kp + nd * kvd > kv_tokens:
            continue
        layer_us = sum(m * np.interp(ntok, *dense[op]) for op, m in LSS_LAYER_OPS.items()) + float(r["time_us"])
        us = (num_layers * layer_us + sum(np.interp(ntok, *dense[op]) for op in LSS_MODEL_OPS)
              + sum(np.interp(seqs, *per_seq[op]) for op in LSS_SEQUENCE_OPS))
        kind = "mixed" if pc and nd else ("prefill_only" if pc else "decode_only")
        feats.append((ntok, pc * pc, pc * kp, nd * kvd, us / 1000.0, kind))
    cols = list(zip(*feats))
    return Table(*(np.array(c, dtype=float) for c in cols[:5]), kind=np.array(cols[5]))


RTX4090 = GpuSpec("RTX4090", 25_250_627_584)  # torch's total for the GPU of LLMServingSim's run (its meta.json)


def fit_llmservingsim(repo: Path) -> None:
    plan, max_len = kv_plan(LLAMA31_8B, RTX4090)
    table = load_llmservingsim(repo, "RTX4090", plan.kv_tokens)
    c = fit(table, range(0, 2049, 16), balance_kinds=True)  # 97% of the grid's batches are mixed
    mape, max_ape, lines = error_lines(table, c)
    print("=" * 100)
    print(f"llama3.1-8b-rtx4090: LLMServingSim's RTX 4090 profiles (vLLM 0.19), {len(table.ntok)} profiled batches "
          f"within 2,048 tokens and the KV cache")
    print("\n".join(lines))
    print(textwrap.indent(plan.explain(), "  "))
    print(profile_block(
        "llama3.1-8b-rtx4090", c, kv_blocks=plan.num_kv_blocks, max_model_len=max_len,
        extra=f"\n        max_num_batched_tokens={v0_default_batched_tokens(max_len)},",
        source=f"composed from LLMServingSim's per-layer profiles of Llama-3.1-8B on an RTX 4090 with vLLM 0.19 "
               f"(github.com/casys-kaist/LLMServingSim @ {_git_head(repo)}, MIT, profiler/perf/RTX4090), "
               f"as its trace generator walks an iteration",
        mape=mape, max_ape=max_ape,
        notes=f"NNLS on relative error over {len(table.ntok)} profiled batches, each batch type (decode-only, "
              f"prefill-only, mixed) weighted equally, knee {c[3]} by grid search (mean of the types' MAPEs); "
              "profiles taken in eager mode (no CUDA graphs)."))


# ------------------------------------------------------------------------------------------
# Memory: vLLM's arithmetic, llm_routing_env/memory.py
# ------------------------------------------------------------------------------------------

# Llama-3.1-8B has Llama-3-8B's layers (Vidur profiles the latter) and a 128K context.
LLAMA31_8B = dataclasses.replace(LLAMA3_8B, name="Llama-3.1-8B", max_position_embeddings=131072)


def kv_plan(model: ModelSpec, gpu: GpuSpec, tensor_parallel: int = 1, max_num_seqs: int = 128):
    """KV blocks of one instance and the longest context it allows, with vLLM v0's default token
    budget without chunked prefill, ``v0_default_batched_tokens`` (max(max_model_len, 2048), so the
    profile run's activations grow with max_model_len): max_model_len is the model's context if memory allows it, else the largest
    multiple of 1,024 tokens whose KV cache still holds one request of that length."""
    def plan_for(max_len):
        return kv_cache_plan(model, gpu, tensor_parallel=tensor_parallel, max_num_batched_tokens=v0_default_batched_tokens(max_len),
                             max_num_seqs=max_num_seqs)

    context = model.max_position_embeddings
    if plan_for(context).kv_tokens >= context:
        return plan_for(context), context
    lo, hi = 0, context // 1024  # kv_tokens falls as max_len grows: bisect on multiples of 1,024
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if plan_for(mid * 1024).kv_tokens >= mid * 1024 else (lo, mid - 1)
    if lo == 0:
        raise ValueError(f"{model.name} on {gpu.name}: the KV cache cannot hold a 1,024-token request")
    return plan_for(lo * 1024), lo * 1024


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------


def error_lines(t: Table, coefficients) -> tuple[float, float, list[str]]:
    ape = ape_pct(t, coefficients)
    lines = [f"  all rows ({len(ape)}): MAPE {ape.mean():.2f}%, max APE {ape.max():.2f}%"]
    for kind in dict.fromkeys(t.kind):
        m = t.kind == kind
        lines.append(f"    {kind} ({m.sum()}): MAPE {ape[m].mean():.2f}%, max APE {ape[m].max():.2f}%")
    worst = np.argsort(-ape)[:3]
    for i in worst:
        lines.append(
            f"    worst: {t.kind[i]} Ntok={t.ntok[i]:.0f} sum_chunk^2={t.sum_chunk_sq[i]:.3g} "
            f"sum_chunk*prior={t.sum_chunk_prior[i]:.3g} sum_ctx={t.sum_decode_context[i]:.3g}: "
            f"table {t.measured_ms[i]:.2f} ms, fit {predict_ms(t, coefficients)[i]:.2f} ms ({ape[i]:.1f}%)"
        )
    return round(float(ape.mean()), 2), round(float(ape.max()), 2), lines


def _py_str(text: str, indent: int) -> str:
    """A double-quoted Python string literal, split into implicitly joined pieces if long."""
    pieces = textwrap.wrap(text, width=90, drop_whitespace=False, break_on_hyphens=False) or [""]
    if len(pieces) == 1:
        return json.dumps(text)
    pad = " " * (indent + 4)
    return "(\n" + "".join(f"{pad}{json.dumps(p)}\n" for p in pieces) + " " * indent + ")"


def profile_block(name, coefficients, kv_blocks, max_model_len, source, mape, max_ape, notes, extra="") -> str:
    """Ready-to-paste registration of one profile (NaN errors are written as float("nan"))."""
    c0, c1, c2, knee, c3, c4, c5 = coefficients
    num = lambda v: 'float("nan")' if isinstance(v, float) and math.isnan(v) else repr(v)  # noqa: E731
    return f"""register_profile(
    LatencyProfile(
        name={json.dumps(name)},
        c0_ms={c0!r},
        c1_ms_per_token={c1!r},
        c2_ms_per_token_above_knee={c2!r},
        knee_tokens={knee!r},
        c3_ms_per_chunk_token_sq={c3!r},
        c4_ms_per_chunk_prior_token={c4!r},
        c5_ms_per_decode_context_token={c5!r},
        kv_capacity_blocks={kv_blocks!r},
        max_model_len={max_model_len!r},{extra}
        source={_py_str(source, 8)},
        fit_mape_pct={num(mape)},
        fit_max_ape_pct={num(max_ape)},
        notes={_py_str(notes, 8)},
    )
)"""


# A few batches to show what the profiles predict: (Ntok, sum chunk^2, sum chunk*prior, sum decode context)
SANITY_BATCHES = {
    "decode, 1 request at context 1024": (1, 0, 0, 1024),
    "decode, 64 requests at context 4096": (64, 0, 0, 64 * 4096),
    "prefill of one 2048-token prompt": (2048, 2048**2, 0, 0),
}


def fit_paper_v100() -> tuple[float, float]:
    """llama2-7b-v100 from the paper's figures alone (docs/profiles.md, arXiv 2408.13510).

    c1 = 0.32 ms per token (Fig. 4a's prefill slope, no knee, no attention terms); c0 and c5 such
    that a 1000/1000 request takes 17 s alone and 31 s when a 500/500 request joins every 50 of its
    iterations (Fig. 4c). c0 follows from the lone run in closed form, c5 by bisection.
    """
    import dataclasses

    from llm_routing_env.experiments import paper_interference_experiment

    base = get_profile("llama2-7b-v100")
    c1, prompt, output = 0.32, 1000, 1000

    def profile(c5: float) -> LatencyProfile:
        # alone: one prefill of 1,000 tokens + 999 decodes at contexts 1001..1999 = 17 s
        decode_ms = (output - 1) * c1 + c5 * sum(prompt + g for g in range(1, output))
        c0 = (17_000.0 - c1 * prompt - decode_ms) / output
        return dataclasses.replace(base, c0_ms=round(c0, 3), c1_ms_per_token=c1, c2_ms_per_token_above_knee=0.0,
                                   knee_tokens=0, c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0,
                                   c5_ms_per_decode_context_token=c5)

    lo, hi = 0.0, 0.01
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if paper_interference_experiment(profile(mid)) < 31.0 else (lo, mid)
    best = profile(round_sig(lo))
    print(f"llama2-7b-v100: c0_ms={best.c0_ms}, c1={c1}, c5={best.c5_ms_per_decode_context_token}: "
          f"alone {paper_interference_experiment(best, joiners=False):.3f} s (paper 17), "
          f"with joiners {paper_interference_experiment(best):.3f} s (paper 31)")
    return best.c0_ms, best.c5_ms_per_decode_context_token


def main(vidur_csv: Path = VIDUR_CSV, splitwise_csv: Path = SPLITWISE_CSV, vidur_repo: Path | None = None,
         llmservingsim_repo: Path | None = None) -> None:
    for path in (vidur_csv, splitwise_csv):
        if not Path(path).is_file():
            raise SystemExit(f"no table at {path}: pass --vidur / --splitwise (see the module docstring)")
    print("How the fit is done:")
    print(__doc__[__doc__.index("The closed form") : __doc__.index("Profiles\n")].strip())
    print()

    # --- llama2-7b-a100 -------------------------------------------------------------------
    vidur = load_vidur(vidur_csv)
    knees_7b = range(0, 2049, 16)
    c7b = fit(vidur, knees_7b)
    mape, max_ape, lines = error_lines(vidur, c7b)
    print("=" * 100)
    print("llama2-7b-a100: Vidur table, 163 rows; knee grid 0..2048 step 16")
    print("\n".join(lines))
    print(
        profile_block(
            "llama2-7b-a100",
            c7b,
            kv_blocks=7424,  # Vidur's figure: 118,784 KV tokens
            max_model_len=4096,
            source="Vidur execution-time predictor (github.com/microsoft/vidur @ 7d47513, MIT), Llama-2-7B "
            "fp16 on A100-80GB TP1, queried on 163 batch compositions (vidur_batch_times.csv)",
            mape=mape,
            max_ape=max_ape,
            notes=f"NNLS on relative error over all 163 rows, knee {c7b[3]} picked by grid search (MAPE).",
        )
    )
    print("llama2-7b-a100 residuals by batch class (APE; signed = fit - table):")
    print("\n".join(residuals_by_class(vidur_csv, c7b)))
    print("Other forms on the same table (unrounded NNLS on relative error):")
    print("\n".join(form_study(vidur_csv)))

    # --- llama2-70b on 4 GPUs -------------------------------------------------------------------
    for hardware, name, gpu in (("a100-80gb", "llama2-70b-a100-tp4", A100_80GB),
                                ("h100-80gb", "llama2-70b-h100-tp4", H100_80GB)):
        plan, max_len_70b = kv_plan(LLAMA2_70B, gpu, tensor_parallel=4)
        kv_70b = plan.num_kv_blocks
        print("=" * 100)
        print(plan.explain())
        table = load_splitwise(hardware, path=splitwise_csv)
        c = fit(table, range(0, 8193, 16))
        mape, max_ape, lines = error_lines(table, c)
        print("-" * 100)
        print(f"{name}: SplitwiseSim {hardware} TP4, {len(table.ntok)} averaged rows; knee grid 0..8192 step 16")
        print("\n".join(lines))
        for what, batch in SANITY_BATCHES.items():
            print(f"    predicts {what}: {iteration_time_ms(c, *batch):.1f} ms")
        ape = ape_pct(table, c)
        per_kind = ", ".join(f"{k} {ape[table.kind == k].mean():.2f}%" for k in ("prefill", "decode"))
        print(
            profile_block(
                name,
                c,
                kv_blocks=kv_70b,
                max_model_len=max_len_70b,
                source="SplitwiseSim perf model (github.com/Mutinifni/splitwise-sim data/perf_model.csv @ 8f99e7d, "
                f"MIT), llama2-70b {hardware} tensor_parallel=4",
                mape=mape,
                max_ape=max_ape,
                notes=f"NNLS on relative error over {len(table.ntok)} repeat-averaged prefill and decode rows jointly "
                f"(MAPE {per_kind}), knee {c[3]} by grid search; decode context = prompt + tokens/2.",
            )
        )

    # --- profiles composed from Vidur's per-operation measurements ---------------------------------
    if llmservingsim_repo is not None and vidur_repo is None:
        fit_llmservingsim(Path(llmservingsim_repo))
    if vidur_repo is None:
        print("=" * 100)
        print("(no --vidur-repo: the llama3.1-8b-a100/-h100, llama2-7b-h100 profiles are not refitted)")
        return
    fit_composed(vidur_csv, Path(vidur_repo))
    if llmservingsim_repo is not None:
        fit_llmservingsim(Path(llmservingsim_repo))


def composed_tables(vidur_csv: Path, vidur_repo: Path) -> dict:
    """name -> (Table, how it was composed) for every profile fitted to Vidur's per-op profiles."""
    batches = load_vidur_batches(vidur_csv)
    ops = {(gpu, model): load_vidur_token_ops(vidur_repo, gpu, model, 32)
           for gpu, model in (("a100", "llama2-7b"), ("h100", "llama2-7b"), ("a100", "llama3-8b"))}
    # Llama-3-8B on the H100 is not profiled: its token ops are the A100 ones x the H100/A100 ratio
    # of Llama-2-7B's at the same token count (same GPU pair, same kinds of GEMMs).
    a7, h7, a8 = ops["a100", "llama2-7b"], ops["h100", "llama2-7b"], ops["a100", "llama3-8b"]
    counts = a8.num_tokens[a8.num_tokens <= h7.num_tokens[-1]]
    h100_ratio = np.interp(counts, h7.num_tokens, h7.layer_ms) / np.interp(counts, a7.num_tokens, a7.layer_ms)
    h8 = TokenOps(counts, np.interp(counts, a8.num_tokens, a8.layer_ms) * h100_ratio, 32)
    out = {}
    for name, arch, gpu_ops, token_ops, how in (
        ("llama3.1-8b-a100", LLAMA31_8B, a7, a8, "Meta-Llama-3-8B A100 token ops (measured)"),
        ("llama2-7b-h100", LLAMA2_7B, h7, h7, "Llama-2-7b-hf H100 token ops (measured)"),
        ("llama3.1-8b-h100", LLAMA31_8B, h7, h8,
         "Meta-Llama-3-8B A100 token ops x Llama-2-7B's H100/A100 ratio per token count (derived)"),
    ):
        dec, pre, info = attention_scales(arch, a7, gpu_ops)
        table = compose_vidur(batches, token_ops, dec, pre, gqa=arch.num_kv_heads < arch.num_attention_heads)
        how += (f"; attention = Llama-2-7B/A100's x {dec:.4f} (decode: KV bytes x {info['kv_ratio']:.2f}, "
                f"memory-bound speed-up {info['memory_speedup']:.3f}) and x {pre:.4f} (prefill: FLOPs x "
                f"{info['flop_ratio']:.2f}, compute-bound speed-up {info['compute_speedup']:.3f})")
        out[name] = (table, how)
    return out, batches, a7


def fit_composed(vidur_csv: Path, vidur_repo: Path) -> None:
    tables, batches, a7 = composed_tables(vidur_csv, vidur_repo)
    # How well the composition reproduces Vidur's own prediction for the pair it has (Llama-2-7B/A100)
    check = compose_vidur(batches, a7, 1.0, 1.0, gqa=False)
    ape = 100 * np.abs(check.measured_ms - batches.table.measured_ms) / batches.table.measured_ms
    print("=" * 100)
    print(f"Composition check, Llama-2-7B/A100: token ops from mlp.csv + the table's attention vs the table's "
          f"model_time_ms: MAPE {ape.mean():.2f}%, max {ape.max():.2f}% (163 batches)")
    # Llama-2-70B on 4 H100s as Vidur composes it (token ops at TP4 + two all-reduces per layer), for
    # comparison with the SplitwiseSim-fitted profile; not shipped (its attention is not measured)
    ops_70b = load_vidur_token_ops(vidur_repo, "h100", "llama2-70b", 80, tensor_parallel=4).plus(
        load_vidur_all_reduce(vidur_repo, "h100_dgx", 4, LLAMA2_70B.hidden_size, 80))
    splitwise = get_profile("llama2-70b-h100-tp4").coefficients
    print("Llama-2-70B/H100/TP4 without attention, Vidur's token ops + all-reduce vs the shipped SplitwiseSim fit "
          "(which includes attention at context 0 here): "
          + ", ".join(f"{n} tokens {float(ops_70b.iteration_ms(n)):.1f} vs {iteration_time_ms(splitwise, n, 0, 0, 0):.1f} ms"
                      for n in (1, 32, 128, 512, 2048)))
    commit = _git_head(vidur_repo)
    for name, (table, how) in tables.items():
        arch = LLAMA31_8B if name.startswith("llama3.1-8b") else LLAMA2_7B
        c = fit(table, range(0, 2049, 16))
        mape, max_ape, lines = error_lines(table, c)
        plan, max_len = kv_plan(arch, H100_80GB if name.endswith("h100") else A100_80GB)
        kv = plan.num_kv_blocks
        print("-" * 100)
        print(f"{name}: {how}")
        print("\n".join(lines))
        print(textwrap.indent(plan.explain(), "  "))
        for what, batch in SANITY_BATCHES.items():
            print(f"    predicts {what}: {iteration_time_ms(c, *batch):.2f} ms")
        extra = f"\n        max_num_batched_tokens={max_len}," if max_len > 4096 else ""
        print(profile_block(
            name, c, kv_blocks=kv, max_model_len=max_len, extra=extra,
            source=f"composed from Vidur's per-operation profiles (github.com/microsoft/vidur @ {commit}, MIT) the "
                   f"way its execution-time predictor sums them, on the 163 batches of vidur_batch_times.csv: {how}",
            mape=mape, max_ape=max_ape,
            notes=f"NNLS on relative error over the 163 composed batches, knee {c[3]} by grid search (MAPE); "
                  f"error is against the composition, not against hardware."))


def residuals_by_class(vidur_csv: Path, coefficients) -> list[str]:
    """llama2-7b-a100's error per batch class: decode-only by batch size and context, then the rest."""
    b = load_vidur_batches(vidur_csv)
    t, ape = b.table, ape_pct(b.table, coefficients)
    signed = 100 * (predict_ms(t, coefficients) - t.measured_ms) / t.measured_ms
    avg_ctx = np.where(b.n_decodes > 0, t.sum_decode_context / np.maximum(b.n_decodes, 1), 0)
    classes = []
    for lo, hi in ((1, 4), (8, 32), (48, 128)):
        for clo, chi in ((0, 1024), (2048, 4096)):
            m = (t.kind == "decode_only") & (b.n_decodes >= lo) & (b.n_decodes <= hi) & (avg_ctx > clo) & (avg_ctx <= chi)
            classes.append((f"decode-only, batch {lo}-{hi}, context {clo + 1 if clo else 128}-{min(chi, 4032)}", m))
    for kind in ("prefill_only_1req", "prefill_only_multi", "chunked_prefill_with_prior_ctx", "mixed_prefill_plus_decode"):
        classes.append((kind, t.kind == kind))
    lines = ["| batch class | rows | MAPE | max APE | mean signed error |", "|---|---|---|---|---|"]
    for label, m in classes:
        lines.append(f"| {label} | {m.sum()} | {ape[m].mean():.2f}% | {ape[m].max():.2f}% | {signed[m].mean():+.2f}% |")
    return lines


def form_study(vidur_csv: Path) -> list[str]:
    """MAPE / max APE of richer forms on the Vidur table (relative least squares, NNLS), to show which
    terms carry llama2-7b-a100's error. The last form needs the number of decodes and their mean
    context, which the simulator's four aggregates do not carry."""
    b = load_vidur_batches(vidur_csv)
    t = b.table
    avg_ctx = np.where(b.n_decodes > 0, t.sum_decode_context / np.maximum(b.n_decodes, 1), 0)
    attention = [t.sum_chunk_sq, t.sum_chunk_prior, t.sum_decode_context]
    forms = {
        "shipped form (knee 256)": [np.ones_like(t.ntok), t.ntok, np.maximum(t.ntok - 256, 0)] + attention,
        "piecewise-linear in Ntok, knots 16/64/256": [np.ones_like(t.ntok), t.ntok] + [
            np.maximum(t.ntok - k, 0) for k in (16, 64, 256)] + attention,
        "piecewise-linear in Ntok, knots 4/16/64/128/256/1024/2048": [np.ones_like(t.ntok), t.ntok] + [
            np.maximum(t.ntok - k, 0) for k in (4, 16, 64, 128, 256, 1024, 2048)] + attention,
        "shipped form + decode slope per request (mean context) + decodes": [
            np.ones_like(t.ntok), t.ntok, np.maximum(t.ntok - 256, 0)] + attention + [avg_ctx, b.n_decodes],
    }
    lines = ["| form | MAPE | max APE |", "|---|---|---|"]
    for label, cols in forms.items():
        x = np.column_stack(cols)
        c = nnls(x / t.measured_ms[:, None], np.ones_like(t.measured_ms))  # unrounded: forms, not profiles
        ape = 100 * np.abs(x @ c - t.measured_ms) / t.measured_ms
        lines.append(f"| {label} | {ape.mean():.2f}% | {ape.max():.2f}% |")
    return lines


def _git_head(repo: Path) -> str:
    """Short commit of a checkout (or a bare mirror), for the profile's source line."""
    import subprocess

    for args in (["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"],):
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return "unknown commit"


def cli(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vidur", type=Path, default=VIDUR_CSV, help=f"Vidur batch-time table (default {VIDUR_CSV})")
    ap.add_argument("--splitwise", type=Path, default=SPLITWISE_CSV,
                    help=f"SplitwiseSim perf_model.csv (default {SPLITWISE_CSV})")
    ap.add_argument("--vidur-repo", type=Path, default=None,
                    help="a checkout of github.com/microsoft/vidur (its data/profiling/compute/*/mlp.csv are read)")
    ap.add_argument("--llmservingsim-repo", type=Path, default=None,
                    help="a checkout of github.com/casys-kaist/LLMServingSim (its profiler/perf/RTX4090 is read)")
    args = ap.parse_args(argv)
    main(args.vidur, args.splitwise, args.vidur_repo, args.llmservingsim_repo)
    fit_paper_v100()
    return 0


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(cli)())
