"""Simulator speed of two code versions side by side, on a noisy machine: alternate them.

The README's batch setting (4 x llama2-7b-v100, paper mix, Poisson at 20 req/s, 2,000 requests
per cluster, round-robin, one advance_to + dispatch per arrival) at B = 1 and B = 256, each run in
its own process with ``PYTHONPATH`` set to a source tree, the trees and schedulers alternated
round after round; each figure is the best of ``--repeat`` runs in one process. A tree is a
checkout or a ``git archive COMMIT llm_routing_env | tar -x -C DIR``; trees from before the
simulators moved to ``llm_routing_env/sim/`` are read too (v0 only, their one scheduler).

    git archive 879e437 llm_routing_env | tar -x -C /tmp/before
    python benchmarks/bench_versions.py --tree before=/tmp/before --tree head=. --rounds 3

``--workload prefixes`` / ``multiturn`` runs ``bench_simulator.run`` of this checkout (its
``--prefixes`` and ``--multiturn`` settings) on each tree instead, printing the wall-clock and the
CPU-time rates (a tree must have what the setting needs: prefix ids, the multiturn-chat scenario).
``--env`` times the environment instead: 200 steps of ``gym.make_vec`` with ``--sizes`` envs (0: a
single ``gym.make`` env, 4,000 steps) in tick mode after 100 warm-up steps, random valid actions,
``--obs`` observations, by CPU time.
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

# bench_simulator.run of this checkout with the tree's package (argv: B, scheduler, repeat, workload)
_RUN_WORKLOAD = r"""
import sys
sys.path.insert(0, sys.argv[5])
import bench_simulator as b
best = None
for _ in range(int(sys.argv[3])):
    r = b.run(int(sys.argv[1]), 4, 20.0, 2000, scheduler=sys.argv[2], prefixes=sys.argv[4] == "prefixes",
              multiturn=sys.argv[4] == "multiturn")
    if best is None or r["cpu_requests_per_s"] > best["cpu_requests_per_s"]:
        best = r
print(f"{best['requests_per_s']:.0f} {best['mean_e2e_s']:.6f} {best['cpu_requests_per_s']:.0f} {best['prefix_hit_rate']:.6f}")
"""

# env steps per CPU second (argv: envs (0: gym.make), obs, scenario, benchmarks dir)
_RUN_ENV = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
import gymnasium as gym
import llm_routing_env
from bench_env import RandomValid
n, obs, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if n == 0:
    env = gym.make(llm_routing_env.ENV_ID, scenario=scenario, mode="tick", num_requests=2000, obs=obs)
    policy = RandomValid(1, env.unwrapped.config.num_instances, True)
    _, info = env.reset(seed=0)
    steps, cpu_s = 0, 0.0
    while steps < 4000:
        start = time.process_time()
        for _ in range(200):
            _, _, term, trunc, info = env.step(int(policy(info["action_mask"][None])[0]))
            if term or trunc:
                break
        cpu_s += time.process_time() - start
        steps += 200
        if term or trunc:
            _, info = env.reset()
    rate = steps / cpu_s
else:
    venv = gym.make_vec(llm_routing_env.ENV_ID, num_envs=n, scenario=scenario, mode="tick", num_requests=2000, obs=obs)
    policy = RandomValid(n, venv.unwrapped.config.num_instances, True)
    _, info = venv.reset(seed=0)
    for _ in range(100):
        _, _, _, _, info = venv.step(policy(info["action_mask"]))
    start = time.process_time()
    for _ in range(200):
        _, _, _, _, info = venv.step(policy(info["action_mask"]))
    rate = n * 200 / (time.process_time() - start)
print(f"{rate:.0f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR, a source tree (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per process (the best is kept)")
    parser.add_argument("--workload", default="paper", choices=["paper", "prefixes", "multiturn"])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="cluster batch sizes B (default 1 256; "
                        "with --env: vector env sizes, 0 for gym.make; default 0 1024)")
    parser.add_argument("--env", action="store_true", help="time the environment instead of the simulator")
    parser.add_argument("--obs", default="rich", choices=["paper", "rich"], help="with --env: the observation")
    parser.add_argument("--scenario", default="paper-v100", help="with --env: the scenario")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent)
    trees = []
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "llm_routing_env").is_dir():
            parser.error(f"--tree {spec!r}: give NAME=DIR with DIR/llm_routing_env")
        trees.append((name, str(Path(path).resolve())))
    if args.env:
        print(f"{'round':>5} {'tree':>10} {'envs':>5} {'obs':>6} {'cpu steps/s':>12}  scenario {args.scenario}")
        for r in range(args.rounds):
            for n in args.sizes or (0, 1024):
                for name, path in trees:
                    env = {**os.environ, "PYTHONPATH": path}
                    out = subprocess.run([sys.executable, "-c", _RUN_ENV, str(n), args.obs, args.scenario, here],
                                         env=env, cwd=path, capture_output=True, text=True, check=True).stdout
                    print(f"{r + 1:>5} {name:>10} {n:>5} {args.obs:>6} {float(out):>12,.0f}", flush=True)
        return
    if args.workload != "paper":
        print(f"{'round':>5} {'tree':>10} {'scheduler':>9} {'B':>4} {'sim req/s':>10} {'cpu req/s':>10} "
              f"{'mean E2E s':>11} {'hit rate':>9}  workload {args.workload}")
        for r in range(args.rounds):
            for b in args.sizes or (1, 256):
                for name, path in trees:
                    for scheduler in ("vllm-v1",) if args.workload == "multiturn" else ("vllm-v0", "vllm-v1"):
                        env = {**os.environ, "PYTHONPATH": path}
                        out = subprocess.run([sys.executable, "-c", _RUN_WORKLOAD, str(b), scheduler, str(args.repeat),
                                              args.workload, here], env=env, cwd=path, capture_output=True,
                                             text=True, check=True).stdout.split()
                        print(f"{r + 1:>5} {name:>10} {scheduler:>9} {b:>4} {float(out[0]):>10,.0f} "
                              f"{float(out[2]):>10,.0f} {float(out[1]):>11.4f} {float(out[3]):>9.4f}", flush=True)
        return
    print(f"{'round':>5} {'tree':>10} {'scheduler':>9} {'B':>4} {'sim req/s':>10} {'mean E2E s':>11}")
    for r in range(args.rounds):
        for b in args.sizes or (1, 256):
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
