"""Simulator speed of two code versions side by side, on a noisy machine: alternate them.

The README's batch setting (4 x llama2-7b-v100, paper mix, Poisson at 20 req/s, 2,000 requests
per cluster, round-robin, one advance_to + dispatch per arrival) at B = 1 and B = 256, each run in
its own process with ``PYTHONPATH`` set to a source tree, the trees and schedulers alternated
round after round; each figure is the best of ``--repeat`` runs in one process. A tree is a
checkout or a ``git archive COMMIT llm_routing_env | tar -x -C DIR``; trees from before the
simulators moved to ``llm_routing_env/sim/`` are read too (v0 only, their one scheduler).

    git archive 879e437 llm_routing_env | tar -x -C /tmp/before
    python benchmarks/bench_versions.py --tree before=/tmp/before --tree head=. --rounds 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_RUN = r"""
import os, sys, time
import numpy as np
import llm_routing_env
from llm_routing_env import ClusterConfig
try:
    from llm_routing_env.mixes import generate
except ImportError:  # a tree from before the split of workloads.py
    from llm_routing_env.workloads import generate
if os.path.isdir(os.path.join(os.path.dirname(llm_routing_env.__file__), "sim")):
    from llm_routing_env import SchedulerConfig
    from llm_routing_env.sim import ClusterSimulator
    scheduler = SchedulerConfig(scheduler=sys.argv[2])
else:  # a tree from before the simulators' package: vLLM v0 only
    from llm_routing_env.simulator import ClusterSimulator
    assert sys.argv[2] == "vllm-v0", "this tree has no vLLM v1 scheduler"
    scheduler = None
B, n = int(sys.argv[1]), 2000
ws = [generate("paper-mix", "poisson", rate_per_s=20.0, n=n, seed=s) for s in range(B)]
arrival, prompt, output = (np.stack([getattr(w, f) for w in ws]) for f in ("arrival_s", "prompt_tokens", "output_tokens"))
best = 0.0
for _ in range(int(sys.argv[3])):
    sim = ClusterSimulator(ClusterConfig(["llama2-7b-v100"] * 4, scheduler), B, n)
    clusters = np.arange(B)
    start = time.perf_counter()
    for i in range(n):
        sim.advance_to(arrival[:, i])
        sim.dispatch(clusters, i, i % 4, prompt[:, i], output[:, i], arrival[:, i])
    sim.run_until_idle()
    best = max(best, B * n / (time.perf_counter() - start))
rec = sim.records()
print(f"{best:.0f} {np.mean(rec.completion_s - rec.arrival_s):.6f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR, a source tree (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per process (the best is kept)")
    args = parser.parse_args()
    trees = []
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "llm_routing_env").is_dir():
            parser.error(f"--tree {spec!r}: give NAME=DIR with DIR/llm_routing_env")
        trees.append((name, str(Path(path).resolve())))
    print(f"{'round':>5} {'tree':>10} {'scheduler':>9} {'B':>4} {'sim req/s':>10} {'mean E2E s':>11}")
    for r in range(args.rounds):
        for b in (1, 256):
            for name, path in trees:
                old = not (Path(path) / "llm_routing_env" / "sim").is_dir()
                for scheduler in ("vllm-v0",) if old else ("vllm-v0", "vllm-v1"):
                    env = {**os.environ, "PYTHONPATH": path}
                    out = subprocess.run([sys.executable, "-c", _RUN, str(b), scheduler, str(args.repeat)], env=env,
                                         cwd=path, capture_output=True, text=True, check=True).stdout.split()
                    print(f"{r + 1:>5} {name:>10} {scheduler:>9} {b:>4} {float(out[0]):>10,.0f} {float(out[1]):>11.4f}",
                          flush=True)


if __name__ == "__main__":
    main()
