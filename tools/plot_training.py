"""Training curves of shipped agents from their TensorBoard logs (runs/), as one PNG.

    python tools/plot_training.py --agents dqn-baseline,dqn-aware,dqn-guided --out docs/training_curves.png

For each agent the latest run ``runs/NAME_k`` is read: the mean E2E of training episodes
(``episode/mean_e2e_s``, smoothed over a few points) and of the periodic evaluations on fixed seeds
(``eval/mean_e2e_s``), against timesteps.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np


def latest_run(runs: Path, name: str) -> Path:
    found = [(int(m.group(1)), p) for p in runs.glob(f"{name}_*") if (m := re.fullmatch(rf"{re.escape(name)}_(\d+)", p.name))]
    if not found:
        raise SystemExit(f"no TensorBoard run for {name!r} under {runs}/ (train it with train.py first)")
    return max(found)[1]


def scalars(run: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return np.array([]), np.array([])
    events = acc.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="dqn-baseline,dqn-aware,dqn-guided")
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="docs/training_curves.png")
    p.add_argument("--smooth", type=int, default=5, help="moving-average window over training episodes")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in args.agents.split(","):
        run = latest_run(Path(args.runs), name)
        steps, values = scalars(run, "episode/mean_e2e_s")
        if values.size:
            k = min(args.smooth, values.size)
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            line, = ax.plot(steps[k - 1:], smooth, label=f"{name} (training episodes)")
            e_steps, e_values = scalars(run, "eval/mean_e2e_s")
            if e_values.size:
                ax.plot(e_steps, e_values, "o--", color=line.get_color(), label=f"{name} (evaluation)")
    ax.set_xlabel("timesteps")
    ax.set_ylabel("mean E2E latency per episode (s)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
