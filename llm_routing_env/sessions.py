"""Synthetic multi-turn chat sessions with shared prefixes: workloads whose requests share KV cache.

A :class:`SessionWorkload` generates a :class:`~llm_routing_env.workload.Workload` with prefix block
ids (16-token KV blocks) and session ids:

* **Sessions** start as a Poisson process; a session has ``turns`` requests. With ``history``
  (chat), turn k+1's prompt is turn k's prompt + its answer + a new user message, so its first
  ``(prompt_k + answer_k) // 16`` blocks are turn k's blocks (the cache can hit turn k's prompt
  blocks; the simulators cache declared prompt blocks only, so the answer's blocks are recomputed).
  Without ``history`` (tenants' users), every turn is the shared prefix + a new message.
* **Think time**: the gap between a session's consecutive requests (request to request, as a
  trace records it; open loop: it does not wait for the answer), lognormal.
* **Shared prefixes**: ``shared_prefixes`` contexts of ``shared_prefix_tokens`` each (system
  prompts, or a tenant's long context), one drawn per session with Zipf popularity
  (``P(j) ~ 1 / (j + 1) ** zipf_exponent``; 0 = uniform); a session starts with it, then its own
  prefix (lognormal, capped) and its first message. Blocks lying wholly inside the shared prefix
  have the shared ids; every other block is new content with a fresh id.
* **Steady state**: sessions start from ``-warmup`` (long enough for a session to finish) and
  only requests arriving at ``t >= 0`` are kept, so the episode begins with sessions in progress
  (their earlier turns were never served: the cluster starts cold). The session start rate is
  ``rate_per_s / E[turns]``: requests arrive at ``rate_per_s`` on average.

Every default parameter names the published statistic it comes from (:data:`SESSION_WORKLOADS`).
One ``SeedSequence`` spawns the session stream; the same seed gives a bit-identical workload.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np

from .profiles import KV_BLOCK_TOKENS
from .workload import Workload

__all__ = ["SessionWorkload", "SESSION_WORKLOADS", "session_workload_names", "get_session_workload"]


def _check_range(name: str, lo_hi) -> tuple[int, int]:
    if not isinstance(lo_hi, tuple) or len(lo_hi) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                               for v in lo_hi):
        raise ValueError(f"{name} must be a (low, high) pair of integers, got {lo_hi!r}")
    lo, hi = lo_hi
    if lo < 1 or hi < lo:
        raise ValueError(f"{name} must satisfy 1 <= low <= high, got {lo_hi!r}")
    return lo, hi


@dataclass(frozen=True)
class SessionWorkload:
    """Parameters of a multi-turn session workload (module doc); :meth:`generate` draws one."""

    name: str
    source: str  # where every parameter comes from
    turns: tuple[int, int]  # requests per session, uniform integers in [low, high]
    message_tokens: tuple[int, int]  # each turn's new user message, uniform in [low, high]
    answer_tokens: tuple[int, int]  # each turn's (true) output, uniform in [low, high]
    think_time_median_s: float  # gap between a session's consecutive requests: lognormal median
    think_time_sigma: float  # ... and log-space standard deviation
    shared_prefixes: int = 0  # system prompts / tenant contexts (0: none)
    shared_prefix_tokens: int = 0  # tokens of each
    zipf_exponent: float = 0.0  # popularity of the shared prefixes (0: uniform)
    session_prefix_mean_tokens: float = 0.0  # a session's own prefix (first turn): lognormal mean (0: none)
    session_prefix_sigma: float = 0.0  # ... log-space standard deviation
    session_prefix_max_tokens: int = 0  # ... cap
    history: bool = True  # turn k+1 = turn k's prompt + answer + message (chat); False: shared prefix + message

    def __post_init__(self) -> None:
        _check_range("turns", self.turns)
        _check_range("message_tokens", self.message_tokens)
        _check_range("answer_tokens", self.answer_tokens)
        for nm in ("think_time_median_s", "think_time_sigma", "zipf_exponent", "session_prefix_mean_tokens",
                   "session_prefix_sigma"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"session workload {self.name!r}: {nm} must be a finite number >= 0, got {v!r}")
        if self.think_time_median_s <= 0:
            raise ValueError(f"session workload {self.name!r}: think_time_median_s must be positive")
        for nm in ("shared_prefixes", "shared_prefix_tokens", "session_prefix_max_tokens"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"session workload {self.name!r}: {nm} must be an integer >= 0, got {v!r}")
        if (self.shared_prefixes > 0) != (self.shared_prefix_tokens > 0):
            raise ValueError(f"session workload {self.name!r}: give both shared_prefixes and shared_prefix_tokens, "
                             "or neither")
        if (self.session_prefix_mean_tokens > 0) != (self.session_prefix_max_tokens > 0):
            raise ValueError(f"session workload {self.name!r}: give both session_prefix_mean_tokens and "
                             "session_prefix_max_tokens, or neither")

    # ------------------------------------------------------------------------------------------
    @property
    def mean_turns(self) -> float:
        return (self.turns[0] + self.turns[1]) / 2

    @property
    def warmup_s(self) -> float:
        """How far before t = 0 sessions start: twice the longest session's mean span ((most turns
        - 1) mean gaps); a session started earlier is rarely still running at 0."""
        mean_gap_s = self.think_time_median_s * math.exp(self.think_time_sigma ** 2 / 2)
        return 2 * (self.turns[1] - 1) * mean_gap_s

    def digest(self) -> str:
        """A hash of the parameters (keys caches of results that depend on them)."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:16]

    def sample_lengths(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` requests' ``(prompt_tokens, output_tokens, task)`` as episodes have them (for the
        saturation measurement; the seed is drawn from ``rng``)."""
        w = self.generate(n=int(n), rate_per_s=1.0, seed=int(rng.integers(2**63 - 1)))
        return w.prompt_tokens, w.output_tokens, w.task

    def generate(self, *, n: int | None = None, duration_s: float | None = None, rate_per_s: float,
                 seed=None) -> Workload:
        """A workload at mean request rate ``rate_per_s``: the first ``n`` requests and/or every
        arrival in ``[0, duration_s)`` of the steady state (module doc)."""
        if n is None and duration_s is None:
            raise ValueError("give a finite horizon: n (number of requests) and/or duration_s")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float, np.integer, np.floating)) \
                or not math.isfinite(rate_per_s) or rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        rate = float(rate_per_s)
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        horizon = duration_s if n is None else 1.2 * n / rate
        if duration_s is not None:
            horizon = min(horizon, duration_s) if n is not None else duration_s
        while True:  # deterministic: the same seed and a longer horizon until n requests are in
            times, prompt, output, blocks, sessions = self._draw(ss, rate, float(horizon))
            if n is None or times.size >= n or (duration_s is not None and horizon >= duration_s):
                break
            horizon = horizon * 1.5 if duration_s is None else min(horizon * 1.5, duration_s)
        order = np.argsort(times, kind="stable")[: n if n is not None else None]
        return Workload(times[order], prompt[order], output[order], None, (self.name,),
                        prefix_hashes=tuple(blocks[i] for i in order.tolist()),
                        prefix_block_tokens=KV_BLOCK_TOKENS, session_ids=sessions[order],
                        name=f"sessions {self.name} @{rate:g}/s seed={ss.entropy}")

    def _draw(self, ss: np.random.SeedSequence, rate: float, horizon_s: float):
        """Every request of the sessions starting in ``[-warmup, horizon)`` that arrives in
        ``[0, horizon)``: times, prompt and output tokens, block ids, session ids."""
        rng = np.random.default_rng(ss)
        start_rate = rate / self.mean_turns
        span = self.warmup_s + horizon_s
        num_sessions = int(rng.poisson(start_rate * span))
        starts = np.sort(rng.uniform(-self.warmup_s, horizon_s, num_sessions))
        turns = rng.integers(self.turns[0], self.turns[1] + 1, num_sessions)
        total = int(turns.sum())
        gaps = self.think_time_median_s * np.exp(self.think_time_sigma * rng.standard_normal(total))
        message = rng.integers(self.message_tokens[0], self.message_tokens[1] + 1, total)
        answer = rng.integers(self.answer_tokens[0], self.answer_tokens[1] + 1, total)
        if self.shared_prefixes:
            weights = 1.0 / np.arange(1, self.shared_prefixes + 1) ** self.zipf_exponent
            shared = rng.choice(self.shared_prefixes, size=num_sessions, p=weights / weights.sum())
        else:
            shared = np.full(num_sessions, -1)
        if self.session_prefix_mean_tokens:
            s = self.session_prefix_sigma  # lognormal with the given mean: mu = ln(mean) - s^2 / 2
            own = np.exp(math.log(self.session_prefix_mean_tokens) - s * s / 2 + s * rng.standard_normal(num_sessions))
            own = np.minimum(np.rint(own), self.session_prefix_max_tokens).astype(np.int64)
        else:
            own = np.zeros(num_sessions, dtype=np.int64)
        # request r = turn k of session i: its time is the start plus k gaps
        first = np.cumsum(turns) - turns  # each session's first request
        session = np.repeat(np.arange(num_sessions), turns)
        gaps[first] = 0.0
        times = starts[session] + (np.cumsum(gaps) - np.cumsum(gaps)[first][session])
        keep = (times >= 0) & (times < horizon_s)

        # block ids: the shared prefixes' blocks first, then fresh ids for all new content
        shared_blocks = self.shared_prefix_tokens // KV_BLOCK_TOKENS
        next_id = self.shared_prefixes * shared_blocks
        prompt = np.empty(total, dtype=np.int64)
        blocks: list = [None] * total
        for i in np.unique(session[keep]).tolist():  # the sessions with a request in the window
            j = int(shared[i])
            ids = np.arange(j * shared_blocks, (j + 1) * shared_blocks, dtype=np.int64) if j >= 0 \
                else np.empty(0, dtype=np.int64)
            base = self.shared_prefix_tokens if j >= 0 else 0  # tokens of content behind ``ids``
            length, r0 = base, int(first[i])
            for r in range(r0, r0 + int(turns[i])):
                if r > r0 and not self.history:
                    ids, length = ids[:shared_blocks if j >= 0 else 0], base
                new = int(message[r]) + (int(own[i]) if r == r0 else 0)
                full = (length + new) // KV_BLOCK_TOKENS
                if full > ids.size:  # the block straddling old and new content is new content
                    ids = np.concatenate([ids, np.arange(next_id, next_id + full - ids.size, dtype=np.int64)])
                    next_id = int(ids[-1]) + 1
                length += new
                prompt[r] = length
                blocks[r] = ids
                if self.history:  # the answer joins the conversation
                    length += int(answer[r])
                    full = length // KV_BLOCK_TOKENS
                    if full > ids.size:
                        ids = np.concatenate([ids, np.arange(next_id, next_id + full - ids.size, dtype=np.int64)])
                        next_id = int(ids[-1]) + 1
        idx = np.flatnonzero(keep)
        return (times[idx], prompt[idx], answer[idx].astype(np.int64), [blocks[r] for r in idx.tolist()],
                session[idx].astype(np.int64))


SESSION_WORKLOADS: dict[str, SessionWorkload] = {}


def _register(w: SessionWorkload) -> SessionWorkload:
    SESSION_WORKLOADS[w.name] = w
    return w


def session_workload_names() -> list[str]:
    return list(SESSION_WORKLOADS)


def get_session_workload(name: str) -> SessionWorkload:
    if isinstance(name, SessionWorkload):
        return name
    if name not in SESSION_WORKLOADS:
        raise ValueError(f"unknown session workload {name!r}; known: {', '.join(session_workload_names())}")
    return SESSION_WORKLOADS[name]


# vLLM's multi-turn benchmark (github.com/vllm-project/vllm, benchmarks/multi_turn/generate_multi_turn.json):
# 12-18 turns counting user and assistant (6-9 requests), a 500-token common prefix, a per-conversation
# prefix lognormal with average 1,000 and max 5,000 (its default median_ratio 0.85: sigma =
# sqrt(2 ln(1 / 0.85)) = 0.570), user messages 120-160 tokens, answers 80-120.
_VLLM_MULTI_TURN = "vLLM benchmarks/multi_turn/generate_multi_turn.json"
_PREFIX_SIGMA = math.sqrt(2 * math.log(1 / 0.85))
# Think time: the Mooncake FAST'25 conversation trace (github.com/kvcache-ai/Mooncake, FAST25-release)
# has p50 123 s and p90 483 s between requests sharing a prefix, at 3.4 req/s: about 420 requests
# apart; the log-space spread is ln(483 / 123) / 1.2816 = 1.07. At the 16-17 req/s of the
# multiturn-chat scenario (0.9 x its saturation, 4 x llama3.1-8b-a100), the same reuse distance in
# requests is 420 / 16.3 = 26 s: the median think time of ``chat``.
_THINK_SIGMA = math.log(483 / 123) / 1.2816

_register(SessionWorkload(
    "chat", f"{_VLLM_MULTI_TURN} (turns, prefixes, message and answer lengths); 8 system prompts with Zipf(1) "
    "popularity (SGLang bench_serving's generated-shared-prefix --gsp-group-distribution zipf; reuse is skewed: 10% "
    "of blocks take 77% of reuses in Wang et al., ATC'25); think time: Mooncake conversation's spread, median "
    "scaled to the same reuse distance in requests",
    turns=(6, 9), message_tokens=(120, 160), answer_tokens=(80, 120),
    think_time_median_s=26.0, think_time_sigma=_THINK_SIGMA,
    shared_prefixes=8, shared_prefix_tokens=500, zipf_exponent=1.0,
    session_prefix_mean_tokens=1000.0, session_prefix_sigma=_PREFIX_SIGMA, session_prefix_max_tokens=5000))
# llm-d's "KV-Cache Wins You Can See" benchmark (llm-d/llm-d.github.io, blog 2025-09-24): tenants with a
# 6,000-token shared context each, 1,200-token queries, the tenants' contexts sized to 73% of the
# cluster's KV cache. On 4 x llama3.1-8b-h100 (4 x 22,643 blocks of 16 tokens = 1,449,152 tokens):
# 0.73 x 1,449,152 / 6,000 = 176 tenants. Answer lengths, turns per user and think time are not in
# the blog: the chat workload's answers and turns, the to-B think time (80% of reuses within 10 s,
# Wang et al., ATC'25: median 10 s / e^(0.8416 x 1.07) = 4.1 s).
_register(SessionWorkload(
    "tenants", "llm-d blog 2025-09-24 (6,000-token tenant contexts, 1,200-token queries, contexts = 73% of the "
    f"cluster KV: 176 tenants on 4 x llama3.1-8b-h100); answers and turns from {_VLLM_MULTI_TURN}; think time "
    "from Alibaba's to-B trace (Wang et al., ATC'25)",
    turns=(6, 9), message_tokens=(1200, 1200), answer_tokens=(80, 120),
    think_time_median_s=4.1, think_time_sigma=_THINK_SIGMA,
    shared_prefixes=176, shared_prefix_tokens=6000, zipf_exponent=0.0, history=False))
# The chat workload's lengths without any sharing: one request per session, no system prompt, a
# unique prompt whose mean matches chat's (2,450 tokens over its 6-9 turns: seed 1, 2,000 requests)
_register(SessionWorkload(
    "no-sharing", f"chat's prompt and answer lengths ({_VLLM_MULTI_TURN}) with nothing shared: one request per "
    "session, no system prompt",
    turns=(1, 1), message_tokens=(120, 160), answer_tokens=(80, 120),
    think_time_median_s=26.0, think_time_sigma=_THINK_SIGMA,
    session_prefix_mean_tokens=2310.0, session_prefix_sigma=_PREFIX_SIGMA, session_prefix_max_tokens=11550))
