"""Shipped latency profiles: their coefficients reproduce their source tables, and bad profiles are refused.

The table loaders here are written again on purpose (not imported from tools/fit_profiles.py), so
that a mistake in the fitting script's row mapping cannot hide itself.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

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


# (profile, rows, MAPE bound in %). llama2-7b-a100: the target of the fit (Vidur's own reference
# fit reaches 7.8%; ours 6.49%). The 70B profiles: the measured MAPE (4.61%, 3.38%) plus one point,
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


def test_memory_derivations():
    # 70B on 4 GPUs: 4 x 80 GB x 0.9 - 2 B x 70e9, at 320 KiB per token (80 layers x 8 KV heads x 128 x 2 x 2 B)
    assert 80 * 8 * 128 * 2 * 2 == 320 * 1024
    blocks_70b = math.floor((4 * 80e9 * 0.9 - 2 * 70e9) / (320 * 1024)) // 16
    assert get_profile("llama2-70b-a100-tp4").kv_capacity_blocks == blocks_70b == 28228
    assert get_profile("llama2-70b-h100-tp4").kv_capacity_blocks == blocks_70b
    # Llama-3.1-8B: 80 GB x 0.9 - 16.06 GB, at 128 KiB per token (32 layers x 8 KV heads x 128 x 2 x 2 B)
    p8 = get_profile("llama3.1-8b-a100")
    assert p8.kv_capacity_blocks == math.floor((80e9 * 0.9 - 16.06e9) / (128 * 1024)) // 16
    assert p8.max_model_len == 8192 <= p8.max_num_batched_tokens


def test_llama31_8b_is_scaled_from_llama2_7b():
    p7, p8 = get_profile("llama2-7b-a100"), get_profile("llama3.1-8b-a100")
    ratio = 7_504_658_432 / 6_607_077_376  # matmul parameters incl. LM head, from the architectures
    assert p8.c1_ms_per_token == pytest.approx(p7.c1_ms_per_token * ratio, rel=1e-3)
    assert p8.c2_ms_per_token_above_knee == pytest.approx(p7.c2_ms_per_token_above_knee * ratio, rel=1e-3)
    assert p8.c5_ms_per_decode_context_token == pytest.approx(p7.c5_ms_per_decode_context_token / 4, rel=1e-3)
    weights = 8_030_261_248 / 6_738_415_616  # all parameters (weight bytes), from the architectures
    assert p8.c0_ms == pytest.approx(p7.c0_ms * weights, rel=1e-3)
    same = ("knee_tokens", "c3_ms_per_chunk_token_sq", "c4_ms_per_chunk_prior_token")
    assert all(getattr(p8, a) == getattr(p7, a) for a in same)
    assert math.isnan(p8.fit_mape_pct)


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
