"""Simulator speed: simulated requests and iterations per wall-clock second.

A paper-like workload (the paper mix, Poisson arrivals, 2,000 requests per cluster) is routed
round-robin, one decision per arrival, as an environment in ``arrival`` mode would: advance every
cluster to its next arrival, dispatch, repeat, then run to completion. Workload generation is not
timed. Each cluster of the batch gets its own workload (seeds 0..B-1). Every setting runs under
both schedulers (vLLM v0, the paper's engine, and vLLM v1 with its online-serving defaults).

    python benchmarks/bench_simulator.py            # the README's table
    python benchmarks/bench_simulator.py --quick    # smaller, for a smoke run
    python benchmarks/bench_simulator.py --prefixes # the batch setting with shared prefixes too

With ``--prefixes`` every request also carries a shared system prompt of up to 4 blocks (64 tokens;
one of 8, by request index) as prefix block ids, with prefix caching on under both schedulers.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from llm_routing_env import ClusterConfig, SchedulerConfig
from llm_routing_env.sim import ClusterSimulator
from llm_routing_env.mixes import generate
from llm_routing_env.profiles import KV_BLOCK_TOKENS


SCHEDULERS = ("vllm-v0", "vllm-v1")


SYSTEM_PROMPTS, SYSTEM_PROMPT_BLOCKS = 8, 4


def run(num_clusters: int, num_instances: int, rate_per_s: float, num_requests: int,
        profile: str = "llama2-7b-v100", scheduler: str = "vllm-v0", prefixes: bool = False) -> dict:
    workloads = [generate("paper-mix", "poisson", rate_per_s=rate_per_s, n=num_requests, seed=seed)
                 for seed in range(num_clusters)]
    arrival = np.stack([w.arrival_s for w in workloads])
    prompt = np.stack([w.prompt_tokens for w in workloads])
    output = np.stack([w.output_tokens for w in workloads])
    clusters = np.arange(num_clusters)
    config = ClusterConfig([profile] * num_instances,
                           SchedulerConfig(scheduler=scheduler, prefix_caching=True if prefixes else None))
    sim = ClusterSimulator(config, num_clusters, num_requests)
    ids = [None] * num_requests
    if prefixes:  # (made before the clock starts, as the workload is)
        ids = [[[1000 * (i % SYSTEM_PROMPTS) + k for k in range(min(SYSTEM_PROMPT_BLOCKS, int(p) // KV_BLOCK_TOKENS))]
                for p in prompt[:, i]] for i in range(num_requests)]
    start = time.perf_counter()
    for i in range(num_requests):
        sim.advance_to(arrival[:, i])
        sim.dispatch(clusters, i, i % num_instances, prompt[:, i], output[:, i], arrival[:, i], prefix_blocks=ids[i])
    sim.run_until_idle()
    wall_s = time.perf_counter() - start
    rec = sim.records()
    return {
        "scheduler": scheduler, "B": num_clusters, "N": num_instances, "rate": rate_per_s, "wall_s": wall_s,
        "requests_per_s": num_clusters * num_requests / wall_s,
        "iterations_per_s": float(sim.iterations.sum()) / wall_s,
        "mean_e2e_s": float(np.mean(rec.completion_s - rec.arrival_s)),
        "preemptions_per_request": float(rec.preemptions.mean()),
        "prefix_hit_rate": float(rec.prefix_hit_tokens.sum() / (rec.prefix_hit_tokens.sum() + rec.prefill_tokens.sum())),
    }


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'scheduler':>9} {'B':>5} {'N':>3} {'req/s in':>9} {'wall s':>8} {'sim req/s':>11} {'iter/s':>11} "
          f"{'mean E2E s':>11} {'preempt/req':>11} {'hit rate':>9}")
    for r in rows:
        print(f"{r['scheduler']:>9} {r['B']:>5} {r['N']:>3} {r['rate']:>9g} {r['wall_s']:>8.2f} "
              f"{r['requests_per_s']:>11,.0f} "
              f"{r['iterations_per_s']:>11,.0f} {r['mean_e2e_s']:>11.2f} {r['preemptions_per_request']:>11.3f} "
              f"{r['prefix_hit_rate']:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests and clusters")
    parser.add_argument("--prefixes", action="store_true", help="only the batch setting, with shared prefixes")
    args = parser.parse_args()
    n = 500 if args.quick else 2000
    big_b = 32 if args.quick else 256
    print(f"numpy {np.__version__}, python {platform.python_version()}, {platform.machine()}; "
          f"llama2-7b-v100 instances, paper mix, Poisson, {n} requests per cluster, round-robin")
    if args.prefixes:
        show(f"Batch size with shared prefixes ({SYSTEM_PROMPTS} system prompts of <= {KV_BLOCK_TOKENS * SYSTEM_PROMPT_BLOCKS} "
             "tokens, prefix caching on)",
             [run(b, 4, 20.0, n, scheduler=s, prefixes=True) for s in SCHEDULERS for b in (1, big_b)])
        return
    show("Batch size (paper-v100-like: N=4 at 20 req/s)",
         [run(b, 4, 20.0, n, scheduler=s) for s in SCHEDULERS for b in (1, big_b)])
    show("Cost with the number of instances (B=1, 5 req/s per instance)",
         [run(1, N, 5.0 * N, n, scheduler=s) for s in SCHEDULERS for N in (2, 4, 8, 16)])
    show("Cost with load (B=1, N=4)", [run(1, 4, rate, n, scheduler=s) for s in SCHEDULERS
                                       for rate in (10.0, 20.0, 30.0, 40.0)])


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
