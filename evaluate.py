"""Evaluate routers on a scenario and compare them with round-robin (the CLI of agents/evaluation.py).

    python evaluate.py --scenario paper-v100 --policies rr,lor,p2c,lwl,models/dqn-guided.zip \\
        --episodes 20 --seed 0 [--mode tick|arrival] [--rate R | --load L1,L2,...] [--stochastic] \\
        [--trace PATH] [--profile NAME] [--instances N] [--scheduler vllm-v0|vllm-v1] [--chunked-prefill] \\
        [--overlong reject|clip|error] [--cache-knowledge approximate|exact|polled] \\
        [--json PATH] [--csv PATH] [--requests-csv PATH] [--plot DIR] [--workers W]

Policies: the routers of agents/baselines.py (``--list`` shows them with their sources; ``jsq``, the
paper's name for ``lot``, gives the ``lot`` row) and SB3 model files (``models/NAME.zip`` with its
card ``models/NAME.json``). Heuristics run in ``--mode`` (default ``arrival``), except the routers made
for tick mode only (``late-binding``, ``kv-admission``: they hold requests at the router), which run
in tick mode; a learned agent runs in the mode and observation it was trained with. The table marks
every policy not in arrival mode ``[tick]``; the JSON has each result's ``mode``. Clairvoyant oracles
(``oracle-*``) read true output lengths and are reported apart. ``--scenario`` defaults to ``paper-v100``.

Learned policies act deterministically (SB3's ``predict(deterministic=True)``: the most likely
action), as a deployed router would; ``--stochastic`` samples their actions from the policy's
distribution instead (PPO / MaskablePPO; the samples come from each episode's own seeded
Generator, so a run is reproducible), e.g. to compare with the training curves, which show the
sampled policy. A model trained on a ``VecNormalize``-wrapped env gets its saved statistics applied
when they sit beside it (``NAME.vecnormalize.pkl``, RL Zoo's ``NAME/vecnormalize.pkl``, or the
card's ``vecnormalize``): a note says which file; a warning says when the card says it was trained
with normalization and none is found.

Episodes: episode ``i`` uses env seed ``seed + i`` of the evaluation seed stream
(llm_routing_env/seeds.py; train.py trains and validates on other, disjoint streams) for every
policy: common random numbers. A model whose card records training or validation seeds among the
evaluated ones gets a warning on stderr and ``training_seeds.overlap: true`` in the JSON; a card
that records none is reported as "training seeds unknown". An episode cut off with requests
unfinished is counted in the ``truncated`` column.

Δ: the paired improvement of mean E2E over round-robin, ``100 * (1 - mean(p_i) / mean(rr_i))``
over the episodes, with a 95 % interval by the delta method for the ratio of the two paired means
(``z_i = p_i - R rr_i``, ``R = mean(p) / mean(rr)``; half-width ``100 t(0.975, n-1) sd(z) /
(sqrt(n) mean(rr))``). Δ is n/a for a policy (or against a round-robin) with a truncated episode:
its latencies cover only the requests it completed.

``--trace`` replays a trace file (generic CSV, Azure or Mooncake; see llm_routing_env/traces.py),
e.g. the Azure LLM inference traces 2023, ``AzureLLMInferenceTrace_{code,conv}.csv`` from
github.com/Azure/AzurePublicDataset (``data/``), on the scenario's cluster (``paper-v100``'s without
``--scenario``), at the trace's own times unless ``--rate`` rescales it (its first 20% by arrival
train the length predictor, episodes come from the rest); ``azure-code`` / ``azure-conv`` name
synthetic generators fitted to those files; ``--profile``, ``--instances``, ``--chunked-prefill`` override the
cluster. ``--load`` sweeps loads (offered rate / saturation rate; one result per policy and load).

Requests beyond the model's context (``max_model_len``, the smallest instance's): ``--overlong
reject`` (the default unless the scenario sets its own) refuses a prompt that leaves no room for
one output token, as vLLM does, and stops the others at the context; ``clip`` truncates them;
``error`` stops with the first one. The counts are printed with every result and written to the
JSON, the CSV and the requests CSV; refused requests are not in the latencies.

An unknown policy, a missing or corrupt model, a model trained for another observation or
instance count, an unknown scenario or a malformed trace (given with ``--trace`` or named in a
scenario file) stops with a one-line message on stderr and exit code 2 before any simulation
starts (llm_routing_env/cli.py, the error path of every entry point).
"""

from __future__ import annotations

import argparse
import sys
import time

from llm_routing_env.cli import entry_point


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _loads(text: str) -> list[float]:
    return [_positive_float(x.strip()) for x in text.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", help="a shipped scenario name or a TOML/YAML file (default: paper-v100; with "
                   "--trace only, paper-v100's cluster)")
    p.add_argument("--trace", help="replay this trace file (generic CSV, Azure, Mooncake; e.g. "
                   "AzureLLMInferenceTrace_conv.csv from github.com/Azure/AzurePublicDataset data/), or a fitted "
                   "synthetic trace: azure-code, azure-conv")
    p.add_argument("--policies", help="comma-separated router names and/or model .zip paths")
    p.add_argument("--episodes", type=_positive_int, default=20, help="episodes per policy (default 20)")
    p.add_argument("--seed", type=int, default=0,
                   help="episode i uses env seed SEED + i of the evaluation stream, 0 <= SEED < 2**32 (default 0)")
    p.add_argument("--mode", choices=["arrival", "tick"], default="arrival",
                   help="decision mode of the heuristics (default arrival; tick-only routers always tick)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rate", type=_positive_float, help="mean arrival rate (req/s); rescales a trace")
    g.add_argument("--load", type=_loads, help="comma-separated loads (rate / saturation rate) to sweep")
    p.add_argument("--profile", help="latency profile of every instance (overrides the scenario's cluster)")
    p.add_argument("--instances", type=_positive_int, help="number of instances (overrides the scenario's)")
    p.add_argument("--scheduler", choices=["vllm-v0", "vllm-v1"],
                   help="the instances' scheduler: vllm-v0 (the paper's engine) or vllm-v1 (one token budget, "
                        "prefills always chunked, KV blocks as tokens are computed); default: the scenario's")
    p.add_argument("--chunked-prefill", action="store_true", default=None, dest="chunked_prefill",
                   help="turn vLLM v0's chunked prefill on (512-token budget, KV reserved for the whole prompt)")
    p.add_argument("--cache-knowledge", choices=["approximate", "exact", "polled"], dest="cache_knowledge",
                   help="what routers know of the instances' prefix caches: their own routing history "
                        "(approximate), the engines' KV events (exact) or polled metrics only (default: the "
                        "scenario's, approximate)")
    p.add_argument("--num-requests", type=_positive_int, dest="num_requests", help="requests per episode")
    p.add_argument("--overlong", choices=["reject", "clip", "error"],
                   help="requests beyond the context: reject (as vLLM: refuse prompts of max_model_len tokens or "
                        "more, stop the others at the context), clip (truncate) or error; default: the scenario's "
                        "(reject)")
    p.add_argument("--stochastic", action="store_true",
                   help="learned policies sample their actions from the policy's distribution (seeded per episode) "
                        "instead of taking the most likely one; PPO / MaskablePPO models only")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--csv", help="write the table as CSV")
    p.add_argument("--requests-csv", dest="requests_csv", help="write one row per request")
    p.add_argument("--plot", help="write plots (E2E CDF, TTFT over time, improvement vs load) to this directory")
    p.add_argument("--workers", type=_positive_int, help="worker processes (default: every available core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the routers and exit")
    args = p.parse_args(argv)
    if not args.list and not args.policies:
        p.error("--policies is required")
    if args.scenario is None and args.trace is None:
        args.scenario = "paper-v100"
    return args


@entry_point("evaluate.py")
def main(argv=None) -> int:
    args = parse_args(argv)
    from agents.baselines import ROUTERS

    if args.list:
        for name, cls in ROUTERS.items():
            flag = " (clairvoyant)" if cls.clairvoyant else ""
            print(f"{name:<18}{flag:<15} modes {'/'.join(cls.modes):<14} {cls.source}")
        return 0

    from agents import evaluation as E
    from agents import reporting

    # everything that can fail is checked here, before any simulation (a ValueError / OSError is
    # reported by llm_routing_env.cli.run as one line, exit code 2)
    scenario = E.build_scenario(args.scenario, trace=args.trace, rate=args.rate, profile=args.profile,
                                instances=args.instances, chunked_prefill=args.chunked_prefill,
                                num_requests=args.num_requests, overlong=args.overlong,
                                scheduler=args.scheduler, cache_knowledge=args.cache_knowledge)
    specs = E.resolve_policies(args.policies, scenario.num_instances, args.mode, stochastic=args.stochastic)
    seed_checks = E.training_seed_checks(specs, args.seed, args.episodes)
    if args.load:
        scenario.with_overrides(load=args.load[0])  # validates
    for spec in specs:
        for level, message in spec.notes:
            print(f"evaluate.py: {level}: {message}", file=sys.stderr)
    for check in seed_checks.values():
        if check["overlap"]:
            print(f"evaluate.py: warning: {check['message']}", file=sys.stderr)
        elif not check["known"]:
            print(f"evaluate.py: note: {check['message']}", file=sys.stderr)

    workers = args.workers or E.default_workers()
    collect = bool(args.requests_csv or args.plot)
    start = time.perf_counter()
    # (issue #11 §4: --overlong error stops at the first request beyond the context, with its lengths)
    results = E.evaluate(specs, scenario, episodes=args.episodes, seed=args.seed, mode=args.mode,
                         loads=args.load, workers=workers, progress=not args.no_progress,
                         collect_requests=collect, stochastic=args.stochastic)
    wall = time.perf_counter() - start

    print(reporting.format_table(results))
    for r in results:
        if r["truncated_episodes"]:
            print(f"{r['policy']}: {r['truncated_episodes']} of {r['episodes']} episode(s) "
                  f"{'; '.join(r['truncated_reasons'])}")
    oracle_cost = [r for r in results if r.get("oracle_ms_per_decision") is not None]
    for r in oracle_cost:
        print(f"{r['policy']}: {r['oracle_ms_per_decision']:.1f} ms of wall time per decision "
              f"({r['wall_s']:.1f} s of worker time for {r['episodes']} episodes)")
    print(f"wall time {wall:.1f} s ({len(results)} policy runs x {args.episodes} episodes, {workers} worker(s))")

    name = scenario.name
    if args.json:
        env_seeds = E.EVALUATION.env_seeds(args.seed, args.episodes)
        reporting.write_json(results, args.json, scenario=name, episodes=args.episodes, seed=args.seed,
                             seed_stream={"stream": E.EVALUATION.name, "env_seeds": [env_seeds.start, env_seeds.stop]},
                             mode=args.mode, loads=args.load, wall_s=wall, workers=workers, stochastic=args.stochastic,
                             argv=sys.argv[1:] if argv is None else list(argv))
        print(f"wrote {args.json}")
    if args.csv:
        reporting.write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    if args.requests_csv:
        n = reporting.write_requests_csv(results, args.requests_csv)
        print(f"wrote {args.requests_csv} ({n} requests)")
    if args.plot:
        for path in reporting.make_plots(results, args.plot):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
