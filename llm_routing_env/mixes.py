"""Synthetic request mixes: the paper mix calibrated on a latency profile, pools, ``generate``.

The paper mix (``"paper-mix"``)
------------------------------
The five tasks of the paper's Table 1 (arXiv 2408.13510, §5.1): Books translation, ELI5 QnA,
IMDb sentiment, SQuAD in-context QnA, WNUT-17 entity recognition, drawn with the sample shares
7,351 / 6,988 / 6,564 / 7,122 / 3,304 of 31,329. For every task the generator reproduces the mean
prompt length, the mean decode length and the heavy-decode share of Table 1, with prompts of at
most 1,000 tokens.

*Heavy decode* is the paper's definition made exact against a latency profile: a request is
heavy when its decode phase, run alone on the profile (default ``llama2-7b-v100``), lasts
``>= 5 s``. The decode phase is the ``output - 1`` single-request decode iterations after the
prefill (the prefill produces the first token); iteration ``g = 1 .. output - 1`` has
``ntok = 1`` and decode context ``prompt + g`` and lasts ``iteration_time_ms`` of the profile.
Hence a prompt-dependent threshold ``T(p)``: the smallest output length whose decode phase
reaches 5 s (:func:`heavy_decode_threshold`).

Because that profile is preliminary and will be refitted, nothing below is a hard-coded number:
the distribution parameters are *calibrated at first use* from the registered profile (cached per
profile; a deterministic computation of well under a second):

* Prompt length ``p`` of a task: a *discrete lognormal* on ``[prompt_min, 1000]`` (pmf
  proportional to the lognormal density at the integers, i.e. truncated at 1,000 tokens), with a
  fixed design ``sigma`` and ``mu`` solved so that the truncated mean equals Table 1's.
* Heavy or light: each request is heavy with probability ``h(p) = sigmoid(a + b (ln p - E ln p))``;
  ``b`` is a design choice (0 = no dependence on the prompt), ``a`` is solved so that
  ``E[h(p)]`` equals Table 1's heavy share.
* A *light* request's output is a discrete lognormal on ``[1, T(p) - 1]`` (so it is light by
  construction) whose median scales as ``ratio * p**beta`` (``beta = 1`` for translation: the
  output grows with the text to translate; ``0.8`` for entity recognition; 0 for the others).
* A *heavy* request's output is ``T(p) + e`` with ``e >= 0`` a discrete lognormal excess (shifted
  by one), capped so that ``prompt + output`` never exceeds the profile's ``max_model_len``.
* The mean decode then splits as
  ``M = E[h(p) T(p)] + B`` where ``E[h(p) T(p)]`` is the unavoidable part (every heavy request is
  at least ``T(p)`` long) and the *budget* ``B`` is shared between light requests (a fraction
  ``rho`` of it, a design choice) and the heavy excess (the rest). The light location and the
  heavy-excess location are solved so that each part holds exactly its share.

Every expectation in these equations is an exact sum over the discrete pmfs (no Monte Carlo),
each unknown is a one-dimensional monotone root find, so the achieved means and shares equal the
targets to ~1e-9 (:meth:`TaskMix.fit_table`). If a profile makes Table 1 infeasible (for instance
a 5 s decode that needs more tokens than the mean allows), :class:`CalibrationError` explains
which task and why. ``docs/workloads.md`` lists the fitted parameters and discusses the shapes
Table 1 forces (IMDb, for example: a 41 % heavy share at a mean of only 142.5 tokens leaves
light answers a few tokens long and heavy answers just past the threshold).

Sampling is inverse-CDF from four uniforms per request drawn as one ``(n, 4)`` block, so the
first ``k`` requests of a draw do not depend on ``n``; the same seed gives bit-identical output.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .arrivals import make_arrivals
from .profiles import LatencyProfile, get_profile, iteration_time_ms
from .workload import Workload

__all__ = [
    "TaskTarget",
    "TaskDesign",
    "PAPER_TABLE1",
    "PAPER_MIX_DESIGN",
    "PAPER_MAX_PROMPT_TOKENS",
    "HEAVY_DECODE_S",
    "DEFAULT_PROFILE",
    "CalibrationError",
    "CalibrationWarning",
    "TaskMix",
    "PoolMix",
    "get_mix",
    "mix_names",
    "sample_paper_mix",
    "generate",
    "single_decode_time_s",
    "heavy_decode_threshold",
    "is_heavy_decode",
    "format_fit_table",
]

DEFAULT_PROFILE = "llama2-7b-v100"
HEAVY_DECODE_S = 5.0  # paper §1.3: a decode phase of >= 5 s is heavy
PAPER_MAX_PROMPT_TOKENS = 1000  # paper §5.1: prompts of at most 1,000 tokens


# =============================================================================================
# Decode time on a profile, heavy-decode threshold
# =============================================================================================


@functools.lru_cache(maxsize=32)
def _cumulative_decode_ms(profile: LatencyProfile, size: int) -> np.ndarray:
    """``C[k] = sum_{c=1..k} t(c)``, ``t(c)`` = a lone decode iteration with context ``c`` (ms)."""
    ctx = np.arange(1, size + 1, dtype=np.float64)
    t = iteration_time_ms(profile.coefficients, 1, 0.0, 0.0, ctx)
    c = np.empty(size + 1, dtype=np.float64)
    c[0] = 0.0
    np.cumsum(t, out=c[1:])
    return c


def _table_for(profile: LatencyProfile, needed: int) -> np.ndarray:
    size = max(int(profile.max_model_len), int(needed))
    size = 1 << max(12, (size - 1).bit_length())  # a few cached sizes only
    return _cumulative_decode_ms(profile, size)


def single_decode_time_s(prompt_tokens, output_tokens, profile=DEFAULT_PROFILE) -> np.ndarray:
    """Decode-phase duration (s) of requests run alone: iterations ``g = 1 .. output - 1`` with
    ``ntok = 1`` and decode context ``prompt + g`` (the first token comes from the prefill)."""
    prof = get_profile(profile)
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    if (p < 0).any() or (o < 1).any():
        raise ValueError("prompt_tokens must be >= 0 and output_tokens >= 1")
    top = int(np.max(p + o)) if p.size or o.size else 1
    c = _table_for(prof, top)
    return (c[p + o - 1] - c[p]) / 1000.0


def heavy_decode_threshold(prompt_tokens, profile=DEFAULT_PROFILE, seconds: float = HEAVY_DECODE_S) -> np.ndarray:
    """Smallest output length whose lone decode phase lasts ``>= seconds`` on ``profile``, per prompt.

    Consistent with :func:`single_decode_time_s` to the last bit: ``is_heavy = output >= T(p)``.
    """
    prof = get_profile(profile)
    p = np.atleast_1d(np.asarray(prompt_tokens, dtype=np.int64))
    target_ms = float(seconds) * 1000.0
    if not target_ms > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    size = int(p.max()) + 16 if p.size else 16
    while True:
        c = _table_for(prof, size)
        if c[-1] - c[int(p.max()) if p.size else 0] >= target_ms:
            break
        size = 2 * (c.size - 1)
        if size > 1 << 26:
            raise ValueError(f"profile {prof.name!r}: a decode phase never reaches {seconds} s")
    k = np.searchsorted(c, c[p] + target_ms, side="left")
    o = k - p + 1
    # fix the rounding of c[k] >= c[p] + x versus c[k] - c[p] >= x
    dur = lambda oo: c[np.minimum(p + oo - 1, c.size - 1)] - c[p]  # noqa: E731
    o = np.where(dur(o) < target_ms, o + 1, o)
    o = np.where((o > 1) & (dur(np.maximum(o - 1, 1)) >= target_ms), o - 1, o)
    o = np.maximum(o, 1)
    return o if np.ndim(prompt_tokens) else o[:1].reshape(())


def is_heavy_decode(prompt_tokens, output_tokens, profile=DEFAULT_PROFILE, seconds: float = HEAVY_DECODE_S) -> np.ndarray:
    """Whether each request's lone decode phase lasts at least ``seconds`` (paper: 5 s)."""
    return single_decode_time_s(prompt_tokens, output_tokens, profile) * 1000.0 >= float(seconds) * 1000.0


# =============================================================================================
# The paper mix: targets, design choices, calibration
# =============================================================================================


@dataclass(frozen=True)
class TaskTarget:
    """One row of the paper's Table 1."""

    name: str
    label: str
    samples: int
    mean_prompt: float
    mean_decode: float
    heavy_share: float  # fraction of requests with a >= 5 s decode phase


PAPER_TABLE1: tuple[TaskTarget, ...] = (
    TaskTarget("books-translation", "Books (OPUS) translation", 7351, 29.09, 61.76, 0.0918),
    TaskTarget("eli5-qna", "ELI5 QnA", 6988, 29.83, 334.40, 0.5818),
    TaskTarget("imdb-sentiment", "IMDb sentiment analysis", 6564, 211.54, 142.53, 0.4101),
    TaskTarget("squad-context-qna", "SQuAD in-context QnA", 7122, 125.16, 220.02, 0.4795),
    TaskTarget("wnut-ner", "WNUT-17 entity recognition", 3304, 26.41, 64.10, 0.0871),
)


@dataclass(frozen=True)
class TaskDesign:
    """Shape choices for one task (the targets fix the rest).

    ``prompt_min``/``prompt_sigma``: support floor (the instruction template's length) and log-
    spread of the prompt; ``light_sigma``: log-spread of a light output around its median;
    ``light_prompt_exponent`` (beta): the light median scales as ``prompt**beta``;
    ``heavy_slope`` (b): log-odds of being heavy per unit of ``ln prompt``;
    ``heavy_sigma``: log-spread of the heavy excess; ``light_budget_share`` (rho): the part of the
    decode budget above the heavy floor carried by light requests.
    """

    prompt_min: int
    prompt_sigma: float
    light_sigma: float
    light_prompt_exponent: float
    heavy_slope: float
    heavy_sigma: float
    light_budget_share: float


PAPER_MIX_DESIGN: dict[str, TaskDesign] = {
    # translation: output ~ ratio * prompt; longer texts more often run past 5 s
    "books-translation": TaskDesign(8, 0.50, 0.35, 1.0, 0.8, 1.0, 0.85),
    # open questions: answer length independent of the (short) question
    "eli5-qna": TaskDesign(4, 0.45, 0.60, 0.0, 0.0, 0.8, 0.55),
    # sentiment: a short verdict or a long explanation; weak dependence on review length
    "imdb-sentiment": TaskDesign(20, 0.70, 0.80, 0.0, 0.3, 1.0, 0.80),
    # question + 4 options: pick and explain; weak dependence on the prompt
    "squad-context-qna": TaskDesign(20, 0.45, 0.70, 0.0, 0.3, 0.9, 0.80),
    # entity recognition: the entity list grows with the sentence
    "wnut-ner": TaskDesign(14, 0.25, 0.50, 0.8, 0.5, 1.0, 0.80),
}


class CalibrationError(ValueError):
    """The targets cannot be met on this profile (the message says which task and why)."""


class CalibrationWarning(UserWarning):
    """A target had to be relaxed on this profile (the message says which and by how much)."""


_MIN_LIGHT_MEAN = 2.0  # tokens: light answers of a single token on average would be degenerate
_MIN_HEAVY_EXCESS = 1.0  # tokens past the threshold, on average


def _solve_increasing(f, target: float, lo: float, hi: float, what: str, xtol: float = 1e-11) -> float:
    """Root of an increasing function ``f(x) = target`` (bracket expanded as needed; Illinois)."""
    flo, fhi = f(lo) - target, f(hi) - target
    for _ in range(60):
        if flo <= 0:
            break
        lo, flo = lo - 2 * (hi - lo), f(lo - 2 * (hi - lo)) - target
    for _ in range(60):
        if fhi >= 0:
            break
        hi, fhi = hi + 2 * (hi - lo), f(hi + 2 * (hi - lo)) - target
    if flo > 0 or fhi < 0:
        raise CalibrationError(f"{what}: target {target!r} is out of reach")
    side = 0
    for _ in range(200):
        if fhi == flo:
            x = 0.5 * (lo + hi)
        else:
            x = hi - fhi * (hi - lo) / (fhi - flo)
            if not lo < x < hi:
                x = 0.5 * (lo + hi)
        fx = f(x) - target
        if fx == 0 or hi - lo < xtol * max(1.0, abs(x)):
            return x
        if fx < 0:
            lo, flo = x, fx
            if side == -1:
                fhi *= 0.5
            side = -1
        else:
            hi, fhi = x, fx
            if side == 1:
                flo *= 0.5
            side = 1
    return 0.5 * (lo + hi)


def _dln_rows(k: np.ndarray, mu: np.ndarray, sigma: float, upper: np.ndarray) -> np.ndarray:
    """Row-normalised discrete lognormal pmfs: row i on ``k <= upper[i]`` with location ``mu[i]``."""
    lk = np.log(k)[None, :]
    logp = -lk - (lk - mu[:, None]) ** 2 / (2.0 * sigma * sigma)
    logp = np.where(k[None, :] <= upper[:, None], logp, -np.inf)
    logp -= logp.max(axis=1, keepdims=True)
    w = np.exp(logp)
    return w / w.sum(axis=1, keepdims=True)


def _dln(k: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return _dln_rows(k, np.array([mu]), sigma, np.array([k.max()]))[0]


def _cdf(pmf: np.ndarray) -> np.ndarray:
    c = np.cumsum(pmf, axis=-1)
    c /= c[..., -1:]
    return c


@dataclass(frozen=True, eq=False)
class FittedTask:
    """The calibrated distributions of one task (all pmfs are exact, sampling is inverse-CDF)."""

    target: TaskTarget
    design: TaskDesign
    prompt_values: np.ndarray  # (P,) support p_min..p_max
    prompt_pmf: np.ndarray  # (P,)
    prompt_mu: float
    threshold: np.ndarray  # (P,) heavy threshold T(p)
    heavy_prob: np.ndarray  # (P,) h(p)
    heavy_intercept: float
    light_pmf: np.ndarray  # (P, K) rows over outputs 1..K, zero at k >= T(p)
    light_mu: float  # location at p = 1: row mu = light_mu + beta * ln p
    excess_pmf: np.ndarray  # (E+1,) over e = 0..E
    excess_mu: float
    budget: float
    _prompt_cdf: np.ndarray = field(repr=False)
    _light_cdf_flat: np.ndarray = field(repr=False)
    _excess_cdf: np.ndarray = field(repr=False)

    @property
    def light_mean_by_prompt(self) -> np.ndarray:
        k = np.arange(1, self.light_pmf.shape[1] + 1)
        return self.light_pmf @ k

    @property
    def excess_mean(self) -> float:
        return float(self.excess_pmf @ np.arange(self.excess_pmf.size))

    def stats(self) -> dict:
        """Exact means and shares of the fitted distributions."""
        q, h = self.prompt_pmf, self.heavy_prob
        light_mean = float(q @ ((1 - h) * self.light_mean_by_prompt)) / float(q @ (1 - h))
        heavy_mean = float(q @ (h * (self.threshold + self.excess_mean))) / float(q @ h)
        return {
            "mean_prompt": float(q @ self.prompt_values),
            "mean_decode": float(q @ ((1 - h) * self.light_mean_by_prompt + h * (self.threshold + self.excess_mean))),
            "heavy_share": float(q @ h),
            "light_mean_decode": light_mean,
            "heavy_mean_decode": heavy_mean,
            "threshold_min": int(self.threshold.min()),
            "threshold_max": int(self.threshold.max()),
        }

    def sample(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and output tokens from uniforms ``u`` of shape (n, 3) (prompt, class, length)."""
        n = u.shape[0]
        pi = np.searchsorted(self._prompt_cdf, u[:, 0], side="right")
        pi = np.minimum(pi, self.prompt_values.size - 1)
        prompt = self.prompt_values[pi]
        heavy = u[:, 1] < self.heavy_prob[pi]
        out = np.empty(n, dtype=np.int64)
        # light: per-row inverse CDF through one flattened search (row r lives in [r, r + 1])
        lm = ~heavy
        if lm.any():
            K = self.light_pmf.shape[1]
            rows = pi[lm]
            j = np.searchsorted(self._light_cdf_flat, u[lm, 2] + rows, side="right") - rows * K
            out[lm] = np.clip(j + 1, 1, self.threshold[rows] - 1)
        if heavy.any():
            e = np.searchsorted(self._excess_cdf, u[heavy, 2], side="right")
            e = np.minimum(e, self._excess_cdf.size - 1)
            out[heavy] = self.threshold[pi[heavy]] + e
        return prompt, out


def _fit_task(target: TaskTarget, design: TaskDesign, profile: LatencyProfile, max_prompt: int) -> FittedTask:
    d = design
    label = f"task {target.name!r} on profile {profile.name!r}"
    # 1. prompt: discrete lognormal on [prompt_min, max_prompt]
    pv = np.arange(d.prompt_min, max_prompt + 1, dtype=np.int64)
    pk = pv.astype(np.float64)
    if not d.prompt_min < target.mean_prompt < max_prompt:
        raise CalibrationError(f"{label}: mean prompt {target.mean_prompt} outside ({d.prompt_min}, {max_prompt})")
    prompt_mu = _solve_increasing(lambda m: float(_dln(pk, m, d.prompt_sigma) @ pk), target.mean_prompt,
                                  math.log(target.mean_prompt) - 1, math.log(target.mean_prompt) + 1, f"{label} prompt")
    q = _dln(pk, prompt_mu, d.prompt_sigma)
    # 2. threshold T(p); heavy requests must fit in the context
    T = heavy_decode_threshold(pv, profile)
    max_len = profile.max_model_len
    e_cap = int(np.min(max_len - pv - T))
    if T.min() < 2 or e_cap < 0:
        raise CalibrationError(
            f"{label}: the {HEAVY_DECODE_S} s heavy-decode threshold ({int(T.min())}..{int(T.max())} output tokens) "
            f"does not fit between 2 tokens and max_model_len={max_len} minus the prompt"
        )
    # 3. heavy probability h(p) = sigmoid(a + b (ln p - E ln p)) and the budget split
    z = np.log(pk) - float(q @ np.log(pk))
    sig = lambda a: 1.0 / (1.0 + np.exp(-(a + d.heavy_slope * z)))  # noqa: E731
    light_max = 0.8 * (float(q @ T) - 1.0)  # keep light outputs clear of their truncation
    excess_max = 0.5 * e_cap

    def heavy_for(w):
        a = _solve_increasing(lambda a: float(q @ sig(a)), w, math.log(w / (1 - w)) - 1,
                              math.log(w / (1 - w)) + 1, f"{label} heavy share")
        h = sig(a)
        return a, h, target.mean_decode - float(q @ (h * T)), float(q @ (1 - h))

    def split(w):
        """(light mean, heavy excess mean) for heavy share w, or None if w is infeasible."""
        a, h, budget, lw = heavy_for(w)
        light = min(max(d.light_budget_share * budget / lw, _MIN_LIGHT_MEAN), light_max)
        excess = (budget - lw * light) / w
        if excess < _MIN_HEAVY_EXCESS:
            excess = _MIN_HEAVY_EXCESS
            light = (budget - w * excess) / lw
        if light < _MIN_LIGHT_MEAN:
            return None
        return a, h, budget, lw, light, excess

    w = target.heavy_share
    sol = split(w)
    if sol is None:
        # Table 1's mean is too small for its heavy share on this profile: keep the mean, lower the
        # share to the largest feasible one (a warning says by how much).
        lo, hi = 0.0, w
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if mid > 0 and split(mid) is not None:
                lo = mid
            else:
                hi = mid
        if lo <= 1e-6:
            raise CalibrationError(
                f"{label}: even without heavy requests the mean decode {target.mean_decode} cannot be met "
                f"(heavy threshold {int(T.min())}..{int(T.max())} tokens)"
            )
        warnings.warn(
            f"{label}: a heavy share of {100 * w:.2f}% with a mean decode of {target.mean_decode} tokens is "
            f"infeasible when heavy requests need >= {int(T.min())}..{int(T.max())} output tokens; "
            f"using the largest feasible share {100 * lo:.2f}% (the mean is kept)",
            CalibrationWarning, stacklevel=4,
        )
        w = lo
        sol = split(w)
    a, h, budget, light_weight, light_target, excess_target = sol
    if excess_target > excess_max:
        raise CalibrationError(
            f"{label}: the mean decode {target.mean_decode} tokens needs a heavy excess of {excess_target:.0f} "
            f"tokens on this profile, more than the context allows ({excess_max:.0f})"
        )
    light_mass = light_weight * light_target
    # 4. light outputs: rows over k = 1..max(T)-1, row p truncated at T(p) - 1, median ~ ratio * p**beta
    K = int(T.max()) - 1
    kk = np.arange(1, K + 1, dtype=np.float64)
    upper = (T - 1).astype(np.float64)
    blp = d.light_prompt_exponent * np.log(pk)
    wl = q * (1 - h)

    def light_mass_of(mu0):
        rows = _dln_rows(kk, mu0 + blp, d.light_sigma, upper)
        return float(wl @ (rows @ kk))

    guess = math.log(light_target) - float(q @ blp)
    light_mu = _solve_increasing(light_mass_of, light_mass, guess - 1, guess + 1, f"{label} light decode")
    light_pmf = _dln_rows(kk, light_mu + blp, d.light_sigma, upper)
    # 5. heavy excess e = k - 1, k discrete lognormal on 1..e_cap+1
    ek = np.arange(1, e_cap + 2, dtype=np.float64)
    excess_mu = _solve_increasing(lambda m: float(_dln(ek, m, d.heavy_sigma) @ ek) - 1.0, excess_target,
                                  math.log(excess_target + 1) - 1, math.log(excess_target + 1) + 1,
                                  f"{label} heavy excess")
    excess_pmf = _dln(ek, excess_mu, d.heavy_sigma)
    light_cdf = _cdf(light_pmf)
    light_cdf[np.arange(light_cdf.shape[0]), (T - 2)] = 1.0
    light_cdf = np.where(kk[None, :] >= upper[:, None], 1.0, light_cdf)
    flat = (light_cdf + np.arange(light_cdf.shape[0])[:, None]).ravel()
    return FittedTask(
        target=target, design=d, prompt_values=pv, prompt_pmf=q, prompt_mu=prompt_mu, threshold=T,
        heavy_prob=h, heavy_intercept=a, light_pmf=light_pmf, light_mu=light_mu, excess_pmf=excess_pmf,
        excess_mu=excess_mu, budget=budget, _prompt_cdf=_cdf(q), _light_cdf_flat=flat,
        _excess_cdf=_cdf(excess_pmf),
    )


class TaskMix:
    """A calibrated mixture of tasks: ``sample(n, rng) -> (prompt_tokens, output_tokens, task)``."""

    def __init__(self, name: str, targets, designs: dict, profile=DEFAULT_PROFILE,
                 max_prompt_tokens: int = PAPER_MAX_PROMPT_TOKENS):
        self.name = name
        self.profile = get_profile(profile)
        self.targets = tuple(targets)
        self.task_names = tuple(t.name for t in self.targets)
        self.max_prompt_tokens = int(max_prompt_tokens)
        counts = np.array([t.samples for t in self.targets], dtype=np.float64)
        self.task_shares = counts / counts.sum()
        self._task_cdf = _cdf(self.task_shares)
        self.tasks = tuple(_fit_task(t, designs[t.name], self.profile, self.max_prompt_tokens) for t in self.targets)

    def __repr__(self) -> str:
        return f"TaskMix({self.name!r}, profile={self.profile.name!r}, tasks={self.task_names})"

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` requests: int64 arrays ``prompt_tokens``, ``output_tokens`` (true) and ``task``."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        u = rng.random((int(n), 4))
        task = np.minimum(np.searchsorted(self._task_cdf, u[:, 0], side="right"), len(self.tasks) - 1).astype(np.int64)
        prompt = np.empty(int(n), dtype=np.int64)
        output = np.empty(int(n), dtype=np.int64)
        for k, ft in enumerate(self.tasks):
            m = task == k
            if m.any():
                prompt[m], output[m] = ft.sample(u[m, 1:])
        return prompt, output, task

    def fit_table(self) -> list[dict]:
        """Per task: the Table 1 targets, the exact achieved values and the fitted parameters."""
        rows = []
        for ft in self.tasks:
            s = ft.stats()
            t = ft.target
            rows.append({
                "task": t.name,
                "share": t.samples / sum(x.samples for x in self.targets),
                "target_mean_prompt": t.mean_prompt,
                "mean_prompt": s["mean_prompt"],
                "target_mean_decode": t.mean_decode,
                "mean_decode": s["mean_decode"],
                "target_heavy_share": t.heavy_share,
                "heavy_share": s["heavy_share"],
                "light_mean_decode": s["light_mean_decode"],
                "heavy_mean_decode": s["heavy_mean_decode"],
                "threshold_tokens": (s["threshold_min"], s["threshold_max"]),
                "prompt": {"support": (int(ft.prompt_values[0]), int(ft.prompt_values[-1])),
                           "mu": ft.prompt_mu, "sigma": ft.design.prompt_sigma},
                "heavy_prob": {"intercept": ft.heavy_intercept, "slope": ft.design.heavy_slope},
                "light": {"mu_at_p1": ft.light_mu, "sigma": ft.design.light_sigma,
                          "prompt_exponent": ft.design.light_prompt_exponent,
                          "median_at_mean_prompt": math.exp(ft.light_mu + ft.design.light_prompt_exponent
                                                            * math.log(t.mean_prompt))},
                "heavy_excess": {"mu": ft.excess_mu, "sigma": ft.design.heavy_sigma, "mean": ft.excess_mean,
                                 "cap": int(ft.excess_pmf.size - 1)},
                "budget_tokens": ft.budget,
                "light_budget_share": ft.design.light_budget_share,
            })
        return rows

    def bucket_probabilities(self, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact ``P(bucket | task, prompt)`` for buckets with lower ``edges`` (first 0).

        Returns ``(prompt_values, joint, cond)`` with ``prompt_values`` = 1..max_prompt,
        ``joint[t, p, j] = P(task=t, prompt=p, bucket=j)`` and ``cond = P(bucket | task, prompt)``
        (0 where the prompt is outside a task's support). Used for the Bayes-optimal accuracy.
        """
        edges = np.asarray(edges, dtype=np.int64)
        pv_all = np.arange(1, self.max_prompt_tokens + 1)
        J = edges.size
        cond = np.zeros((len(self.tasks), pv_all.size, J))
        joint = np.zeros_like(cond)
        for t, ft in enumerate(self.tasks):
            K = ft.light_pmf.shape[1]
            light_cdf = np.concatenate([np.zeros((ft.light_pmf.shape[0], 1)), np.cumsum(ft.light_pmf, axis=1)], axis=1)
            ex_cdf = np.concatenate([[0.0], np.cumsum(ft.excess_pmf)])
            below = np.zeros((ft.prompt_values.size, J + 1))  # P(output < edge)
            for j, edge in enumerate(list(edges[1:]) + [None]):
                if edge is None:
                    below[:, j + 1] = 1.0
                    continue
                li = np.clip(edge - 1, 0, K)  # P(light <= edge-1)
                pl = light_cdf[:, li]
                ei = np.clip(edge - ft.threshold, 0, ex_cdf.size - 1)  # P(e <= edge-1-T)
                ph = ex_cdf[ei]
                below[:, j + 1] = (1 - ft.heavy_prob) * pl + ft.heavy_prob * ph
            c = np.diff(below, axis=1)
            rows = ft.prompt_values - 1
            cond[t, rows] = c
            joint[t, rows] = c * (self.task_shares[t] * ft.prompt_pmf)[:, None]
        return pv_all, joint, cond

    def bayes_accuracy(self, edges, use_task: bool = True) -> float:
        """Best possible bucket accuracy of any predictor seeing (task, prompt) or prompt only."""
        _, joint, _ = self.bucket_probabilities(edges)
        if use_task:
            return float(joint.max(axis=2).sum())
        return float(joint.sum(axis=0).max(axis=1).sum())


class PoolMix:
    """Requests drawn uniformly with replacement from a pool (a :class:`Workload`), as the paper
    samples its Table 1 pool; arrivals come from the arrival process, not from the pool."""

    def __init__(self, pool: Workload):
        if not isinstance(pool, Workload) or len(pool) == 0:
            raise ValueError("a PoolMix needs a non-empty Workload")
        self.pool = pool
        self.name = f"pool:{pool.name}"
        self.task_names = pool.task_names

    def sample(self, n: int, rng: np.random.Generator):
        idx = rng.integers(0, len(self.pool), int(n))
        return self.pool.prompt_tokens[idx].copy(), self.pool.output_tokens[idx].copy(), self.pool.task[idx].copy()


_MIX_BUILDERS = {
    "paper-mix": lambda profile: TaskMix("paper-mix", PAPER_TABLE1, PAPER_MIX_DESIGN, profile),
}


def mix_names() -> list[str]:
    return sorted(_MIX_BUILDERS)


@functools.lru_cache(maxsize=16)
def _cached_mix(name: str, profile: LatencyProfile):
    return _MIX_BUILDERS[name](profile)


def get_mix(mix="paper-mix", profile=DEFAULT_PROFILE):
    """A calibrated mix by name (cached per profile); a TaskMix/PoolMix passes through, a Workload
    becomes a :class:`PoolMix`."""
    if isinstance(mix, (TaskMix, PoolMix)):
        return mix
    if isinstance(mix, Workload):
        return PoolMix(mix)
    if not isinstance(mix, str) or mix not in _MIX_BUILDERS:
        raise ValueError(f"unknown mix {mix!r}; known mixes: {', '.join(mix_names())} (or a Workload pool)")
    return _cached_mix(mix, get_profile(profile))


def sample_paper_mix(n: int, rng: np.random.Generator, profile=DEFAULT_PROFILE):
    """``n`` paper-mix requests: ``(prompt_tokens, output_tokens, task)`` int64 arrays."""
    return get_mix("paper-mix", profile).sample(n, rng)


def generate(mix="paper-mix", arrivals="poisson", *, rate_per_s: float | None = None, cv: float | None = None,
             n: int | None = None, duration_s: float | None = None, seed=None,
             profile=DEFAULT_PROFILE) -> Workload:
    """A synthetic workload: request contents from ``mix``, times from ``arrivals``.

    ``arrivals`` is an :class:`~llm_routing_env.arrivals.ArrivalProcess` or a name
    (``"poisson"``, ``"gamma"``/``"bursty"`` with ``cv``, ``"constant"``) with ``rate_per_s``.
    The horizon is ``n`` requests and/or ``duration_s`` seconds. ``seed`` (int, SeedSequence or
    None) feeds two independent streams, one for arrival times and one for contents, so the same
    seed gives the same request contents whatever the arrival process (paired comparisons).
    """
    m = get_mix(mix, profile)
    proc = make_arrivals(arrivals, rate_per_s, cv)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    arr_ss, content_ss = ss.spawn(2)
    times = proc.sample(np.random.default_rng(arr_ss), n=n, duration_s=duration_s)
    prompt, output, task = m.sample(times.size, np.random.default_rng(content_ss))
    desc = f"{m.name} {proc.kind}@{proc.rate_per_s:g}/s" + (f" cv={proc.cv:g}" if hasattr(proc, "cv") else "")
    return Workload(times, prompt, output, task, m.task_names, name=f"{desc} seed={ss.entropy}")


def format_fit_table(mix=None) -> str:
    """The calibration of a TaskMix as a Markdown table (targets vs exact achieved values)."""
    mix = get_mix("paper-mix") if mix is None else mix
    lines = [
        f"paper-mix calibrated on profile {mix.profile.name!r} (heavy decode >= {HEAVY_DECODE_S:g} s run alone)",
        "",
        "| task | share | mean prompt (target / fit) | mean decode (target / fit) | heavy (target / fit) "
        "| T(p) tokens | light mean | heavy mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in mix.fit_table():
        lines.append(
            f"| {r['task']} | {100 * r['share']:.2f}% | {r['target_mean_prompt']:.2f} / {r['mean_prompt']:.2f} "
            f"| {r['target_mean_decode']:.2f} / {r['mean_decode']:.2f} "
            f"| {100 * r['target_heavy_share']:.2f}% / {100 * r['heavy_share']:.2f}% "
            f"| {r['threshold_tokens'][0]}-{r['threshold_tokens'][1]} | {r['light_mean_decode']:.1f} "
            f"| {r['heavy_mean_decode']:.1f} |"
        )
    lines += ["", "| task | prompt [min, max], mu, sigma | heavy-prob intercept, slope "
              "| light mu(p=1), sigma, beta | heavy excess mu, sigma, mean | budget B, rho |", "|---|---|---|---|---|---|"]
    for r in mix.fit_table():
        pr, h, li, e = r["prompt"], r["heavy_prob"], r["light"], r["heavy_excess"]
        lines.append(
            f"| {r['task']} | [{pr['support'][0]}, {pr['support'][1]}], {pr['mu']:.4f}, {pr['sigma']:g} "
            f"| {h['intercept']:.4f}, {h['slope']:g} | {li['mu_at_p1']:.4f}, {li['sigma']:g}, {li['prompt_exponent']:g} "
            f"| {e['mu']:.4f}, {e['sigma']:g}, {e['mean']:.2f} | {r['budget_tokens']:.2f}, {r['light_budget_share']:g} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(format_fit_table(get_mix("paper-mix", sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PROFILE)))
