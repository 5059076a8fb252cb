"""Fit the synthetic trace generator (``llm_routing_env/fitted_traces.py``) to a trace file.

Usage (from the repository root)::

    .venv/bin/python tools/fit_trace_generator.py [PATH ...] [--name NAME]

Without a path it reads the two Azure LLM inference traces 2023 at
``../shared/data/azure_llm_inference_2023/AzureLLMInferenceTrace_{code,conv}.csv`` (relative to
the project root; the public source is github.com/Azure/AzurePublicDataset, ``data/``). For every
trace it prints the fitted parameters as a ready-to-paste ``FittedTrace(...)`` block (the numbers
shipped in ``FITTED_TRACES``) and compares the real trace with a synthetic workload of the same
size drawn from the fit (seed 0): rate, gap CV, mean and quantiles of prompt and output tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_routing_env.arrivals import interarrival_cv  # noqa: E402
from llm_routing_env.fitted_traces import fit_trace, format_fitted_trace  # noqa: E402
from llm_routing_env.traces import load_trace  # noqa: E402

AZURE_DIR = REPO.parent / "shared" / "data" / "azure_llm_inference_2023"
DEFAULT_PATHS = [AZURE_DIR / "AzureLLMInferenceTrace_code.csv", AZURE_DIR / "AzureLLMInferenceTrace_conv.csv"]
AZURE_NAMES = {"AzureLLMInferenceTrace_code.csv": "azure-code", "AzureLLMInferenceTrace_conv.csv": "azure-conv"}
AZURE_COMMIT = "b469a11"  # github.com/Azure/AzurePublicDataset commit of the files in shared/data


def source_of(path: Path) -> str:
    if path.name in AZURE_NAMES:
        return f"{path.name} (github.com/Azure/AzurePublicDataset data/ @ {AZURE_COMMIT})"
    return path.name


def comparison(real, synthetic) -> str:
    q = (0.5, 0.9, 0.99)
    lines = [f"{'':24s} {'real':>10s} {'synthetic':>10s}",
             f"{'requests':24s} {len(real):>10d} {len(synthetic):>10d}",
             f"{'rate (req/s)':24s} {real.mean_rate_per_s:>10.3f} {synthetic.mean_rate_per_s:>10.3f}",
             f"{'inter-arrival CV':24s} {interarrival_cv(real.arrival_s):>10.2f} "
             f"{interarrival_cv(synthetic.arrival_s):>10.2f}"]
    for label, a, b in (("prompt", real.prompt_tokens, synthetic.prompt_tokens),
                        ("output", real.output_tokens, synthetic.output_tokens)):
        lines.append(f"{label + ' mean':24s} {a.mean():>10.1f} {b.mean():>10.1f}")
        for x in q:
            lines.append(f"{label + f' p{100 * x:g}':24s} {np.quantile(a, x):>10.1f} {np.quantile(b, x):>10.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="trace files (default: the two Azure 2023 traces in "
                    "../shared/data/azure_llm_inference_2023/)")
    ap.add_argument("--name", help="the generator's name (one path only; default azure-code/azure-conv or the stem)")
    args = ap.parse_args(argv)
    paths = args.paths or DEFAULT_PATHS
    if args.name and len(paths) != 1:
        ap.error("--name needs exactly one path")
    for path in paths:
        if not path.is_file():
            print(f"no trace file at {path} (the Azure traces: github.com/Azure/AzurePublicDataset, "
                  f"data/AzureLLMInferenceTrace_{{code,conv}}.csv)", file=sys.stderr)
            return 2
        real = load_trace(path)
        name = args.name or AZURE_NAMES.get(path.name, path.stem)
        fit = fit_trace(real, name, source_of(path))
        print(f"# {path}")
        print(format_fitted_trace(fit))
        print()
        print(comparison(real, fit.generate(n=len(real), seed=0)))
        print()
    return 0


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
