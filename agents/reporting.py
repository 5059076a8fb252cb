"""The writers behind evaluate.py: the results of agents/evaluation.py as a text table, JSON, CSVs
and plots.

    from agents.evaluation import evaluate
    from agents.reporting import format_table, write_json
    results = evaluate(["rr", "lor", "lwl"], "paper-v100", episodes=20, seed=0)
    print(format_table(results))

Nothing here runs an episode or computes a statistic: every number comes from the result dicts
(agents/evaluation.py documents their keys).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .evaluation import EXTRA_METRICS, METRICS, PREFIX_METRICS

__all__ = ["format_table", "write_json", "write_csv", "write_requests_csv", "make_plots", "nan_to_none",
           "REQUEST_COLUMNS"]

REQUEST_COLUMNS = ("request_id", "instance", "arrival_s", "dispatch_s", "first_token_s", "completion_s",
                   "prompt_tokens", "output_tokens", "preemptions",
                   "rejected_overlong", "clipped_at_context")  # (requests beyond the context: evaluation.py)


def _fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(value, half) -> str:
    s = _fmt(value)
    return s if half is None or not np.isfinite(half) else f"{s}±{_fmt(half)}"


def _overlong_line(r: dict) -> str:
    """The requests beyond the context of a block (the same for every policy), and the data the
    fitted length predictors were trained on."""
    line = (f"requests beyond the context (max_model_len {r['max_model_len']}, overlong={r['overlong']}), over "
            f"{r['episodes']} episodes: {r['rejected_overlong']} rejected (never served, not in the latencies), "
            f"{r['clipped_at_context']} clipped at the context")
    if r.get("predictor_training_data"):
        line += f"\nlength predictors (task-prior, learned) trained on: {r['predictor_training_data']}"
    return line


def format_table(results: list[dict]) -> str:
    """Plain-text table(s): one block per load; clairvoyant oracles in a separate block. A scenario
    whose requests carry prefix block ids gets the prefix-cache hit rate column too."""
    loads = list(dict.fromkeys(r.get("load") for r in results))
    out = []
    for load in loads:
        rows = [r for r in results if r.get("load") == load]
        any_r = rows[0]
        cache_cols = PREFIX_METRICS if any(r.get("prefixes") for r in rows) else ()
        header = ["policy", *(h for _, h, _ in METRICS), *(h for _, h in cache_cols), "truncated", "Δ E2E vs RR %"]
        title = f"{any_r['scenario']}: {any_r['episodes']} episodes, seed {any_r['seed']}, " \
                f"{any_r['rate_per_s']:.2f} req/s" + (f", load {load:g}" if load is not None else "")
        for group, label in ((False, None), (True, "clairvoyant oracles (read true output lengths; not comparable)")):
            body = []
            for r in rows:
                if r["clairvoyant"] != group:
                    continue
                name = r["policy"] + (" (ref)" if r.get("reference") else "") + \
                    (f" [{r['mode']}]" if r["kind"] == "learned" or r["mode"] != "arrival" else "")
                delta = "n/a" if r.get("improvement_note") else _cell(r["improvement_vs_rr_pct"],
                                                                         r["improvement_ci95_pct"])
                body.append([name, *(_cell(r[k], r.get(k + "_ci95")) for k, _, _ in METRICS),
                             *(_cell(r[k], r.get(k + "_ci95")) for k, _ in cache_cols),
                             f"{r['truncated_episodes']}/{r['episodes']}", delta])
            if not body:
                continue
            widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
            lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(x, widths)))
                     for x in [header, *body]]
            lines.insert(1, "  ".join("-" * w for w in widths))
            out.append((title if label is None else f"{title} — {label}") + "\n" + "\n".join(lines))
        out.append(_overlong_line(any_r))
    cut = [r for r in results if r.get("truncated_episodes")]
    for r in cut:
        at_load = "" if r.get("load") is None else f" (load {r['load']:g})"
        out.append(f"! {r['policy']}{at_load}: "
                   f"{r['truncated_episodes']} of {r['episodes']} episodes truncated (requests left unfinished); "
                   f"{r['completed']} of {r['arrived']} requests completed, latencies cover those only, "
                   "so Δ is n/a (it would favour the unfinished work)")
    overlaps = [r["training_seeds"]["message"] for r in results if (r.get("training_seeds") or {}).get("overlap")]
    out.extend(f"! {m}" for m in dict.fromkeys(overlaps))
    notes = ("times in s (TPOT per output token), preemptions per episode, ± = 95% t-interval over episodes; "
             "truncated = episodes cut off with requests unfinished; Δ = paired improvement of mean E2E over "
             "round-robin (positive = faster), ± by the delta method for the ratio of the paired means; "
             "[tick] = decides every 20 ms tick and may hold a request at the router (router wait), "
             "[arrival] (unmarked) = sends each request on arrival")
    if any(r.get("prefixes") for r in results):
        notes += ("; hit rate = prefix-cache hit tokens / tokens looked up (vLLM's prefix_cache_hits / "
                  "prefix_cache_queries), mean over episodes")
    return "\n\n".join(out) + "\n" + notes


def _json_ready(results: list[dict]) -> list[dict]:
    clean = []
    for r in results:
        r = {k: v for k, v in r.items() if k != "requests"}
        clean.append(r)
    return clean


def nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, np.generic):
        return nan_to_none(x.item())
    return x


def write_json(results: list[dict], path, scenario: str, episodes: int, seed: int, **extra) -> None:
    doc = {"scenario": scenario, "episodes": episodes, "seed": seed, **extra, "results": _json_ready(results)}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(nan_to_none(doc), indent=2) + "\n")


def write_csv(results: list[dict], path) -> None:
    keys = ["policy", "label", "kind", "clairvoyant", "reference", "mode", "scenario", "load", "rate_per_s",
            "episodes", "seed"]
    for k, _, _ in METRICS:
        keys += [k, k + "_ci95"]
    for k, _ in EXTRA_METRICS:
        keys += [k, k + "_ci95"] if k not in ("completed", "arrived") else [k]
    keys += ["improvement_vs_rr_pct", "improvement_ci95_pct", "improvement_note", "truncated_episodes",
             "router_ms_per_decision"]
    keys += ["overlong", "max_model_len", "rejected_overlong", "clipped_at_context"]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                            else r.get(k)) for k in keys})


def write_requests_csv(results: list[dict], path) -> int:
    """One row per request (needs ``collect_requests``); returns the number of rows."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sweep = any(r.get("load") is not None for r in results)
    rows = 0
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", *(["load"] if sweep else []), "episode", *REQUEST_COLUMNS])
        for r in results:
            for episode, req in r.get("requests", []):
                cols = [req[c] for c in REQUEST_COLUMNS]
                for i in range(len(cols[0])):
                    vals = []
                    for c, col in zip(REQUEST_COLUMNS, cols):
                        v = col[i]
                        vals.append("" if isinstance(v, float) and not math.isfinite(v)
                                    else (f"{v:.6f}" if isinstance(v, (float, np.floating)) else int(v)))
                    w.writerow([r["policy"], *([r.get("load")] if sweep else []), episode, *vals])
                    rows += 1
    return rows


def make_plots(results: list[dict], out_dir) -> list[Path]:
    """E2E CDF per policy (per load), improvement over RR vs load (a sweep), TTFT over time (Fig. 1c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, ax, path: Path) -> Path:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    loads = list(dict.fromkeys(r.get("load") for r in results))
    for load in loads:
        rows = [r for r in results if r.get("load") == load and r.get("requests")]
        if not rows:
            continue
        suffix = "" if load is None else f"_load{load:g}"
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            e2e = np.concatenate([q["completion_s"] - q["arrival_s"] for _, q in r["requests"]])
            e2e = np.sort(e2e[np.isfinite(e2e)])
            if e2e.size:
                ax.plot(e2e, np.arange(1, e2e.size + 1) / e2e.size, label=r["policy"],
                        linestyle="--" if r["clairvoyant"] else "-")
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"E2E latency CDF — {rows[0]['scenario']}" + (f", load {load:g}" if load is not None else ""))
        written.append(save(fig, ax, out / f"e2e_cdf{suffix}.png"))

        # TTFT over time since the start, mean over requests in bins and over episodes (paper Fig. 1c)
        span = max(float(np.nanmax(q["arrival_s"])) for r in rows for _, q in r["requests"])
        width = max(1.0, span / 50.0)
        edges = np.arange(0.0, span + width, width)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            arr = np.concatenate([q["arrival_s"] for _, q in r["requests"]])
            ttft = np.concatenate([q["first_token_s"] - q["arrival_s"] for _, q in r["requests"]])
            ok = np.isfinite(ttft)
            idx = np.clip(np.digitize(arr[ok], edges) - 1, 0, len(edges) - 1)
            sums = np.bincount(idx, weights=ttft[ok], minlength=len(edges))
            counts = np.bincount(idx, minlength=len(edges))
            with np.errstate(invalid="ignore"):
                mean = sums / counts
            ax.plot(edges + width / 2, mean, label=r["policy"], linestyle="--" if r["clairvoyant"] else "-")
        ax.set_xlabel("arrival time since start (s)")
        ax.set_ylabel("mean TTFT (s)")
        ax.set_title("TTFT over time (cf. paper Fig. 1c)")
        written.append(save(fig, ax, out / f"ttft_over_time{suffix}.png"))

    sweep = [x for x in loads if x is not None]
    if len(sweep) > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in dict.fromkeys(r["policy"] for r in results):
            rs = sorted((r for r in results if r["policy"] == name and r.get("load") is not None), key=lambda r: r["load"])
            if not rs or rs[0]["label"] == "rr":
                continue
            ax.errorbar([r["load"] for r in rs], [r["improvement_vs_rr_pct"] for r in rs],
                        yerr=[np.nan_to_num(r["improvement_ci95_pct"]) for r in rs], label=name, capsize=3,
                        marker="o", linestyle="--" if rs[0]["clairvoyant"] else "-")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("load (offered rate / saturation rate)")
        ax.set_ylabel("mean E2E improvement over round-robin (%)")
        ax.set_title("Improvement over round-robin vs load (95% CI, paired)")
        written.append(save(fig, ax, out / "improvement_vs_load.png"))
    return written
