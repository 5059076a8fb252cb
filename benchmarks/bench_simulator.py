"""Simulator speed: simulated requests and iterations per wall-clock second.

A paper-like workload (the paper mix, Poisson arrivals, 2,000 requests per cluster) is routed
round-robin, one decision per arrival, as an environment in ``arrival`` mode would: advance every
cluster to its next arrival, dispatch, repeat, then run to completion. Workload generation is not
timed. Each cluster of the batch gets its own workload (seeds 0..B-1). Every setting runs under
both schedulers (vLLM v0, the paper's engine, and vLLM v1 with its online-serving defaults).

    python benchmarks/bench_simulator.py            # the README's table
    python benchmarks/bench_simulator.py --quick    # smaller, for a smoke run
    python benchmarks/bench_simulator.py --prefixes # the batch setting with shared prefixes too
    python benchmarks/bench_simulator.py --multiturn # the batch setting as multi-turn chat sessions

With ``--prefixes`` every request also carries a shared system prompt of up to 4 blocks (64 tokens;
one of 8, by request index) as prefix block ids, with prefix caching on under both schedulers.
With ``--multiturn`` the workload and cluster are the ``multiturn-chat`` scenario's (synthetic chat
sessions, each turn's prompt the previous prompt + answer + a new message, 8 shared system prompts;
4 x Llama-3.1-8B A100 under vLLM v1 at 0.9 load; ``llm_routing_env/sessions.py``), each request
dispatched with its prefix block ids (prefix caching on), round-robin as above.

Besides the wall-clock rate, ``cpu req/s`` divides by the process's CPU time: on a machine shared
with other jobs it moves less than the wall-clock rate (it still counts cache misses and frequency
changes caused by the others).
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
from llm_routing_env.scenarios import load_scenario


SCHEDULERS = ("vllm-v0", "vllm-v1")


SYSTEM_PROMPTS, SYSTEM_PROMPT_BLOCKS = 8, 4
MULTITURN_SCENARIO = "multiturn-chat"  # --multiturn: issue #13's speed targets are on this scenario


def run(num_clusters: int, num_instances: int, rate_per_s: float, num_requests: int,
        profile: str = "llama2-7b-v100", scheduler: str = "vllm-v0", prefixes: bool = False,
        multiturn: bool = False) -> dict:
    if multiturn:  # (the scenario's own cluster, rate and prefixes)
        scenario = load_scenario(MULTITURN_SCENARIO).with_overrides(num_requests=num_requests)
        workloads = [scenario.make_workload(seed).with_kv_blocks() for seed in range(num_clusters)]
        num_requests = min(len(w.prompt_tokens) for w in workloads)
        workloads = [w.subset(np.arange(num_requests)) for w in workloads]
        profile, num_instances, rate_per_s = scenario.instances[0], scenario.num_instances, scenario.offered_rate()
        scheduler = scenario.scheduler
    else:
        workloads = [generate("paper-mix", "poisson", rate_per_s=rate_per_s, n=num_requests, seed=seed)
                     for seed in range(num_clusters)]
    arrival = np.stack([w.arrival_s for w in workloads])
    prompt = np.stack([w.prompt_tokens for w in workloads])
    output = np.stack([w.output_tokens for w in workloads])
    clusters = np.arange(num_clusters)
    config = ClusterConfig([profile] * num_instances, SchedulerConfig(
        scheduler=scheduler, prefix_caching=True if prefixes or multiturn else None))
    sim = ClusterSimulator(config, num_clusters, num_requests)
    ids = [None] * num_requests
    # (prefix ids are made before the clock starts, as the workload is)
    if multiturn:
        ids = [[w.prefix_hashes[i][:int(w.prompt_tokens[i]) // KV_BLOCK_TOKENS] for w in workloads]
               for i in range(num_requests)]
    elif prefixes:
        ids = [[[1000 * (i % SYSTEM_PROMPTS) + k for k in range(min(SYSTEM_PROMPT_BLOCKS, int(p) // KV_BLOCK_TOKENS))]
                for p in prompt[:, i]] for i in range(num_requests)]
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(num_requests):
        sim.advance_to(arrival[:, i])
        sim.dispatch(clusters, i, i % num_instances, prompt[:, i], output[:, i], arrival[:, i], prefix_blocks=ids[i])
    sim.run_until_idle()
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    rec = sim.records()
    return {
        "scheduler": scheduler, "B": num_clusters, "N": num_instances, "rate": rate_per_s, "wall_s": wall_s,
        "requests_per_s": num_clusters * num_requests / wall_s,
        "cpu_requests_per_s": num_clusters * num_requests / cpu_s,
        "iterations_per_s": float(sim.iterations.sum()) / wall_s,
        "mean_e2e_s": float(np.mean(rec.completion_s - rec.arrival_s)),
        "preemptions_per_request": float(rec.preemptions.mean()),
        "prefix_hit_rate": float(rec.prefix_hit_tokens.sum() / (rec.prefix_hit_tokens.sum() + rec.prefill_tokens.sum())),
    }


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'scheduler':>9} {'B':>5} {'N':>3} {'req/s in':>9} {'wall s':>8} {'sim req/s':>11} {'cpu req/s':>11} "
          f"{'iter/s':>11} {'mean E2E s':>11} {'preempt/req':>11} {'hit rate':>9}")
    for r in rows:
        print(f"{r['scheduler']:>9} {r['B']:>5} {r['N']:>3} {r['rate']:>9g} {r['wall_s']:>8.2f} "
              f"{r['requests_per_s']:>11,.0f} {r['cpu_requests_per_s']:>11,.0f} "
              f"{r['iterations_per_s']:>11,.0f} {r['mean_e2e_s']:>11.2f} {r['preemptions_per_request']:>11.3f} "
              f"{r['prefix_hit_rate']:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests and clusters")
    parser.add_argument("--prefixes", action="store_true", help="only the batch setting, with shared prefixes")
    parser.add_argument("--multiturn", action="store_true", help="only the batch setting, as multi-turn sessions")
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
    if args.multiturn:
        show(f"Batch size, scenario {MULTITURN_SCENARIO} (its cluster and rate, prefix caching on)",
             [run(b, 4, 0.0, n, multiturn=True) for b in (1, big_b)])
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
