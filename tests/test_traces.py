"""Trace loaders (Azure 2023, Mooncake, generic CSV), no shipped data, malformed input, replay, and the
synthetic generators fitted to the Azure traces."""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from llm_routing_env import traces as T
from llm_routing_env.workload import Workload

# Other projects' data is not shipped: the real traces are read beside the project, tests skip without them.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOONCAKE = SHARED / "mooncake_fast25"
AZURE = SHARED / "azure_llm_inference_2023"
AZURE_FILES = {"azure-code": AZURE / "AzureLLMInferenceTrace_code.csv",
               "azure-conv": AZURE / "AzureLLMInferenceTrace_conv.csv"}
needs_azure = pytest.mark.skipif(not all(p.is_file() for p in AZURE_FILES.values()),
                                 reason=f"Azure 2023 traces not available at {AZURE}")


@functools.lru_cache(maxsize=None)
def azure(name: str) -> Workload:
    return T.load_trace(AZURE_FILES[name])


# --- the Azure traces (real files) and the package -----------------------------------------------


@needs_azure
@pytest.mark.parametrize(
    "name, rows, duration, rate, mean_prompt, mean_output",
    [
        ("azure-code", 8819, 3435.948056, 2.57, 2048, 28),
        ("azure-conv", 19366, 3501.721937, 5.53, 1155, 211),
    ],
)
def test_azure_traces(name, rows, duration, rate, mean_prompt, mean_output):
    w = azure(name)
    assert len(w) == rows
    assert w.arrival_s[0] == 0.0
    assert w.duration_s == pytest.approx(duration, abs=1e-6)
    assert w.mean_rate_per_s == pytest.approx(rate, abs=0.01)
    assert w.prompt_tokens.mean() == pytest.approx(mean_prompt, rel=0.01)
    assert w.output_tokens.mean() == pytest.approx(mean_output, rel=0.02)
    assert w.task_names == (AZURE_FILES[name].stem,) and w.prefix_hashes is None
    assert T.detect_format(AZURE_FILES[name]) == "azure"


@needs_azure
def test_azure_timestamps_keep_sub_microsecond_precision():
    w = azure("azure-code")
    # 18:17:03.9799600, 18:17:04.0319600, 18:17:04.0781490
    assert w.arrival_s[1] == pytest.approx(0.052, abs=1e-9)
    assert w.arrival_s[2] == pytest.approx(0.098189, abs=1e-9)
    assert w.prompt_tokens[:3].tolist() == [4808, 3180, 110]
    assert w.output_tokens[:3].tolist() == [10, 8, 27]


def test_package_ships_no_data_from_other_projects():
    root = Path(__file__).resolve().parents[1]
    package = root / "llm_routing_env"
    assert not (package / "data").exists()
    shipped = [p for p in package.rglob("*") if p.suffix.lower() in (".csv", ".jsonl", ".gz", ".parquet")]
    assert shipped == []
    assert "package-data" not in (root / "pyproject.toml").read_text()
    assert not hasattr(T, "load_builtin_trace")


def test_missing_trace_names_the_file_and_the_public_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "AzureLLMInferenceTrace_conv.csv"))
                       + ".*github.com/Azure/AzurePublicDataset"):
        T.load_trace(tmp_path / "AzureLLMInferenceTrace_conv.csv")


def test_one_request_is_a_valid_trace(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n7.5,120,30\n")
    w = T.load_trace(f)
    assert len(w) == 1 and w.duration_s == 0.0
    r = T.replay(f, rate_per_s=3.0, max_model_len=4096)
    assert r.workload.arrival_s.tolist() == [0.0] and r.workload.prompt_tokens.tolist() == [120]
    assert r.workload.output_tokens.tolist() == [30] and r.workload.context_fit.clipped_at_context == 0
    az = tmp_path / "one_azure.csv"
    az.write_text(AZ_HEAD + AZ_ROW1)
    assert T.load_trace(az).prompt_tokens.tolist() == [4808]


# --- Mooncake (read from shared data when present) ------------------------------------------------


@pytest.mark.skipif(not MOONCAKE.is_dir(), reason=f"Mooncake traces not available at {MOONCAKE}")
@pytest.mark.parametrize("file, rows, duration", [("conversation_trace.jsonl", 12031, 3536.999),
                                                  ("synthetic_trace.jsonl", 3993, 1022.025)])
def test_mooncake_traces(file, rows, duration):
    w = T.load_trace(MOONCAKE / file)
    assert len(w) == rows
    assert w.duration_s == pytest.approx(duration)
    assert w.prefix_block_tokens == 512
    blocks = np.array([h.size for h in w.prefix_hashes])
    assert np.array_equal(blocks, -(-w.prompt_tokens // 512))
    clipped = w.fit_context(4096, "clip")
    assert clipped.context_fit.clipped_at_context == int(np.sum(w.prompt_tokens + w.output_tokens > 4096))
    assert (clipped.prompt_tokens + clipped.output_tokens <= 4096).all()
    assert all(h.size == -(-p // 512) for h, p in zip(clipped.prefix_hashes, clipped.prompt_tokens))


def test_mooncake_small_file(tmp_path):
    f = tmp_path / "mc.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}\n'
                 '\n'
                 '{"timestamp": 1500, "input_length": 10, "output_length": 3, "hash_ids": [2]}\n')
    w = T.load_trace(f)
    assert w.arrival_s.tolist() == [0.0, 1.5]
    assert [h.tolist() for h in w.prefix_hashes] == [[0, 1], [2]]
    assert w.task_names == ("mc",)


# --- generic CSV -------------------------------------------------------------------------------

PREFIX_HEAD = "arrival_s,prompt_tokens,output_tokens,prefix_blocks\n"


def test_generic_prefix_blocks_column(tmp_path):
    path = tmp_path / "prefixed.csv"
    path.write_text(PREFIX_HEAD + "0.0,40,3,7 12\n0.5,16,2,\n1.0,33,4, 7  13 \n", encoding="utf-8")
    w = T.load_trace(path)
    assert [h.tolist() for h in w.prefix_hashes] == [[7, 12], [], [7, 13]]
    assert w.prefix_block_tokens == 16
    back = T.load_trace(T.save_generic_csv(w, tmp_path / "again.csv"))
    assert [h.tolist() for h in back.prefix_hashes] == [[7, 12], [], [7, 13]]
    assert back.prefix_block_tokens == 16
    assert T.load_trace(T.save_generic_csv(w.subset([0, 2]), tmp_path / "sub.csv")).prefix_hashes[1].tolist() == [7, 13]


def test_generic_csv_without_prefix_column_has_no_prefixes(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,40,3\n", encoding="utf-8")
    w = T.load_trace(path)
    assert w.prefix_hashes is None and w.prefix_block_tokens is None
    assert "prefix_blocks" not in T.save_generic_csv(w, tmp_path / "b.csv").read_text().splitlines()[0]


SESSION_HEAD = "arrival_s,prompt_tokens,output_tokens,session_id\n"


def test_generic_session_id_column_round_trips(tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text(SESSION_HEAD + "0.0,40,3,7\n0.5,16,2,\n1.0,33,4,-1\n1.5,20,1, 7 \n", encoding="utf-8")
    w = T.load_trace(path)
    assert w.session_ids.dtype == np.int64 and w.session_ids.tolist() == [7, -1, -1, 7]
    back = T.load_trace(T.save_generic_csv(w, tmp_path / "again.csv"))
    assert back.session_ids.tolist() == [7, -1, -1, 7]
    assert T.load_trace(T.save_generic_csv(w.subset([1, 3]), tmp_path / "sub.csv")).session_ids.tolist() == [-1, 7]
    plain = tmp_path / "plain.csv"
    plain.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,40,3\n", encoding="utf-8")
    assert T.load_trace(plain).session_ids is None
    assert "session_id" not in T.save_generic_csv(T.load_trace(plain), tmp_path / "p2.csv").read_text()


@pytest.mark.parametrize("bad, msg", [
    ("abc", "'abc' is not a session id"),
    ("-2", "'-2' is not a session id"),
    ("1.5", "'1.5' is not a session id"),
    (str(2**63), f"'{2**63}' does not fit in 63 bits"),
])
def test_malformed_session_id_names_the_line(tmp_path, bad, msg):
    path = tmp_path / "bad.csv"
    path.write_text(SESSION_HEAD + "0.0,40,3,1\n0.5,16,2," + bad + "\n", encoding="utf-8")
    with pytest.raises(T.TraceError, match=r"line 3, column 'session_id': " + re.escape(msg)):
        T.load_trace(path)


def test_saving_other_block_sizes_is_refused(tmp_path):
    w = Workload([0.0], [1024], [3], prefix_hashes=([4, 5],), prefix_block_tokens=512)
    with pytest.raises(ValueError, match="prefixes of 16-token blocks; this workload's are blocks of 512 tokens"):
        T.save_generic_csv(w, tmp_path / "mc.csv")


def test_generic_round_trip(tmp_path):
    from llm_routing_env.mixes import generate

    w = generate(rate_per_s=7.3, n=500, seed=11)
    path = T.save_generic_csv(w, tmp_path / "mine.csv")
    back = T.load_trace(path)
    assert back.arrival_s.tobytes() == w.arrival_s.tobytes()
    assert np.array_equal(back.prompt_tokens, w.prompt_tokens)
    assert np.array_equal(back.output_tokens, w.output_tokens)
    assert [back.task_names[k] for k in back.task] == [w.task_names[k] for k in w.task]
    gz = T.save_generic_csv(w, tmp_path / "mine.csv.gz")
    assert np.array_equal(T.load_trace(gz).prompt_tokens, w.prompt_tokens)


def test_generic_without_task_any_order_extra_columns(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("request_id,output_tokens,arrival_s,prompt_tokens\nr1,5,0.25,100\nr2,7,1.5,20\n\n")
    w = T.load_trace(f)
    assert w.arrival_s.tolist() == [0.25, 1.5]  # times are kept as written
    assert w.prompt_tokens.tolist() == [100, 20] and w.output_tokens.tolist() == [5, 7]
    assert w.task_names == ("log",)
    f2 = tmp_path / "tasks.csv"
    f2.write_text("arrival_s,prompt_tokens,output_tokens,task\n0,1,1,10\n1,1,1,9\n2,1,1,10\n")
    w2 = T.load_trace(f2)
    assert w2.task_names == ("9", "10") and w2.task.tolist() == [1, 0, 1]


def test_format_detection_and_override(tmp_path):
    f = tmp_path / "log.txt"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n")
    assert T.detect_format(f) == "generic"
    with pytest.raises(T.TraceError, match=r"line 1, column 'TIMESTAMP': missing column"):
        T.load_trace(f, format="azure")
    with pytest.raises(ValueError, match="unknown trace format"):
        T.load_trace(f, format="parquet")
    with pytest.raises(FileNotFoundError):
        T.load_trace(tmp_path / "absent.csv")


# --- malformed input: every case names the file, the line and the column --------------------------

GOOD_GENERIC = "arrival_s,prompt_tokens,output_tokens\n0.0,10,5\n0.5,20,6\n1.0,30,7\n"
AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW1 = "2023-11-16 18:17:03.9799600,4808,10\n"
MC_ROW = '{"timestamp": 0, "input_length": 6, "output_length": 5, "hash_ids": [0]}\n'

MALFORMED = [
    # (file name, content, format or None, line, column, message regex)
    ("missing_col.csv", "arrival_s,prompt_tokens\n0,1\n", None, 1, "output_tokens", "missing column"),
    ("missing_col2.csv", "arrival_s,prompt_tokens,task\n0,1,a\n", "generic", 1, "output_tokens", "missing column"),
    ("nonnumeric.csv", GOOD_GENERIC + "1.5,abc,3\n", None, 5, "prompt_tokens", "'abc' is not a number"),
    ("negative.csv", GOOD_GENERIC + "1.5,3,-3\n", None, 5, "output_tokens", "'-3' must be a positive integer"),
    ("zero.csv", GOOD_GENERIC + "1.5,0,3\n", None, 5, "prompt_tokens", "'0' must be a positive integer"),
    ("noninteger.csv", GOOD_GENERIC + "1.5,12.5,3\n", None, 5, "prompt_tokens", "'12.5' is not an integer"),
    ("unsorted.csv", GOOD_GENERIC + "0.7,3,3\n", None, 5, "arrival_s", "earlier than the previous request's 1.0 s"),
    ("missing_ts.csv", "arrival_s,prompt_tokens,output_tokens\n0.0,10,5\n,20,6\n", None, 3, "arrival_s",
     "missing timestamp"),
    ("nan_ts.csv", "arrival_s,prompt_tokens,output_tokens\nnan,10,5\n", None, 2, "arrival_s", "not a finite time"),
    ("neg_ts.csv", "arrival_s,prompt_tokens,output_tokens\n-1,10,5\n", None, 2, "arrival_s", "negative"),
    ("short_row.csv", "arrival_s,prompt_tokens,output_tokens\n0.0,10\n", None, 2, "output_tokens",
     "missing value: the row has 2 field"),
    ("long_row.csv", "arrival_s,prompt_tokens,output_tokens\n0.0,10,5,9\n", None, 2, "#4", "the row has 4 fields"),
    ("empty.csv", "", "generic", 1, "arrival_s", "file is empty"),
    ("blank.csv", "\n\n", "generic", 1, "arrival_s", "file is empty"),
    ("header_only.csv", "arrival_s,prompt_tokens,output_tokens\n", None, 2, "arrival_s", "no requests"),
    ("semicolons.csv", "arrival_s;prompt_tokens;output_tokens\n0;1;1\n", None, 1, "arrival_s", "uses ';' as delimiter"),
    ("tabs.csv", "arrival_s\tprompt_tokens\toutput_tokens\n0\t1\t1\n", None, 1, "arrival_s", "uses a tab as delimiter"),
    ("semicolons_forced.csv", "arrival_s;prompt_tokens;output_tokens\n0;1;1\n", "generic", 1, "arrival_s",
     "missing column.*uses ';' as delimiter"),
    ("semicolon_row.csv", GOOD_GENERIC + "1.5;3;3\n", None, 5, "prompt_tokens",
     "missing value.*uses ';' as delimiter"),
    ("unknown_header.csv", "time,in,out\n0,1,1\n", None, 1, "time", "unknown header"),
    ("prefix_word.csv", PREFIX_HEAD + "0.0,40,3,1 2\n1.0,40,3,1 x\n", None, 3, "prefix_blocks",
     "block id #2 'x' is not a non-negative integer"),
    ("prefix_negative.csv", PREFIX_HEAD + "0.0,40,3,-1\n", None, 2, "prefix_blocks",
     "block id #1 '-1' is not a non-negative integer"),
    ("prefix_comma.csv", PREFIX_HEAD + '0.0,40,3,"1,2"\n', None, 2, "prefix_blocks",
     "block id #1 '1,2' is not a non-negative integer .ids are separated by spaces"),
    ("prefix_huge.csv", PREFIX_HEAD + f"0.0,40,3,{2**63}\n", None, 2, "prefix_blocks", "does not fit in 63 bits"),
    ("prefix_too_many.csv", PREFIX_HEAD + "0.0,47,3,5 6 7\n", None, 2, "prefix_blocks",
     "3 block ids for a prompt of 47 tokens, which has only 2 full blocks of 16 tokens"),
    # Azure
    ("az_bad_ts.csv", AZ_HEAD + AZ_ROW1 + "2023-13-16 18:17:04.0,1,1\n", None, 3, "TIMESTAMP", "not a valid datetime"),
    ("az_garbage_ts.csv", AZ_HEAD + AZ_ROW1 + "yesterday,1,1\n", None, 3, "TIMESTAMP", "not a datetime"),
    ("az_missing_ts.csv", AZ_HEAD + AZ_ROW1 + ",1,1\n", None, 3, "TIMESTAMP", "missing timestamp"),
    ("az_unsorted.csv", AZ_HEAD + AZ_ROW1 + "2023-11-16 18:17:03.9,1,1\n", None, 3, "TIMESTAMP",
     "earlier than the previous request's"),
    ("az_nonnumeric.csv", AZ_HEAD + AZ_ROW1 + "2023-11-16 18:17:04.1,x,1\n", None, 3, "ContextTokens", "not a number"),
    ("az_negative.csv", AZ_HEAD + AZ_ROW1 + "2023-11-16 18:17:04.1,4,-1\n", None, 3, "GeneratedTokens",
     "positive integer"),
    ("az_missing_col.csv", "TIMESTAMP,ContextTokens\n" + "2023-11-16 18:17:04.1,4\n", "azure", 1, "GeneratedTokens",
     "missing column"),
    ("az_semicolons.csv", "TIMESTAMP;ContextTokens;GeneratedTokens\n2023-11-16 18:17:04.1;4;1\n", None, 1,
     "TIMESTAMP", "uses ';' as delimiter"),
    ("az_empty.csv", "", "azure", 1, "TIMESTAMP", "file is empty"),
    # Mooncake
    ("mc_json.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 6\n', None, 2, "char 35", "invalid JSON"),
    ("mc_missing.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 6}\n', None, 2, "output_length", "missing key"),
    ("mc_negative.jsonl", MC_ROW + '{"timestamp": 1, "input_length": -6, "output_length": 1}\n', None, 2,
     "input_length", "positive integer"),
    ("mc_noninteger.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 6.5, "output_length": 1}\n', None, 2,
     "input_length", "not an integer"),
    ("mc_string.jsonl", MC_ROW + '{"timestamp": 1, "input_length": "6", "output_length": 1}\n', None, 2,
     "input_length", "not a number"),
    ("mc_unsorted.jsonl", '{"timestamp": 5, "input_length": 6, "output_length": 5}\n' + MC_ROW, None, 2,
     "timestamp", "earlier than the previous request's 5.0 ms"),
    ("mc_missing_ts.jsonl", MC_ROW + '{"timestamp": null, "input_length": 6, "output_length": 1}\n', None, 2,
     "timestamp", "not a number of milliseconds"),
    ("mc_hashes.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 6, "output_length": 1, "hash_ids": "x"}\n', None,
     2, "hash_ids", "list of integers"),
    ("mc_empty.jsonl", "", None, 1, "timestamp", "file is empty"),
]


@pytest.mark.parametrize("fname, content, fmt, line, column, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_raises_trace_error(tmp_path, fname, content, fmt, line, column, message):
    path = tmp_path / fname
    path.write_text(content, encoding="utf-8")
    pattern = re.escape(f"{path}: line {line}, column {column!r}: ") + ".*" + message
    with pytest.raises(T.TraceError, match=pattern) as info:
        T.load_trace(path, format=fmt)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.path, err.line, err.column) == (str(path), line, column)


def test_binary_file_is_a_trace_error(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(T.TraceError, match=re.escape(f"{path}: line 1, column 'byte 1': not UTF-8")):
        T.load_trace(path)
    later = tmp_path / "later.csv"
    later.write_bytes(GOOD_GENERIC.encode() + b"1.5,3,\xe9\n")
    with pytest.raises(T.TraceError, match=re.escape(f"{later}: line 5, column 'byte 7': not UTF-8")):
        T.load_trace(later)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(T.TraceError, match=re.escape(f"{empty}: line 1, column 'header': file is empty")):
        T.load_trace(empty)
    badgz = tmp_path / "bad.csv.gz"
    badgz.write_bytes(b"not gzip at all")
    with pytest.raises(T.TraceError, match=re.escape(f"{badgz}: line 1, column 'file': cannot be read")):
        T.load_trace(badgz)


# --- replay ------------------------------------------------------------------------------------


@needs_azure
def test_replay_rate_scaling():
    r = T.replay(AZURE_FILES["azure-conv"], rate_per_s=20.0)
    assert len(r.workload) == 19366 and r.source_requests == 19366
    assert r.workload.mean_rate_per_s == pytest.approx(20.0, rel=1e-12)
    src = azure("azure-conv")
    assert np.allclose(r.workload.arrival_s, src.arrival_s * r.time_scale)
    assert r.time_scale == pytest.approx(src.mean_rate_per_s / 20.0)
    # order, contents and burstiness (gap CV) are kept
    assert np.array_equal(r.workload.prompt_tokens, src.prompt_tokens)
    cv = lambda t: np.diff(t).std() / np.diff(t).mean()  # noqa: E731
    assert cv(r.workload.arrival_s) == pytest.approx(cv(src.arrival_s), rel=1e-9)


@needs_azure
def test_replay_windows():
    src = azure("azure-code")
    r = T.replay(src, start_s=600.0, duration_s=300.0)
    inside = (src.arrival_s >= 600.0) & (src.arrival_s < 900.0)
    assert len(r.workload) == int(inside.sum()) > 0
    assert r.workload.arrival_s[0] == 0.0 and r.workload.arrival_s[-1] < 300.0
    assert np.array_equal(r.workload.prompt_tokens, src.prompt_tokens[inside])
    r2 = T.replay(src, count=2000)
    assert len(r2.workload) == 2000 and np.array_equal(r2.workload.output_tokens, src.output_tokens[:2000])
    r3 = T.replay(src, start_s=600.0, duration_s=300.0, count=10, shift_to_zero=False)
    assert len(r3.workload) == 10 and r3.workload.arrival_s[0] >= 600.0
    with pytest.raises(ValueError, match="selects no request"):
        T.replay(src, start_s=1e6, duration_s=10.0)


@needs_azure
def test_replay_fits_the_context():
    src = azure("azure-conv")
    for L in (2048, 4096):
        refused = int(np.sum(src.prompt_tokens >= L))
        cut = int(np.sum((src.prompt_tokens < L) & (src.prompt_tokens + src.output_tokens > L)))
        fit = T.replay(src, max_model_len=L).workload.context_fit
        assert (fit.rejected_overlong, fit.clipped_at_context) == (refused, cut) and refused > 0 and cut > 0
        w = T.replay(src, max_model_len=L, overlong="clip").workload
        assert w.context_fit.clipped_at_context == refused + cut and len(w) == len(src)
        assert (w.prompt_tokens + w.output_tokens <= L).all()
        assert (w.output_tokens >= 1).all() and (w.prompt_tokens <= L - 1).all()
    with pytest.raises(ValueError, match="max_model_len=4096"):
        T.replay(src, max_model_len="llama2-7b-v100", overlong="error")


def test_replay_from_a_path(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n10,5000,5\n11,10,10\n13,10,10\n")
    r = T.replay(f, rate_per_s=2.0, max_model_len=4096, overlong="clip")
    assert r.workload.arrival_s.tolist() == pytest.approx([0.0, 1 / 3, 1.0])  # 10, 11, 13 s at 2 req/s
    assert r.workload.context_fit.clipped_at_context == 1 and r.workload.prompt_tokens[0] == 4095
    assert isinstance(r.workload, Workload)


def test_gzip_trace(tmp_path):
    f = tmp_path / "az.csv.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        g.write(AZ_HEAD + AZ_ROW1 + "2023-11-16 18:17:05.0,3,4\n")
    w = T.load_trace(f)
    assert w.arrival_s[1] == pytest.approx(1.02004, abs=1e-9)


# --- the synthetic generators fitted to the Azure traces -------------------------------------------

from llm_routing_env import fitted_traces as F  # noqa: E402
from llm_routing_env.arrivals import interarrival_cv  # noqa: E402

STAT_SAMPLE = 50_000  # synthetic requests compared with each real trace


@needs_azure
@pytest.mark.parametrize("name", ["azure-code", "azure-conv"])
def test_fitted_generator_matches_the_real_trace(name):
    """Mean within 3 %, p50 / p90 / p99 within 5 % (or 1 token), for prompt and output; the rate
    exactly; the inter-arrival CV within 15 % (code's gaps are heavy-tailed: CV 13)."""
    real, gen = azure(name), F.get_fitted_trace(name)
    syn = gen.generate(n=STAT_SAMPLE, seed=0)
    assert syn.mean_rate_per_s == pytest.approx(real.mean_rate_per_s, rel=1e-9)
    assert gen.rate_per_s == pytest.approx(real.mean_rate_per_s, rel=1e-6)
    assert interarrival_cv(syn.arrival_s) == pytest.approx(interarrival_cv(real.arrival_s), rel=0.15)
    for field in ("prompt_tokens", "output_tokens"):
        a, b = getattr(real, field), getattr(syn, field)
        assert b.mean() == pytest.approx(a.mean(), rel=0.03), field
        for q in (0.5, 0.9, 0.99):
            qa, qb = np.quantile(a, q), np.quantile(b, q)
            assert abs(qb - qa) <= max(0.05 * qa, 1.0), (field, q, qa, qb)


@needs_azure
@pytest.mark.parametrize("name", ["azure-code", "azure-conv"])
def test_shipped_parameters_are_re_derived_from_the_trace(name):
    fit = F.fit_trace(azure(name), name, F.get_fitted_trace(name).source)
    shipped = F.get_fitted_trace(name)
    for key in ("requests", "duration_s", "interarrival_cv", "prompt_output_spearman", "gap_quantiles",
                "prompt_quantiles", "output_quantiles"):
        assert getattr(fit, key) == getattr(shipped, key), key
    assert abs(shipped.prompt_output_spearman) < 0.1  # why prompt and output are drawn independently


def test_fit_trace_tool_prints_the_parameters(tmp_path):
    import subprocess
    import sys

    w = F.get_fitted_trace("azure-conv").generate(n=300, seed=4)
    path = T.save_generic_csv(w, tmp_path / "mine.csv")
    tool = Path(__file__).resolve().parents[1] / "tools" / "fit_trace_generator.py"
    out = subprocess.run([sys.executable, str(tool), str(path)], capture_output=True, text=True, check=True).stdout
    assert "FittedTrace(" in out and "name='mine'" in out and "requests=300" in out
    assert "inter-arrival CV" in out
    missing = subprocess.run([sys.executable, str(tool), str(tmp_path / "absent.csv")], capture_output=True, text=True)
    assert missing.returncode == 2 and "absent.csv" in missing.stderr and "AzurePublicDataset" in missing.stderr


def test_fitted_generator_is_seeded_and_keeps_its_horizon():
    gen = F.get_fitted_trace("azure-code")
    a, b, c = (gen.generate(n=500, rate_per_s=12.0, seed=s) for s in (3, 3, 4))
    assert a.arrival_s.tobytes() == b.arrival_s.tobytes() and np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert not np.array_equal(a.prompt_tokens, c.prompt_tokens)
    assert len(a) == 500 and a.arrival_s[0] == 0.0 and a.mean_rate_per_s == pytest.approx(12.0, rel=1e-12)
    assert a.task_names == ("azure-code",) and (a.prompt_tokens >= 1).all() and (a.output_tokens >= 1).all()
    d = F.get_fitted_trace("azure-conv").generate(duration_s=300.0, rate_per_s=10.0, seed=1)
    assert d.arrival_s[-1] < 300.0 and 2000 < len(d) < 4000  # ~3,000 expected
    one = gen.generate(n=1, seed=0)
    assert len(one) == 1 and one.arrival_s.tolist() == [0.0]
    with pytest.raises(ValueError, match="finite horizon"):
        gen.generate(seed=0)
    with pytest.raises(ValueError, match="unknown fitted trace 'azure-2024'; known: azure-code, azure-conv"):
        F.get_fitted_trace("azure-2024")


def test_fitted_trace_refuses_a_bad_table():
    import dataclasses

    good = F.get_fitted_trace("azure-conv")
    with pytest.raises(ValueError, match="prompt_quantiles needs 109 quantiles"):
        dataclasses.replace(good, prompt_quantiles=(1.0, 2.0))
    with pytest.raises(ValueError, match="output_quantiles must be finite and non-decreasing"):
        dataclasses.replace(good, output_quantiles=tuple(reversed(good.output_quantiles)))


def test_mooncake_blocks_split_into_kv_blocks(tmp_path):
    """Each 512-token hash h becomes the 16-token blocks 32 h + j; chains agree exactly where the
    512-token chains agree; a partial last block keeps only the full 16-token blocks the prompt covers."""
    f = tmp_path / "mc.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 1100, "output_length": 2, "hash_ids": [0, 1, 2]}\n'
                 '{"timestamp": 5000, "input_length": 1536, "output_length": 2, "hash_ids": [0, 1, 3]}\n'
                 '{"timestamp": 9000, "input_length": 600, "output_length": 2, "hash_ids": [5, 6]}\n'
                 '{"timestamp": 9000, "input_length": 15, "output_length": 2, "hash_ids": [7]}\n')
    w = T.load_trace(f)
    k = w.with_kv_blocks()
    assert k.prefix_block_tokens == 16 and w.prefix_block_tokens == 512
    a, b, c, d = (h.tolist() for h in k.prefix_hashes)
    assert a == list(range(64)) + [64, 65, 66, 67]  # 1100 tokens: 68 full blocks, 4 of them in hash 2
    assert b == list(range(64)) + list(range(96, 128))
    assert c == list(range(160, 192)) + [192, 193, 194, 195, 196]  # 600 // 16 = 37
    assert d == []  # 15 tokens: no full block
    assert k.with_kv_blocks() is k and Workload([0.0], [5], [1]).with_kv_blocks().prefix_hashes is None
    assert np.array_equal(k.prompt_tokens, w.prompt_tokens) and np.array_equal(k.arrival_s, w.arrival_s)
    fitted = w.fit_context(1200)
    assert fitted.with_kv_blocks().context_fit is fitted.context_fit  # the same requests
    assert w.repeated_prefix_fraction() == pytest.approx(2 / 9)  # 0 and 1 again, of 3 + 3 + 2 + 1
    assert k.repeated_prefix_fraction() == pytest.approx(64 / (68 + 96 + 37))


def test_kv_block_mapping_errors():
    with pytest.raises(ValueError, match="prefix blocks of 40 tokens cannot be split into KV-cache blocks of 16"):
        Workload([0.0], [100], [1], prefix_hashes=([1],), prefix_block_tokens=40).with_kv_blocks()
    with pytest.raises(ValueError, match=r"prefix_hashes\[1\]\[0\] = -3: ids must lie in 0\.\."):
        Workload([0.0, 1.0], [600, 600], [1, 1], prefix_hashes=([1], [-3]), prefix_block_tokens=512).with_kv_blocks()
    with pytest.raises(ValueError, match=r"prefix_hashes\[0\]\[1\] = 9223372036854775807: ids must lie in"):
        Workload([0.0], [1100], [1], prefix_hashes=([1, 2**63 - 1],), prefix_block_tokens=512).with_kv_blocks()


def test_generic_chains_count_as_repeats_only_with_the_same_parents():
    w = Workload([0.0, 1.0, 2.0], [64, 64, 64], [1, 1, 1], prefix_hashes=([7, 12], [8, 12], [7, 12, 3]),
                 prefix_block_tokens=16)
    assert w.repeated_prefix_fraction() == pytest.approx(2 / 7)  # request 2's 7 and 7-12; 8-12 is new
    assert Workload([0.0], [5], [1]).repeated_prefix_fraction() == 0.0


@pytest.mark.skipif(not (MOONCAKE / "conversation_trace.jsonl").exists(), reason="Mooncake traces not available")
def test_mooncake_conversation_repeat_fractions():
    """The published measure: 36.6% of the conversation trace's 512-token blocks repeat an earlier
    request's (37.4% token-weighted); split into 16-token blocks, the repeats are the token-weighted share."""
    w = T.load_trace(MOONCAKE / "conversation_trace.jsonl")
    assert w.repeated_prefix_fraction() == pytest.approx(0.366, abs=0.0005)
    k = w.with_kv_blocks()
    ids = np.concatenate(k.prefix_hashes)  # Mooncake ids name whole chains, so do the split ones
    assert ids.size == int((k.prompt_tokens // 16).sum())
    assert 1 - np.unique(ids).size / ids.size == pytest.approx(0.374, abs=0.0005)
