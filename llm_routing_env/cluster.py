"""What both simulators share: the cluster configuration, the record layout, input validation.

The semantics of an instance (admission, prefill/decode iterations, KV blocks, preemption) are
specified in ``docs/simulator.md``; :mod:`llm_routing_env.sim` implements them fast (``ClusterSimulator``) and
slowly and readably (``ReferenceSimulator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .profiles import KV_BLOCK_TOKENS, LatencyProfile, blocks_for_tokens, get_profile

# Request status codes (RequestRecords.status)
NOT_DISPATCHED, WAITING, RUNNING, COMPLETED = 0, 1, 2, 3


# The schedulers modelled (docs/simulator.md): vLLM v0's (the paper's engine) and vLLM v1's
SCHEDULERS = ("vllm-v0", "vllm-v1")
# vLLM v1's online-serving defaults (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults,
# UsageContext.OPENAI_API_SERVER): (max_num_batched_tokens, max_num_seqs) on GPUs below 70 GiB or
# A100s, and on the larger others (H100, MI300x)
V1_DEFAULTS = (2048, 256)
V1_DEFAULTS_LARGE_GPU = (8192, 1024)
V0_WATERMARK_FRAC = 0.01  # vLLM v0's CacheConfig default
# What a router knows about the instances' prefix caches (docs/simulator.md, "What a router sees"):
# its own routing history (SGLang, llm-d's approximate index), the engines' KV events (llm-d precise,
# Dynamo) or polled metrics only
CACHE_KNOWLEDGE = ("approximate", "exact", "polled")


def check_cache_knowledge(cache_knowledge, index_capacity_blocks) -> None:
    """Refuse an unknown ``cache_knowledge`` or a bad approximate-index capacity (errors name them)."""
    if cache_knowledge not in CACHE_KNOWLEDGE:
        raise ValueError(f"cache_knowledge must be one of {', '.join(CACHE_KNOWLEDGE)}; got {cache_knowledge!r}")
    v = index_capacity_blocks
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
        raise ValueError(f"prefix_index_capacity_blocks must be a positive integer or None (each instance's KV "
                         f"capacity), got {v!r}")


@dataclass(frozen=True)
class SchedulerConfig:
    """Instance-level scheduler options, the same for every instance of a cluster.

    ``scheduler`` is ``"vllm-v0"`` (vLLM v0's scheduler, the paper's engine: the default) or
    ``"vllm-v1"`` (vLLM v1's: one token budget per step, running requests before waiting ones,
    prefills always chunked, KV blocks taken as tokens are computed, no admission watermark).

    Under vLLM v0, ``max_num_seqs`` / ``max_num_batched_tokens`` default to the profile's values
    (vLLM's 128 and 4096) without chunked prefill, and to the profile's ``max_num_seqs`` and a
    512-token budget with it; ``chunked_prefill`` (vLLM v0's chunked prefill: KV reserved for the
    whole prompt at admission, watermark kept) and ``watermark_frac`` (default 0.01) are v0
    options. Under vLLM v1 they default to vLLM v1's online-serving values (2048 tokens and 256
    sequences; 8192 and 1024 on H100 profiles). Settings under which some request could never be
    admitted are refused when the :class:`ClusterConfig` is built (see ``ClusterConfig._resolve``).

    ``prefix_caching`` (vLLM's automatic prefix caching, :mod:`llm_routing_env.sim.prefix_cache`)
    defaults to each engine's default: on under vLLM v1, off under v0 (``--enable-prefix-caching``
    turns it on there). It acts only on requests dispatched with prefix block ids.
    """

    scheduler: str = "vllm-v0"
    chunked_prefill: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    watermark_frac: float | None = None
    prefix_caching: bool | None = None

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}")
        if self.prefix_caching is not None and not isinstance(self.prefix_caching, (bool, np.bool_)):
            raise ValueError(f"prefix_caching must be True, False or None (the scheduler's default), "
                             f"got {self.prefix_caching!r}")
        if not isinstance(self.chunked_prefill, (bool, np.bool_)):
            raise ValueError(f"chunked_prefill must be True or False, got {self.chunked_prefill!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        w = self.watermark_frac
        if w is not None and (not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w < 1):
            raise ValueError(f"watermark_frac must be a number in [0, 1), got {w!r}")
        if self.v1:
            if self.chunked_prefill:
                raise ValueError("chunked_prefill is a vllm-v0 option (v0's chunked prefill); the vllm-v1 scheduler "
                                 "always chunks prefills into its token budget: drop chunked_prefill")
            if w is not None:
                raise ValueError("watermark_frac is a vllm-v0 option; the vllm-v1 scheduler keeps no admission "
                                 "watermark: drop watermark_frac")

    @property
    def v1(self) -> bool:
        return self.scheduler == "vllm-v1"

    @property
    def caches_prefixes(self) -> bool:
        """Prefix caching is on: as set, else the engine's default (v1 on, v0 off)."""
        return self.v1 if self.prefix_caching is None else bool(self.prefix_caching)

    @property
    def mixed_batches(self) -> bool:
        """Decodes and prefill chunks share an iteration (v0's chunked prefill, or v1)."""
        return bool(self.chunked_prefill) or self.v1


@dataclass(frozen=True)
class InstanceLimits:
    """Resolved per-instance limits (profile + scheduler options)."""

    kv_capacity_blocks: int
    watermark_blocks: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int


class ClusterConfig:
    """N instances (profiles may differ: heterogeneous clusters) and one scheduler config.

    ``cache_knowledge`` is what a router knows about the instances' prefix caches (one of
    :data:`CACHE_KNOWLEDGE`, default ``"approximate"``); ``prefix_index_capacity_blocks`` bounds the
    approximate index per instance (None: each instance's KV capacity, as llm-d's auto-tune sets it).
    Neither changes the cluster's behaviour, only what a router sees of it.
    """

    def __init__(self, instances, scheduler: SchedulerConfig | None = None, cache_knowledge: str = "approximate",
                 prefix_index_capacity_blocks: int | None = None):
        check_cache_knowledge(cache_knowledge, prefix_index_capacity_blocks)
        self.cache_knowledge = cache_knowledge
        self.prefix_index_capacity_blocks = prefix_index_capacity_blocks
        if isinstance(instances, (str, LatencyProfile)):
            raise ValueError("instances must be a list of profiles or profile names, one per instance")
        self.profiles: tuple[LatencyProfile, ...] = tuple(get_profile(p) for p in instances)
        if not self.profiles:
            raise ValueError("a cluster needs at least one instance")
        self.scheduler = scheduler if scheduler is not None else SchedulerConfig()
        self.limits = tuple(self._resolve(p) for p in self.profiles)
        self.max_model_len_per_instance = self.per_instance("max_model_len")

    def _resolve(self, p: LatencyProfile) -> InstanceLimits:
        """The instance's limits, refusing (as vLLM v0 refuses to start) a configuration under which
        some request that fits the context could never be admitted: the admission rules of
        docs/simulator.md must let an empty instance take the longest prefill, ``max_model_len - 1``
        tokens (a prompt that leaves room for one output token, or a preempted request's recompute)."""
        s = self.scheduler
        if s.v1:
            # vLLM's own default for the GPU: the larger one for H100 profiles (>= 70 GiB, not an A100)
            budget_default, seqs_default = V1_DEFAULTS_LARGE_GPU if "h100" in p.name.lower() else V1_DEFAULTS
            max_num_seqs = s.max_num_seqs or seqs_default
            budget = s.max_num_batched_tokens or budget_default
            if budget < max_num_seqs:  # vLLM's SchedulerConfig check
                raise ValueError(
                    f"with scheduler vllm-v1, max_num_batched_tokens ({budget}) must be greater than or equal to "
                    f"max_num_seqs ({max_num_seqs}) (vLLM refuses to start)"
                )
            watermark = 0  # (v1 keeps no admission watermark)
        else:
            max_num_seqs = s.max_num_seqs or p.max_num_seqs
            if s.chunked_prefill:
                budget = s.max_num_batched_tokens or 512
                if budget <= max_num_seqs:
                    raise ValueError(
                        f"with chunked_prefill, max_num_batched_tokens ({budget}) must exceed max_num_seqs "
                        f"({max_num_seqs}) so that prefills progress beside a full decode batch"
                    )
            else:
                budget = s.max_num_batched_tokens or p.max_num_batched_tokens
                if budget < p.max_model_len:  # vLLM v0's SchedulerConfig check
                    raise ValueError(
                        f"without chunked_prefill, max_num_batched_tokens ({budget}) is smaller than max_model_len "
                        f"({p.max_model_len}) of profile {p.name!r}: a long prompt could never be scheduled "
                        f"(vLLM v0 refuses to start); raise max_num_batched_tokens or turn chunked_prefill on"
                    )
            watermark_frac = V0_WATERMARK_FRAC if s.watermark_frac is None else s.watermark_frac
            watermark = int(watermark_frac * p.kv_capacity_blocks)
        longest = blocks_for_tokens(p.max_model_len - 1)
        if longest > p.kv_capacity_blocks - watermark:
            if s.v1:
                raise ValueError(
                    f"profile {p.name!r} holds {p.kv_capacity_blocks} KV blocks: a prefill of max_model_len - 1 = "
                    f"{p.max_model_len - 1} tokens needs {longest} and could never run"
                )
            raise ValueError(
                f"watermark_frac={watermark_frac} keeps {watermark} of the {p.kv_capacity_blocks} KV blocks of "
                f"profile {p.name!r} free at admission, leaving {p.kv_capacity_blocks - watermark}: "
                f"a prefill of max_model_len - 1 = {p.max_model_len - 1} tokens needs {longest} blocks and could "
                f"never be admitted (vLLM v0 would ignore such requests); lower watermark_frac"
            )
        return InstanceLimits(
            kv_capacity_blocks=p.kv_capacity_blocks,
            watermark_blocks=watermark,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=budget,
            max_model_len=p.max_model_len,
        )

    @property
    def num_instances(self) -> int:
        return len(self.profiles)

    def per_instance(self, attr: str) -> np.ndarray:
        """A limit as an (N,) int64 array."""
        return np.array([getattr(lim, attr) for lim in self.limits], dtype=np.int64)

    def coefficient_table(self) -> np.ndarray:
        """(N, 7) float64 array of iteration-time coefficients, in profile.coefficients order."""
        return np.array([p.coefficients for p in self.profiles], dtype=np.float64)


@dataclass
class RequestRecords:
    """Per-request records, each a (B, R) array; times in seconds, NaN where not (yet) reached.

    ``arrival_s`` is the arrival at the router, ``dispatch_s`` the moment the router sent the
    request to ``instance``, ``first_scheduled_s`` its first admission to a batch,
    ``first_token_s`` the end of its first prefill and ``completion_s`` the end of the iteration
    that produced its last token. ``prefix_hit_tokens`` are the prompt tokens found in the
    instance's prefix cache and ``prefill_tokens`` the prefill tokens computed, each summed over the
    request's admissions (a preempted request is prefilled again).
    """

    status: np.ndarray
    instance: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    generated_tokens: np.ndarray
    preemptions: np.ndarray
    arrival_s: np.ndarray
    dispatch_s: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    completion_s: np.ndarray
    prefix_hit_tokens: np.ndarray
    prefill_tokens: np.ndarray


@dataclass
class InstanceState:
    """What a router can observe about each instance, each a (B, N) array."""

    num_running: np.ndarray
    num_waiting: np.ndarray
    kv_blocks_used: np.ndarray
    kv_blocks_free: np.ndarray
    pending_prefill_tokens: np.ndarray
    busy_until_s: np.ndarray


_DISPATCH_INT_FIELDS = ("cluster", "request_id", "instance", "prompt_tokens", "output_tokens")


def _check_int_field(name: str, value, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(f"{name} must be integers, got {arr[bad].ravel()[0]!r}")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got {value!r} (dtype {arr.dtype})")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(f"{name} must be a scalar or have length {n}, got shape {arr.shape}")
    return arr


def validate_prefix_blocks(prefix_blocks, prompt: np.ndarray) -> list[tuple[int, ...]] | None:
    """The prefix block ids of a batch of dispatches (None, or one entry per dispatch: None or a
    sequence of non-negative integer ids, at most one per full 16-token block of the prompt) as
    tuples of ints. Raises ValueError naming the dispatch and the id."""
    if prefix_blocks is None:
        return None
    n = prompt.size
    if isinstance(prefix_blocks, (str, bytes)) or not hasattr(prefix_blocks, "__len__") or len(prefix_blocks) != n:
        raise ValueError(f"prefix_blocks must be a sequence with one entry (None or block ids) per dispatch ({n}), "
                         f"got {prefix_blocks!r}")
    out = []
    for i, ids in enumerate(prefix_blocks):
        if ids is None:
            out.append(())
            continue
        # the common cases checked in Python numbers (NumPy's cost per call exceeds the work): an
        # integer array, or a list / tuple of ints (bools are not) within int64's range
        kind = type(ids)
        if kind is np.ndarray and ids.ndim == 1 and ids.dtype.kind in "iu":
            ids_tuple = tuple(ids.tolist())
        elif (kind is tuple or kind is list) and all(type(v) is int for v in ids):
            ids_tuple = tuple(ids)
        else:
            ids_tuple = None
        if ids_tuple is not None and len(ids_tuple) <= int(prompt[i]) // KV_BLOCK_TOKENS \
                and (not ids_tuple or (min(ids_tuple) >= 0 and max(ids_tuple) < 2**64)):
            out.append(ids_tuple)
            continue
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0)):
            raise ValueError(f"prefix_blocks of dispatch #{i} must be a 1-D sequence of non-negative integer "
                             f"block ids, got {ids!r}")
        full = int(prompt[i]) // KV_BLOCK_TOKENS
        if arr.size > full:
            raise ValueError(f"prefix_blocks of dispatch #{i}: {arr.size} block ids for a prompt of {int(prompt[i])} "
                             f"tokens, which has only {full} full blocks of {KV_BLOCK_TOKENS} tokens")
        out.append(tuple(arr.tolist()))
    return out


def validate_dispatch(config: ClusterConfig, num_clusters: int, max_requests: int, now_s: np.ndarray,
                      status: np.ndarray, cluster, request_id, instance, prompt_tokens, output_tokens,
                      arrival_s):
    """Check a batch of dispatches; returns them as arrays. Raises ValueError naming field and value."""
    values = (cluster, request_id, instance, prompt_tokens, output_tokens)
    n = max(np.size(x) for x in (*values, arrival_s))
    ints = np.empty((5, n), dtype=np.int64)
    for k, (name, v) in enumerate(zip(_DISPATCH_INT_FIELDS, values)):
        ints[k] = _check_int_field(name, v, n)
    lows = np.array([0, 0, 0, 1, 1])[:, None]
    highs = np.array([num_clusters - 1, max_requests - 1, config.num_instances - 1, 2**62, 2**62])[:, None]
    bad = (ints < lows) | (ints > highs)
    if bad.any():
        f, i = (int(v[0]) for v in np.nonzero(bad))
        rule = "must be >= 1" if f >= 3 else f"must be in [0, {int(highs[f, 0])}]"
        raise ValueError(f"{_DISPATCH_INT_FIELDS[f]} ({rule}) out of range: {int(ints[f, i])} (dispatch #{i})")
    cluster, request_id, instance, prompt, output = ints
    given = np.asarray(arrival_s, dtype=np.float64)
    if given.ndim > 1 or (given.ndim == 1 and given.shape[0] != n):
        raise ValueError(f"arrival_s must be a scalar or have length {n}, got shape {given.shape}")
    arrival = np.empty(n)
    arrival[:] = given
    now = now_s[cluster]
    if not (arrival <= now).all() or not (arrival >= 0).all():  # NaN fails both
        i = int(np.flatnonzero(~((arrival <= now) & (arrival >= 0)))[0])
        why = "NaN" if np.isnan(arrival[i]) else "negative" if arrival[i] < 0 else "after the cluster's current time"
        raise ValueError(f"arrival_s ({why}) out of range: {float(arrival[i])!r}, cluster time "
                         f"{float(now[i])!r} (dispatch #{i})")
    max_len = config.max_model_len_per_instance[instance]
    too_long = prompt + output > max_len
    if too_long.any():
        i = int(np.flatnonzero(too_long)[0])
        raise ValueError(
            f"prompt_tokens + output_tokens = {prompt[i] + output[i]} exceeds max_model_len={max_len[i]} "
            f"of instance {instance[i]} (dispatch #{i}); clip the request first"
        )
    taken = status[cluster, request_id] != NOT_DISPATCHED
    if taken.any():
        i = int(np.flatnonzero(taken)[0])
        raise ValueError(f"request_id (already dispatched in cluster {cluster[i]}): {request_id[i]} (dispatch #{i})")
    if n > 1 and np.unique(cluster * max_requests + request_id).size != n:
        raise ValueError("request_id: the same request is dispatched twice in one call")
    return cluster, request_id, instance, prompt, output, arrival


def validate_target_times(now_s: np.ndarray, t_s) -> np.ndarray:
    """advance_to's argument as a (B,) array; time never goes back, NaN is refused."""
    t = np.asarray(t_s, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(now_s.shape, float(t))
    if t.shape != now_s.shape:
        raise ValueError(f"t_s must be a scalar or have shape {now_s.shape}, got {t.shape}")
    if np.isnan(t).any():
        raise ValueError("t_s must not be NaN")
    back = t < now_s
    if back.any():
        b = int(np.flatnonzero(back)[0])
        raise ValueError(f"t_s={t[b]!r} is before cluster {b}'s current time {now_s[b]!r}: time never goes back")
    return t
