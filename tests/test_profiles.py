"""Shipped latency profiles: their coefficients reproduce their source tables, and bad profiles are refused.

The table loaders here are written again on purpose (not imported from tools/fit_profiles.py), so
that a mistake in the fitting script's row mapping cannot hide itself.
"""

from __future__ import annotations

import csv
import hashlib
import dataclasses
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from llm_routing_env.memory import A100_80GB, H100_80GB, LLAMA2_7B, LLAMA2_70B, LLAMA3_8B, GpuSpec, kv_cache_plan, \
    v0_default_batched_tokens
from llm_routing_env.profiles import (
    LatencyProfile,
    get_profile,
    iteration_time_ms,
    profile_names,
)

# other projects' tables are not shipped: read them beside the project, skip without them
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_tables = pytest.mark.skipif(
    not (DATA / "vidur_batch_times").is_dir() or not (DATA / "splitwise_perf_model").is_dir(),
    reason=f"Vidur / SplitwiseSim tables not available at {DATA}")


def _vidur_rows():
    """(Ntok, sum chunk^2, sum chunk*prior, sum decode context, ms, row type) per Vidur row."""
    out = []
    with (DATA / "vidur_batch_times" / "vidur_batch_times.csv").open() as f:
        for r in csv.DictReader(f):
            n_pre, pre_tok = int(r["num_prefill_requests"]), float(r["num_prefill_tokens"])
            prior, n_dec = float(r["prefill_prior_context"]), int(r["num_decode_tokens"])
            chunk = pre_tok / n_pre if n_pre else 0.0
            out.append(
                (
                    pre_tok + n_dec,
                    n_pre * chunk**2,
                    n_pre * chunk * prior,
                    n_dec * float(r["decode_avg_context"]),
                    float(r["model_time_ms"]),
                    r["scenario"],
                )
            )
    return out


def _splitwise_rows(hardware):
    """Repeat-averaged llama2-70b TP4 rows: prefill batches keyed by (prompt, batch), decode
    iterations keyed by (prompt, batch, tokens) with context prompt + tokens / 2 per request."""
    prefill, decode = defaultdict(list), defaultdict(list)
    with (DATA / "splitwise_perf_model" / "perf_model.csv").open() as f:
        for r in csv.DictReader(f):
            if (r["model"], r["hardware"], r["tensor_parallel"]) != ("llama2-70b", hardware, "4"):
                continue
            p, b, t = int(r["prompt_size"]), int(r["batch_size"]), int(r["token_size"])
            prefill[p, b].append(float(r["prompt_time"]))
            decode[p, b, t].append(float(r["token_time"]))
    out = [(b * p, b * p * p, 0.0, 0.0, np.mean(v), "prefill") for (p, b), v in prefill.items()]
    out += [(b, 0.0, 0.0, b * (p + t / 2), np.mean(v), "decode") for (p, b, t), v in decode.items()]
    return out


def _ape_pct(profile, rows):
    ntok, sq, prior, ctx, ms = (np.array([r[i] for r in rows], dtype=float) for i in range(5))
    predicted = iteration_time_ms(profile.coefficients, ntok, sq, prior, ctx)
    return 100 * np.abs(predicted - ms) / ms


# (profile, rows, MAPE bound in %). llama2-7b-a100: Vidur's own reference fit reaches 7.8%; ours
# 6.49% (issue #14's target of 4% is not reachable with one decode-attention slope: docs/profiles.md). The 70B profiles: the measured MAPE (4.61%, 3.38%) plus one point,
# so that a refit may move a little but a wrong row mapping (which costs several points) fails.
TABLE_FITS = [
    ("llama2-7b-a100", _vidur_rows, 8.0),
    ("llama2-70b-a100-tp4", lambda: _splitwise_rows("a100-80gb"), 5.7),
    ("llama2-70b-h100-tp4", lambda: _splitwise_rows("h100-80gb"), 4.4),
]


@pytest.mark.parametrize("name,rows,bound", TABLE_FITS, ids=[t[0] for t in TABLE_FITS])
@needs_tables
def test_shipped_coefficients_reproduce_their_table(name, rows, bound):
    profile = get_profile(name)
    ape = _ape_pct(profile, rows())
    assert ape.mean() < bound, f"{name}: MAPE {ape.mean():.2f}% >= {bound}%"
    assert abs(ape.mean() - profile.fit_mape_pct) <= 0.05, (name, ape.mean(), profile.fit_mape_pct)
    assert abs(ape.max() - profile.fit_max_ape_pct) <= 0.05, (name, ape.max(), profile.fit_max_ape_pct)


@needs_tables
def test_table_shapes():
    vidur = _vidur_rows()
    assert len(vidur) == 163
    assert all(r[0] > 0 and r[4] > 0 for r in vidur)
    for hw in ("a100-80gb", "h100-80gb"):
        rows = _splitwise_rows(hw)
        assert sum(r[5] == "prefill" for r in rows) == 13
        assert sum(r[5] == "decode" for r in rows) == 19


@needs_tables
def test_splitwise_table_is_the_documented_file():
    data = (DATA / "splitwise_perf_model" / "perf_model.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "dbbe505d1d64fc4bd1ec03c50edf944643586de4f68a81e94cbd55dd5bdfbf41"
    assert (DATA / "splitwise_perf_model" / "LICENSE-MIT.txt").read_text().startswith("MIT License")


def test_kv_capacity_is_vllms_arithmetic():
    # every A100/H100 profile but llama2-7b-a100 (Vidur's own planner figure, 7,424 blocks, which the
    # cross-check against Vidur shares) takes its KV blocks from memory.py, with vLLM v0's default
    # token budget without chunked prefill, max(max_model_len, 2048), and the profiles' 128 sequences
    llama31_8b = dataclasses.replace(LLAMA3_8B, max_position_embeddings=131072)
    for name, model, gpu, tp in (
        ("llama2-70b-a100-tp4", LLAMA2_70B, A100_80GB, 4), ("llama2-70b-h100-tp4", LLAMA2_70B, H100_80GB, 4),
        ("llama2-7b-h100", LLAMA2_7B, H100_80GB, 1),
        ("llama3.1-8b-a100", llama31_8b, A100_80GB, 1), ("llama3.1-8b-h100", llama31_8b, H100_80GB, 1),
        ("llama3.1-8b-rtx4090", llama31_8b, GpuSpec("RTX4090", 25_250_627_584), 1),
    ):
        p = get_profile(name)
        plan = kv_cache_plan(model, gpu, tensor_parallel=tp, max_num_batched_tokens=v0_default_batched_tokens(p.max_model_len),
                             max_num_seqs=p.max_num_seqs)
        assert p.kv_capacity_blocks == plan.num_kv_blocks, name
        assert p.max_model_len <= plan.kv_tokens, name  # one request of max_model_len fits
        assert p.max_num_batched_tokens >= p.max_model_len, name  # v0 without chunking must fit a prompt
        if name != "llama3.1-8b-rtx4090":
            assert p.max_model_len == model.max_position_embeddings, name  # memory allows the full context
    assert get_profile("llama3.1-8b-a100").max_model_len == 131072
    # on 24 GB the KV cache is the limit: the largest multiple of 1,024 whose profile run still
    # leaves room for one request of that length
    p = get_profile("llama3.1-8b-rtx4090")
    longer = kv_cache_plan(llama31_8b, GpuSpec("RTX4090", 25_250_627_584), max_num_batched_tokens=p.max_model_len + 1024,
                           max_num_seqs=p.max_num_seqs)
    assert p.max_model_len == 27648 and longer.kv_tokens < p.max_model_len + 1024


# Vidur's per-operation profiles (data/profiling/compute/*/mlp.csv of github.com/microsoft/vidur) are
# not shipped: a checkout at ../shared/data/vidur, or the path in $VIDUR_REPO
VIDUR_REPO = Path(os.environ.get("VIDUR_REPO", DATA / "vidur"))
needs_vidur_repo = pytest.mark.skipif(
    not (VIDUR_REPO / "data" / "profiling" / "compute").is_dir() or not (DATA / "vidur_batch_times").is_dir(),
    reason=f"no Vidur checkout at {VIDUR_REPO} (set VIDUR_REPO) or no Vidur batch table")


@needs_vidur_repo
def test_composed_profiles_reproduce_their_composition():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import fit_profiles

    tables, batches, ops_7b_a100 = fit_profiles.composed_tables(DATA / "vidur_batch_times" / "vidur_batch_times.csv",
                                                                 VIDUR_REPO)
    assert set(tables) == {"llama3.1-8b-a100", "llama2-7b-h100", "llama3.1-8b-h100"}
    # the composition itself: Llama-2-7B/A100's measured token ops plus the table's attention give
    # back Vidur's own predictions (its random forest smooths the same profiles)
    check = fit_profiles.compose_vidur(batches, ops_7b_a100, 1.0, 1.0, gqa=False)
    ape = 100 * np.abs(check.measured_ms - batches.table.measured_ms) / batches.table.measured_ms
    assert ape.mean() < 1.0 and ape.max() < 8.0, (ape.mean(), ape.max())
    for name, (table, _) in tables.items():
        p = get_profile(name)
        err = 100 * np.abs(fit_profiles.predict_ms(table, p.coefficients) - table.measured_ms) / table.measured_ms
        assert abs(err.mean() - p.fit_mape_pct) <= 0.05, (name, err.mean(), p.fit_mape_pct)
        assert abs(err.max() - p.fit_max_ape_pct) <= 0.05, (name, err.max(), p.fit_max_ape_pct)


LLMSERVINGSIM_REPO = Path(os.environ.get("LLMSERVINGSIM_REPO", DATA / "LLMServingSim"))


@pytest.mark.skipif(not (LLMSERVINGSIM_REPO / "profiler" / "perf" / "RTX4090").is_dir(),
                    reason=f"no LLMServingSim checkout at {LLMSERVINGSIM_REPO} (set LLMSERVINGSIM_REPO)")
def test_rtx4090_profile_reproduces_its_composition():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import fit_profiles

    p = get_profile("llama3.1-8b-rtx4090")
    table = fit_profiles.load_llmservingsim(LLMSERVINGSIM_REPO, "RTX4090", p.kv_capacity_blocks * 16)
    assert set(table.kind) == {"decode_only", "prefill_only", "mixed"} and len(table.ntok) > 5000
    err = 100 * np.abs(fit_profiles.predict_ms(table, p.coefficients) - table.measured_ms) / table.measured_ms
    assert abs(err.mean() - p.fit_mape_pct) <= 0.05 and abs(err.max() - p.fit_max_ape_pct) <= 0.05
    assert err[table.kind == "decode_only"].mean() < 4.0  # the class a serving run spends most iterations in


def test_composed_profiles_are_physically_ordered():
    # the same model is faster on the H100 at every batch we show; Llama-3.1-8B's GQA cache makes a
    # big long-context decode batch cheaper than Llama-2-7B's on the same GPU, its larger MLP and
    # vocabulary make a lone decode and a long prefill dearer
    batches = {"lone decode": (1, 0, 0, 1024), "64 decodes at 4096": (64, 0, 0, 64 * 4096),
               "2048-token prefill": (2048, 2048**2, 0, 0)}
    t = {n: {k: iteration_time_ms(get_profile(n).coefficients, *b) for k, b in batches.items()}
         for n in ("llama2-7b-a100", "llama2-7b-h100", "llama3.1-8b-a100", "llama3.1-8b-h100")}
    for k in batches:
        assert t["llama2-7b-h100"][k] < t["llama2-7b-a100"][k], k
        assert t["llama3.1-8b-h100"][k] < t["llama3.1-8b-a100"][k], k
    assert t["llama3.1-8b-a100"]["64 decodes at 4096"] < t["llama2-7b-a100"]["64 decodes at 4096"]
    assert t["llama3.1-8b-a100"]["lone decode"] > t["llama2-7b-a100"]["lone decode"]
    assert t["llama3.1-8b-a100"]["2048-token prefill"] > t["llama2-7b-a100"]["2048-token prefill"]


def test_every_profile_has_a_source():
    for name in profile_names():
        assert get_profile(name).source, name


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError) as err:
        get_profile("nope")
    assert "'nope'" in str(err.value)
    for name in profile_names():
        assert name in str(err.value)


def _valid(**changes):
    fields = dict(
        name="t",
        c0_ms=10.0,
        c1_ms_per_token=0.01,
        c2_ms_per_token_above_knee=0.02,
        knee_tokens=128,
        c3_ms_per_chunk_token_sq=1e-6,
        c4_ms_per_chunk_prior_token=1e-6,
        c5_ms_per_decode_context_token=1e-4,
        kv_capacity_blocks=1000,
        max_model_len=4096,
    )
    fields.update(changes)
    return LatencyProfile(**fields)


COEFFICIENT_FIELDS = [
    "c0_ms",
    "c1_ms_per_token",
    "c2_ms_per_token_above_knee",
    "c3_ms_per_chunk_token_sq",
    "c4_ms_per_chunk_prior_token",
    "c5_ms_per_decode_context_token",
]


@pytest.mark.parametrize("field", COEFFICIENT_FIELDS)
@pytest.mark.parametrize("bad", [float("nan"), -1e-6, float("inf")])
def test_bad_coefficient_is_refused_by_name(field, bad):
    _valid()  # the baseline is fine
    with pytest.raises(ValueError, match=field):
        _valid(**{field: bad})


def test_max_model_len_must_fit_in_kv():
    # as vLLM: the KV cache must hold max_model_len tokens (4096 tokens = 256 blocks of 16); the
    # watermark depends on the scheduler and is checked with the cluster (tests/test_cluster_config.py)
    _valid(kv_capacity_blocks=256)
    with pytest.raises(ValueError, match=r"max_model_len=4096 is larger than the KV cache \(kv_capacity_blocks=255 = 4080"):
        _valid(kv_capacity_blocks=255)
