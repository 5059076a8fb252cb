"""PPO on Ray RLlib (new API stack): env runners step our native vector env, then the greedy
policy is compared with round-robin on held-out episodes and a checkpoint is saved.

    pip install -e '.[rllib]'     # ray[rllib]; torch CPU: see the README
    python examples/rllib_ppo.py --num-env-runners 1 --envs-per-runner 8 --iterations 20
    python examples/rllib_ppo.py --iterations 2 --num-requests 100 --eval-episodes 4   # smoke run

What happens:

* ``llm_routing_env.rllib.register()`` registers the env creator with
  ``ray.tune.registry.register_env``. With ``gym_env_vectorize_mode="vector_entry_point"`` every
  env runner asks the creator for ``--envs-per-runner`` envs at once and gets one
  ``LLMRoutingVectorEnv`` (NEXT_STEP autoreset, what RLlib's sampler expects).
* ``RoutingCallbacks`` seeds sub-env ``i`` of runner ``w`` with ``derive_seed(--seed, w, i)``
  (from the runner's EnvContext) and logs each episode's latency metrics: the training lines show
  ``env_runners/mean_e2e_s``, the mean E2E latency (s) of recent training episodes (sampled
  actions).
* After training, the greedy policy (argmax of the RLModule's action logits), the sampled policy
  and round-robin (action ``i % N`` for the ``i``-th request of an episode) play the same
  ``--eval-episodes`` episodes (seeds ``--eval-seed`` + k), and their mean E2E latencies are
  printed. A barely trained policy is nearly uniform, and its argmax turns small systematic
  preferences into sending most requests to one instance: compare the greedy and sampled lines.
* The algorithm is saved with ``algo.save_to_path``; restore it with
  ``ray.rllib.algorithms.algorithm.Algorithm.from_checkpoint(path)``.

RLlib's PPO uses GAE with a learned critic. Routing rewards are dominated by the randomness of
the workload, and the cost of sending a request to a loaded instance shows up seconds (hundreds
of decisions) later, so stock PPO does not beat round-robin in a short run and can drift towards
the loaded instances; examples/cleanrl_ppo.py shows the input-driven baseline that beats it in
about a minute.

**On a multi-node Ray cluster** the script runs unchanged:

1. Install the same Python, Ray and this package on every node (e.g. ``pip install -e
   '.[rllib]'`` from the same checkout, or a wheel), or pass ``--ship-package`` to send the
   ``llm_routing_env`` sources to the workers through Ray's ``runtime_env`` (the nodes then only
   need ``ray[rllib]``, which brings gymnasium and numpy, and torch).
2. Head node: ``ray start --head --port=6379``
3. Every other node: ``ray start --address=<head-ip>:6379``
4. From any node: ``RAY_ADDRESS=<head-ip>:6379 python examples/rllib_ppo.py --num-env-runners 16
   --envs-per-runner 8 --iterations 100``. ``ray.init()`` reads ``RAY_ADDRESS`` and joins the
   cluster instead of starting a local one; each env runner takes one CPU wherever Ray places it.
   ``ray status`` shows the nodes and CPUs; ``ray stop`` on each node ends the cluster.

Without ``RAY_ADDRESS`` (and no cluster started on this machine) ``ray.init()`` starts a local
Ray with this machine's CPUs: the learner runs in the driver and each env runner is an actor.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-env-runners", type=int, default=1, help="remote env runners (Ray actors)")
    p.add_argument("--envs-per-runner", type=int, default=8, help="clusters in each runner's native vector env")
    p.add_argument("--iterations", type=int, default=10, help="training iterations (algo.train() calls)")
    p.add_argument("--scenario", default="paper-v100")
    p.add_argument("--num-requests", type=int, default=300, help="requests per episode")
    p.add_argument("--rate-per-s", type=float, default=40.0, help="arrival rate (paper-v100 saturates near 20)")
    p.add_argument("--train-batch", type=int, default=4800, help="env steps per iteration")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0, help="base seed of the training workloads")
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--eval-seed", type=int, default=100_000)
    p.add_argument("--checkpoint-dir", default="checkpoints/rllib_ppo")
    p.add_argument("--ship-package", action="store_true",
                   help="send llm_routing_env to the workers via runtime_env (multi-node without installing it)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    return p.parse_args(argv)


def env_config(args) -> dict:
    return {"scenario": args.scenario, "num_requests": args.num_requests, "rate_per_s": args.rate_per_s,
            "mode": "arrival", "obs": "rich", "reward_scale": 0.001, "seed": args.seed}


def build_config(args):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from llm_routing_env import rllib as lre_rllib

    name = lre_rllib.register()
    return (
        PPOConfig()
        .environment(name, env_config=env_config(args))
        .env_runners(
            num_env_runners=args.num_env_runners,
            num_envs_per_env_runner=args.envs_per_runner,
            gym_env_vectorize_mode="vector_entry_point",   # the creator returns our LLMRoutingVectorEnv
            rollout_fragment_length="auto",
        )
        .training(
            train_batch_size_per_learner=args.train_batch,
            minibatch_size=min(512, args.train_batch),
            num_epochs=4,
            lr=args.lr,
            gamma=args.gamma,
            lambda_=0.95,
            entropy_coeff=0.003,
            vf_clip_param=100.0,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="tanh"))
        .callbacks(lre_rllib.RoutingCallbacks)
    )


def evaluate(args, policy) -> np.ndarray:
    """Mean E2E (s) of each held-out episode (seeds eval_seed + k) under ``policy(obs, i)``."""
    from llm_routing_env.env import LLMRoutingVectorEnv

    kwargs = {k: v for k, v in env_config(args).items() if k != "seed"}
    env = LLMRoutingVectorEnv(num_envs=args.eval_episodes, **kwargs)
    obs, info = env.reset(seed=args.eval_seed)
    result = np.full(args.eval_episodes, np.nan)
    finished = np.zeros(args.eval_episodes, dtype=bool)
    decision = np.zeros(args.eval_episodes, dtype=np.int64)
    while not finished.all():
        obs, _, _, _, info = env.step(np.asarray(policy(obs, decision), dtype=np.int64))
        decision += 1
        if "metrics" in info:
            first = info["_metrics"] & ~finished
            result[first] = info["metrics"]["mean_e2e_s"][first]
            finished |= first
    env.close()
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    import ray
    import torch
    import llm_routing_env
    from llm_routing_env.config import EnvConfig

    init_kwargs = {"include_dashboard": False}
    if args.ship_package:
        init_kwargs["runtime_env"] = {"py_modules": [llm_routing_env]}
    if args.num_cpus is not None and not os.environ.get("RAY_ADDRESS"):
        init_kwargs["num_cpus"] = args.num_cpus
    ray.init(**init_kwargs)
    print(f"Ray {ray.__version__}: {len(ray.nodes())} node(s), {ray.cluster_resources().get('CPU', 0):.0f} CPUs")

    start = time.time()
    torch.manual_seed(args.seed)   # the learner's RLModule is built here, in the driver
    algo = build_config(args).build_algo()
    history = []
    for it in range(1, args.iterations + 1):
        result = algo.train()
        runners = result.get("env_runners", {})
        e2e = runners.get("mean_e2e_s", float("nan"))
        history.append(float(e2e))
        print(f"iter {it:3d}  env steps {result.get('num_env_steps_sampled_lifetime', 0):8.0f}  "
              f"episodes {runners.get('num_episodes_lifetime', 0):6.0f}  "
              f"return {runners.get('episode_return_mean', float('nan')):8.3f}  "
              f"training mean E2E {e2e:6.3f} s  ({time.time() - start:5.0f} s)", flush=True)
    train_time = time.time() - start

    checkpoint = algo.save_to_path(os.path.abspath(args.checkpoint_dir))
    print(f"checkpoint: {checkpoint}")

    module = algo.get_module()

    def logits(obs):
        with torch.no_grad():
            return module.forward_inference({"obs": torch.as_tensor(obs)})["action_dist_inputs"]

    def greedy(obs, i):
        return logits(obs).argmax(-1).numpy()

    generator = torch.Generator().manual_seed(args.eval_seed)

    def sampled(obs, i):
        return torch.multinomial(torch.softmax(logits(obs), -1), 1, generator=generator).squeeze(-1).numpy()

    n = EnvConfig.from_kwargs(**{k: v for k, v in env_config(args).items() if k != "seed"}).num_instances
    learned = evaluate(args, greedy)
    stochastic = evaluate(args, sampled)
    rr = evaluate(args, lambda obs, i: i % n)
    diff = learned - rr
    print(f"\nheld-out episodes: {args.eval_episodes} (seeds {args.eval_seed}..{args.eval_seed + args.eval_episodes - 1}), "
          f"{args.scenario}, {args.num_requests} requests at {args.rate_per_s} req/s, arrival mode")
    print(f"mean E2E  RLlib PPO (greedy) : {learned.mean():.3f} s")
    print(f"mean E2E  RLlib PPO (sampled): {stochastic.mean():.3f} s")
    print(f"mean E2E  round-robin        : {rr.mean():.3f} s")
    print(f"greedy PPO - round-robin     : {diff.mean():+.3f} s ({100 * diff.mean() / rr.mean():+.1f}%), "
          f"better on {int((diff < 0).sum())}/{len(diff)} episodes")
    print(f"wall time: train {train_time:.0f} s")
    algo.stop()
    ray.shutdown()
    return {"training_mean_e2e_s": history, "learned_mean_e2e_s": float(learned.mean()),
            "sampled_mean_e2e_s": float(stochastic.mean()),
            "round_robin_mean_e2e_s": float(rr.mean()), "checkpoint": str(checkpoint)}


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
