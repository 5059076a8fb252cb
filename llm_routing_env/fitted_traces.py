"""Synthetic request generators fitted to public traces (no trace file needed at run time).

The Azure LLM inference traces 2023 (Patel et al., "Splitwise", ISCA 2024; CC-BY-4.0;
github.com/Azure/AzurePublicDataset, ``data/AzureLLMInferenceTrace_{code,conv}.csv``) are not
ours to ship. What we ship are a few statistics of them, measured with
``tools/fit_trace_generator.py PATH`` and pasted below; :class:`FittedTrace` draws synthetic
workloads with those statistics. To replay the real requests, download the CSV and give its path
(scenario ``trace = "PATH"``, ``evaluate.py --trace PATH``).

The model, per trace (every number is a fact about the trace file named in ``source``):

* **Arrivals**: a renewal process whose inter-arrival gaps follow the trace's empirical gap
  distribution, stored as a quantile table in units of the trace's mean gap (so one table serves
  every rate). It reproduces the mean rate and the gap CV (1.09 for conv, 13.2 for code); it does
  *not* reproduce the correlation between successive gaps (lag-1 correlation of log gaps 0.03 in
  conv, 0.10 in code) nor the slow drift of the rate over the hour.
* **Prompt and output tokens**: each from the trace's empirical quantile table (inverse-CDF,
  linear between knots, rounded to whole tokens), drawn independently: the Spearman rank
  correlation between prompt and output is -0.02 (code) and 0.07 (conv), too small to matter.
  ``prompt_output_spearman`` records it.

The quantile tables share one probability grid, :data:`QUANTILE_PROBABILITIES`, denser in the
tails (0.05 % steps at both ends) so that the heavy tails (code: output p99 251, max 1,899 tokens;
gaps up to 557 mean gaps) keep their weight. Sampling is seeded: one ``SeedSequence`` spawns an
arrival stream and a contents stream (as :func:`~llm_routing_env.mixes.generate`), so the same
seed gives bit-identical workloads.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .arrivals import interarrival_cv, mean_rate
from .workload import Workload

__all__ = ["QUANTILE_PROBABILITIES", "FittedTrace", "fit_trace", "format_fitted_trace", "FITTED_TRACES",
           "fitted_trace_names", "get_fitted_trace", "AZURE_TRACE_SOURCE"]

AZURE_TRACE_SOURCE = ("github.com/Azure/AzurePublicDataset, data/AzureLLMInferenceTrace_{kind}.csv "
                      "(Azure LLM inference trace 2023, CC-BY-4.0)")

# tails at 0.05 % resolution, the body at 1 %
QUANTILE_PROBABILITIES = tuple(
    [0.0, 0.0005, 0.001, 0.002, 0.005]
    + [round(0.01 * k, 2) for k in range(1, 100)]
    + [0.995, 0.998, 0.999, 0.9995, 1.0]
)


def _table(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (len(QUANTILE_PROBABILITIES),):
        raise ValueError(f"{name} needs {len(QUANTILE_PROBABILITIES)} quantiles (one per probability), got {v.shape}")
    if not np.isfinite(v).all() or (np.diff(v) < 0).any():
        raise ValueError(f"{name} must be finite and non-decreasing")
    return v


@dataclass(frozen=True, eq=False)
class FittedTrace:
    """Statistics of one trace and a generator of synthetic workloads with them (module doc)."""

    name: str
    source: str  # the trace file the numbers were measured on
    requests: int  # of the source trace
    duration_s: float  # first to last arrival of the source trace
    interarrival_cv: float  # measured on the source (the gap table reproduces it)
    prompt_output_spearman: float  # measured on the source (not modelled: see the module doc)
    gap_quantiles: tuple  # inter-arrival gaps / the mean gap, at QUANTILE_PROBABILITIES
    prompt_quantiles: tuple  # prompt tokens at QUANTILE_PROBABILITIES
    output_quantiles: tuple  # output tokens at QUANTILE_PROBABILITIES

    def __post_init__(self) -> None:
        gap = _table("gap_quantiles", self.gap_quantiles)
        # the table's own mean (trapezoid integral of the quantile function) may differ from 1
        # by rounding: divide it out so that the generated rate is exactly the asked one
        object.__setattr__(self, "_gap", gap / float(np.trapezoid(gap, QUANTILE_PROBABILITIES)))
        object.__setattr__(self, "_prompt", _table("prompt_quantiles", self.prompt_quantiles))
        object.__setattr__(self, "_output", _table("output_quantiles", self.output_quantiles))
        if self._gap[0] < 0 or self._prompt[0] < 1 or self._output[0] < 1:
            raise ValueError(f"fitted trace {self.name!r}: gaps must be >= 0 and token quantiles >= 1")

    @property
    def rate_per_s(self) -> float:
        """The source trace's mean rate ``(n - 1) / duration_s``."""
        return (self.requests - 1) / self.duration_s

    def digest(self) -> str:
        """A hash of the parameters (keys caches of results that depend on them)."""
        text = repr((self.gap_quantiles, self.prompt_quantiles, self.output_quantiles))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _inverse_cdf(self, table: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.interp(u, QUANTILE_PROBABILITIES, table)

    def sample_lengths(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` requests' ``(prompt_tokens, output_tokens, task)`` (task 0, the trace's name)."""
        u = rng.random((int(n), 2))  # one block: the first k requests do not depend on n
        prompt = np.maximum(np.rint(self._inverse_cdf(self._prompt, u[:, 0])), 1).astype(np.int64)
        output = np.maximum(np.rint(self._inverse_cdf(self._output, u[:, 1])), 1).astype(np.int64)
        return prompt, output, np.zeros(int(n), dtype=np.int64)

    def generate(self, *, n: int | None = None, duration_s: float | None = None, rate_per_s: float | None = None,
                 seed=None) -> Workload:
        """A synthetic workload: ``n`` requests and/or every arrival in ``[0, duration_s)``, first at 0.

        ``rate_per_s`` (default: the source's) is the mean rate. With ``n``, the gaps are scaled so
        that the episode's own mean rate ``(n - 1) / span`` is exactly ``rate_per_s`` (as a window of
        the real trace is rescaled on replay); with ``duration_s`` only, gaps are drawn until the
        horizon and the rate holds in expectation."""
        if n is None and duration_s is None:
            raise ValueError("give a finite horizon: n (number of requests) and/or duration_s")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rate = self.rate_per_s if rate_per_s is None else float(rate_per_s)
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        arrival_ss, content_ss = ss.spawn(2)
        arrival_rng = np.random.default_rng(arrival_ss)
        if n is not None:
            gaps = self._inverse_cdf(self._gap, arrival_rng.random(int(n) - 1))
            if gaps.size and gaps.sum() > 0:
                gaps = gaps * (gaps.size / gaps.sum()) / rate
            times = np.concatenate([[0.0], np.cumsum(gaps)])
            if duration_s is not None:
                times = times[times < duration_s]
        else:
            chunks, end = [np.zeros(1)], 0.0
            block = max(16, int(2 * rate * duration_s))
            while end < duration_s:
                c = end + np.cumsum(self._inverse_cdf(self._gap, arrival_rng.random(block)) / rate)
                chunks.append(c)
                end = float(c[-1])
            times = np.concatenate(chunks)
            times = times[times < duration_s]
        prompt, output, task = self.sample_lengths(times.size, np.random.default_rng(content_ss))
        return Workload(times, prompt, output, task, (self.name,),
                        name=f"synthetic {self.name} @{rate:g}/s seed={ss.entropy}")


def fit_trace(workload: Workload, name: str, source: str) -> FittedTrace:
    """Measure a trace's statistics (the parameters of :class:`FittedTrace`), rounded as shipped:
    gap quantiles to 4 significant digits, token quantiles to 0.1 token."""
    if len(workload) < 3:
        raise ValueError(f"{source}: fitting a generator needs at least three requests, got {len(workload)}")
    t = workload.arrival_s
    gaps = np.diff(t)
    p = np.asarray(QUANTILE_PROBABILITIES)
    gq = np.quantile(gaps / gaps.mean(), p)
    sig = lambda x: float(f"{x:.4g}")  # noqa: E731
    ranks = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)  # noqa: E731
    spearman = float(np.corrcoef(ranks(workload.prompt_tokens), ranks(workload.output_tokens))[0, 1])
    return FittedTrace(
        name=name, source=source, requests=len(workload), duration_s=round(float(t[-1] - t[0]), 6),
        interarrival_cv=round(interarrival_cv(t), 4), prompt_output_spearman=round(spearman, 4),
        gap_quantiles=tuple(sig(x) for x in gq),
        prompt_quantiles=tuple(round(float(x), 1) for x in np.quantile(workload.prompt_tokens, p)),
        output_quantiles=tuple(round(float(x), 1) for x in np.quantile(workload.output_tokens, p)),
    )


def format_fitted_trace(ft: FittedTrace) -> str:
    """The parameters as a ready-to-paste ``FittedTrace(...)`` expression."""
    def row(values):
        items = [f"{v:g}" for v in values]
        lines, line = [], "        "
        for it in items:
            if len(line) + len(it) + 2 > 108:
                lines.append(line.rstrip())
                line = "        "
            line += it + ", "
        lines.append(line.rstrip())
        return "(\n" + "\n".join(lines) + "\n    )"

    return (f"FittedTrace(\n    name={ft.name!r},\n    source={ft.source!r},\n"
            f"    requests={ft.requests}, duration_s={ft.duration_s!r}, interarrival_cv={ft.interarrival_cv!r},\n"
            f"    prompt_output_spearman={ft.prompt_output_spearman!r},\n"
            f"    gap_quantiles={row(ft.gap_quantiles)},\n"
            f"    prompt_quantiles={row(ft.prompt_quantiles)},\n"
            f"    output_quantiles={row(ft.output_quantiles)},\n)")


# --- the shipped fits (tools/fit_trace_generator.py on the files named in ``source``) ------------

FITTED_TRACES: dict[str, FittedTrace] = {ft.name: ft for ft in (
    FittedTrace(
        name='azure-code',
        source='AzureLLMInferenceTrace_code.csv (github.com/Azure/AzurePublicDataset data/ @ b469a11)',
        requests=8819, duration_s=3435.948056, interarrival_cv=13.1513,
        prompt_output_spearman=-0.0209,
        gap_quantiles=(
            1.54e-05, 1.54e-05, 1.54e-05, 1.54e-05, 1.796e-05, 5.69e-05, 0.0001078, 0.0001553, 0.0001968,
            0.0002258, 0.0002772, 0.0003362, 0.000385, 0.0004491, 0.0005364, 0.0006621, 0.001358, 0.001925,
            0.002133, 0.002271, 0.002414, 0.002564, 0.002695, 0.002826, 0.003039, 0.003389, 0.003968, 0.004573,
            0.004953, 0.005331, 0.005752, 0.006373, 0.007214, 0.007809, 0.008449, 0.009308, 0.01016, 0.01101,
            0.01238, 0.01372, 0.01539, 0.01779, 0.02149, 0.0284, 0.03876, 0.05016, 0.06284, 0.07552, 0.08595,
            0.09808, 0.1097, 0.1254, 0.1389, 0.1509, 0.1637, 0.1774, 0.1924, 0.2047, 0.2204, 0.2298, 0.235,
            0.2377, 0.2396, 0.2421, 0.2438, 0.2454, 0.2471, 0.2485, 0.25, 0.2514, 0.2527, 0.2538, 0.2549,
            0.256, 0.257, 0.2584, 0.2597, 0.2615, 0.2636, 0.2669, 0.2755, 0.3011, 0.3308, 0.3632, 0.4108,
            0.4517, 0.4882, 0.5002, 0.5062, 0.5103, 0.5135, 0.5186, 0.5347, 0.6011, 0.7003, 0.7582, 0.77,
            0.8021, 0.9548, 1.029, 1.255, 1.533, 2.05, 5.659, 25.61, 106.3, 203.3, 340, 557.3,
        ),
        prompt_quantiles=(
            3, 6, 7, 9, 12, 17, 35, 50, 62, 75, 88, 97, 109, 130, 147, 162, 179, 193, 209, 232, 253, 283, 319,
            352, 385.6, 423, 469, 501.4, 539, 578, 604, 651, 698, 745.2, 770, 816, 848, 880, 908.1, 938.6,
            969.5, 997, 1027, 1049, 1075, 1105.4, 1133, 1174, 1204.9, 1261.1, 1296.3, 1346.5, 1377, 1417, 1469,
            1500.2, 1555, 1600, 1641.7, 1690, 1724, 1774, 1823, 1873.2, 1909, 1964, 2024.2, 2077, 2128, 2163.7,
            2226, 2284.1, 2329.2, 2386.4, 2433, 2479.6, 2546, 2615.1, 2670.6, 2744.5, 2804, 2895.6, 2975, 3066,
            3192.4, 3294.2, 3450.6, 3598.9, 3714.1, 3920.2, 4107, 4319.7, 4559, 4759, 5187.6, 5632.9, 5959.2,
            6193.7, 6584.8, 7303.3, 7430.3, 7435, 7436, 7436, 7436, 7436.4, 7437, 7437, 7437,
        ),
        output_quantiles=(
            6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9,
            9, 9, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 14,
            14, 14, 14, 15, 15, 15, 16, 16, 16, 17, 17, 18, 18, 19, 19, 19, 20, 21, 21, 22, 23, 24, 25, 26, 27,
            28, 29, 31, 32, 34, 37, 39, 42, 45, 48, 52, 55, 59.4, 65, 72, 79, 90, 105, 128, 170.9, 251.5,
            359.4, 669.6, 825.3, 885.2, 1899,
        ),
    ),
    FittedTrace(
        name='azure-conv',
        source='AzureLLMInferenceTrace_conv.csv (github.com/Azure/AzurePublicDataset data/ @ b469a11)',
        requests=19366, duration_s=3501.721937, interarrival_cv=1.0942,
        prompt_output_spearman=0.0728,
        gap_quantiles=(
            1.106e-05, 3.318e-05, 3.871e-05, 5.933e-05, 0.00104, 0.003021, 0.007981, 0.01391, 0.02457, 0.03495,
            0.04541, 0.0566, 0.06653, 0.07729, 0.08928, 0.102, 0.1133, 0.1238, 0.1352, 0.1461, 0.1578, 0.1685,
            0.1792, 0.1911, 0.202, 0.214, 0.2279, 0.2408, 0.254, 0.267, 0.28, 0.2949, 0.3086, 0.3235, 0.3358,
            0.3498, 0.3641, 0.3779, 0.391, 0.4062, 0.4214, 0.4368, 0.4517, 0.4677, 0.4825, 0.4978, 0.5127,
            0.529, 0.5471, 0.5637, 0.5794, 0.5955, 0.6144, 0.6346, 0.6549, 0.6734, 0.6953, 0.7201, 0.7408,
            0.761, 0.781, 0.8049, 0.8296, 0.8538, 0.8775, 0.9035, 0.9328, 0.9628, 0.9863, 1.013, 1.043, 1.072,
            1.106, 1.141, 1.181, 1.217, 1.252, 1.291, 1.325, 1.364, 1.406, 1.448, 1.49, 1.543, 1.597, 1.654,
            1.714, 1.774, 1.846, 1.913, 1.979, 2.053, 2.133, 2.224, 2.326, 2.426, 2.571, 2.727, 2.906, 3.126,
            3.419, 3.723, 4.144, 4.92, 5.719, 6.908, 7.804, 9.961, 23.86,
        ),
        prompt_quantiles=(
            2, 7, 8, 10, 16.8, 29, 91, 161, 181, 181, 191, 197, 201, 203, 207, 212, 222, 242, 317, 372, 375,
            378, 381, 384, 387, 390, 392, 394, 395, 396, 398, 399, 400, 402, 403, 405, 406, 408, 411, 414, 419,
            424, 433, 456, 703, 862.6, 903, 946, 971.6, 984, 994, 1002, 1009, 1014, 1020, 1025, 1031, 1036,
            1041, 1045, 1050, 1055, 1060, 1065, 1071, 1076, 1081, 1086, 1092, 1097, 1102, 1109, 1116, 1122,
            1130, 1139, 1147, 1159.4, 1171, 1189, 1214.4, 1249, 1311, 1314, 1315, 1321, 1368.3, 1508, 1689.2,
            1876.2, 2032, 2221, 2401.2, 2584, 2734.5, 3291.2, 4073, 4076, 4079, 4083, 4086, 4090, 4098, 4142,
            4831, 5652, 6179.1, 6570.1, 14050,
        ),
        output_quantiles=(
            7, 12, 12, 12, 14, 16, 24, 32, 38, 41, 44, 47, 49, 52, 54, 57, 59, 62, 64, 67, 69, 71, 73, 75, 77,
            79, 81, 82, 84, 85, 86, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97, 99, 100, 101, 103, 105, 107, 108,
            110, 113, 116, 118, 122, 125, 129, 133, 137, 141, 145, 151, 156, 161, 163, 169, 177, 182, 190, 202,
            216, 217, 237, 371, 375, 378, 384, 387, 390, 393, 394, 395, 396, 396, 397, 398, 400, 402, 404, 407,
            410, 411, 414, 415, 417, 420, 424, 428, 429, 433, 442, 451, 468, 509, 540, 601, 643.2, 916.5, 954,
            1000, 1000,
        ),
    ),
)}


def fitted_trace_names() -> list[str]:
    return sorted(FITTED_TRACES)


def get_fitted_trace(name: str) -> FittedTrace:
    if name not in FITTED_TRACES:
        raise ValueError(f"unknown fitted trace {name!r}; known: {', '.join(fitted_trace_names())}")
    return FITTED_TRACES[name]
