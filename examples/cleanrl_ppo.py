"""PPO with action masking on the native vector env, written out in one file (CleanRL style).

    python examples/cleanrl_ppo.py                      # about 1 min on 2 cores
    python examples/cleanrl_ppo.py --num-requests 100 --total-timesteps 4000 --eval-episodes 4   # smoke run
    python examples/cleanrl_ppo.py --group-size 1 --num-steps 128    # plain PPO + GAE (weaker here)

Everything is in this file: the arguments at the top, the policy, then the training loop from top
to bottom, then an evaluation of the learned policy against round-robin on the same episodes.

Things worth noticing:

* **Native vector env.** ``gym.make_vec("llm_routing_env/LLMRouting-v0", num_envs=...)`` builds
  :class:`llm_routing_env.env.LLMRoutingVectorEnv`: all clusters advance together in NumPy, no
  subprocesses.
* **NEXT_STEP autoreset** (Gymnasium 1.x default; https://gymnasium.farama.org/main/api/vector/autoreset/).
  The step that ends an episode returns that episode's *real* last observation. The *next* call to
  ``step`` ignores the action of that sub-env, resets it and returns the new first observation with
  reward 0 and both flags False. So (1) a transition taken from a final observation is not a
  transition at all: it is left out of the loss (``valid`` below), and (2) the return/advantage
  recursion stops at a done so it never runs across the reset; a truncated episode is
  bootstrapped from ``V(final obs)``, which NEXT_STEP hands us as an ordinary observation, and a
  terminated one is not bootstrapped. (CleanRL's original ``ppo.py`` assumes the pre-1.0 same-step
  reset and would bootstrap across episodes here.)
* **Action masking.** Invalid actions get a logit of ``-inf`` using ``info["action_mask"]`` (same
  as ``envs.action_masks()``). In arrival mode every instance is valid; in tick mode sending with
  an empty router queue is masked, so this script also runs with ``--mode tick``.
* **Policy.** With ``obs="rich"`` the observation is 8 request features followed by one row of 12
  features per instance. The actor scores each instance with the *same* small network (input:
  request features + that instance's row), so "send it to the instance that looks least loaded"
  is easy to represent; the critic is a plain MLP on the whole observation plus the episode's
  progress (requests arrived / requests per episode, from ``info["arrived"]``): an episode ends
  after a fixed number of requests, so the value of a state depends on how many are still to come.
* **Input-driven baseline** (Mao et al., "Variance Reduction for RL in Input-Driven
  Environments", ICLR 2019, made for exactly this kind of load balancing). Most of the variance of
  a routing return comes from the workload (arrival gaps, request sizes), not from the action, and
  the effect of one routing decision is a few percent of the latency, spread over seconds
  (hundreds of later decisions). So the sub-envs are seeded in groups of ``group_size``: a group
  plays the same requests at the same times, episode after episode (arrival mode: every episode
  has ``num_requests`` decisions, so the group stays aligned through the autoresets), and the
  advantage of a decision is its return minus the mean return of the *other* members of its group
  at the same decision index. That baseline does not depend on the action, so the gradient stays
  unbiased, and it cancels the workload's randomness. The critic is still trained and still
  bootstraps truncated episodes and the end of a rollout. ``--group-size 1`` gives plain PPO with
  GAE, which with the default budget beats round-robin by less (about 1.5% instead of 3%).
* **Round-robin baseline.** Action ``i % N`` for the ``i``-th decision of an episode (arrival
  mode), run on exactly the same episodes (seeds) as the learned policy.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.distributions.categorical import Categorical

import llm_routing_env  # noqa: F401  (registers llm_routing_env/LLMRouting-v0)
from llm_routing_env.observations import RICH_GLOBAL_FEATURES, RICH_INSTANCE_FEATURES


@dataclasses.dataclass
class Args:
    seed: int = 1
    """seed of torch and of the training episodes"""
    torch_threads: int = 1
    """torch intra-op threads (1 is fastest for these tiny networks)"""
    # environment
    scenario: str = "paper-v100"
    """shipped scenario (python -m llm_routing_env.scenarios lists them)"""
    num_requests: int = 300
    """requests per episode (one decision each in arrival mode)"""
    rate_per_s: float = 40.0
    """arrival rate: higher makes routing matter more (paper-v100 saturates near 20 req/s)"""
    mode: str = "arrival"
    """arrival (one decision per request) or tick"""
    max_sim_time_s: float = 0.0
    """truncate episodes after this much simulated time; 0 = never in arrival mode, and in tick mode
    5 x num_requests / rate_per_s + 30 s (a policy that holds forever must not stall the run)"""
    reward_scale: float = 0.001
    """the env's reward is -reward_scale * (requests in system x seconds): keeps returns near 1"""
    # algorithm
    total_timesteps: int = 250_000
    """environment steps (decisions) over all sub-envs"""
    num_envs: int = 16
    """parallel clusters in the native vector env"""
    num_steps: int = 0
    """steps per sub-env per rollout; 0 = num_requests + 1, one whole episode in arrival mode"""
    learning_rate: float = 3e-3
    anneal_lr: bool = True
    gamma: float = 0.999
    """a routing decision shows its cost seconds (hundreds of decisions) later"""
    gae_lambda: float = 0.95
    """GAE lambda (only with group_size 1)"""
    group_size: int = 4
    """sub-envs that play the same workload (see the docstring); 1 = plain PPO with GAE"""
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.003
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    # evaluation
    eval_episodes: int = 32
    """held-out episodes (seeds eval_seed .. eval_seed + n - 1) for learned vs round-robin"""
    eval_seed: int = 100_000


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=f.default,
                                metavar="BOOL")
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(flag, type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def env_kwargs(args: Args) -> dict:
    kwargs = dict(scenario=args.scenario, num_requests=args.num_requests, rate_per_s=args.rate_per_s,
                  mode=args.mode, obs="rich", reward_scale=args.reward_scale)
    limit = args.max_sim_time_s or (5 * args.num_requests / args.rate_per_s + 30 if args.mode == "tick" else 0)
    if limit:
        kwargs["max_sim_time_s"] = limit
    return kwargs


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def observe(obs: np.ndarray, info: dict, num_requests: int) -> torch.Tensor:
    """The env's observation with the episode's progress appended (for the critic)."""
    progress = np.asarray(info["arrived"], dtype=np.float32)[:, None] / num_requests
    return torch.tensor(np.concatenate([obs, progress], axis=1))


class Agent(nn.Module):
    """Actor: one shared scorer per instance (+ a hold logit in tick mode). Critic: MLP."""

    def __init__(self, obs_dim: int, num_instances: int, num_actions: int, hidden: int):
        super().__init__()
        self.n = num_instances
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim + 1, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=1.0),
        )
        self.scorer = nn.Sequential(
            layer_init(nn.Linear(RICH_GLOBAL_FEATURES + RICH_INSTANCE_FEATURES, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=0.01),
        )
        # tick mode has one more action, "hold": its logit comes from the request features
        self.hold = layer_init(nn.Linear(RICH_GLOBAL_FEATURES, 1), std=0.01) if num_actions > num_instances else None

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        request = x[:, :RICH_GLOBAL_FEATURES]
        rows = x[:, RICH_GLOBAL_FEATURES:-1].reshape(-1, self.n, RICH_INSTANCE_FEATURES)
        pairs = torch.cat([request[:, None, :].expand(-1, self.n, -1), rows], dim=2)
        scores = self.scorer(pairs).squeeze(-1)                       # (B, N)
        if self.hold is not None:
            scores = torch.cat([scores, self.hold(request)], dim=1)    # (B, N + 1)
        return scores

    def get_action_and_value(self, x, mask, action=None):
        logits = self.logits(x)
        logits = torch.where(mask, logits, torch.tensor(float("-inf")))  # invalid actions: -inf
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def evaluate(args: Args, policy) -> np.ndarray:
    """Mean E2E latency (s) of each of ``eval_episodes`` episodes run by ``policy(x, mask, i)``
    (``x`` from :func:`observe`, ``i`` the number of requests each sub-env has dispatched in this
    episode). Every policy plays the same episodes (seeds)."""
    envs = gym.make_vec("llm_routing_env/LLMRouting-v0", num_envs=args.eval_episodes, **env_kwargs(args))
    obs, info = envs.reset(seed=args.eval_seed)       # sub-env i plays the episode of seed eval_seed + i
    result = np.full(args.eval_episodes, np.nan)
    finished = np.zeros(args.eval_episodes, dtype=bool)
    n = envs.unwrapped.config.num_instances
    sent = np.zeros(args.eval_episodes, dtype=np.int64)
    while not finished.all():
        mask = info["action_mask"]
        actions = np.asarray(policy(observe(obs, info, args.num_requests), mask, sent), dtype=np.int64)
        obs, _, terminated, truncated, info = envs.step(actions)
        sent += (actions < n) & mask[np.arange(len(actions)), actions]   # a dispatch (tick mode: not a hold)
        if "metrics" in info:
            first = info["_metrics"] & ~finished
            # a truncated episode averages only its completed requests (NaN if none completed)
            result[first] = info["metrics"]["mean_e2e_s"][first]
            finished |= first
    envs.close()
    return result


def main() -> None:
    args = parse_args()
    if args.num_steps <= 0:
        args.num_steps = args.num_requests + 1   # + 1: the reset step that follows each episode
    batch_size = args.num_envs * args.num_steps
    assert args.num_envs % args.group_size == 0, "num_envs must be a multiple of group_size"
    num_iterations = max(1, args.total_timesteps // batch_size)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    start = time.time()

    # env setup: the native vector env (vector_entry_point), NEXT_STEP autoreset
    envs = gym.make_vec("llm_routing_env/LLMRouting-v0", num_envs=args.num_envs, **env_kwargs(args))
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    num_instances = envs.unwrapped.config.num_instances
    num_actions = int(envs.single_action_space.n)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = Agent(obs_dim, num_instances, num_actions, args.hidden)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # storage
    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim + 1))
    masks = torch.zeros((args.num_steps, args.num_envs, num_actions), dtype=torch.bool)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    terminations = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    valid = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    # sub-envs of a group get the same seed: the same requests, episode after episode
    next_obs_np, info = envs.reset(seed=[args.seed * 1000 + i // args.group_size for i in range(args.num_envs)])
    next_obs = observe(next_obs_np, info, args.num_requests)
    next_mask = torch.tensor(info["action_mask"])
    # NEXT_STEP: True where the last step ended an episode, so the coming step is a reset step
    next_autoreset = torch.zeros(args.num_envs, dtype=torch.bool)
    episode_e2e: list[float] = []
    global_step = 0

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            masks[step] = next_mask
            valid[step] = (~next_autoreset).float()   # a reset step is not a transition of the MDP

            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs, next_mask)
            values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            next_obs_np, reward, terminated, truncated, info = envs.step(action.numpy())
            rewards[step] = torch.tensor(reward, dtype=torch.float32)
            terminations[step] = torch.tensor(terminated, dtype=torch.float32)
            dones[step] = torch.tensor(terminated | truncated, dtype=torch.float32)
            next_obs = observe(next_obs_np, info, args.num_requests)
            next_mask = torch.tensor(info["action_mask"])
            next_autoreset = torch.tensor(terminated | truncated)
            if "metrics" in info:
                episode_e2e.extend(info["metrics"]["mean_e2e_s"][info["_metrics"]].tolist())

        # Returns and advantages over the rollout, NEXT_STEP style. Within an episode
        #   G_t = r_t + gamma * G_{t+1};  at a done: G_t = r_t + gamma * V(s_{t+1}) if truncated, r_t if terminated
        # where s_{t+1} after a done is the episode's real final observation, and the reset step that
        # follows (valid = 0) is cut off: nothing flows across it. The rollout's end bootstraps from V.
        with torch.no_grad():
            next_value = agent.get_value(next_obs).flatten()
            returns = torch.zeros_like(rewards)
            advantages = torch.zeros_like(rewards)
            ret = next_value
            lastgaelam = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                nextvalues = next_value if t == args.num_steps - 1 else values[t + 1]
                bootstrap = (1.0 - terminations[t]) * nextvalues
                ret = rewards[t] + args.gamma * torch.where(dones[t].bool(), bootstrap, ret)
                ret = ret * valid[t]
                returns[t] = ret
                # GAE (used when group_size == 1)
                delta = rewards[t] + args.gamma * bootstrap - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * (1.0 - dones[t]) * lastgaelam
                lastgaelam = lastgaelam * valid[t]
                advantages[t] = lastgaelam
            if args.group_size > 1:
                # input-driven baseline: the other members of a group play the same requests at
                # the same decision index, so their mean return is a baseline that removes the
                # randomness of the workload and keeps only the effect of the actions
                k = args.group_size
                grouped = returns.view(args.num_steps, args.num_envs // k, k)
                baseline = (grouped.sum(dim=2, keepdim=True) - grouped) / (k - 1)
                advantages = (grouped - baseline).view(args.num_steps, args.num_envs) * valid
            else:
                returns = advantages + values

        # flatten the batch, keeping only real transitions (not the reset steps)
        keep = valid.reshape(-1).bool()
        b_obs = obs.reshape(-1, obs_dim + 1)[keep]
        b_masks = masks.reshape(-1, num_actions)[keep]
        b_actions = actions.reshape(-1)[keep]
        b_logprobs = logprobs.reshape(-1)[keep]
        b_advantages = advantages.reshape(-1)[keep]
        b_returns = returns.reshape(-1)[keep]
        b_values = values.reshape(-1)[keep]
        n = b_obs.shape[0]
        minibatch_size = max(1, n // args.num_minibatches)

        # optimize policy and value network
        clipfracs = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(n)
            for start_i in range(0, n, minibatch_size):
                mb = b_inds[start_i:start_i + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_masks[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())

                mb_advantages = b_advantages[mb]
                if args.norm_adv and len(mb) > 1:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb]) ** 2
                    v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        if iteration % 10 == 0 or iteration == num_iterations:
            recent = np.mean(episode_e2e[-32:]) if episode_e2e else float("nan")
            print(f"iter {iteration:4d}/{num_iterations}  steps {global_step:7d}  "
                  f"episodes {len(episode_e2e):4d}  training mean E2E (last 32, sampled actions) {recent:6.3f} s  "
                  f"v_loss {v_loss.item():.4f}  entropy {entropy_loss.item():.3f}  "
                  f"approx_kl {approx_kl.item():.4f}  clipfrac {np.mean(clipfracs):.3f}  "
                  f"{global_step / (time.time() - start):.0f} steps/s", flush=True)
    envs.close()
    train_time = time.time() - start

    # evaluation: greedy learned policy vs round-robin on the same held-out episodes
    def learned(o, m, i):
        with torch.no_grad():
            logits = agent.logits(o)
            return torch.where(torch.tensor(m), logits, torch.tensor(float("-inf"))).argmax(1).numpy()

    def round_robin(o, m, i):
        # the i-th request of the episode goes to instance i % N (tick mode: hold when nothing to send)
        return np.where(m[:, 0], i % num_instances, num_actions - 1)

    if args.mode == "tick":
        print("tick mode: an episode truncated at max_sim_time_s averages only its completed requests")
    learned_e2e = evaluate(args, learned)
    rr_e2e = evaluate(args, round_robin)
    diff = learned_e2e - rr_e2e
    print(f"\nheld-out episodes: {args.eval_episodes} (seeds {args.eval_seed}..{args.eval_seed + args.eval_episodes - 1}), "
          f"{args.scenario}, {args.num_requests} requests at {args.rate_per_s} req/s, {args.mode} mode")
    print(f"mean E2E  learned PPO : {learned_e2e.mean():.3f} s")
    print(f"mean E2E  round-robin : {rr_e2e.mean():.3f} s")
    print(f"learned - round-robin : {diff.mean():+.3f} s ({100 * diff.mean() / rr_e2e.mean():+.1f}%), "
          f"better on {int((diff < 0).sum())}/{len(diff)} episodes, "
          f"paired 95% CI +-{1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float('nan'):.3f} s")
    print(f"wall time: train {train_time:.0f} s, total {time.time() - start:.0f} s")


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
