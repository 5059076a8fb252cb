"""Cache-aware routers against round-robin, from evaluate.py's JSON files, as a Markdown table.

    python tools/cache_gains.py docs/results/multiturn-chat.json docs/results/shared-prefix-tenants.json

One row per policy and file: the prefix-cache hit rate, mean TTFT and its paired improvement over
round-robin, p99 TTFT, mean E2E and its paired improvement (evaluate.py's Δ), each mean over the
file's episodes with the 95 % interval evaluate.py computed. Every number is read from the JSON;
nothing is re-run. A file made without a round-robin reference (evaluate.py always adds one) or
without the cache metrics (made before they existed) is refused with its name.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

NEEDED = ("prefix_hit_rate", "mean_ttft_s", "p99_ttft_s", "mean_e2e_s", "improvement_vs_rr_pct",
          "ttft_improvement_vs_rr_pct")


def _num(value, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _pm(value, half, digits: int) -> str:
    s = _num(value, digits)
    return s if half is None or s == "n/a" else f"{s} ± {_num(half, digits)}"


def rows(path: Path) -> list[str]:
    doc = json.loads(path.read_text())
    results = doc.get("results") if isinstance(doc, dict) else None
    if not results:
        raise ValueError(f"{path}: not an evaluate.py --json file (no results)")
    missing = sorted({k for r in results for k in NEEDED if k not in r})
    if missing:
        raise ValueError(f"{path}: results lack {', '.join(missing)} (made before the cache metrics: re-run it)")
    if not any(r.get("label") == "rr" for r in results):
        raise ValueError(f"{path}: no round-robin result to compare with")
    out = []
    for r in results:
        out.append(f"| {r['scenario']} | {r['policy']} | {_pm(100 * r['prefix_hit_rate'], None, 1)} | "
                   f"{_pm(r['mean_ttft_s'], r.get('mean_ttft_s_ci95'), 3)} | "
                   f"{_pm(r['ttft_improvement_vs_rr_pct'], r.get('ttft_improvement_ci95_pct'), 1)} | "
                   f"{_num(r['p99_ttft_s'], 2)} | {_pm(r['mean_e2e_s'], r.get('mean_e2e_s_ci95'), 2)} | "
                   f"{_pm(r['improvement_vs_rr_pct'], r.get('improvement_ci95_pct'), 1)} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/cache_gains.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="evaluate.py --json result files")
    args = p.parse_args(argv)
    lines = ["| scenario | policy | hit rate % | TTFT mean (s) | Δ TTFT vs RR % | TTFT p99 (s) | E2E mean (s) "
             "| Δ E2E vs RR % |", "|---|---|---|---|---|---|---|---|"]
    for path in args.files:
        lines += rows(path)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point("tools/cache_gains.py")(main)())
