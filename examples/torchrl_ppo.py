"""PPO with TorchRL on the native vector env, with masked actions.

    pip install torchrl           # keep the CPU torch: see docs/libraries.md
    python examples/torchrl_ppo.py                          # about 2 min on 2 cores
    python examples/torchrl_ppo.py --total-frames 4000 --num-requests 60 --eval-episodes 4   # smoke run

How the env plugs into TorchRL:

* ``GymWrapper`` takes Gymnasium vector envs, but only with ``AutoresetMode.SAME_STEP`` or
  ``DISABLED`` (TorchRL resets finished sub-envs itself, by passing a ``_reset`` mask that
  becomes ``reset(options={"reset_mask": ...})``). :class:`ManualResetVectorEnv` presents
  ``LLMRoutingVectorEnv`` (NEXT_STEP) as DISABLED: the native env already supports
  ``reset_mask`` resets, and a sub-env that TorchRL resets right after its episode ended never
  reaches the NEXT_STEP autoreset. The wrapper raises if a finished sub-env is stepped without a
  reset, so a silent autoreset cannot slip into the data.
* ``info["action_mask"]`` and ``info["arrived"]`` are read into the TensorDict with
  ``default_info_dict_reader``; the actor is a ``ProbabilisticActor`` over
  ``MaskedCategorical(logits, mask=action_mask)`` (masked actions get probability 0).
* The actor scores each instance with one shared network (the ``rich`` observation has one row
  per instance); the critic sees the observation and the episode's progress (``arrived``).
* The collector, GAE, ``ClipPPOLoss`` and the replay buffer are TorchRL's standard PPO pieces
  (as in TorchRL's "coding_ppo" tutorial).
* At the end the greedy policy (``ExplorationType.DETERMINISTIC``, i.e. the masked argmax) plays
  held-out episodes through ``env.rollout``, and round-robin (action ``i % N`` for the ``i``-th
  request) plays the same episodes. The latency reward makes an episode's return exactly
  ``-reward_scale * sum of its requests' E2E latencies``, so mean E2E = -return / (reward_scale x
  num_requests).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from gymnasium.vector import AutoresetMode, VectorWrapper

from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import Binary, LazyTensorStorage, ReplayBuffer, Unbounded
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import ExplorationType, RewardSum, TransformedEnv, set_exploration_type
from torchrl.envs.libs.gym import GymWrapper, default_info_dict_reader
from torchrl.modules import MaskedCategorical, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from llm_routing_env.env import LLMRoutingVectorEnv
from llm_routing_env.observations import RICH_GLOBAL_FEATURES, RICH_INSTANCE_FEATURES


class ManualResetVectorEnv(VectorWrapper):
    """``LLMRoutingVectorEnv`` as an ``AutoresetMode.DISABLED`` vector env: the caller resets
    finished sub-envs with ``reset(options={"reset_mask": mask})`` (what TorchRL does)."""

    autoreset_mode = AutoresetMode.DISABLED   # TorchRL reads the attribute, Gymnasium the metadata

    def __init__(self, env):
        super().__init__(env)
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.DISABLED}
        self._ended = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        if options and "reset_mask" in options:
            self._ended[np.asarray(options["reset_mask"], dtype=bool)] = False
        else:
            self._ended[:] = False
        return obs, info

    def step(self, actions):
        if self._ended.any():
            raise RuntimeError(f"sub-envs {np.flatnonzero(self._ended).tolist()} ended and were not reset "
                               "(AutoresetMode.DISABLED: reset them with options={'reset_mask': ...})")
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._ended = terminated | truncated
        return obs, reward, terminated, truncated, info


def make_env(args, num_envs: int, seed: int) -> TransformedEnv:
    """TorchRL env over ``num_envs`` clusters; sub-env i plays the workload of seed ``seed + i``."""
    venv = LLMRoutingVectorEnv(num_envs=num_envs, scenario=args.scenario, num_requests=args.num_requests,
                               rate_per_s=args.rate_per_s, mode="arrival", obs="rich",
                               reward_scale=args.reward_scale)
    n_actions = int(venv.single_action_space.n)
    env = GymWrapper(ManualResetVectorEnv(venv), categorical_action_encoding=True)
    env.set_info_dict_reader(default_info_dict_reader(
        ["action_mask", "arrived"],
        spec={"action_mask": Binary(n=n_actions, shape=(num_envs, n_actions), dtype=torch.bool),
              "arrived": Unbounded(shape=(num_envs,), dtype=torch.int64)}))
    env.set_seed(seed)
    return TransformedEnv(env, RewardSum())   # "episode_reward": the running return of each episode


class InstanceScorer(nn.Module):
    """Logits: one shared MLP scores (request features, instance row) for every instance."""

    def __init__(self, num_instances: int, hidden: int = 64):
        super().__init__()
        self.n = num_instances
        self.net = nn.Sequential(nn.Linear(RICH_GLOBAL_FEATURES + RICH_INSTANCE_FEATURES, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.orthogonal_(self.net[-1].weight, 0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        request = obs[..., :RICH_GLOBAL_FEATURES]
        rows = obs[..., RICH_GLOBAL_FEATURES:].unflatten(-1, (self.n, RICH_INSTANCE_FEATURES))
        pairs = torch.cat([request.unsqueeze(-2).expand(*rows.shape[:-1], -1), rows], dim=-1)
        return self.net(pairs).squeeze(-1)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, num_requests: int, hidden: int = 64):
        super().__init__()
        self.num_requests = num_requests
        self.net = nn.Sequential(nn.Linear(obs_dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor, arrived: torch.Tensor) -> torch.Tensor:
        progress = arrived.to(obs.dtype).unsqueeze(-1) / self.num_requests
        return self.net(torch.cat([obs, progress], dim=-1))


def round_robin_e2e(args) -> np.ndarray:
    """Mean E2E (s) of each held-out episode under round-robin (numpy loop, same seeds)."""
    env = LLMRoutingVectorEnv(num_envs=args.eval_episodes, scenario=args.scenario, num_requests=args.num_requests,
                              rate_per_s=args.rate_per_s, mode="arrival", obs="rich")
    env.reset(seed=args.eval_seed)
    n = env.config.num_instances
    result = np.full(args.eval_episodes, np.nan)
    finished = np.zeros(args.eval_episodes, dtype=bool)
    i = 0
    while not finished.all():
        _, _, _, _, info = env.step(np.full(args.eval_episodes, i % n, dtype=np.int64))
        i += 1
        if "metrics" in info:
            first = info["_metrics"] & ~finished
            result[first] = info["metrics"]["mean_e2e_s"][first]
            finished |= first
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="paper-v100")
    p.add_argument("--num-requests", type=int, default=300)
    p.add_argument("--rate-per-s", type=float, default=40.0)
    p.add_argument("--reward-scale", type=float, default=0.001)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--frames-per-batch", type=int, default=2048)
    p.add_argument("--total-frames", type=int, default=250_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--minibatch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--gamma", type=float, default=0.999)
    p.add_argument("--lmbda", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--eval-seed", type=int, default=100_000)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    start = time.time()

    env = make_env(args, args.num_envs, seed=args.seed * 1000)
    num_instances = int(env.action_spec.space.n)
    obs_dim = env.observation_spec["observation"].shape[-1]

    policy_module = TensorDictModule(InstanceScorer(num_instances), in_keys=["observation"], out_keys=["logits"])
    actor = ProbabilisticActor(
        policy_module,
        in_keys={"logits": "logits", "mask": "action_mask"},
        distribution_class=MaskedCategorical,
        spec=env.action_spec,
        return_log_prob=True,
    )
    critic = ValueOperator(Critic(obs_dim, args.num_requests), in_keys=["observation", "arrived"])

    collector = Collector(env, actor, frames_per_batch=args.frames_per_batch, total_frames=args.total_frames,
                          auto_register_policy_transforms=True)
    buffer = ReplayBuffer(storage=LazyTensorStorage(args.frames_per_batch), sampler=SamplerWithoutReplacement(),
                          batch_size=args.minibatch)
    advantage = GAE(gamma=args.gamma, lmbda=args.lmbda, value_network=critic, average_gae=True)
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=0.003, critic_coeff=0.5,
                              loss_critic_type="l2")
    optim = torch.optim.Adam(loss_module.parameters(), lr=args.lr, eps=1e-5)
    total_iters = max(1, args.total_frames // args.frames_per_batch)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda i: max(0.0, 1 - i / total_iters))

    finished: list[float] = []
    for it, data in enumerate(collector, start=1):
        # data: [num_envs, steps]; GAE reads ("next", "done"/"terminated") and never crosses an episode end
        done = data["next", "done"].squeeze(-1)
        finished.extend((-data["next", "episode_reward"][done].squeeze(-1) /
                         (args.reward_scale * args.num_requests)).tolist())
        for _ in range(args.epochs):
            advantage(data)
            buffer.extend(data.reshape(-1))
            for _ in range(max(1, data.numel() // args.minibatch)):
                losses = loss_module(buffer.sample())
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                optim.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(loss_module.parameters(), 0.5)
                optim.step()
        sched.step()
        collector.update_policy_weights_()
        if it % 20 == 0 or it == total_iters:
            recent = np.mean(finished[-32:]) if finished else float("nan")
            print(f"iter {it:4d}/{total_iters}  frames {it * args.frames_per_batch:7d}  episodes {len(finished):4d}  "
                  f"training mean E2E (last 32, sampled) {recent:6.3f} s  ({time.time() - start:4.0f} s)", flush=True)
    collector.shutdown()
    train_time = time.time() - start

    # greedy policy through TorchRL's rollout, on the held-out seeds
    eval_env = make_env(args, args.eval_episodes, seed=args.eval_seed)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        rollout = eval_env.rollout(args.num_requests, actor, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    assert bool(done[:, -1].all()), "arrival mode: every episode ends after num_requests decisions"
    returns = rollout["next", "episode_reward"][:, -1].squeeze(-1).numpy()
    learned = -returns / (args.reward_scale * args.num_requests)
    rr = round_robin_e2e(args)
    diff = learned - rr
    print(f"\nheld-out episodes: {args.eval_episodes} (seeds {args.eval_seed}..{args.eval_seed + args.eval_episodes - 1}), "
          f"{args.scenario}, {args.num_requests} requests at {args.rate_per_s} req/s, arrival mode")
    print(f"mean E2E  TorchRL PPO (greedy): {learned.mean():.3f} s")
    print(f"mean E2E  round-robin         : {rr.mean():.3f} s")
    print(f"PPO - round-robin             : {diff.mean():+.3f} s ({100 * diff.mean() / rr.mean():+.1f}%), "
          f"better on {int((diff < 0).sum())}/{len(diff)} episodes")
    print(f"wall time: train {train_time:.0f} s")
    return {"learned_mean_e2e_s": float(learned.mean()), "round_robin_mean_e2e_s": float(rr.mean()),
            "training_mean_e2e_s": finished}


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
