"""Arrival processes: when requests reach the router.

Every process here is a *renewal process started at an arrival*: the first request arrives at
``t = 0`` and the gaps between successive requests are i.i.d. with mean ``1 / rate_per_s``. So
``n`` arrivals span ``n - 1`` gaps, and the natural rate estimate of a realisation is
``(n - 1) / (t[-1] - t[0])`` (:func:`mean_rate`).

* :class:`PoissonArrivals`: exponential gaps (coefficient of variation 1).
* :class:`GammaArrivals`: Gamma gaps with a chosen coefficient of variation ``cv`` (shape
  ``1 / cv**2``); ``cv > 1`` is bursty, ``cv < 1`` more regular than Poisson, ``cv = 1`` has the
  law of Poisson (but another random stream than :class:`PoissonArrivals`).
* :class:`ConstantArrivals`: a gap of exactly ``1 / rate_per_s`` (deterministic).

The horizon is finite, by count (``n`` arrivals), by duration (every arrival in
``[0, duration_s)``) or both (whichever ends first). All randomness comes from the
``numpy.random.Generator`` passed in, so the same seed gives bit-identical times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArrivalProcess",
    "PoissonArrivals",
    "GammaArrivals",
    "ConstantArrivals",
    "make_arrivals",
    "mean_rate",
    "interarrival_cv",
    "ARRIVAL_KINDS",
]


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _check_horizon(n, duration_s):
    if n is None and duration_s is None:
        raise ValueError("give a finite horizon: n (number of arrivals) and/or duration_s")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
    if duration_s is not None:
        duration_s = _check_positive("duration_s", duration_s)
    return n, duration_s


@dataclass(frozen=True)
class ArrivalProcess:
    """Base class: a renewal process with mean rate ``rate_per_s`` (requests per second)."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_per_s", _check_positive("rate_per_s", self.rate_per_s))

    @property
    def kind(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def gaps(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` i.i.d. inter-arrival gaps in seconds."""
        raise NotImplementedError  # pragma: no cover

    def sample(self, rng: np.random.Generator, n: int | None = None, duration_s: float | None = None) -> np.ndarray:
        """Arrival times (float64 seconds, sorted, the first at 0).

        ``n``: at most this many arrivals; ``duration_s``: only arrivals before this time. At least
        one of the two is required; with both, whichever ends first.
        """
        n, duration_s = _check_horizon(n, duration_s)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        if duration_s is None:
            return self._times_from_gaps(self.gaps(rng, n - 1))
        # By duration: draw gaps in chunks sized from the expected count until past the horizon.
        expected = duration_s * self.rate_per_s
        chunk = int(expected + 6 * math.sqrt(expected + 1) + 16)
        if n is not None:
            chunk = min(chunk, n - 1)
        parts: list[np.ndarray] = []
        total_time = 0.0
        drawn = 0
        while total_time < duration_s and (n is None or drawn < n - 1):
            size = chunk if n is None else min(chunk, n - 1 - drawn)
            if size <= 0:
                break
            g = self.gaps(rng, size)
            parts.append(g)
            drawn += size
            total_time += float(g.sum())
            chunk = max(16, chunk // 4)
        times = self._times_from_gaps(np.concatenate(parts) if parts else np.zeros(0))
        times = times[times < duration_s]
        if n is not None:
            times = times[:n]
        return times

    @staticmethod
    def _times_from_gaps(gaps: np.ndarray) -> np.ndarray:
        times = np.empty(gaps.size + 1, dtype=np.float64)
        times[0] = 0.0
        np.cumsum(gaps, out=times[1:])
        return times


@dataclass(frozen=True)
class PoissonArrivals(ArrivalProcess):
    """Poisson arrivals: exponential gaps of mean ``1 / rate_per_s``."""

    @property
    def kind(self) -> str:
        return "poisson"

    def gaps(self, rng, size):
        return rng.exponential(1.0 / self.rate_per_s, size)


@dataclass(frozen=True)
class GammaArrivals(ArrivalProcess):
    """Gamma-renewal arrivals with gap coefficient of variation ``cv`` (bursty when ``cv > 1``)."""

    cv: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "cv", _check_positive("cv", self.cv))

    @property
    def kind(self) -> str:
        return "gamma"

    @property
    def shape(self) -> float:
        return 1.0 / self.cv**2

    def gaps(self, rng, size):
        k = self.shape
        return rng.gamma(k, 1.0 / (self.rate_per_s * k), size)


@dataclass(frozen=True)
class ConstantArrivals(ArrivalProcess):
    """Deterministic arrivals every ``1 / rate_per_s`` seconds (uses no randomness)."""

    @property
    def kind(self) -> str:
        return "constant"

    def gaps(self, rng, size):
        return np.full(size, 1.0 / self.rate_per_s)

    @staticmethod
    def _times_from_gaps(gaps: np.ndarray) -> np.ndarray:
        # i / rate rather than a running sum: no accumulated rounding.
        if gaps.size == 0:
            return np.zeros(1, dtype=np.float64)
        return np.arange(gaps.size + 1, dtype=np.float64) * gaps[0]


ARRIVAL_KINDS = ("poisson", "gamma", "bursty", "constant")


def make_arrivals(spec, rate_per_s: float | None = None, cv: float | None = None) -> ArrivalProcess:
    """An :class:`ArrivalProcess` from a spec.

    ``spec`` is an ArrivalProcess (returned as is), a name in :data:`ARRIVAL_KINDS` (``"bursty"``
    is Gamma, default ``cv=3``) used with ``rate_per_s`` (and ``cv`` for Gamma), or a dict such as
    ``{"kind": "gamma", "rate_per_s": 20, "cv": 2}``.
    """
    if isinstance(spec, ArrivalProcess):
        if rate_per_s is not None or cv is not None:
            raise ValueError("rate_per_s / cv are given by the ArrivalProcess itself; do not pass them again")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("kind", None)
        unknown = set(spec) - {"rate_per_s", "cv"}
        if unknown:
            raise ValueError(f"unknown arrival option(s) {sorted(unknown)}; known: kind, rate_per_s, cv")
        return make_arrivals(kind, spec.get("rate_per_s", rate_per_s), spec.get("cv", cv))
    if not isinstance(spec, str) or spec not in ARRIVAL_KINDS:
        raise ValueError(f"unknown arrival process {spec!r}; known: {', '.join(ARRIVAL_KINDS)} (or an ArrivalProcess)")
    if rate_per_s is None:
        raise ValueError(f"arrival process {spec!r} needs rate_per_s")
    if spec in ("gamma", "bursty"):
        return GammaArrivals(rate_per_s, 3.0 if cv is None else cv)
    if cv is not None:
        raise ValueError(f"cv only applies to gamma/bursty arrivals, not {spec!r}")
    if spec == "poisson":
        return PoissonArrivals(rate_per_s)
    return ConstantArrivals(rate_per_s)


def mean_rate(arrival_s) -> float:
    """Estimated mean rate of sorted arrival times: ``(n - 1) / (t[-1] - t[0])``."""
    t = np.asarray(arrival_s, dtype=np.float64)
    if t.size < 2 or t[-1] <= t[0]:
        raise ValueError("a rate needs at least two arrivals spanning a positive time")
    return (t.size - 1) / float(t[-1] - t[0])


def interarrival_cv(arrival_s) -> float:
    """Coefficient of variation (std / mean) of the gaps between sorted arrival times."""
    g = np.diff(np.asarray(arrival_s, dtype=np.float64))
    if g.size < 2 or g.mean() <= 0:
        raise ValueError("a CV needs at least three arrivals spanning a positive time")
    return float(g.std() / g.mean())
