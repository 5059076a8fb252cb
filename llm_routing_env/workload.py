"""The :class:`Workload` container: the request streams a cluster serves.

A :class:`Workload` is an immutable struct of arrays sorted by arrival (router arrival time,
prompt tokens, the TRUE output tokens that routers must not read, a task index), optionally with
per-request prefix block ids (requests that share a prompt prefix). It validates itself and offers
the replay helpers (:meth:`Workload.window`, :meth:`~Workload.head`, :meth:`~Workload.shifted`,
:meth:`~Workload.with_rate`, :meth:`~Workload.fit_context`, :meth:`~Workload.with_kv_blocks`). Synthetic request mixes live in
:mod:`llm_routing_env.mixes`, trace loaders in :mod:`llm_routing_env.traces`, arrival processes in
:mod:`llm_routing_env.arrivals`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .arrivals import mean_rate
from .profiles import KV_BLOCK_TOKENS, LatencyProfile, get_profile

__all__ = ["Workload", "ContextFit", "OVERLONG_CHOICES"]

OVERLONG_CHOICES = ("reject", "clip", "error")  # what happens to a request beyond the context (fit_context)


def _first_index(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _as_token_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            i = _first_index(bad)
            raise ValueError(f"{name}[{i}] = {arr[i].item()!r} is not an integer")
        if arr.size and np.abs(arr).max() >= 2**62:
            i = int(np.argmax(np.abs(arr)))
            raise ValueError(f"{name}[{i}] = {arr[i].item()!r} is too large")
    arr = arr.astype(np.int64)
    return arr


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Workload:
    """A stream of requests, as a struct of arrays sorted by arrival (immutable, validated).

    ``arrival_s`` (float64 seconds at the router), ``prompt_tokens`` and ``output_tokens``
    (int64, >= 1; ``output_tokens`` is the TRUE output length, hidden from routers), ``task``
    (int64 index into ``task_names``). ``prefix_hashes`` is ``None`` or, per request, an int64
    array of prefix-block hashes of ``prefix_block_tokens`` tokens each (Mooncake traces).
    ``session_ids`` is ``None`` or an int64 array, one per request: the chat session the request
    belongs to (what an ``x-session-id`` header carries), ``-1`` for none. ``name`` describes the origin (trace file, mix and seed...). ``context_fit`` is set by
    :meth:`fit_context` only: which requests were refused or cut to fit a model's context.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    task: np.ndarray | None = None
    task_names: tuple[str, ...] = ("default",)
    prefix_hashes: tuple[np.ndarray, ...] | None = None
    prefix_block_tokens: int | None = None
    session_ids: np.ndarray | None = None
    name: str = ""
    context_fit: "ContextFit | None" = field(default=None, repr=False)

    def __post_init__(self) -> None:
        arrival = np.asarray(self.arrival_s)
        if arrival.ndim != 1:
            raise ValueError(f"arrival_s must be a 1-D array, got shape {arrival.shape}")
        if arrival.dtype.kind == "b" or arrival.dtype.kind not in "iuf":
            raise ValueError(f"arrival_s must hold numbers, got dtype {arrival.dtype}")
        arrival = arrival.astype(np.float64)
        n = arrival.size
        prompt = _as_token_array("prompt_tokens", self.prompt_tokens)
        output = _as_token_array("output_tokens", self.output_tokens)
        names = self.task_names
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
            raise ValueError(f"task_names must be a non-empty tuple of strings, got {names!r}")
        names = tuple(names)
        for i, s in enumerate(names):
            if not isinstance(s, str) or not s:
                raise ValueError(f"task_names[{i}] = {s!r} must be a non-empty string")
        if len(set(names)) != len(names):
            raise ValueError(f"task_names must be unique, got {names!r}")
        task = np.zeros(n, dtype=np.int64) if self.task is None else _as_token_array("task", self.task)
        for fname, arr in (("prompt_tokens", prompt), ("output_tokens", output), ("task", task)):
            if arr.size != n:
                raise ValueError(f"{fname} has length {arr.size} but arrival_s has length {n}")
        bad = ~np.isfinite(arrival)
        if bad.any():
            i = _first_index(bad)
            raise ValueError(f"arrival_s[{i}] = {arrival[i].item()!r} is not finite")
        bad = arrival < 0
        if bad.any():
            i = _first_index(bad)
            raise ValueError(f"arrival_s[{i}] = {arrival[i].item()!r} is negative")
        if n > 1:
            bad = arrival[1:] < arrival[:-1]
            if bad.any():
                i = _first_index(bad) + 1
                raise ValueError(
                    f"arrival_s is not sorted: arrival_s[{i}] = {arrival[i].item()!r} < arrival_s[{i - 1}] = {arrival[i - 1].item()!r}"
                )
        for fname, arr in (("prompt_tokens", prompt), ("output_tokens", output)):
            bad = arr < 1
            if bad.any():
                i = _first_index(bad)
                raise ValueError(f"{fname}[{i}] = {int(arr[i])} must be a positive integer")
        bad = (task < 0) | (task >= len(names))
        if bad.any():
            i = _first_index(bad)
            raise ValueError(f"task[{i}] = {int(task[i])} is not an index into task_names (0..{len(names) - 1})")
        hashes = self.prefix_hashes
        if hashes is not None:
            if len(hashes) != n:
                raise ValueError(f"prefix_hashes has length {len(hashes)} but arrival_s has length {n}")
            converted = []
            for i, h in enumerate(hashes):
                h = np.asarray(h)
                if h.ndim != 1 or (h.size and h.dtype.kind not in "iu"):
                    raise ValueError(f"prefix_hashes[{i}] must be a 1-D array of integers")
                converted.append(_readonly(h.astype(np.int64)))
            hashes = tuple(converted)
        pbt = self.prefix_block_tokens
        if pbt is not None and (isinstance(pbt, bool) or not isinstance(pbt, (int, np.integer)) or pbt < 1):
            raise ValueError(f"prefix_block_tokens must be a positive integer or None, got {pbt!r}")
        sessions = self.session_ids
        if sessions is not None:
            sessions = _as_token_array("session_ids", sessions)
            if sessions.size != n:
                raise ValueError(f"session_ids has length {sessions.size} but arrival_s has length {n}")
            bad = sessions < -1
            if bad.any():
                i = _first_index(bad)
                raise ValueError(f"session_ids[{i}] = {int(sessions[i])} must be a session id >= 0, or -1 for none")
            sessions = _readonly(sessions)
        if self.context_fit is not None and not isinstance(self.context_fit, ContextFit):
            raise ValueError(f"context_fit must be a ContextFit or None, got {type(self.context_fit).__name__}")
        object.__setattr__(self, "arrival_s", _readonly(arrival))
        object.__setattr__(self, "prompt_tokens", _readonly(prompt))
        object.__setattr__(self, "output_tokens", _readonly(output))
        object.__setattr__(self, "task", _readonly(task))
        object.__setattr__(self, "task_names", names)
        object.__setattr__(self, "prefix_hashes", hashes)
        object.__setattr__(self, "prefix_block_tokens", None if pbt is None else int(pbt))
        object.__setattr__(self, "session_ids", sessions)

    # --- basic facts -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def __repr__(self) -> str:
        if len(self) == 0:
            return f"Workload(name={self.name!r}, 0 requests)"
        return (
            f"Workload(name={self.name!r}, {len(self)} requests, "
            f"{self.arrival_s[0]:.3f}..{self.arrival_s[-1]:.3f} s, tasks={self.task_names})"
        )

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0 for fewer than two requests)."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def mean_rate_per_s(self) -> float:
        """``(n - 1) / duration_s``; ValueError when the workload spans no time."""
        return mean_rate(self.arrival_s)

    def summary(self) -> dict:
        """Counts and means, overall and per task (plain Python numbers)."""
        out = {
            "name": self.name,
            "requests": len(self),
            "duration_s": self.duration_s,
            "mean_prompt_tokens": float(self.prompt_tokens.mean()) if len(self) else float("nan"),
            "mean_output_tokens": float(self.output_tokens.mean()) if len(self) else float("nan"),
            "tasks": {},
        }
        if len(self) > 1 and self.duration_s > 0:
            out["mean_rate_per_s"] = self.mean_rate_per_s
        for k, tname in enumerate(self.task_names):
            m = self.task == k
            if m.any():
                out["tasks"][tname] = {
                    "requests": int(m.sum()),
                    "mean_prompt_tokens": float(self.prompt_tokens[m].mean()),
                    "mean_output_tokens": float(self.output_tokens[m].mean()),
                }
        return out

    def repeated_prefix_fraction(self) -> float:
        """The share of declared prefix blocks whose chain (the ids up to and including the block)
        an earlier request declared already: the prefix hit rate, in blocks, of one infinite cache
        that has seen every earlier request (0.0 without prefixes). Counted in the workload's own
        blocks (``prefix_block_tokens``)."""
        if self.prefix_hashes is None:
            return 0.0
        lengths = np.fromiter((h.size for h in self.prefix_hashes), dtype=np.int64, count=len(self))
        total = int(lengths.sum())
        if total == 0:
            return 0.0
        padded = np.zeros((len(self), int(lengths.max())), dtype=np.int64)
        for i, h in enumerate(self.prefix_hashes):
            padded[i, : h.size] = h
        # intern the chains position by position: block j's chain is (chain of block j-1, id j)
        chain = np.full(len(self), -1, dtype=np.int64)
        repeats = 0
        for j in range(padded.shape[1]):
            rows = np.flatnonzero(lengths > j)  # in arrival order
            _, first, chain_j = np.unique(np.stack([chain[rows], padded[rows, j]], axis=1), axis=0,
                                          return_index=True, return_inverse=True)
            repeats += rows.size - first.size  # every request but the first one declaring a chain
            chain[rows] = chain_j.ravel()
        return repeats / total

    # --- derived workloads -------------------------------------------------------------------

    def _replace(self, **changes) -> "Workload":
        kw = dict(
            arrival_s=self.arrival_s,
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens,
            task=self.task,
            task_names=self.task_names,
            prefix_hashes=self.prefix_hashes,
            prefix_block_tokens=self.prefix_block_tokens,
            session_ids=self.session_ids,
            name=self.name,
        )  # not context_fit: it describes how this workload, not one derived from it, was made
        kw.update(changes)
        return Workload(**kw)

    def subset(self, index) -> "Workload":
        """The requests selected by a slice, a boolean mask or increasing indices (order kept)."""
        if isinstance(index, slice):
            idx = np.arange(len(self))[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise ValueError(f"a boolean mask must have shape ({len(self)},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            elif idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                raise ValueError("index must be a slice, a boolean mask or a 1-D integer array")
        if idx.size > 1 and (np.diff(idx) <= 0).any():
            raise ValueError("indices must be strictly increasing (a Workload stays sorted by arrival)")
        hashes = None if self.prefix_hashes is None else tuple(self.prefix_hashes[int(i)] for i in idx)
        return self._replace(
            arrival_s=self.arrival_s[idx],
            prompt_tokens=self.prompt_tokens[idx],
            output_tokens=self.output_tokens[idx],
            task=self.task[idx],
            prefix_hashes=hashes,
            session_ids=None if self.session_ids is None else self.session_ids[idx],
        )

    def head(self, count: int) -> "Workload":
        """The first ``count`` requests (all of them if there are fewer)."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        return self.subset(slice(0, int(count)))

    def window(self, start_s: float, duration_s: float) -> "Workload":
        """The requests arriving in ``[start_s, start_s + duration_s)``; times are unchanged
        (chain :meth:`shifted` to start the window at 0)."""
        for nm, v in (("start_s", start_s), ("duration_s", duration_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"{nm} must be a finite number, got {v!r}")
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s!r}")
        lo = np.searchsorted(self.arrival_s, start_s, side="left")
        hi = np.searchsorted(self.arrival_s, start_s + duration_s, side="left")
        return self.subset(slice(int(lo), int(hi)))

    def shifted(self, start_s: float = 0.0) -> "Workload":
        """The same workload with times moved so that the first request arrives at ``start_s``."""
        if len(self) == 0:
            return self
        return self._replace(arrival_s=self.arrival_s - self.arrival_s[0] + float(start_s))

    def with_rate(self, rate_per_s: float) -> "Workload":
        """Times stretched or compressed around the first arrival so that the mean rate
        ``(n - 1) / duration_s`` becomes ``rate_per_s`` (burstiness and order are kept). A workload
        that spans no time (one request, or all at one instant) has no rate to change: it comes back
        as it is."""
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float, np.integer, np.floating)) \
                or not math.isfinite(rate_per_s) or rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        if self.duration_s == 0.0:
            return self
        factor = self.mean_rate_per_s / float(rate_per_s)
        t0 = self.arrival_s[0]
        return self._replace(arrival_s=t0 + (self.arrival_s - t0) * factor)

    def fit_context(self, max_model_len, overlong: str = "reject") -> "Workload":
        """The workload as a server with context ``max_model_len`` (an int or a profile) serves it;
        the returned workload's ``context_fit`` (:class:`ContextFit`) says what changed.

        ``overlong`` says what happens to a request that does not fit ``prompt + output <=
        max_model_len``:

        * ``"reject"`` (what a vLLM deployment does): a prompt of ``max_model_len`` tokens or more
          leaves no room for one output token and is refused, never served (vLLM v0's OpenAI server
          answers 400 "This model's maximum context length is ..." when ``prompt_tokens >=
          max_model_len``); any other request stops generating at the context limit (vLLM's default
          ``max_tokens = max_model_len - prompt_tokens``): its output is cut to ``max_model_len -
          prompt``.
        * ``"clip"``: nothing is refused: an over-long prompt is truncated to ``max_model_len - 1``
          tokens, then the output is cut to what is left (prefix hashes to the kept prompt).
        * ``"error"``: ValueError naming the first request that does not fit and its lengths.
        """
        if isinstance(max_model_len, (str, LatencyProfile)):
            max_model_len = get_profile(max_model_len).max_model_len
        if isinstance(max_model_len, bool) or not isinstance(max_model_len, (int, np.integer)) or max_model_len < 2:
            raise ValueError(f"max_model_len must be an integer >= 2, got {max_model_len!r}")
        if overlong not in OVERLONG_CHOICES:
            raise ValueError(f"overlong must be one of {', '.join(OVERLONG_CHOICES)}; got {overlong!r}")
        L = int(max_model_len)
        p, o = self.prompt_tokens, self.output_tokens
        if overlong == "error":
            over = p + o > L
            if over.any():
                i = _first_index(over)
                raise ValueError(
                    f"request {i}{f' of {self.name}' if self.name else ''} does not fit the model's context: "
                    f"prompt_tokens={int(p[i])} + output_tokens={int(o[i])} = {int(p[i] + o[i])} > "
                    f"max_model_len={L} ({int(over.sum())} such requests; overlong='reject' refuses prompts of "
                    f"max_model_len tokens or more and stops the others at the context, 'clip' truncates them)")
        keep = p < L if overlong == "reject" else np.ones(p.size, dtype=bool)
        served = self if keep.all() else self.subset(keep)
        sp, so = served.prompt_tokens, served.output_tokens
        new_p = np.minimum(sp, L - 1)  # only "clip" has prompts this long left
        new_o = np.minimum(so, L - new_p)
        clipped = (new_p != sp) | (new_o != so)
        hashes = served.prefix_hashes
        if hashes is not None and served.prefix_block_tokens is not None and (new_p != sp).any():
            b = served.prefix_block_tokens
            hashes = tuple(h[: -(-int(pp) // b)] if pp != p0 else h for h, pp, p0 in zip(hashes, new_p, sp))
        fit = ContextFit(max_model_len=L, overlong=overlong, source=self, served_index=np.flatnonzero(keep),
                         clipped=_readonly(clipped))
        return served._replace(prompt_tokens=new_p, output_tokens=new_o, prefix_hashes=hashes, context_fit=fit)


    def with_kv_blocks(self) -> "Workload":
        """The same workload with its prefixes in KV-cache blocks of ``KV_BLOCK_TOKENS`` (16) tokens,
        the unit the simulators' prefix cache keys (itself when they are already, or absent).

        A prefix block of ``b = r * 16`` tokens (Mooncake's ``hash_ids``: 512 tokens, r = 32) with id
        ``h`` becomes the ``r`` blocks ``h * r + j`` (``j = 0..r-1``): distinct for each ``(h, j)``,
        and since the cache keys a block by the chain of ids up to it, two requests share 16-token
        blocks exactly where their ``b``-token chains agree. A request keeps only the full 16-token
        blocks its prompt covers (``prompt_tokens // 16``): a partial last ``b`` block contributes
        the full 16-token blocks inside it. ValueError when ``b`` is not a multiple of 16 or an id
        is negative or too large for ``h * r + r - 1`` to fit in 63 bits."""
        b = self.prefix_block_tokens
        if self.prefix_hashes is None or b == KV_BLOCK_TOKENS:
            return self
        if b % KV_BLOCK_TOKENS:
            raise ValueError(f"prefix blocks of {b} tokens cannot be split into KV-cache blocks of "
                             f"{KV_BLOCK_TOKENS} tokens ({b} is not a multiple of {KV_BLOCK_TOKENS})")
        r = b // KV_BLOCK_TOKENS
        max_id = (2**63 - 1 - (r - 1)) // r
        sub = np.arange(r, dtype=np.int64)
        out = []
        for i, (h, p) in enumerate(zip(self.prefix_hashes, self.prompt_tokens.tolist())):
            if h.size and (h.min() < 0 or h.max() > max_id):
                j = int(np.flatnonzero((h < 0) | (h > max_id))[0])
                raise ValueError(f"prefix_hashes[{i}][{j}] = {int(h[j])}: ids must lie in 0..{max_id} to map a "
                                 f"{b}-token block onto {r} KV-cache blocks of {KV_BLOCK_TOKENS} tokens")
            out.append((h[:, None] * r + sub).ravel()[: p // KV_BLOCK_TOKENS])
        # the same requests: how they were fitted to the context still holds
        return self._replace(prefix_hashes=tuple(out), prefix_block_tokens=KV_BLOCK_TOKENS, context_fit=self.context_fit)


@dataclass(frozen=True, eq=False)
class ContextFit:
    """What :meth:`Workload.fit_context` did to a workload (``source``) to fit ``max_model_len``.

    ``served_index``: for each request of the fitted workload, its position in ``source`` (the
    requests in between were refused). ``clipped``: per fitted request, whether it is served with
    fewer tokens than it asked for (output stopped at the context; with ``"clip"`` also a
    truncated prompt).
    """

    max_model_len: int
    overlong: str
    source: Workload = field(repr=False)
    served_index: np.ndarray = field(repr=False)
    clipped: np.ndarray = field(repr=False)

    @property
    def rejected_overlong(self) -> int:
        """Requests refused: their prompt leaves no room for one output token (never served)."""
        return len(self.source) - int(self.served_index.size)

    @property
    def clipped_at_context(self) -> int:
        """Requests served with fewer tokens than they asked for."""
        return int(np.count_nonzero(self.clipped))

    @property
    def rejected_index(self) -> np.ndarray:
        """Positions in ``source`` of the refused requests."""
        mask = np.ones(len(self.source), dtype=bool)
        mask[self.served_index] = False
        return np.flatnonzero(mask)
