"""Fit the iteration-time closed form of ``llm_routing_env/profiles.py`` to the shipped tables.

Usage (from the repository root)::

    .venv/bin/python tools/fit_profiles.py [--vidur PATH] [--splitwise PATH]

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
  coefficients. KV capacity from memory (see ``kv_capacity_blocks``). Caveat: in this table a
  decode's time does not vary with its context, only with the batch size, and the batch-size rows
  all have short contexts; so c5 ends up standing for batch-size growth rather than KV reads.
* ``llama3.1-8b-a100``: no table; derived from the fitted ``llama2-7b-a100`` by architecture
  scaling (see ``derive_llama31_8b``).
* ``llama2-7b-v100`` (the paper's setup) is not fitted here: its coefficients are set by the
  simulator maintainer from the paper's figures.
"""

from __future__ import annotations

import csv
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

from llm_routing_env.profiles import KV_BLOCK_TOKENS, LatencyProfile, get_profile, iteration_time_ms  # noqa: E402

DATA = REPO.parent / "shared" / "data"
VIDUR_CSV = DATA / "vidur_batch_times" / "vidur_batch_times.csv"
SPLITWISE_CSV = DATA / "splitwise_perf_model" / "perf_model.csv"

SIG_DIGITS = 4  # coefficients are shipped rounded to this many significant digits
GB = 1e9  # "80 GB" etc. are read as decimal gigabytes (see kv_capacity_blocks)


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


def fit(t: Table, knee_grid) -> tuple:
    """Best (by MAPE) rounded coefficients (c0, c1, c2, knee, c3, c4, c5) over the knee grid."""
    best = None
    for knee in knee_grid:
        x = design_matrix(t, knee)
        c = nnls(x / t.measured_ms[:, None], np.ones_like(t.measured_ms))  # relative residuals
        c0, c1, c2, c3, c4, c5 = (round_sig(v) for v in c)
        coefficients = (c0, c1, c2, int(knee), c3, c4, c5)
        mape = float(ape_pct(t, coefficients).mean())
        if best is None or mape < best[0]:
            best = (mape, coefficients)
    return best[1]


# ------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------


def kv_capacity_blocks(hbm_bytes: float, weight_bytes: float, kv_bytes_per_token: int, utilization: float = 0.9) -> int:
    """vLLM's KV pool: utilization x HBM, less the weights, in 16-token blocks (rounded down).

    HBM is read as decimal gigabytes (80 GB = 80e9 bytes): a conservative figure. The physical
    80 GiB would give ~7% more room, roughly what vLLM also reserves for activations and the CUDA
    context, which this formula does not subtract. (For Llama-2-7B on one A100 the decimal reading
    gives 6,976 blocks, the binary one 7,609; Vidur's planner, which measures activations, says
    7,424.)
    """
    tokens = math.floor((utilization * hbm_bytes - weight_bytes) / kv_bytes_per_token)
    return tokens // KV_BLOCK_TOKENS


def matmul_params(layers, hidden, ffn, vocab, heads, kv_heads, head_dim) -> int:
    """Parameters of the matmuls a token goes through: q, k, v, o, gate/up/down, and the LM head."""
    attention = hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden
    mlp = 3 * hidden * ffn
    return layers * (attention + mlp) + hidden * vocab


LLAMA2_7B = dict(layers=32, hidden=4096, ffn=11008, vocab=32000, heads=32, kv_heads=32, head_dim=128)
LLAMA31_8B = dict(layers=32, hidden=4096, ffn=14336, vocab=128256, heads=32, kv_heads=8, head_dim=128)
LLAMA2_70B = dict(layers=80, hidden=8192, ffn=28672, vocab=32000, heads=64, kv_heads=8, head_dim=128)


def total_params(arch) -> int:
    """matmul params + input embedding + RMSNorm weights (2 per layer + final)."""
    return matmul_params(**arch) + arch["vocab"] * arch["hidden"] + (2 * arch["layers"] + 1) * arch["hidden"]


def kv_bytes_per_token(arch, dtype_bytes: int = 2) -> int:
    return arch["layers"] * arch["kv_heads"] * arch["head_dim"] * 2 * dtype_bytes  # K and V


def derive_llama31_8b(c7b: tuple) -> tuple[tuple, dict]:
    """Llama-3.1-8B on an A100-80GB from the fitted Llama-2-7B on the same GPU.

    * c1, c2 (per-token cost of the linear layers) x the ratio of matmul parameters, LM head
      included: 7.505e9 / 6.607e9 = 1.136 (a token's matmul FLOPs are 2 x these parameters).
    * c3, c4 (prefill attention) unchanged: same 32 query heads of dimension 128, so the same
      score/value FLOPs per (query, key) pair.
    * c5 (decode attention, bound by reading the KV cache) / 4: 8 KV heads instead of 32, so a
      4x smaller cache per token (128 KiB vs 512 KiB).
    * c0 (fixed per-iteration cost) x the ratio of weight bytes (x 1.19): at small batches it is
      mostly the time to stream the weights (8.6 of the 9.5 ms of a lone Llama-2-7B decode in
      Vidur's table are linear layers), so a lone 8B decode is slower than a 7B one, as measured
      in practice. The knee is unchanged (same GPU). See docs/profiles.md.
    """
    c0, c1, c2, knee, c3, c4, c5 = c7b
    ratio = matmul_params(**LLAMA31_8B) / matmul_params(**LLAMA2_7B)
    weight_ratio = total_params(LLAMA31_8B) / total_params(LLAMA2_7B)
    kv_ratio = kv_bytes_per_token(LLAMA31_8B) / kv_bytes_per_token(LLAMA2_7B)
    coefficients = (round_sig(c0 * weight_ratio), round_sig(c1 * ratio), round_sig(c2 * ratio), knee, c3, c4,
                    round_sig(c5 * kv_ratio))
    return coefficients, {"matmul_param_ratio": ratio, "weight_ratio": weight_ratio, "kv_ratio": kv_ratio}


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
    """llama2-7b-v100 from the paper's figures alone (docs/profiles.md, paper-facts §1.2, §1.4).

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


def main(vidur_csv: Path = VIDUR_CSV, splitwise_csv: Path = SPLITWISE_CSV) -> None:
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

    # --- llama2-70b on 4 GPUs -------------------------------------------------------------------
    weights_70b = 2 * 70e9  # fp16, the nominal 70e9 parameters (the architecture has 68.98e9)
    kv_70b = kv_capacity_blocks(4 * 80 * GB, weights_70b, kv_bytes_per_token(LLAMA2_70B))
    print("=" * 100)
    print(
        f"llama2-70b TP4 KV: 4 x 80 GB x 0.9 - {weights_70b / GB:.0f} GB weights "
        f"= {(4 * 80 * GB * 0.9 - weights_70b) / GB:.0f} GB; {kv_bytes_per_token(LLAMA2_70B) // 1024} KiB/token "
        f"-> {kv_70b} blocks ({kv_70b * KV_BLOCK_TOKENS:,} tokens)"
    )
    for hardware, name in (("a100-80gb", "llama2-70b-a100-tp4"), ("h100-80gb", "llama2-70b-h100-tp4")):
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
                max_model_len=4096,
                source="SplitwiseSim perf model (github.com/Mutinifni/splitwise-sim data/perf_model.csv @ 8f99e7d, "
                f"MIT), llama2-70b {hardware} tensor_parallel=4",
                mape=mape,
                max_ape=max_ape,
                notes=f"NNLS on relative error over {len(table.ntok)} repeat-averaged prefill and decode rows jointly "
                f"(MAPE {per_kind}), knee {c[3]} by grid search; decode context = prompt + tokens/2.",
            )
        )

    # --- llama3.1-8b-a100 (derived) --------------------------------------------------------------
    c8b, info = derive_llama31_8b(c7b)
    weights_8b = 2 * total_params(LLAMA31_8B)
    kv_8b = kv_capacity_blocks(80 * GB, weights_8b, kv_bytes_per_token(LLAMA31_8B))
    print("=" * 100)
    print(
        f"llama3.1-8b-a100: derived from llama2-7b-a100. matmul params {matmul_params(**LLAMA31_8B):.4g} vs "
        f"{matmul_params(**LLAMA2_7B):.4g} (ratio {info['matmul_param_ratio']:.4f}) scales c1, c2; "
        f"c5 x {info['kv_ratio']:.2f}; c0 x {info['weight_ratio']:.3f}; knee, c3, c4 unchanged."
    )
    print(
        f"  KV: 80 GB x 0.9 - {weights_8b / GB:.2f} GB bf16 weights ({total_params(LLAMA31_8B):.4g} params); "
        f"{kv_bytes_per_token(LLAMA31_8B) // 1024} KiB/token -> {kv_8b} blocks ({kv_8b * KV_BLOCK_TOKENS:,} tokens)"
    )
    for what, batch in SANITY_BATCHES.items():
        t7, t8 = iteration_time_ms(c7b, *batch), iteration_time_ms(c8b, *batch)
        print(f"  {what}: llama2-7b-a100 {t7:.2f} ms, llama3.1-8b-a100 {t8:.2f} ms")
    print(
        profile_block(
            "llama3.1-8b-a100",
            c8b,
            kv_blocks=kv_8b,
            max_model_len=8192,
            extra="\n        max_num_batched_tokens=8192,",
            source="derived from llama2-7b-a100 by architecture scaling (tools/fit_profiles.py, docs/profiles.md); "
            "no table",
            mape=float("nan"),
            max_ape=float("nan"),
            notes=f"Not fitted: llama2-7b-a100 with c1, c2 x {info['matmul_param_ratio']:.3f} (matmul parameters) "
            f"and c5 x {info['kv_ratio']:.2f} (GQA KV cache).",
        )
    )


def cli(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vidur", type=Path, default=VIDUR_CSV, help=f"Vidur batch-time table (default {VIDUR_CSV})")
    ap.add_argument("--splitwise", type=Path, default=SPLITWISE_CSV,
                    help=f"SplitwiseSim perf_model.csv (default {SPLITWISE_CSV})")
    args = ap.parse_args(argv)
    main(args.vidur, args.splitwise)
    fit_paper_v100()
    return 0


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(cli)())
