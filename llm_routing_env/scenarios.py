"""Scenarios: a named cluster + workload + arrivals + episode length, and the saturation tool.

A scenario is what ``gym.make(..., scenario=...)``, ``evaluate.py --scenario`` and
``train.py --scenario`` take: a shipped name (``python -m llm_routing_env.scenarios`` lists them
with the load each puts on its cluster) or the path of a small TOML (or YAML) file::

    name = "my-cluster"
    description = "my fleet on my traffic"
    [cluster]
    profile = "llama2-7b-a100"      # or: instances = ["llama2-7b-a100", "llama3.1-8b-a100"]
    num_instances = 4
    scheduler = "vllm-v0"           # or "vllm-v1" (docs/simulator.md)
    chunked_prefill = false         # vllm-v0 only: v0's chunked prefill
    prefix_caching = false          # vLLM's prefix caching (default: on under v1, off under v0)
    cache_knowledge = "approximate" # what a router knows of the caches: approximate | exact | polled
    # prefix_index_capacity_blocks = 31250  # the approximate index's LRU size per instance (default: KV capacity)
    [workload]
    trace = "my_requests.csv"       # or: mix = "paper-mix", or a fitted trace: trace = "azure-conv",
                                    # or synthetic chat sessions: sessions = "chat" (llm_routing_env/sessions.py)
    arrivals = "poisson"            # for a mix: poisson | gamma (with cv) | constant
    load = 0.9                      # or: rate_per_s = 20 (a trace: neither = its own rate)
    num_requests = 2000             # episode length (and/or duration_s)
    overlong = "reject"             # requests beyond the context: reject | clip | error
    predictor_train_fraction = 0.2  # a trace file: its first 20% train the predictor (the default)
    # predictor_train_trace = "train.csv"   # or: a separate file trains it (all of the trace is episodes)
    # trace_windows = [0.2, 0.8]    # a trace file: episodes are windows of these requests (fractions by arrival)

**Workloads.** A *mix* is synthetic (``paper-mix``). A *fitted trace* (``azure-code``,
``azure-conv``) is a synthetic generator fitted to a public trace's statistics
(:mod:`~llm_routing_env.fitted_traces`): no file needed. *Sessions* (``chat``, ``tenants``,
``no-sharing``) are synthetic multi-turn sessions with shared prefixes
(:mod:`~llm_routing_env.sessions`). A *trace file* is replayed as it is: each
episode is a window of ``num_requests`` consecutive requests, moved to start at 0 and rescaled to
the scenario's rate (or kept at its own times when neither rate nor load is given); with
``trace_windows = [lo, hi]`` the windows lie within the requests ``[lo, hi)`` (fractions of the
file by arrival), so that one scenario trains on some windows and another evaluates on held-out
ones (``mooncake-conv`` and ``mooncake-conv-heldout``).

**Scenarios that need a file.** ``mooncake-conv`` and ``mooncake-conv-heldout`` replay the
Mooncake conversation trace, which does not ship: set ``LLM_ROUTING_ENV_MOONCAKE_CONV`` to the path
of ``conversation_trace.jsonl`` (:data:`FILE_SCENARIOS` says where to get it); without it loading
them raises a ValueError that says so.

**The predictor never sees the requests it predicts.** ``task-prior`` and ``learned`` predictors
are fitted on :meth:`Scenario.predictor_training_workload`, and
:attr:`Scenario.predictor_training_data` says which data that is (for result files). For a mix or
a fitted trace it is a workload drawn with the seed :data:`PREDICTOR_TRAIN_SEED`, which no episode
uses. For a trace file it is a declared *training part*: the first ``predictor_train_fraction``
(default 20%) of the requests by arrival, or the whole of ``predictor_train_trace``; episodes are
windows of the rest only, so they cannot overlap it (the same file as both is refused).

**Load** is the offered rate over the cluster's *saturation rate* for that workload: the highest
rate round-robin sustains with bounded queues. :func:`saturation_rate` measures it as the rate at
which instances take in work when every one of them has a backlog: 2,000 requests per instance are
sent round-robin at t = 0 and the admission rate (first admissions per second) is read between the
30th and 90th percentile of admissions, while every queue is still non-empty. A stable queue cannot
absorb more than that. Completions are not used: with heavy-tailed output lengths they come
short-first and take minutes to reach a steady mix. Repeats with other seeds agree within about
5%. Results are cached in memory and on disk (``$LLM_ROUTING_ENV_CACHE`` or
``~/.cache/llm_routing_env``), keyed by everything that determines them: the profiles (coefficients
and limits), the scheduler settings, the mix or the trace (its content for a file), the
``overlong`` choice and the source of the modules that compute it (a changed simulator never reads
an old result). A cache that cannot be written is said once (a warning); the rate is still used.

**Requests beyond the context** (``overlong``, default ``"reject"``): the scenario's context is
its smallest instance's ``max_model_len``; :meth:`Workload.fit_context` refuses a request whose
prompt leaves no room for one output token and stops the others at the context, as a vLLM
deployment does (``"clip"`` truncates instead, ``"error"`` raises). Refused requests never reach
the router; each episode counts them (``rejected_overlong``) and the clipped ones
(``clipped_at_context``) in its metrics. Rates count refused requests too (they arrive like the
others), and so does the saturation rate: a load of 1 saturates the cluster with what it serves.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import sys
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cli import entry_point
from .cluster import ClusterConfig, SchedulerConfig
from .profiles import get_profile
from .fitted_traces import FITTED_TRACES, fitted_trace_names, get_fitted_trace
from .sim import ClusterSimulator
from .traces import AZURE_TRACE_HINT, load_trace, replay
from .mixes import generate, get_mix, mix_names
from .sessions import get_session_workload, session_workload_names
from .workload import OVERLONG_CHOICES, Workload

SATURATION_REQUESTS_PER_INSTANCE = 2000
SATURATION_SEED = 20240801
PREDICTOR_TRAIN_SEED = 1_000_003  # a mix's / fitted trace's predictor training sample; no episode uses it
DEFAULT_PREDICTOR_TRAIN_FRACTION = 0.2  # of a trace file, by arrival


@dataclass(frozen=True)
class Scenario:
    """Cluster, workload, arrivals and episode length. ``rate_per_s`` or ``load`` sets the rate."""

    name: str
    description: str = ""
    instances: tuple[str, ...] = ("llama2-7b-v100",) * 4
    scheduler: str = "vllm-v0"
    chunked_prefill: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    prefix_caching: bool | None = None
    cache_knowledge: str = "approximate"
    prefix_index_capacity_blocks: int | None = None
    mix: str | None = "paper-mix"
    trace: str | None = None
    sessions: str | None = None
    arrivals: str = "poisson"
    cv: float | None = None
    rate_per_s: float | None = None
    load: float | None = None
    num_requests: int | None = 2000
    duration_s: float | None = None
    overlong: str = "reject"
    predictor_train_fraction: float | None = None
    predictor_train_trace: str | None = None
    trace_windows: tuple[float, float] | None = None
    source: str = field(default="built-in", compare=False)

    def __post_init__(self) -> None:
        if not self.instances:
            raise ValueError(f"scenario {self.name!r}: the cluster needs at least one instance")
        for p in self.instances:
            get_profile(p)  # unknown profile -> ValueError naming the known ones
        if sum(x is not None for x in (self.mix, self.trace, self.sessions)) != 1:
            raise ValueError(f"scenario {self.name!r}: give exactly one of workload.mix, workload.trace or "
                             "workload.sessions")
        if self.mix is not None and self.mix not in mix_names():
            raise ValueError(f"scenario {self.name!r}: unknown mix {self.mix!r}; known mixes: {', '.join(mix_names())}")
        if self.sessions is not None and self.sessions not in session_workload_names():
            raise ValueError(f"scenario {self.name!r}: unknown session workload {self.sessions!r}; known: "
                             f"{', '.join(session_workload_names())}")
        if self.rate_per_s is not None and self.load is not None:
            raise ValueError(f"scenario {self.name!r}: give exactly one of workload.rate_per_s or workload.load")
        if self.trace is None and self.rate_per_s is None and self.load is None:
            raise ValueError(f"scenario {self.name!r}: give exactly one of workload.rate_per_s or workload.load "
                             "(only a trace may give neither, to play at its own rate)")
        for name in ("rate_per_s", "load", "cv", "duration_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
                raise ValueError(f"scenario {self.name!r}: {name} must be a positive finite number, got {v!r}")
        n = self.num_requests
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"scenario {self.name!r}: num_requests must be a positive integer, got {n!r}")
        if n is None and self.duration_s is None:
            raise ValueError(f"scenario {self.name!r}: give num_requests and/or duration_s (a finite episode)")
        if self.overlong not in OVERLONG_CHOICES:
            raise ValueError(f"scenario {self.name!r}: overlong must be one of {', '.join(OVERLONG_CHOICES)}, "
                             f"got {self.overlong!r}")
        self.cluster_config()  # validates the scheduler options against the profiles
        self._check_predictor_training_part()

    def _check_predictor_training_part(self) -> None:
        """Validate the trace and the predictor's training part (loads the files: errors name them)."""
        frac, train_file = self.predictor_train_fraction, self.predictor_train_trace
        if not self.is_trace_file:
            if frac is not None or train_file is not None or self.trace_windows is not None:
                what = "a mix" if self.mix is not None else \
                    f"the session workload {self.sessions!r}" if self.sessions is not None else \
                    f"the fitted trace {self.trace!r}"
                raise ValueError(f"scenario {self.name!r}: predictor_train_fraction / predictor_train_trace / "
                                 f"trace_windows apply to a trace file only; {what} trains its predictor on seed "
                                 f"{PREDICTOR_TRAIN_SEED}")
            return
        wins = self.trace_windows
        if wins is not None:
            if not isinstance(wins, (tuple, list)) or len(wins) != 2 or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) for v in wins) \
                    or not 0 <= wins[0] < wins[1] <= 1:
                raise ValueError(f"scenario {self.name!r}: trace_windows must be [low, high] fractions with "
                                 f"0 <= low < high <= 1, got {wins!r}")
            object.__setattr__(self, "trace_windows", (float(wins[0]), float(wins[1])))
            if train_file is None and wins[0] < (DEFAULT_PREDICTOR_TRAIN_FRACTION if frac is None else frac):
                raise ValueError(f"scenario {self.name!r}: trace_windows {list(wins)} start inside the predictor's "
                                 f"training part (the first {100 * (DEFAULT_PREDICTOR_TRAIN_FRACTION if frac is None else frac):g}%)")
        if frac is not None and train_file is not None:
            raise ValueError(f"scenario {self.name!r}: give predictor_train_fraction or predictor_train_trace, "
                             "not both")
        if frac is not None and (isinstance(frac, bool) or not isinstance(frac, (int, float))
                                 or not math.isfinite(frac) or not 0 <= frac < 1):
            raise ValueError(f"scenario {self.name!r}: predictor_train_fraction must be in [0, 1), got {frac!r}")
        for key, path in (("trace", self.trace), ("predictor_train_trace", train_file)):
            if path is not None and not Path(path).is_file():
                fitted = f" nor a fitted trace ({', '.join(fitted_trace_names())})" if key == "trace" else ""
                raise ValueError(f"scenario {self.name!r}: {key} {path!r}: no such file{fitted}; "
                                 f"{AZURE_TRACE_HINT}")
        if train_file is not None and _same_file(self.trace, train_file):
            raise ValueError(f"scenario {self.name!r}: predictor_train_trace {train_file!r} is the trace itself: "
                             "the predictor would be trained on the requests it predicts")
        self._trace_parts()  # a malformed file raises TraceError (file, line, column)

    # ----------------------------------------------------------------------------------------
    @property
    def is_trace_file(self) -> bool:
        """True when the workload is a trace file replayed as it is (not a fitted generator)."""
        return self.trace is not None and self.trace not in FITTED_TRACES

    def _trace_parts(self) -> tuple[Workload | None, Workload, str]:
        """A trace file's ``(training part or None, episode part, description of the training part)``."""
        full = _trace_workload(self.trace)
        name = Path(self.trace).name
        if self.predictor_train_trace is not None:
            train = _trace_workload(self.predictor_train_trace)
            return train, full, f"{Path(self.predictor_train_trace).name}, all {len(train):,} requests (a separate file)"
        frac = DEFAULT_PREDICTOR_TRAIN_FRACTION if self.predictor_train_fraction is None \
            else float(self.predictor_train_fraction)
        n_train = int(math.floor(frac * len(full)))  # frac < 1: at least one request is left for episodes
        if n_train == 0:
            return None, full, (f"none: the first {100 * frac:g}% of {name} ({len(full)} request(s)) is empty; "
                                "give predictor_train_trace to fit a predictor")
        lo, hi = n_train, len(full)
        if self.trace_windows is not None:
            lo = max(n_train, int(math.floor(self.trace_windows[0] * len(full))))
            hi = max(lo + 1, int(math.floor(self.trace_windows[1] * len(full))))
        return (full.subset(slice(0, n_train)), full.subset(slice(lo, hi)),
                f"{name} requests 0-{n_train - 1:,} (first {100 * frac:g}% by arrival); "
                f"episodes from requests {lo:,}-{hi - 1:,}")

    def predictor_training_workload(self) -> Workload:
        """The requests a fitted predictor (``task-prior``, ``learned``) is trained on, disjoint from
        every episode: a sample drawn with :data:`PREDICTOR_TRAIN_SEED` for a mix or a fitted trace,
        the declared training part for a trace file (ValueError if it is empty)."""
        if not self.is_trace_file:
            return self.make_workload(PREDICTOR_TRAIN_SEED)
        train, _, desc = self._trace_parts()
        if train is None:
            raise ValueError(f"scenario {self.name!r}: no data to fit the predictor on ({desc}), or use a "
                             "predictor that is not fitted (oracle, noisy)")
        return train

    @property
    def predictor_training_data(self) -> str:
        """Which data a fitted predictor is trained on, in one line (for result files), e.g.
        ``"paper-mix, seed 1000003, 2,000 requests"`` or ``"AzureLLMInferenceTrace_conv.csv requests
        0-3,872 (first 20% by arrival); episodes from requests 3,873-19,365"``."""
        if self.is_trace_file:
            return self._trace_parts()[2]
        n = len(self.make_workload(PREDICTOR_TRAIN_SEED))
        what = self.mix if self.mix is not None else f"sessions {self.sessions}" if self.sessions is not None else \
            f"synthetic {self.trace} (fitted to {get_fitted_trace(self.trace).source.split(' ')[0]})"
        return f"{what}, seed {PREDICTOR_TRAIN_SEED}, {n:,} requests (episodes use other seeds)"

    # ----------------------------------------------------------------------------------------
    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(list(self.instances), SchedulerConfig(
            scheduler=self.scheduler, chunked_prefill=self.chunked_prefill, max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens, prefix_caching=self.prefix_caching),
            cache_knowledge=self.cache_knowledge, prefix_index_capacity_blocks=self.prefix_index_capacity_blocks)

    @property
    def num_instances(self) -> int:
        return len(self.instances)

    @property
    def max_model_len(self) -> int:
        return min(get_profile(p).max_model_len for p in self.instances)

    def with_overrides(self, **changes) -> "Scenario":
        """A copy with some fields changed (``profile=``/``num_instances=`` rebuild ``instances``;
        ``rate_per_s=`` clears ``load`` and vice versa)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        profile = changes.pop("profile", None)
        num = changes.pop("num_instances", None)
        if profile is not None or num is not None:
            profile = self.instances[0] if profile is None else profile
            num = self.num_instances if num is None else num
            if isinstance(num, bool) or not isinstance(num, int) or num < 1:
                raise ValueError(f"num_instances must be a positive integer, got {num!r}")
            changes["instances"] = (profile,) * num
        if "sessions" in changes:
            changes["mix"] = changes["trace"] = None
            for key in ("predictor_train_fraction", "predictor_train_trace", "trace_windows"):
                changes.setdefault(key, None)
        if "rate_per_s" in changes:
            changes["load"] = None
        elif "load" in changes:
            changes["rate_per_s"] = None
        if "trace" in changes:
            changes["mix"] = changes["sessions"] = None
            if "rate_per_s" not in changes and "load" not in changes:  # a new trace plays at its own rate
                changes["rate_per_s"] = changes["load"] = None
            for key in ("predictor_train_fraction", "predictor_train_trace", "trace_windows"):  # the old trace's
                changes.setdefault(key, None)
        changes.setdefault("name", self.name + "*")
        return dataclasses.replace(self, **changes)

    def saturation_rate(self) -> float:
        return saturation_rate(self.cluster_config(), self.mix, self.trace, self.overlong, self.sessions)

    def offered_rate(self) -> float:
        """The mean arrival rate (req/s): ``rate_per_s``, or ``load`` x the saturation rate; a trace
        with neither plays at its own rate (a fitted trace: its source's; a file: its episode part's
        mean rate, NaN when that part spans no time, e.g. one request)."""
        if self.rate_per_s is not None:
            return self.rate_per_s
        if self.load is not None:
            return self.load * self.saturation_rate()
        if not self.is_trace_file:
            return get_fitted_trace(self.trace).rate_per_s
        episodes = self._trace_parts()[1]
        return episodes.mean_rate_per_s if episodes.duration_s > 0 else float("nan")

    def make_workload(self, seed: int | np.random.SeedSequence | None) -> Workload:
        """One episode's requests as the cluster serves them (``overlong``: those beyond the context
        refused or cut; ``context_fit`` says which). For a trace file, the seed picks the window's
        first request in the episode part (never in the predictor's training part); the rate counts
        refused requests too (they arrive like the others)."""
        duration_s = None if self.duration_s is None else self.duration_s * 1.0
        rate = self.offered_rate()
        if self.mix is not None:
            w = generate(self.mix, self.arrivals, rate_per_s=rate, cv=self.cv, n=self.num_requests,
                         duration_s=duration_s, seed=seed)
        elif self.sessions is not None:
            w = get_session_workload(self.sessions).generate(n=self.num_requests, duration_s=duration_s,
                                                             rate_per_s=rate, seed=seed)
        elif not self.is_trace_file:
            w = get_fitted_trace(self.trace).generate(n=self.num_requests, duration_s=duration_s, rate_per_s=rate,
                                                      seed=seed)
        else:
            episodes = self._trace_parts()[1]
            rng = np.random.default_rng(seed)
            n = min(self.num_requests or len(episodes), len(episodes))
            start = int(rng.integers(0, len(episodes) - n + 1))
            window = episodes.subset(np.arange(start, start + n))
            own_rate = self.rate_per_s is None and self.load is None
            w = replay(window, rate_per_s=None if own_rate else rate).workload
            if self.duration_s is not None:
                w = w.window(0.0, self.duration_s)
        return w.fit_context(self.max_model_len, self.overlong)

    def summary_line(self) -> str:
        sat = self.saturation_rate()
        rate = self.offered_rate()
        cluster = _describe_instances(self.instances) + (" chunked" if self.chunked_prefill else "") \
            + (" v1" if self.scheduler == "vllm-v1" else "")
        workload = self.mix if self.mix is not None else f"sessions {self.sessions}" if self.sessions is not None \
            else (f"trace {Path(self.trace).name}" if self.is_trace_file else f"{self.trace} synth.")
        horizon = f"{self.num_requests} req" if self.num_requests else f"{self.duration_s:g} s"
        return (f"{self.name:<20} {cluster:<48} {workload:<18} {rate:>7.1f} req/s  {horizon:<9} "
                f"saturation {sat:>6.1f} req/s  load {rate / sat:>5.2f}")


def _describe_instances(instances) -> str:
    groups: dict[str, int] = {}
    for p in instances:
        groups[p] = groups.get(p, 0) + 1
    return " + ".join(f"{n} x {p}" for p, n in groups.items())


_TRACE_CACHE: dict[str, Workload] = {}


def _trace_workload(trace: str) -> Workload:
    """A trace file, whole, as recorded (episodes fit their own window to the context; cached per
    file version)."""
    st = Path(trace).stat()
    key = (str(Path(trace).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _TRACE_CACHE:
        _TRACE_CACHE[key] = replay(trace).workload
    return _TRACE_CACHE[key]


def _file_sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _same_file(a, b) -> bool:
    pa, pb = Path(a), Path(b)
    return pa.resolve() == pb.resolve() or (pa.stat().st_size == pb.stat().st_size and _file_sha(pa) == _file_sha(pb))


# --------------------------------------------------------------------------------------------
# Saturation
# --------------------------------------------------------------------------------------------

_SATURATION_MEMO: dict[str, float] = {}
_CACHE_WRITE_WARNED = False


def _cache_file() -> Path:
    root = os.environ.get("LLM_ROUTING_ENV_CACHE") or Path.home() / ".cache" / "llm_routing_env"
    return Path(root) / "saturation.json"


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """Digest of the code a saturation rate comes from (simulator, limits, profiles, workloads, mixes and
    the measurement), so that a changed simulator never reads a rate measured by an older one."""
    from . import cluster, mixes, profiles, sessions, workload
    from .sim import prefix_cache, scheduler, simulator, state

    h = hashlib.sha256()
    for module in (simulator, state, scheduler, prefix_cache, cluster, profiles, workload, mixes, sessions):
        h.update(Path(module.__file__).read_bytes())
    h.update(inspect.getsource(measure_saturation_rate).encode())
    return h.hexdigest()


def _saturation_key(config: ClusterConfig, mix, trace, overlong: str = "reject", sessions=None) -> str:
    if sessions is not None:  # the session generator's parameters
        trace_sha = get_session_workload(sessions).digest()
    elif trace in FITTED_TRACES:  # what the measurement samples from: the generator's parameters,
        trace_sha = get_fitted_trace(trace).digest()
    elif trace is not None:  # or the trace's lengths, in order
        full = _trace_workload(trace)
        trace_sha = hashlib.sha256(full.prompt_tokens.tobytes() + full.output_tokens.tobytes()).hexdigest()
    else:
        trace_sha = None
    desc = {
        "profiles": [dataclasses.asdict(p) | {"notes": ""} for p in config.profiles],
        "scheduler": dataclasses.asdict(config.scheduler),
        "mix": mix, "trace": trace, "trace_sha": trace_sha, "overlong": overlong,
        **({"sessions": sessions} if sessions is not None else {}),  # (keys of other workloads unchanged)
        "n": SATURATION_REQUESTS_PER_INSTANCE, "seed": SATURATION_SEED, "code": _code_version(),
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def saturation_rate(config: ClusterConfig, mix: str | None = "paper-mix", trace: str | None = None,
                    overlong: str = "reject", sessions: str | None = None) -> float:
    """The highest rate (req/s) round-robin sustains on ``config`` for this workload (cached)."""
    global _CACHE_WRITE_WARNED
    key = _saturation_key(config, mix, trace, overlong, sessions)
    if key in _SATURATION_MEMO:
        return _SATURATION_MEMO[key]
    path = _cache_file()
    try:
        disk = json.loads(path.read_text())
    except (OSError, ValueError):
        disk = {}
    if not isinstance(disk, dict):
        disk = {}
    if key in disk and isinstance(disk[key], (int, float)):
        _SATURATION_MEMO[key] = float(disk[key])
        return _SATURATION_MEMO[key]
    rate = measure_saturation_rate(config, mix, trace, overlong, sessions=sessions)
    _SATURATION_MEMO[key] = rate
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        disk[key] = rate
        path.write_text(json.dumps(disk, indent=1, sort_keys=True))
    except OSError as e:
        if not _CACHE_WRITE_WARNED:  # once: the rate is still used, only later runs measure it again
            _CACHE_WRITE_WARNED = True
            warnings.warn(f"cannot write the saturation cache {path} ({e}); saturation rates will be measured "
                          "again in every process (set LLM_ROUTING_ENV_CACHE to a writable directory)",
                          RuntimeWarning, stacklevel=2)
    return rate


def measure_saturation_rate(config: ClusterConfig, mix: str | None = "paper-mix", trace: str | None = None,
                            overlong: str = "reject",
                            requests_per_instance: int = SATURATION_REQUESTS_PER_INSTANCE,
                            seed: int = SATURATION_SEED, sessions: str | None = None) -> float:
    """Admission rate of round-robin with a backlog on every instance (no cache); see the module doc.
    The requests are fitted to the smallest context as episodes are (``overlong``); the rate counts
    the refused ones too (they arrive like the others and cost nothing), so that a load of 1 still
    saturates the cluster with the requests it serves. A session workload's requests are measured
    without their prefixes (no cache hits), as the other workloads'."""
    max_len = min(p.max_model_len for p in config.profiles)
    rng = np.random.default_rng(seed)
    num_requests = requests_per_instance * config.num_instances
    if mix is not None:
        prompt, output, _ = get_mix(mix).sample(num_requests, rng)
    elif sessions is not None:
        prompt, output, _ = get_session_workload(sessions).sample_lengths(num_requests, rng)
    elif trace in FITTED_TRACES:
        prompt, output, _ = get_fitted_trace(trace).sample_lengths(num_requests, rng)
    else:
        full = _trace_workload(trace)
        idx = rng.choice(len(full), size=num_requests, replace=num_requests > len(full))
        prompt, output = full.prompt_tokens[idx], full.output_tokens[idx]
    sample = Workload(np.zeros(prompt.size), prompt, output, name=f"the saturation sample of {mix or sessions or trace}")
    served = sample.fit_context(max_len, overlong)
    prompt, output = served.prompt_tokens, served.output_tokens
    n = prompt.size
    sim = ClusterSimulator(config, num_clusters=1, max_requests=n)
    sim.dispatch(0, np.arange(n), np.arange(n) % config.num_instances, prompt, output, 0.0)
    sim.run_until_idle()
    admitted = np.sort(sim.records().first_scheduled_s[0])
    lo, hi = int(0.3 * n), int(0.9 * n)
    return float((hi - lo) / (admitted[hi] - admitted[lo])) * num_requests / n


def round_robin_mean_e2e(scenario: Scenario, seed: int) -> float:
    """Mean E2E (s) of one episode of ``scenario`` routed round-robin on arrival."""
    w = scenario.make_workload(seed)
    n = len(w)
    sim = ClusterSimulator(scenario.cluster_config(), num_clusters=1, max_requests=n)
    for i in range(n):
        sim.advance_to(w.arrival_s[i])
        sim.dispatch(0, i, i % scenario.num_instances, w.prompt_tokens[i], w.output_tokens[i], w.arrival_s[i])
    sim.run_until_idle()
    r = sim.records()
    return float(np.mean(r.completion_s[0] - r.arrival_s[0]))


# --------------------------------------------------------------------------------------------
# Shipped scenarios and loading
# --------------------------------------------------------------------------------------------

_SCENARIOS: dict[str, Scenario] = {}


def register_scenario(s: Scenario) -> Scenario:
    _SCENARIOS[s.name] = s
    return s


register_scenario(Scenario(
    "paper-v100", "the paper's main setting (§5.2): 4 x Llama-2-7B on V100, paper mix, Poisson 20 req/s",
    instances=("llama2-7b-v100",) * 4, rate_per_s=20.0, num_requests=2000))
register_scenario(Scenario(
    "paper-v100-heavy", "paper-v100 at 30 req/s, 1.5x its saturation: queues grow all episode (the paper's "
    "170 s regime is out of reach, see docs/scenarios.md)",
    instances=("llama2-7b-v100",) * 4, rate_per_s=30.0, num_requests=2000))
register_scenario(Scenario(
    "paper-a100", "the paper's A100 setting (§6.3): 4 x Llama-3.1-8B on A100, 80 req/s",
    instances=("llama3.1-8b-a100",) * 4, rate_per_s=80.0, num_requests=4000))
register_scenario(Scenario(
    "paper-a100-chunked", "paper-a100 with vLLM v0's chunked prefill (512-token budget)",
    instances=("llama3.1-8b-a100",) * 4, chunked_prefill=True, rate_per_s=80.0, num_requests=4000))
register_scenario(Scenario(
    "paper-v100-8x", "the paper's scalability setting (A.11): 8 x Llama-2-7B on V100, 40 req/s, 4,000 requests",
    instances=("llama2-7b-v100",) * 8, rate_per_s=40.0, num_requests=4000))
register_scenario(Scenario(
    "paper-v100-regime", "the paper's regime (issue #12, docs/paper-regime.md): 4 x Llama-2-7B on 16 GB V100s, KV "
    "from vLLM's memory arithmetic (292 blocks), 20 req/s: memory-bound, preemptions",
    instances=("llama2-7b-v100-16gb",) * 4, rate_per_s=20.0, num_requests=2000))
register_scenario(Scenario(
    "paper-v100-8x-regime", "paper-v100-regime's cluster at the paper's 8-instance scale (A.11): 8 x 16 GB V100, "
    "40 req/s, 4,000 requests",
    instances=("llama2-7b-v100-16gb",) * 8, rate_per_s=40.0, num_requests=4000))
register_scenario(Scenario(
    "mixed-fleet", "2 x Llama-2-7B A100 + 2 x Llama-2-7B V100 (heterogeneous), paper mix at 0.9 load",
    instances=("llama2-7b-a100",) * 2 + ("llama2-7b-v100",) * 2, load=0.9, num_requests=2000))
register_scenario(Scenario(
    "azure-conv-v100", "synthetic Azure conversation trace (fitted to AzureLLMInferenceTrace_conv.csv) on 4 x "
    "Llama-2-7B V100 at 0.95 load: long prompts, tight KV memory, preemptions",
    instances=("llama2-7b-v100",) * 4, mix=None, trace="azure-conv", load=0.95, num_requests=2000))
register_scenario(Scenario(
    "azure-conv", "synthetic Azure LLM inference 2023 conversation trace (fitted to AzureLLMInferenceTrace_conv.csv) "
    "on 4 x Llama-2-7B A100 at 0.9 load",
    instances=("llama2-7b-a100",) * 4, mix=None, trace="azure-conv", load=0.9, num_requests=2000))
register_scenario(Scenario(
    "azure-code", "synthetic Azure LLM inference 2023 code trace (fitted to AzureLLMInferenceTrace_code.csv) "
    "on 4 x Llama-2-7B A100 at 0.9 load",
    instances=("llama2-7b-a100",) * 4, mix=None, trace="azure-code", load=0.9, num_requests=2000))
# today's fleets (issue #14 §4): Llama-3.1-8B under vLLM v1's scheduler
register_scenario(Scenario(
    "azure-conv-h100-v1", "synthetic Azure 2023 conversation trace on 4 x Llama-3.1-8B H100 under vLLM v1 "
    "(8,192-token budget), 0.9 load",
    instances=("llama3.1-8b-h100",) * 4, scheduler="vllm-v1", mix=None, trace="azure-conv", load=0.9,
    num_requests=2000))
register_scenario(Scenario(
    "azure-code-h100-v1", "synthetic Azure 2023 code trace (long prompts, short answers) on 4 x Llama-3.1-8B H100 "
    "under vLLM v1, 0.9 load",
    instances=("llama3.1-8b-h100",) * 4, scheduler="vllm-v1", mix=None, trace="azure-code", load=0.9,
    num_requests=2000))
register_scenario(Scenario(
    "mixed-a100-h100-v1", "2 x Llama-3.1-8B A100 + 2 x Llama-3.1-8B H100 (heterogeneous) under vLLM v1, synthetic "
    "Azure 2023 conversation trace, 0.9 load",
    instances=("llama3.1-8b-a100",) * 2 + ("llama3.1-8b-h100",) * 2, scheduler="vllm-v1", mix=None,
    trace="azure-conv", load=0.9, num_requests=2000))
# shared prefixes and multi-turn sessions (issue #13 §5): vLLM v1, prefix caching on
register_scenario(Scenario(
    "multiturn-chat", "synthetic multi-turn chat sessions (vLLM's multi-turn benchmark shape: 8 shared system "
    "prompts with Zipf popularity, each turn = the previous prompt + answer + a new message, 26 s median think time) on "
    "4 x Llama-3.1-8B A100 under vLLM v1, 0.9 load",
    instances=("llama3.1-8b-a100",) * 4, scheduler="vllm-v1", mix=None, sessions="chat", load=0.9,
    num_requests=2000))
register_scenario(Scenario(
    "shared-prefix-tenants", "llm-d's benchmark shape: 176 tenants with a 6,000-token shared context each (73% of "
    "the cluster's KV cache), 1,200-token queries, on 4 x Llama-3.1-8B H100 under vLLM v1, 0.9 load",
    instances=("llama3.1-8b-h100",) * 4, scheduler="vllm-v1", mix=None, sessions="tenants", load=0.9,
    num_requests=2000))
register_scenario(Scenario(
    "low-sharing", "multiturn-chat's cluster and lengths with nothing shared (single-turn sessions, no system "
    "prompt): cache-aware routing must gain nothing here",
    instances=("llama3.1-8b-a100",) * 4, scheduler="vllm-v1", mix=None, sessions="no-sharing", load=0.9,
    num_requests=2000))


@dataclass(frozen=True)
class FileScenario:
    """A shipped scenario that replays a trace file we may not ship: the user gives its path in the
    environment variable ``env_var``; :meth:`scenario` builds the scenario on it."""

    name: str
    file_name: str
    env_var: str
    where: str  # where to get the file
    build: object = field(repr=False)  # path -> Scenario

    def path(self) -> Path | None:
        """The file the user gave, or None."""
        value = os.environ.get(self.env_var)
        return Path(value) if value else None

    def missing(self) -> str | None:
        """Why the scenario cannot be built (no path given, or no such file), or None."""
        path = self.path()
        if path is None:
            return (f"scenario {self.name!r} replays {self.file_name}, which does not ship: download it from "
                    f"{self.where} and set {self.env_var}=PATH/{self.file_name}")
        if not path.is_file():
            return (f"scenario {self.name!r}: {self.env_var}={str(path)!r}: no such file; it must be {self.file_name} "
                    f"from {self.where}")
        return None

    def scenario(self) -> Scenario:
        why = self.missing()
        if why is not None:
            raise ValueError(why)
        return self.build(str(self.path()))


MOONCAKE_CONV_SOURCE = ("github.com/kvcache-ai/Mooncake, FAST25-release/traces/ (Apache-2.0; Qin et al., "
                        "\"Mooncake\", FAST 2025)")


def _mooncake_conv(name: str, windows: tuple[float, float], what: str):
    def build(path: str) -> Scenario:
        return Scenario(
            name, f"the Mooncake FAST'25 conversation trace (12,031 requests, prompts of 12,035 tokens on average, "
            f"512-token prefix hashes split into 16-token KV blocks) on 4 x Llama-3.1-8B A100 (128K context) under "
            f"vLLM v1, 0.9 load; {what}",
            instances=("llama3.1-8b-a100",) * 4, scheduler="vllm-v1", mix=None, trace=path, load=0.9,
            num_requests=1000, predictor_train_fraction=0.2, trace_windows=windows)
    return FileScenario(name, "conversation_trace.jsonl", "LLM_ROUTING_ENV_MOONCAKE_CONV", MOONCAKE_CONV_SOURCE, build)


# the trace's first 20% trains the predictor; training episodes are windows of requests 20-80%,
# evaluation episodes windows of the held-out last 20%
FILE_SCENARIOS: dict[str, FileScenario] = {f.name: f for f in (
    _mooncake_conv("mooncake-conv", (0.2, 0.8), "episodes are 1,000-request windows of requests 20-80% (train here)"),
    _mooncake_conv("mooncake-conv-heldout", (0.8, 1.0),
                   "episodes are 1,000-request windows of the held-out requests 80-100% (evaluate here)"),
)}


def scenario_names() -> list[str]:
    """Every shipped scenario, those that need a file (:data:`FILE_SCENARIOS`) last."""
    return list(_SCENARIOS) + list(FILE_SCENARIOS)


_SECTIONS = {
    "": {"name", "description"},
    "cluster": {"profile", "num_instances", "instances", "scheduler", "chunked_prefill", "max_num_seqs",
                "max_num_batched_tokens", "prefix_caching", "cache_knowledge", "prefix_index_capacity_blocks"},
    "workload": {"mix", "trace", "sessions", "arrivals", "cv", "rate_per_s", "load", "num_requests", "duration_s",
                 "overlong", "predictor_train_fraction", "predictor_train_trace", "trace_windows"},
}


def load_scenario(name_or_path) -> Scenario:
    """A shipped scenario by name, or one read from a TOML / YAML file."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in _SCENARIOS:
        return _SCENARIOS[name_or_path]
    if isinstance(name_or_path, str) and name_or_path in FILE_SCENARIOS:
        return FILE_SCENARIOS[name_or_path].scenario()
    path = Path(str(name_or_path))
    if not path.is_file():
        raise ValueError(f"unknown scenario {name_or_path!r}: not a shipped scenario "
                         f"({', '.join(scenario_names())}) and no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ValueError(f"{path}: reading YAML needs pyyaml (pip install 'llm-routing-env[yaml]'), "
                                 "or write the scenario in TOML") from e
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not a valid scenario file: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario file must hold a table of settings")
    fields: dict = {}
    for section, allowed in _SECTIONS.items():
        table = data if section == "" else data.get(section, {})
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [{section}] must be a table")
        keys = {k for k in table if not isinstance(table[k], dict)} if section == "" else set(table)
        unknown = keys - allowed
        if unknown:
            where = f"[{section}]" if section else "top level"
            raise ValueError(f"{path}: unknown setting(s) {sorted(unknown)} at {where}; known: {sorted(allowed)}")
        fields.update({k: table[k] for k in keys})
    unknown_sections = {k for k, v in data.items() if isinstance(v, dict)} - {"cluster", "workload"}
    if unknown_sections:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown_sections)}; known: [cluster], [workload]")
    if "instances" in fields:
        if "profile" in fields or "num_instances" in fields:
            raise ValueError(f"{path}: give either cluster.instances or cluster.profile + num_instances")
        instances = fields.pop("instances")
        if not isinstance(instances, list) or not all(isinstance(p, str) for p in instances):
            raise ValueError(f"{path}: cluster.instances must be a list of profile names")
        fields["instances"] = tuple(instances)
    else:
        profile = fields.pop("profile", "llama2-7b-v100")
        num = fields.pop("num_instances", 4)
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"{path}: cluster.num_instances must be a positive integer, got {num!r}")
        fields["instances"] = (profile,) * num
    if "trace" in fields or "sessions" in fields:
        fields.setdefault("mix", None)
    if isinstance(fields.get("trace_windows"), list):
        fields["trace_windows"] = tuple(fields["trace_windows"])
    for key in ("trace", "predictor_train_trace"):  # a file's path is relative to the scenario file
        value = fields.get(key)
        if isinstance(value, str) and value not in FITTED_TRACES and not Path(value).is_absolute():
            fields[key] = str((path.parent / value).resolve())
    fields.setdefault("name", path.stem)
    try:
        return Scenario(**fields, source=str(path))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


@entry_point("python -m llm_routing_env.scenarios")
def main(argv=None) -> int:
    """List the shipped scenarios (or the named ones / scenario files), one line each, with the load they
    put on their cluster."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m llm_routing_env.scenarios",
                                description="List scenarios with the load each puts on its cluster (offered rate / "
                                            "saturation rate of round-robin).")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"shipped scenario names or TOML/YAML scenario files (default: every shipped one: "
                        f"{', '.join(scenario_names())})")
    args = p.parse_args(argv)
    for name in args.scenarios or scenario_names():
        if name in FILE_SCENARIOS and FILE_SCENARIOS[name].missing():
            print(f"{name:<20} needs a file: {FILE_SCENARIOS[name].missing()}")
            continue
        s = load_scenario(name)
        print(s.summary_line())
        if s.description:
            print(f"{'':<22} {s.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
