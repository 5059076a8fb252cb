"""Learned-router building blocks on Stable-Baselines3: Double DQN and a per-instance scoring policy.

* :class:`DoubleDQN`: SB3's DQN computes the plain DQN target ``max_a Q_target(s', a)``; the paper
  uses Double DQN (van Hasselt et al., 2016): the online network picks the next action and the
  target network values it, ``Q_target(s', argmax_a Q_online(s', a))``.
* :class:`InstanceScorer` / :class:`InstanceScoringPolicy`: a policy for the ``rich`` observation
  (request features + one row per instance) that applies the *same* small network to every
  instance's row together with the request, and a softmax over instances (plus a hold logit in
  tick mode). Its parameters do not depend on the number of instances N, so one trained network
  runs unchanged on 4, 8 or 16 instances. Padded rows (all features -1, see
  ``llm_routing_env.sb3.MixedClusterVecEnv``) are ignored.
"""

from __future__ import annotations

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy

from llm_routing_env.observations import RICH_GLOBAL_FEATURES, RICH_INSTANCE_FEATURES, RICH_LAYOUT_FEATURES

PADDED_ROW_VALUE = -1.0


class ElapsedTimeReplayBuffer(ReplayBuffer):
    """A replay buffer that also keeps how much simulated time each transition covered
    (``info["elapsed_s"]``), so the learner can discount it by that time (a semi-MDP), optionally
    over ``n_steps`` transitions (an n-step return: in tick mode one step is 0.02 s, and a value
    bootstrapped one step at a time takes thousands of target updates to see a request's life)."""

    def __init__(self, *args, n_steps: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.n_steps = n_steps
        self.elapsed_s = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        missing = [i for i, info in enumerate(infos) if "elapsed_s" not in info]
        if missing:
            raise ValueError(f"ElapsedTimeReplayBuffer needs info['elapsed_s'] from every env; env {missing[0]} "
                             "gave none (use the llm_routing_env environments)")
        self.elapsed_s[self.pos] = [info["elapsed_s"] for info in infos]
        super().add(obs, next_obs, action, reward, done, infos)

    def sample_discounted(self, batch_size: int, gamma: float, discount_time_s: float):
        """A batch whose rewards are the n-step returns (each step discounted by ``gamma`` per
        ``discount_time_s`` of the time before it) and its discount of the bootstrap value."""
        # transitions in the order they were written: the oldest at ``base``, ``size`` of them
        base, size = (self.pos, self.buffer_size) if self.full else (0, self.pos)
        offsets = np.random.randint(0, size, size=batch_size)
        envs = np.random.randint(0, self.n_envs, size=batch_size)
        starts = (base + offsets) % self.buffer_size
        ret, discount = np.zeros(batch_size), np.ones(batch_size)
        alive = np.ones(batch_size, dtype=bool)  # still inside the episode and the written data
        last = starts.copy()
        for k in range(self.n_steps):
            alive &= offsets + k < size
            idx = (starts + k) % self.buffer_size
            ret += np.where(alive, discount * self.rewards[idx, envs], 0.0)
            discount = np.where(alive, discount * gamma ** (self.elapsed_s[idx, envs] / discount_time_s), discount)
            last = np.where(alive, idx, last)
            alive &= ~self.dones[idx, envs].astype(bool)
        done = self.dones[last, envs] * (1 - self.timeouts[last, envs])
        samples = ReplayBufferSamples(
            observations=self.to_torch(self.observations[starts, envs, :]),
            actions=self.to_torch(self.actions[starts, envs, :]),
            next_observations=self.to_torch(self.next_observations[last, envs, :]),
            dones=self.to_torch(done.reshape(-1, 1)),
            rewards=self.to_torch(ret.reshape(-1, 1).astype(np.float32)),
        )
        return samples, self.to_torch(discount.reshape(-1, 1).astype(np.float32))


class DoubleDQN(DQN):
    """DQN with the Double-DQN target, optionally discounted by elapsed simulated time.

    ``discount_time_s`` (None: SB3's per-decision discount): ``gamma`` is the discount per
    ``discount_time_s`` seconds of simulated time, and a transition that covered ``dt`` seconds is
    discounted by ``gamma ** (dt / discount_time_s)`` (a semi-MDP; the transitions come from an
    :class:`ElapsedTimeReplayBuffer`, chosen automatically); ``return_steps`` > 1 learns from
    n-step returns over that many transitions. In tick mode a decision covers 0.02 s,
    but the consequence of sending a request plays out over its 10-100 s life: a per-decision
    gamma of 0.99 sees 2 s ahead, and holding looks free (docs/learning.md).
    """

    def __init__(self, *args, discount_time_s: float | None = None, return_steps: int = 1, **kwargs):
        if return_steps != 1 and discount_time_s is None:
            raise ValueError("return_steps (an n-step return) needs discount_time_s")
        if discount_time_s is not None:
            if isinstance(discount_time_s, bool) or not isinstance(discount_time_s, (int, float)) or not discount_time_s > 0:
                raise ValueError(f"discount_time_s must be a positive number of seconds or None, got {discount_time_s!r}")
            if kwargs.get("replay_buffer_class") not in (None, ElapsedTimeReplayBuffer):
                raise ValueError("discount_time_s needs the ElapsedTimeReplayBuffer (leave replay_buffer_class unset)")
            kwargs["replay_buffer_class"] = ElapsedTimeReplayBuffer
            kwargs["replay_buffer_kwargs"] = {**(kwargs.get("replay_buffer_kwargs") or {}), "n_steps": return_steps}
        self.discount_time_s = discount_time_s
        super().__init__(*args, **kwargs)

    def _sample(self, batch_size: int):
        """(samples, per-transition discount)."""
        if self.discount_time_s is None:
            replay = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            return replay, (replay.discounts if replay.discounts is not None else self.gamma)
        return self.replay_buffer.sample_discounted(batch_size, self.gamma, self.discount_time_s)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            replay, discounts = self._sample(batch_size)
            with th.no_grad():
                next_action = self.q_net(replay.next_observations).argmax(dim=1, keepdim=True)
                next_q = th.gather(self.q_net_target(replay.next_observations), dim=1, index=next_action)
                target_q = replay.rewards + (1 - replay.dones) * discounts * next_q
            current_q = th.gather(self.q_net(replay.observations), dim=1, index=replay.actions.long())
            loss = F.smooth_l1_loss(current_q, target_q)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class InstanceScorer(nn.Module):
    """Shared-weight scoring of instances: logits (B, N [+ 1 hold]) and a value latent (B, hidden)."""

    def __init__(self, hidden: int = 64, hold: bool = False, n_actions: int | None = None,
                 instance_features: int = RICH_INSTANCE_FEATURES):
        super().__init__()
        G, Fi = RICH_GLOBAL_FEATURES, instance_features
        self.hold, self.instance_features = hold, instance_features
        self.score = _mlp(G + Fi, hidden, 1)                 # one row + the request -> a logit
        self.hold_score = _mlp(G + 2 * Fi, hidden, 1) if hold else None
        self.value_latent = nn.Sequential(_mlp(G + 2 * Fi, hidden, hidden), nn.ReLU())
        # SB3 asks for the latent sizes; the actor's latent *is* the logits
        self.latent_dim_pi = n_actions if n_actions is not None else 0
        self.latent_dim_vf = hidden

    def split(self, obs: th.Tensor):
        G, Fi = RICH_GLOBAL_FEATURES, self.instance_features
        request = obs[:, :G]
        rows = obs[:, G:].reshape(obs.shape[0], -1, Fi)
        present = rows[..., 0] > PADDED_ROW_VALUE / 2  # running share >= 0 for real instances
        return request, rows, present

    def pooled(self, request, rows, present):
        w = present.unsqueeze(-1).float()
        mean = (rows * w).sum(1) / w.sum(1).clamp(min=1.0)
        maxed = rows.masked_fill(~present.unsqueeze(-1), -1e4).max(1).values
        return th.cat([request, mean, maxed], dim=1)

    def forward_actor(self, obs: th.Tensor) -> th.Tensor:
        request, rows, present = self.split(obs)
        n = rows.shape[1]
        joined = th.cat([request.unsqueeze(1).expand(-1, n, -1), rows], dim=2)
        logits = self.score(joined).squeeze(-1).masked_fill(~present, -1e8)
        if self.hold:
            logits = th.cat([logits, self.hold_score(self.pooled(request, rows, present))], dim=1)
        return logits

    def forward_critic(self, obs: th.Tensor) -> th.Tensor:
        return self.value_latent(self.pooled(*self.split(obs)))

    def forward(self, obs: th.Tensor):
        return self.forward_actor(obs), self.forward_critic(obs)


class _ScorerPolicyMixin:
    """Turns an SB3 actor-critic policy into one whose actor is an :class:`InstanceScorer`."""

    # instance_features: the rich layout's F (observations.RICH_LAYOUT_FEATURES); None: the one the
    # observation size fits, the current layout's first (agents/learned.py passes the card's layout
    # when it loads a model saved without it)
    def __init__(self, *args, hidden: int = 64, hold: bool = False, instance_features: int | None = None,
                 **kwargs):
        self._hidden, self._hold, self._instance_features = hidden, hold, instance_features
        kwargs.setdefault("net_arch", None)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        if self._instance_features is None:
            rows = int(self.observation_space.shape[0]) - RICH_GLOBAL_FEATURES
            fits = [f for f in (RICH_INSTANCE_FEATURES, *RICH_LAYOUT_FEATURES.values()) if rows > 0 and rows % f == 0]
            if not fits:
                raise ValueError(f"an observation of {rows + RICH_GLOBAL_FEATURES} numbers is no rich layout "
                                 f"({RICH_GLOBAL_FEATURES} + N x {sorted(set(RICH_LAYOUT_FEATURES.values()))})")
            self._instance_features = fits[0]
        self.mlp_extractor = InstanceScorer(self._hidden, self._hold, n_actions=int(self.action_space.n),
                                            instance_features=self._instance_features)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the scorer already outputs one logit per action

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(hidden=self._hidden, hold=self._hold, instance_features=self._instance_features)
        return data


class InstanceScoringPolicy(_ScorerPolicyMixin, ActorCriticPolicy):
    """PPO policy with no per-N parameters."""


class MaskableInstanceScoringPolicy(_ScorerPolicyMixin, MaskableActorCriticPolicy):
    """MaskablePPO policy with no per-N parameters."""


# RL Zoo's hyperparameter files name a policy by string, which SB3 looks up in the algorithm's
# policy_aliases: importing this module adds ours (configs/rl_zoo/ppo-agnostic.yml names one)
PPO.policy_aliases.setdefault("InstanceScoringPolicy", InstanceScoringPolicy)
MaskablePPO.policy_aliases.setdefault("MaskableInstanceScoringPolicy", MaskableInstanceScoringPolicy)
