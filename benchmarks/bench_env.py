"""Environment speed: env steps per wall-clock second, single env and native vector env, and what a
single env's step costs above the simulator's own work.

Scenario ``paper-v100`` by default (4 x Llama-2-7B V100, paper mix, Poisson 20 req/s, 2,000 requests per
episode). The policy is random among the valid actions: in ``tick`` mode a random instance when the
router queue holds a request (the mask allows it), else hold; in ``arrival`` mode a random instance.
Throughput is measured over whole episodes from their reset, as a trainer sees them: an empty
cluster at the start is cheap to simulate, and the step that routes an episode's last request
simulates the cluster until it is idle. A single env runs episodes until ``--seconds`` have passed
(its resets are not timed); a vector env runs until every sub-env has ended the same number of
episodes and ``--seconds`` have passed (its autoresets happen inside ``step`` and are timed).

The single env's breakdown (see ``breakdown_single``) takes the same trajectory several times after
a ``--warmup`` of steps: plainly, with the simulator's ``advance_to`` and ``dispatch`` calls timed
(the simulator's own work), with those calls replayed alone, and with every component timed by its
own time. ``--profile`` adds a cProfile.

    python benchmarks/bench_env.py            # full table (several minutes)
    python benchmarks/bench_env.py --quick    # 200-request episodes, for a smoke run
    python benchmarks/bench_env.py --obs rich --scenario multiturn-chat   # the rich observation with prefixes
"""

from __future__ import annotations

import argparse
import copy
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
SCENARIO = "paper-v100"  # (--scenario)
OPTIONS = {"obs": "paper"}  # further gym.make settings (--obs)


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

    def one(self, mask: np.ndarray) -> int:
        """A single env's action as a Python int (what a training loop would pass)."""
        if self.k == self.block:
            self._draw()
        a = int(self.pool[self.k, 0])
        self.k += 1
        return a if not self.tick or mask[0] else self.N


# ----------------------------------------------------------------------------------- throughput
def bench_single(mode: str, seconds: float, num_requests: int, unwrapped: bool = False) -> dict:
    """Whole episodes from their reset, until ``seconds`` have passed (resets are not timed)."""
    env = gym.make(ID, scenario=SCENARIO, mode=mode, num_requests=num_requests, **OPTIONS)
    if unwrapped:
        env = env.unwrapped
    policy = RandomValid(1, env.unwrapped.config.num_instances, mode == "tick")
    _, info = env.reset(seed=0)
    steps, elapsed, episodes = 0, 0.0, 0
    while elapsed < seconds:
        start = time.perf_counter()
        for _ in range(200):
            _, _, term, trunc, info = env.step(policy.one(info["action_mask"]))
            steps += 1
            if term or trunc:
                break
        elapsed += time.perf_counter() - start
        if term or trunc:
            episodes += 1
            _, info = env.reset()  # not timed
        elif elapsed >= seconds:
            elapsed = seconds - 1e-9  # finish the episode
    env.close()
    return {"label": "gym.make" + (" (unwrapped)" if unwrapped else ""), "mode": mode, "envs": 1,
            "vector_steps": steps, "wall_s": elapsed, "steps_per_s": steps / elapsed,
            "us_per_step": 1e6 * elapsed / steps, "episodes": episodes}


def bench_vector(mode: str, num_envs: int, seconds: float, num_requests: int) -> dict:
    """From the reset until every sub-env has ended the same number of whole episodes and
    ``seconds`` have passed; autoresets happen inside ``step`` and are timed."""
    venv = gym.make_vec(ID, num_envs=num_envs, scenario=SCENARIO, mode=mode, num_requests=num_requests,
                        **OPTIONS)
    policy = RandomValid(num_envs, venv.unwrapped.config.num_instances, mode == "tick")
    _, info = venv.reset(seed=0)
    steps, ended, cycles = 0, np.zeros(num_envs, dtype=np.int64), 1
    start = time.perf_counter()
    while True:
        _, _, term, trunc, info = venv.step(policy(info["action_mask"]))
        steps += 1
        ended += term | trunc
        if ended.min() >= cycles:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            cycles += 1
    venv.close()
    return {"label": "gym.make_vec", "mode": mode, "envs": num_envs, "vector_steps": steps, "wall_s": elapsed,
            "steps_per_s": num_envs * steps / elapsed, "us_per_step": 1e6 * elapsed / (num_envs * steps),
            "episodes": int(ended.sum())}


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


SIM_QUERIES = ("instance_state", "instance_requests", "completions", "decode_totals", "predicted_decode_sets",
               "cluster_counters")
COMPONENTS = [
    ("sim dynamics", ("sim.advance_to", "sim.dispatch")),
    ("sim queries", tuple(f"sim.{name}" for name in SIM_QUERIES)),
    ("core step", ("core.step", "core.step_one")),
    ("view+obs", ("core.view", "core.counters_one", "encode", "paper_observation_one")),
    ("env step+info", ("env.step",)),
    ("gym wrappers", ("wrappers.step",)),
]


def _run_single(env, policy, steps: int, step=None, reset_seed: int | None = 1) -> tuple[float, dict]:
    """Seconds per step of ``steps`` steps (resets between episodes are not timed) and the last info.
    ``reset_seed=None`` continues the current episode."""
    step = step or env.step
    if reset_seed is None:
        info = {"action_mask": env.unwrapped.action_masks()}
    else:
        _, info = env.reset(seed=reset_seed)
    done_steps, elapsed = 0, 0.0
    while done_steps < steps:
        start = time.perf_counter()
        for _ in range(200):
            _, _, term, trunc, info = step(policy.one(info["action_mask"]))
            done_steps += 1
            if term or trunc or done_steps >= steps:
                break
        elapsed += time.perf_counter() - start
        if term or trunc:
            _, info = env.reset()
    return elapsed / done_steps, info


def breakdown_single(mode: str, steps: int, warmup: int) -> dict:
    """What a single env's step costs above the simulator's own work.

    After the warm-up the env is copied, so that every run below follows the same trajectory:
    1. the env is timed over ``steps`` steps; the step is the loop's time minus that of the same
       loop around a step that does nothing (the benchmark's own loop and policy);
    2. a copy runs with the simulator's dynamics calls (``advance_to``, ``dispatch``) timed one by
       one (less the timing's own cost): the simulator's own work within the env's loop;
    3. a copy records those calls and another copy's simulator replays them alone: the same work
       without the env's in between (caches stay warm for the simulator: faster);
    4. a copy times each component by its own time.
    The overhead above the simulator is the step (1) minus the simulator's work (2).
    """
    env = gym.make(ID, scenario=SCENARIO, mode=mode, **OPTIONS)
    policy = RandomValid(1, env.unwrapped.config.num_instances, mode == "tick", seed=1)
    _run_single(env, policy, warmup)
    inside_env, record_env, replay_env, parts_env = (copy.deepcopy((env, policy)) for _ in range(4))
    s_plain, info = _run_single(env, policy, steps, reset_seed=None)
    fixed = (None, 0.0, False, False, info)
    s_loop, _ = _run_single(env, policy, steps, step=lambda action: fixed, reset_seed=None)
    clock = time.perf_counter

    def timing_cost(calls: int) -> float:
        start = clock()
        for _ in range(calls):
            clock() - clock()
        return clock() - start

    # 2. the simulator's dynamics calls timed within the loop
    spent = [0.0, 0]
    sim = inside_env[0].unwrapped.core.sim
    for name in ("advance_to", "dispatch"):
        def timed(*args, _method=getattr(sim, name), **kwargs):
            start = clock()
            _method(*args, **kwargs)
            spent[0] += clock() - start
            spent[1] += 1
        setattr(sim, name, timed)
    _run_single(*inside_env, steps, reset_seed=None)
    sim_inside_s = spent[0] - timing_cost(spent[1])

    # 3. recorded (episode starts included, not timed) and replayed alone
    record = []
    sim = record_env[0].unwrapped.core.sim
    for name in ("advance_to", "dispatch", "reset", "set_predictions"):
        def recorded(*args, _name=name, _method=getattr(sim, name), **kwargs):
            record.append((_name, copy.deepcopy(args), copy.deepcopy(kwargs)))
            return _method(*args, **kwargs)
        setattr(sim, name, recorded)
    _run_single(*record_env, steps, reset_seed=None)
    replay_sim, sim_alone_s, calls = replay_env[0].unwrapped.core.sim, 0.0, 0
    for name, args, kwargs in record:
        method = getattr(replay_sim, name)
        if name in ("reset", "set_predictions"):
            method(*args, **kwargs)
            continue
        start = clock()
        method(*args, **kwargs)
        sim_alone_s += clock() - start
        calls += 1
    sim_alone_s -= timing_cost(calls)

    out = {"mode": mode, "steps": steps, "us_total": 1e6 * (s_plain - s_loop), "us_loop": 1e6 * s_loop,
           "us_sim": 1e6 * sim_inside_s / steps, "us_sim_alone": 1e6 * sim_alone_s / steps}
    out["overhead above simulator"] = out["us_total"] - out["us_sim"]
    out.update(_components(*parts_env, steps))
    return out


def _components(env, policy, steps: int) -> dict:
    base = env.unwrapped
    core, sim = base.core, base.core.sim
    timer = ExclusiveTimer()
    for name in ("advance_to", "dispatch", *SIM_QUERIES):
        setattr(sim, name, timer.wrap(f"sim.{name}", getattr(sim, name)))
    # the router view (its fields are computed where first read: in the encoder, in core.step or
    # in the env's info) and the single env's counters
    for name in ("step", "view"):
        setattr(core, name, timer.wrap(f"core.{name}", getattr(core, name)))
    base.step = timer.wrap("env.step", base.step)
    import llm_routing_env.env as env_module
    import llm_routing_env.single_env as single_module
    # the single env's fast path (single_env.py), under the names of the batched code it mirrors
    originals = (env_module.encode, env_module.paper_observation_one, env_module.step_one, single_module.counters_one)
    env_module.encode = timer.wrap("encode", _encode)
    env_module.paper_observation_one = timer.wrap("paper_observation_one", originals[1])
    env_module.step_one = timer.wrap("core.step_one", originals[2])
    single_module.counters_one = timer.wrap("core.counters_one", originals[3])
    try:
        _run_single(env, policy, steps, step=timer.wrap("wrappers.step", env.step), reset_seed=None)
    finally:
        env_module.encode, env_module.paper_observation_one, env_module.step_one, single_module.counters_one = originals
    return {label: 1e6 * sum(timer.own[k] for k in names) / timer.calls["wrappers.step"]
            for label, names in COMPONENTS}


def profile_single(mode: str, steps: int, warmup: int, top: int = 20) -> str:
    env = gym.make(ID, scenario=SCENARIO, mode=mode, **OPTIONS)
    policy = RandomValid(1, env.unwrapped.config.num_instances, mode == "tick", seed=2)
    _run_single(env, policy, warmup, reset_seed=2)
    prof = cProfile.Profile()
    prof.enable()
    _run_single(env, policy, steps, reset_seed=None)
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
    labels = [c for c, _ in COMPONENTS if c != "sim dynamics"]
    print("\nsingle env (gym.make), microseconds per step:")
    print(f"{'mode':<8} {'step':>7} {'simulator':>10} {'overhead above simulator':>25} {'simulator alone':>16} "
          f"{'loop+policy':>12}")
    for r in rows:
        print(f"{r['mode']:<8} {r['us_total']:>7.1f} {r['us_sim']:>10.1f} {r['overhead above simulator']:>25.1f} "
              f"{r['us_sim_alone']:>16.1f} {r['us_loop']:>12.1f}")
    print("step: the timed loop's time per step minus that of the same loop around a step that does nothing "
          "(loop+policy); simulator: the simulator's own work in the env's loop, its advance_to and dispatch calls "
          "(timed one by one in a second run of the same trajectory); overhead above simulator = step - simulator; "
          "simulator alone: the same calls replayed without the env's work in between.")
    print("\nwhere the overhead goes (a last run of the same trajectory, each component's own time per step; the "
          "timers add their own cost):")
    print(f"{'mode':<8} " + " ".join(f"{c:>14}" for c in labels))
    for r in rows:
        print(f"{r['mode']:<8} " + " ".join(f"{r[c]:>14.1f}" for c in labels))
    print("sim queries: the simulator's state queries (instance_state, instance_requests, completions, "
          "decode_totals, predicted_decode_sets, and for one env cluster_counters); core step: "
          "RoutingCore.step / single_env.step_one (bookkeeping, reward); view+obs: the router view, counters_one and the "
          "observation encoders; env step+info: LLMRoutingEnv.step (info dict, metrics at episode end); gym "
          "wrappers: gym.make's PassiveEnvChecker + OrderEnforcing.")


def main() -> None:
    global SCENARIO
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run: 200-request episodes, less timing")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per configuration (at least)")
    parser.add_argument("--num-requests", type=int, default=None, help="requests per episode (default 2,000)")
    parser.add_argument("--warmup", type=int, default=None, help="single env steps before the breakdown")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 256, 1024], help="vector env sizes")
    parser.add_argument("--modes", nargs="+", default=["tick", "arrival"], choices=["tick", "arrival"])
    parser.add_argument("--obs", default="paper", choices=["paper", "rich"], help="observation encoding")
    parser.add_argument("--scenario", default=SCENARIO, help="scenario (e.g. multiturn-chat: prefix caching)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the single env")
    args = parser.parse_args()
    OPTIONS["obs"] = args.obs
    SCENARIO = args.scenario
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    num_requests = args.num_requests or (200 if args.quick else 2000)
    warmup = args.warmup if args.warmup is not None else (50 if args.quick else 300)
    breakdown_steps = 500 if args.quick else 3000

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"llm_routing_env env benchmark: scenario {SCENARIO}, {args.obs} observations, {num_requests} requests per "
          f"episode, random valid actions, whole episodes for >= {seconds:g} s per configuration")
    print(f"python {platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"(a shared machine: other jobs compete for the CPUs)")

    rows = []
    for mode in args.modes:
        rows.append(bench_single(mode, seconds, num_requests))
        rows.append(bench_single(mode, seconds, num_requests, unwrapped=True))
        for n in args.sizes:
            rows.append(bench_vector(mode, n, seconds, num_requests))
        show_throughput(rows[-(2 + len(args.sizes)):])
    print("\nall configurations:")
    show_throughput(rows)

    print(f"\nsingle env breakdown: {breakdown_steps} steps after a warm-up of {warmup} (2,000-request episodes)")
    breakdown = [breakdown_single(mode, breakdown_steps, warmup) for mode in args.modes]
    show_breakdown(breakdown)
    if args.profile:
        for mode in args.modes:
            print(f"\ncProfile, single env, {mode} mode, {breakdown_steps} steps (by own time):")
            print(profile_single(mode, breakdown_steps, warmup))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
