"""Environment speed: env steps per wall-clock second, single env and native vector env, and how much
of a single env's step is the simulator.

Scenario ``paper-v100`` (4 x Llama-2-7B V100, paper mix, Poisson 20 req/s, 2,000 requests per
episode). The policy is random among the valid actions: in ``tick`` mode a random instance when the
router queue holds a request (the mask allows it), else hold; in ``arrival`` mode a random instance.
Making and resetting the envs is not timed (the single env's resets between episodes are left out;
the vector env's autoresets happen inside ``step`` and are counted, as a trainer would see them).
Each configuration first runs ``--warmup`` vector steps untimed so the clusters reach their steady
load (an empty cluster at the start of an episode is cheaper to simulate), then is timed for
``--seconds`` (at least ``--min-steps`` vector steps).

The breakdown times one single env's step by component with an exclusive-time profiler (each
component's own time, its callees excluded): the simulator's dynamics (``ClusterSimulator.advance_to``
and ``dispatch``), the simulator's state queries for the router view and the reward
(``instance_state``, ``instance_requests``, ``completions_by``), the routing core's step bookkeeping,
the router view and observation encoder, the env's step and info, and gym.make's wrappers.
"Overhead above the simulator" is everything but the dynamics. ``--profile`` adds a cProfile.

    python benchmarks/bench_env.py            # full table (a few minutes)
    python benchmarks/bench_env.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import time
from collections import defaultdict

import gymnasium as gym
import numpy as np

import llm_routing_env
from llm_routing_env.observations import encode as _encode

ID = llm_routing_env.ENV_ID
SCENARIO = "paper-v100"


# ------------------------------------------------------------------------------------ policies
class RandomValid:
    """Random valid actions for B envs from pre-drawn integers (so the policy costs next to nothing)."""

    def __init__(self, num_envs: int, num_instances: int, tick: bool, seed: int = 0, block: int = 1 << 16):
        self.B, self.N, self.tick = num_envs, num_instances, tick
        self.rng = np.random.default_rng(seed)
        self.block = max(block // max(num_envs, 1), 1)
        self._draw()

    def _draw(self) -> None:
        self.pool = self.rng.integers(0, self.N, size=(self.block, self.B))
        self.k = 0

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        if self.k == self.block:
            self._draw()
        a = self.pool[self.k]
        self.k += 1
        if self.tick:  # mask[:, 0] is True iff the router queue holds a request (else only hold)
            a = np.where(mask.reshape(self.B, -1)[:, 0], a, self.N)
        return a


# ----------------------------------------------------------------------------------- throughput
def bench_single(mode: str, seconds: float, warmup: int, min_steps: int, unwrapped: bool = False) -> dict:
    env = gym.make(ID, scenario=SCENARIO, mode=mode)
    if unwrapped:
        env = env.unwrapped
    n = env.unwrapped.config.num_instances
    policy = RandomValid(1, n, mode == "tick")
    _, info = env.reset(seed=0)
    for _ in range(warmup):
        _, _, term, trunc, info = env.step(int(policy(info["action_mask"])[0]))
        if term or trunc:
            _, info = env.reset()
    steps, elapsed, episodes = 0, 0.0, 0
    while elapsed < seconds or steps < min_steps:
        start = time.perf_counter()
        for _ in range(200):
            _, _, term, trunc, info = env.step(int(policy(info["action_mask"])[0]))
            steps += 1
            if term or trunc:
                break
        elapsed += time.perf_counter() - start
        if term or trunc:
            episodes += 1
            _, info = env.reset()  # not timed
    env.close()
    return {"label": "gym.make" + (" (unwrapped)" if unwrapped else ""), "mode": mode, "envs": 1,
            "vector_steps": steps, "wall_s": elapsed, "steps_per_s": steps / elapsed,
            "us_per_step": 1e6 * elapsed / steps, "episodes": episodes}


def bench_vector(mode: str, num_envs: int, seconds: float, warmup: int, min_steps: int) -> dict:
    venv = gym.make_vec(ID, num_envs=num_envs, scenario=SCENARIO, mode=mode)
    n = venv.unwrapped.config.num_instances
    policy = RandomValid(num_envs, n, mode == "tick")
    _, info = venv.reset(seed=0)
    for _ in range(warmup):
        _, _, _, _, info = venv.step(policy(info["action_mask"]))
    steps, ended = 0, 0
    start = time.perf_counter()
    while True:
        _, _, term, trunc, info = venv.step(policy(info["action_mask"]))
        steps += 1
        ended += int((term | trunc).sum())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and steps >= min_steps:
            break
    venv.close()
    return {"label": "gym.make_vec", "mode": mode, "envs": num_envs, "vector_steps": steps, "wall_s": elapsed,
            "steps_per_s": num_envs * steps / elapsed, "us_per_step": 1e6 * elapsed / (num_envs * steps),
            "episodes": ended}


# ------------------------------------------------------------------------------------ breakdown
class ExclusiveTimer:
    """Accumulates each wrapped callable's own time (time spent in other wrapped callables excluded)."""

    def __init__(self):
        self.own = defaultdict(float)
        self.calls = defaultdict(int)
        self._stack: list[list] = []

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - start
                (children,) = self._stack.pop()
                self.own[name] += dt - children
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += dt
        return timed


COMPONENTS = [
    ("sim dynamics", ("sim.advance_to", "sim.dispatch")),
    ("sim queries", ("sim.instance_state", "sim.instance_requests", "sim.completions_by")),
    ("core step", ("core.step",)),
    ("view+obs", ("core.view", "core._compute_view", "encode")),
    ("env step+info", ("env.step",)),
    ("gym wrappers", ("wrappers.step",)),
]


def breakdown_single(mode: str, steps: int, warmup: int) -> dict:
    env = gym.make(ID, scenario=SCENARIO, mode=mode)
    base = env.unwrapped
    core, sim = base.core, base.core.sim
    n = base.config.num_instances
    policy = RandomValid(1, n, mode == "tick", seed=1)
    _, info = env.reset(seed=1)
    for _ in range(warmup):
        _, _, term, trunc, info = env.step(int(policy(info["action_mask"])[0]))
        if term or trunc:
            _, info = env.reset()

    timer = ExclusiveTimer()
    for name in ("advance_to", "dispatch", "instance_state", "instance_requests", "completions_by"):
        setattr(sim, name, timer.wrap(f"sim.{name}", getattr(sim, name)))
    # the router view: eager (_compute_view) or lazy (fields computed where first read: in the
    # encoder, in core.step or in the env's info)
    for name in ("step", "view", "_compute_view"):
        if hasattr(core, name):
            setattr(core, name, timer.wrap(f"core.{name}", getattr(core, name)))
    base.step = timer.wrap("env.step", base.step)
    import llm_routing_env.env as env_module
    original_encode = env_module.encode
    env_module.encode = timer.wrap("encode", _encode)
    step = timer.wrap("wrappers.step", env.step)
    try:
        done_steps, elapsed = 0, 0.0
        while done_steps < steps:
            start = time.perf_counter()
            for _ in range(200):
                _, _, term, trunc, info = step(int(policy(info["action_mask"])[0]))
                done_steps += 1
                if term or trunc or done_steps >= steps:
                    break
            elapsed += time.perf_counter() - start
            if term or trunc:
                _, info = env.reset()
    finally:
        env_module.encode = original_encode
    total = sum(timer.own.values())
    out = {"mode": mode, "steps": done_steps, "us_total": 1e6 * elapsed / done_steps,
           "us_timed": 1e6 * total / done_steps}
    for label, names in COMPONENTS:
        out[label] = 1e6 * sum(timer.own[k] for k in names) / done_steps
    out["overhead above simulator"] = out["us_total"] - out["sim dynamics"]
    return out


def profile_single(mode: str, steps: int, warmup: int, top: int = 20) -> str:
    env = gym.make(ID, scenario=SCENARIO, mode=mode)
    policy = RandomValid(1, env.unwrapped.config.num_instances, mode == "tick", seed=2)
    _, info = env.reset(seed=2)
    for _ in range(warmup):
        _, _, _, _, info = env.step(int(policy(info["action_mask"])[0]))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        _, _, term, trunc, info = env.step(int(policy(info["action_mask"])[0]))
        if term or trunc:
            break
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


# ---------------------------------------------------------------------------------------- output
def show_throughput(rows: list[dict]) -> None:
    print(f"\n{'env':<22} {'mode':<8} {'envs':>5} {'vec steps':>9} {'wall s':>7} {'env-steps/s':>12} "
          f"{'us/env-step':>12} {'episodes':>8}")
    for r in rows:
        print(f"{r['label']:<22} {r['mode']:<8} {r['envs']:>5} {r['vector_steps']:>9} {r['wall_s']:>7.2f} "
              f"{r['steps_per_s']:>12,.0f} {r['us_per_step']:>12.1f} {r['episodes']:>8}")


def show_breakdown(rows: list[dict]) -> None:
    labels = [c for c, _ in COMPONENTS]
    print("\nsingle env (gym.make), microseconds per step by component (own time; % of the step):")
    header = f"{'mode':<8} {'total':>8} " + " ".join(f"{c:>19}" for c in labels) + f" {'overhead above sim':>19}"
    print(header)
    for r in rows:
        cells = " ".join(f"{r[c]:>10.0f} ({100 * r[c] / r['us_total']:>4.0f}%) " for c in labels)
        over = r["overhead above simulator"]
        print(f"{r['mode']:<8} {r['us_total']:>8.0f} {cells}{over:>10.0f} ({100 * over / r['us_total']:>4.0f}%)")
    print("total: the timed loop per step (components add up to it minus the policy and loop); own time of: "
          "sim dynamics = ClusterSimulator.advance_to + dispatch; sim queries = instance_state + instance_requests"
          " + completions_by; core step = RoutingCore.step (bookkeeping, reward); view+obs = the router view and"
          " the observation encoder; env step+info = LLMRoutingEnv.step (info dict, metrics at episode end, lazy"
          " view fields it reads); gym wrappers = gym.make's PassiveEnvChecker + OrderEnforcing. "
          "overhead above sim = total - sim dynamics.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run: less warm-up and timing")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per configuration")
    parser.add_argument("--warmup", type=int, default=None, help="untimed vector steps before timing")
    parser.add_argument("--min-steps", type=int, default=None, help="at least this many timed vector steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 256, 1024], help="vector env sizes")
    parser.add_argument("--modes", nargs="+", default=["tick", "arrival"], choices=["tick", "arrival"])
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the single env")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (50 if args.quick else 300)
    min_steps = args.min_steps if args.min_steps is not None else (10 if args.quick else 50)
    breakdown_steps = 500 if args.quick else 3000

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"llm_routing_env env benchmark: scenario {SCENARIO}, random valid actions, "
          f"warm-up {warmup} steps, >= {seconds:g} s per configuration")
    print(f"python {platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"(a shared machine: other jobs compete for the CPUs)")

    rows = []
    for mode in args.modes:
        rows.append(bench_single(mode, seconds, warmup, min_steps))
        rows.append(bench_single(mode, seconds, warmup, min_steps, unwrapped=True))
        for n in args.sizes:
            rows.append(bench_vector(mode, n, seconds, warmup, min_steps))
        show_throughput(rows[-(2 + len(args.sizes)):])
    print("\nall configurations:")
    show_throughput(rows)

    breakdown = [breakdown_single(mode, breakdown_steps, warmup) for mode in args.modes]
    show_breakdown(breakdown)
    if args.profile:
        for mode in args.modes:
            print(f"\ncProfile, single env, {mode} mode, {breakdown_steps} steps (by own time):")
            print(profile_single(mode, breakdown_steps, warmup))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
