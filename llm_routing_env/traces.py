"""Request traces: loaders (Azure 2023, Mooncake FAST'25, a generic CSV) and replay (windows, rate
scaling; fitting to the model's context is ``Workload.fit_context``).

No trace ships with the package (other projects' data is not ours to redistribute): give the path
of a file you downloaded, e.g. the Azure LLM inference traces 2023 (CC-BY-4.0),
``AzureLLMInferenceTrace_code.csv`` and ``AzureLLMInferenceTrace_conv.csv`` from
github.com/Azure/AzurePublicDataset (``data/``). The built-in scenarios ``azure-code`` and
``azure-conv`` use synthetic generators fitted to those files instead
(:mod:`llm_routing_env.fitted_traces`).

Formats (auto-detected from the extension and the first line; ``format=`` overrides):

* ``"azure"``: the Azure LLM inference trace 2023 (Splitwise), CSV with header
  ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` is a wall-clock datetime such as
  ``2023-11-16 18:17:03.9799600`` (any number of fractional digits), converted to seconds since
  the first request.
* ``"mooncake"``: the Mooncake FAST'25 JSONL, one object per line with ``timestamp`` (ms from the
  trace start), ``input_length``, ``output_length`` and ``hash_ids`` (prefix-block hashes of 512
  tokens; optional). Times become seconds (``timestamp / 1000``).
* ``"generic"``: a CSV that users write from their own logs, header
  ``arrival_s,prompt_tokens,output_tokens``, an optional ``task`` column (any strings; the
  task names are sorted, numerically if they are all integers) and an optional ``prefix_blocks``
  column: the request's prompt prefix as block ids separated by spaces (``"7 12 40"``), one id per
  full block of ``KV_BLOCK_TOKENS`` (16) prompt tokens from the start, empty for none; requests
  whose first ``k`` ids are equal share their first ``16 k`` prompt tokens (see
  ``docs/workloads.md``), and an optional ``session_id`` column: the chat session the request
  belongs to (an integer >= 0, what an ``x-session-id`` header carries; empty or ``-1`` for
  none). Columns may come in any order; other columns are ignored.
  :func:`save_generic_csv` writes this format.

A ``.gz`` suffix is read through gzip. Malformed input never loads partially: it raises
:class:`TraceError` (a ``ValueError``) whose message names the file, the line and the column,
e.g. ``trace.csv: line 7, column 'prompt_tokens': '-3' must be a positive integer``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .profiles import KV_BLOCK_TOKENS
from .workload import Workload

__all__ = [
    "TraceError",
    "TRACE_FORMATS",
    "detect_format",
    "load_trace",
    "load_azure_trace",
    "load_mooncake_trace",
    "load_generic_csv",
    "save_generic_csv",
    "AZURE_TRACE_HINT",
    "Replay",
    "replay",
]

TRACE_FORMATS = ("azure", "mooncake", "generic")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
GENERIC_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
PREFIX_COLUMN = "prefix_blocks"  # optional generic column: the prompt's prefix as 16-token block ids
SESSION_COLUMN = "session_id"  # optional generic column: the request's chat session (-1 / empty: none)
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
MOONCAKE_BLOCK_TOKENS = 512
AZURE_TRACE_HINT = ("the Azure LLM inference traces 2023 are AzureLLMInferenceTrace_code.csv and "
                    "AzureLLMInferenceTrace_conv.csv from github.com/Azure/AzurePublicDataset (data/)")


class TraceError(ValueError):
    """Malformed trace input; ``path``, ``line`` (1-based) and ``column`` say where."""

    def __init__(self, path, line: int, column, message: str):
        self.path = str(path)
        self.line = int(line)
        self.column = column
        super().__init__(f"{self.path}: line {self.line}, column {column!r}: {message}")


# --- reading helpers ----------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The whole file as text (gzip-aware, UTF-8 with optional BOM); TraceError if unreadable."""
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as exc:
        raise TraceError(path, 1, "file", f"cannot be read: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TraceError(path, line, f"byte {col}", f"not UTF-8 text ({exc.reason})") from None


def _base_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix.lower() == ".gz" else path.suffix.lower()


def _trace_stem(path: Path) -> str:
    name = path.name
    for suf in (".gz", ".csv", ".jsonl", ".json"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    return name or "trace"


def _first_line(path: Path) -> str:
    for line in _read_text(path).split("\n"):
        if line.strip():
            return line.rstrip("\r")
    return ""


def _delimiter_hint(text: str) -> str:
    for d, nm in ((";", "';'"), ("\t", "a tab"), ("|", "'|'")):
        if d in text and "," not in text:
            return f" (the line uses {nm} as delimiter; expected ',')"
    return ""


def _parse_positive_int(path, line, column, text: str) -> int:
    s = text.strip()
    if not s:
        raise TraceError(path, line, column, "missing value")
    try:
        v = int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            raise TraceError(path, line, column, f"{text!r} is not a number") from None
        if not math.isfinite(f) or f != math.floor(f):
            raise TraceError(path, line, column, f"{text!r} is not an integer token count") from None
        v = int(f)
    if v < 1:
        raise TraceError(path, line, column, f"{text!r} must be a positive integer (>= 1)")
    return v


def _parse_seconds(path, line, column, text: str) -> float:
    s = text.strip()
    if not s:
        raise TraceError(path, line, column, "missing timestamp")
    try:
        v = float(s)
    except ValueError:
        raise TraceError(path, line, column, f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v):
        raise TraceError(path, line, column, f"{text!r} is not a finite time")
    if v < 0:
        raise TraceError(path, line, column, f"{text!r} is negative")
    return v


def _check_sorted(path, lines, values, column, unit: str = "") -> None:
    values = np.asarray(values)
    if values.size > 1:
        bad = values[1:] < values[:-1]
        if bad.any():
            i = int(np.flatnonzero(bad)[0]) + 1
            raise TraceError(
                path, lines[i], column,
                f"time {values[i].item()!r}{unit} is earlier than the previous request's {values[i - 1].item()!r}{unit} "
                f"(line {lines[i - 1]}); a trace must be sorted by arrival",
            )


def _read_csv(path: Path, expected: tuple[str, ...], fmt: str):
    """Header and rows of a CSV as ``(header, [(line, fields), ...])``; checks shape errors."""
    rows = []
    header = None
    header_line = 1
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        for fields in reader:
            if not fields or all(not x.strip() for x in fields):
                continue
            if header is None:
                header = [h.strip() for h in fields]
                header_line = reader.line_num
                continue
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise TraceError(path, reader.line_num, "row", f"CSV syntax error: {exc}") from None
    if header is None:
        raise TraceError(path, 1, expected[0], f"file is empty; expected a header {','.join(expected)} ({fmt} format)")
    dup = [h for h in header if header.count(h) > 1]
    if dup:
        raise TraceError(path, header_line, dup[0], "column appears twice in the header")
    missing = [c for c in expected if c not in header]
    if missing:
        hint = _delimiter_hint(",".join(header)) if len(header) == 1 else ""
        raise TraceError(
            path, header_line, missing[0],
            f"missing column; the header is {','.join(header)!r}, the {fmt} format needs {','.join(expected)}{hint}",
        )
    if not rows:
        raise TraceError(path, header_line + 1, expected[0], "no requests after the header")
    width = len(header)
    for line, fields in rows:
        if len(fields) < width:
            hint = _delimiter_hint(",".join(fields)) if len(fields) == 1 else ""
            raise TraceError(
                path, line, header[len(fields)],
                f"missing value: the row has {len(fields)} field(s), the header {width}{hint}",
            )
        if len(fields) > width:
            raise TraceError(path, line, f"#{width + 1}", f"the row has {len(fields)} fields, the header only {width}")
    return header, header_line, rows


# --- Azure -------------------------------------------------------------------------------------

_AZURE_TS = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*$")


def _parse_azure_timestamp(path, line, text: str) -> tuple[int, float]:
    if not text.strip():
        raise TraceError(path, line, "TIMESTAMP", "missing timestamp")
    m = _AZURE_TS.match(text)
    if not m:
        raise TraceError(path, line, "TIMESTAMP", f"{text!r} is not a datetime like '2023-11-16 18:17:03.9799600'")
    y, mo, d, hh, mm, ss, frac = m.groups()
    try:
        day = datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss)).toordinal()
    except ValueError as exc:
        raise TraceError(path, line, "TIMESTAMP", f"{text!r} is not a valid datetime ({exc})") from None
    whole = day * 86400 + int(hh) * 3600 + int(mm) * 60 + int(ss)
    return whole, (int(frac) / 10 ** len(frac) if frac else 0.0)


def load_azure_trace(path, task_name: str | None = None) -> Workload:
    """The Azure LLM inference trace 2023 format (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    path = Path(path)
    header, _, rows = _read_csv(path, AZURE_COLUMNS, "azure")
    return _azure_from_rows(path, header, rows, task_name)


def _azure_from_rows(path: Path, header, rows, task_name) -> Workload:
    ci = {c: header.index(c) for c in AZURE_COLUMNS}
    n = len(rows)
    whole = np.empty(n, dtype=np.int64)
    frac = np.empty(n, dtype=np.float64)
    prompt = np.empty(n, dtype=np.int64)
    output = np.empty(n, dtype=np.int64)
    lines = [0] * n
    for i, (line, fields) in enumerate(rows):
        lines[i] = line
        whole[i], frac[i] = _parse_azure_timestamp(path, line, fields[ci["TIMESTAMP"]])
        prompt[i] = _parse_positive_int(path, line, "ContextTokens", fields[ci["ContextTokens"]])
        output[i] = _parse_positive_int(path, line, "GeneratedTokens", fields[ci["GeneratedTokens"]])
    # sortedness on the exact (whole, frac) pair
    if n > 1:
        bad = (whole[1:] < whole[:-1]) | ((whole[1:] == whole[:-1]) & (frac[1:] < frac[:-1]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0]) + 1
            raise TraceError(
                path, lines[i], "TIMESTAMP",
                f"{rows[i][1][ci['TIMESTAMP']]!r} is earlier than the previous request's "
                f"{rows[i - 1][1][ci['TIMESTAMP']]!r} (line {lines[i - 1]}); a trace must be sorted by arrival",
            )
    arrival = (whole - whole[0]).astype(np.float64) + (frac - frac[0])
    arrival = np.maximum.accumulate(np.maximum(arrival, 0.0))  # guard float rounding at equal stamps
    return Workload(arrival, prompt, output, None, (task_name or _trace_stem(path),), name=str(path))


# --- generic CSV -------------------------------------------------------------------------------


def _task_sort_key(names):
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


def load_generic_csv(path, task_name: str | None = None) -> Workload:
    """The generic ``arrival_s,prompt_tokens,output_tokens[,task][,prefix_blocks][,session_id]`` CSV."""
    path = Path(path)
    header, _, rows = _read_csv(path, GENERIC_COLUMNS, "generic")
    return _generic_from_rows(path, header, rows, task_name)


def _generic_from_rows(path: Path, header, rows, task_name) -> Workload:
    ci = {c: header.index(c) for c in GENERIC_COLUMNS}
    ti = header.index("task") if "task" in header else None
    pi = header.index(PREFIX_COLUMN) if PREFIX_COLUMN in header else None
    prefixes = [] if pi is not None else None
    si = header.index(SESSION_COLUMN) if SESSION_COLUMN in header else None
    n = len(rows)
    sessions = np.full(n, -1, dtype=np.int64) if si is not None else None
    arrival = np.empty(n, dtype=np.float64)
    prompt = np.empty(n, dtype=np.int64)
    output = np.empty(n, dtype=np.int64)
    labels = []
    lines = [0] * n
    for i, (line, fields) in enumerate(rows):
        lines[i] = line
        arrival[i] = _parse_seconds(path, line, "arrival_s", fields[ci["arrival_s"]])
        prompt[i] = _parse_positive_int(path, line, "prompt_tokens", fields[ci["prompt_tokens"]])
        output[i] = _parse_positive_int(path, line, "output_tokens", fields[ci["output_tokens"]])
        if ti is not None:
            label = fields[ti].strip()
            if not label:
                raise TraceError(path, line, "task", "missing task name")
            labels.append(label)
        if pi is not None:
            prefixes.append(_parse_prefix_blocks(path, line, fields[pi], int(prompt[i])))
        if si is not None:
            sessions[i] = _parse_session_id(path, line, fields[si])
    _check_sorted(path, lines, arrival, "arrival_s", " s")
    if ti is None:
        names = (task_name or _trace_stem(path),)
        task = None
    else:
        names = tuple(_task_sort_key(set(labels)))
        index = {s: k for k, s in enumerate(names)}
        task = np.fromiter((index[s] for s in labels), dtype=np.int64, count=n)
    return Workload(arrival, prompt, output, task, names, name=str(path),
                    prefix_hashes=None if prefixes is None else tuple(prefixes),
                    prefix_block_tokens=None if prefixes is None else KV_BLOCK_TOKENS, session_ids=sessions)


_MAX_BLOCK_ID = 2**63 - 1


def _parse_prefix_blocks(path, line, text: str, prompt_tokens: int) -> np.ndarray:
    """The ``prefix_blocks`` field: block ids (integers in 0..2**63-1) separated by spaces; at
    most one per full 16-token block of the prompt."""
    ids = [_parse_id(path, line, PREFIX_COLUMN, word, f"block id #{k + 1} {word!r}",
                     "a non-negative integer (ids are separated by spaces)")
           for k, word in enumerate(text.split())]
    full_blocks = prompt_tokens // KV_BLOCK_TOKENS
    if len(ids) > full_blocks:
        raise TraceError(path, line, PREFIX_COLUMN,
                         f"{len(ids)} block ids for a prompt of {prompt_tokens} tokens, which has only {full_blocks} "
                         f"full blocks of {KV_BLOCK_TOKENS} tokens (one id per full block)")
    return np.asarray(ids, dtype=np.int64)


def _parse_session_id(path, line, text: str) -> int:
    """The ``session_id`` field: an integer in 0..2**63-1, or empty / ``-1`` for no session."""
    s = text.strip()
    if not s or s == "-1":
        return -1
    return _parse_id(path, line, SESSION_COLUMN, s, f"{text!r}", "a session id (a non-negative integer; empty or -1 "
                     "for none)")


def _parse_id(path, line, column: str, word: str, named: str, expected: str) -> int:
    """An id field: an integer in 0..2**63-1 (errors say ``named is not expected`` or that it
    does not fit)."""
    if not re.fullmatch(r"\d+", word):
        raise TraceError(path, line, column, f"{named} is not {expected}")
    v = int(word)
    if v > _MAX_BLOCK_ID:
        raise TraceError(path, line, column, f"{named} does not fit in 63 bits")
    return v


def save_generic_csv(workload: Workload, path) -> Path:
    """Write ``workload`` in the generic CSV format (times round-trip exactly; the task column is
    the task name). Prefix block ids of 16-token blocks are written in the ``prefix_blocks``
    column; other block sizes (Mooncake's 512-token hashes) cannot be: ValueError. Session ids go
    to the ``session_id`` column (empty for none)."""
    hashes = workload.prefix_hashes
    if hashes is not None and workload.prefix_block_tokens != KV_BLOCK_TOKENS:
        raise ValueError(f"the generic CSV holds prefixes of {KV_BLOCK_TOKENS}-token blocks; this workload's are "
                         f"blocks of {workload.prefix_block_tokens} tokens")
    path = Path(path)
    opener = (lambda: gzip.open(path, "wt", encoding="utf-8", newline="")) if path.suffix.lower() == ".gz" \
        else (lambda: open(path, "w", encoding="utf-8", newline=""))
    with opener() as f:
        w = csv.writer(f, lineterminator="\n")
        sessions = None if workload.session_ids is None else workload.session_ids.tolist()
        w.writerow(GENERIC_COLUMNS + ("task",) + ((PREFIX_COLUMN,) if hashes is not None else ())
                   + ((SESSION_COLUMN,) if sessions is not None else ()))
        for i, (t, p, o, k) in enumerate(zip(workload.arrival_s.tolist(), workload.prompt_tokens.tolist(),
                                             workload.output_tokens.tolist(), workload.task.tolist())):
            prefix = () if hashes is None else (" ".join(str(b) for b in hashes[i].tolist()),)
            session = () if sessions is None else ("" if sessions[i] < 0 else str(sessions[i]),)
            w.writerow((repr(float(t)), p, o, workload.task_names[k]) + prefix + session)
    return path


# --- Mooncake ----------------------------------------------------------------------------------


def load_mooncake_trace(path, task_name: str | None = None) -> Workload:
    """The Mooncake FAST'25 JSONL format (``timestamp`` in ms, lengths, ``hash_ids``)."""
    path = Path(path)
    ts, prompt, output, hashes, lines = [], [], [], [], []
    any_hashes = False
    text_all = _read_text(path)
    for line, text in enumerate(text_all.split("\n"), start=1):
        if not text.strip():
            continue
        text = text.rstrip("\r\n")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(path, line, f"char {exc.pos + 1}", f"invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise TraceError(path, line, "<object>", f"expected a JSON object, got {type(obj).__name__}")
        for key in MOONCAKE_KEYS:
            if key not in obj:
                raise TraceError(path, line, key, f"missing key; a Mooncake line needs {', '.join(MOONCAKE_KEYS)}")
        t = obj["timestamp"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise TraceError(path, line, "timestamp", f"{t!r} is not a number of milliseconds")
        if t < 0:
            raise TraceError(path, line, "timestamp", f"{t!r} is negative")
        vals = []
        for key in ("input_length", "output_length"):
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TraceError(path, line, key, f"{v!r} is not a number")
            if not math.isfinite(v) or v != math.floor(v):
                raise TraceError(path, line, key, f"{v!r} is not an integer token count")
            if v < 1:
                raise TraceError(path, line, key, f"{v!r} must be a positive integer (>= 1)")
            vals.append(int(v))
        h = obj.get("hash_ids")
        if h is None:
            h = []
        else:
            any_hashes = True
            if not isinstance(h, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in h):
                raise TraceError(path, line, "hash_ids", "must be a list of integers")
        ts.append(float(t))
        prompt.append(vals[0])
        output.append(vals[1])
        try:
            hashes.append(np.asarray(h, dtype=np.int64))
        except OverflowError:
            raise TraceError(path, line, "hash_ids", "hash ids must fit in 64 bits") from None
        lines.append(line)
    if not ts:
        raise TraceError(path, 1, "timestamp", "file is empty; expected one JSON object per line (mooncake format)")
    _check_sorted(path, lines, ts, "timestamp", " ms")
    arrival = np.asarray(ts, dtype=np.float64) / 1000.0
    return Workload(
        arrival, np.asarray(prompt), np.asarray(output), None, (task_name or _trace_stem(path),),
        prefix_hashes=tuple(hashes) if any_hashes else None,
        prefix_block_tokens=MOONCAKE_BLOCK_TOKENS if any_hashes else None, name=str(path),
    )


# --- detection and the one entry point -----------------------------------------------------------


def detect_format(path) -> str:
    """``"azure"``, ``"mooncake"`` or ``"generic"`` from the extension and the first line."""
    path = Path(path)
    if _base_suffix(path) in (".jsonl", ".json"):
        return "mooncake"
    first = _first_line(path)
    if not first:
        raise TraceError(path, 1, "header", "file is empty; cannot detect the trace format (or pass format=)")
    if first.lstrip().startswith("{"):
        return "mooncake"
    cols = [c.strip().strip('"') for c in first.split(",")]
    # a header with some of a format's columns is that format (the loader then names what is missing)
    if any(c in cols for c in AZURE_COLUMNS):
        return "azure"
    if any(c in cols for c in GENERIC_COLUMNS):
        return "generic"
    for delim, what in ((";", "';'"), ("\t", "a tab"), ("|", "'|'")):
        other = [c.strip().strip('"') for c in first.split(delim)]
        for fmt, expected in (("azure", AZURE_COLUMNS), ("generic", GENERIC_COLUMNS)):
            if len(other) > 1 and all(c in other for c in expected):
                raise TraceError(path, 1, expected[0],
                                 f"the header {first!r} uses {what} as delimiter; the {fmt} format needs ','")
    raise TraceError(
        path, 1, cols[0],
        f"unknown header {first!r}{_delimiter_hint(first)}; expected {','.join(AZURE_COLUMNS)} (azure), "
        f"{','.join(GENERIC_COLUMNS)}[,task] (generic) or JSON lines (mooncake); or pass format=",
    )


def load_trace(path, format: str | None = None, task_name: str | None = None) -> Workload:
    """Load a trace file as a :class:`Workload` (format auto-detected unless given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trace file at {path} ({AZURE_TRACE_HINT})")
    if format is None:
        format = detect_format(path)
    if format == "azure":
        return load_azure_trace(path, task_name)
    if format == "generic":
        return load_generic_csv(path, task_name)
    if format == "mooncake":
        return load_mooncake_trace(path, task_name)
    raise ValueError(f"unknown trace format {format!r}; known: {', '.join(TRACE_FORMATS)}")


# --- replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """A replay-ready workload and what was done to it."""

    workload: Workload  # its context_fit says what max_model_len refused or cut (None without one)
    source_requests: int
    time_scale: float  # new duration / old duration (1.0 when the rate was not changed)


def replay(trace, *, start_s: float | None = None, duration_s: float | None = None, count: int | None = None,
           rate_per_s: float | None = None, max_model_len=None, overlong: str = "reject",
           shift_to_zero: bool = True) -> Replay:
    """Prepare a trace for the simulator.

    ``trace``: a Workload or a file path. Steps, in order: keep the arrivals in
    ``[start_s, start_s + duration_s)`` (trace time; ``start_s`` defaults to the first arrival,
    ``duration_s`` to everything), keep the first ``count`` of those, move the first arrival to
    0 (``shift_to_zero``), rescale times to a mean rate ``rate_per_s``, and fit every request to
    ``max_model_len`` (an int or a profile) with :meth:`Workload.fit_context` (``overlong``: reject,
    clip or error).
    """
    w = trace if isinstance(trace, Workload) else load_trace(trace)
    source = len(w)
    if start_s is not None or duration_s is not None:
        if len(w) == 0:
            raise ValueError("cannot take a window of an empty workload")
        s = float(w.arrival_s[0]) if start_s is None else start_s
        d = (float(w.arrival_s[-1]) - s + 1.0) if duration_s is None else duration_s
        w = w.window(s, d)
    if count is not None:
        w = w.head(count)
    if len(w) == 0:
        raise ValueError("the window / count selects no request")
    if shift_to_zero:
        w = w.shifted(0.0)
    scale = 1.0
    if rate_per_s is not None and w.duration_s > 0:  # a single instant (e.g. one request) has no rate to change
        old = w.mean_rate_per_s
        w = w.with_rate(rate_per_s)
        scale = old / float(rate_per_s)
    if max_model_len is not None:
        w = w.fit_context(max_model_len, overlong)
    return Replay(workload=w, source_requests=source, time_scale=scale)
