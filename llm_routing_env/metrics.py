"""Latency metrics: the one place that defines them.

Per request (seconds):

* ``e2e``: arrival at the router to the last token (``completion - arrival``);
* ``ttft``: arrival at the router to the first token;
* ``tpot``: mean time per output token after the first, ``(completion - first_token) / (output - 1)``
  (undefined, so left out, for one-token outputs);
* ``router_wait``: arrival at the router to dispatch;
* ``instance_wait``: dispatch to the first admission into a batch at the instance.

Per run: mean, p50, p90 and p99 of each, over completed requests; prompt and generated tokens per
second over the makespan (first arrival to last completion); preemptions; completed and arrived
counts; over completed requests, ``prefill_tokens`` (prefill tokens computed, recomputations after
preemption included) and ``prefix_hit_rate``, the prefix-cache hit tokens over the tokens looked up
(hits plus computed prefill tokens), as vLLM's ``prefix_cache_hits / prefix_cache_queries``
(without preemption: hit tokens over prompt tokens; 0 without prefix caching).
"""

from __future__ import annotations

import numpy as np

from .cluster import COMPLETED, NOT_DISPATCHED, RequestRecords

PER_REQUEST_METRICS = ("e2e", "ttft", "tpot", "router_wait", "instance_wait")
QUANTILES = {"p50": 50, "p90": 90, "p99": 99}


def per_request(records: RequestRecords) -> dict[str, np.ndarray]:
    """Per-request metrics (seconds) of one cluster's records; NaN where not defined yet."""
    out_minus_one = records.output_tokens - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_minus_one > 0, (records.completion_s - records.first_token_s) / out_minus_one, np.nan)
    return {
        "e2e": records.completion_s - records.arrival_s,
        "ttft": records.first_token_s - records.arrival_s,
        "tpot": tpot,
        "router_wait": records.dispatch_s - records.arrival_s,
        "instance_wait": records.first_scheduled_s - records.dispatch_s,
    }


def summarize(records: RequestRecords, arrived: int | None = None, as_of_s: float | None = None) -> dict[str, float]:
    """Run summary of one cluster's records (the (R,) arrays of ``ClusterSimulator.records(b)``).

    ``arrived`` is the number of requests that reached the router (defaults to the dispatched ones;
    pass it when some requests still wait at the router). ``as_of_s``: count only the requests
    completed by then (the records also hold the completions of an iteration still in flight).
    """
    if records.status.ndim != 1:
        raise ValueError("summarize takes one cluster's records: use ClusterSimulator.records(b)")
    done = records.status == COMPLETED
    if as_of_s is not None:
        done &= records.completion_s <= as_of_s
    dispatched = records.status != NOT_DISPATCHED
    metrics = per_request(records)
    summary: dict[str, float] = {}
    for name in PER_REQUEST_METRICS:
        values = metrics[name][done]
        values = values[~np.isnan(values)]
        summary[f"mean_{name}_s"] = float(values.mean()) if values.size else float("nan")
        quantiles = (np.percentile(values, list(QUANTILES.values())).tolist() if values.size
                     else [float("nan")] * len(QUANTILES))
        for q_name, value in zip(QUANTILES, quantiles):
            summary[f"{q_name}_{name}_s"] = value
    completed = int(done.sum())
    summary["completed"] = completed
    summary["arrived"] = int(arrived if arrived is not None else dispatched.sum())
    summary["preemptions"] = int(records.preemptions[dispatched].sum())
    hits, computed = int(records.prefix_hit_tokens[done].sum()), int(records.prefill_tokens[done].sum())
    summary["prefill_tokens"] = computed
    summary["prefix_hit_rate"] = hits / (hits + computed) if hits + computed else float("nan")
    if completed:
        start = float(np.nanmin(records.arrival_s[dispatched]))
        makespan = float(np.nanmax(records.completion_s[done])) - start
        summary["makespan_s"] = makespan
        summary["prompt_tokens_per_s"] = float(records.prompt_tokens[done].sum() / makespan) if makespan > 0 else float("nan")
        summary["generated_tokens_per_s"] = float(records.output_tokens[done].sum() / makespan) if makespan > 0 else float("nan")
    else:
        summary["makespan_s"] = summary["prompt_tokens_per_s"] = summary["generated_tokens_per_s"] = float("nan")
    return summary
