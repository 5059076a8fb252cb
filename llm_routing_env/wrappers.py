"""Wrappers: heuristic guidance for training (paper §4.5, HuRL) and a Dict observation with the mask.

**Heuristic guidance.** The paper trains with HuRL (Cheng et al., 2021): the reward gets
``w_k * h`` where ``h <= 0`` is the workload-impact guidance of the action (``info["impact_h"]``,
impact.py) and the training discount becomes ``gamma_k``. Schedules over training episodes ``k``
(arXiv 2408.13510, the internally consistent reading):

* ``"none"`` (the paper's *baseline* RL): ``w_k = 0``, ``gamma_k = gamma``;
* ``"aware"`` (*workload-aware* RL): ``w_k = weight`` (constant, 1 by default), ``gamma_k = gamma``;
* ``"guided"`` (*workload-guided* RL): ``w_k = gamma * exp(-beta * k)`` and
  ``gamma_k = (1 - exp(-beta * k)) * gamma``, beta = 0.5: the guidance fades out and the horizon
  grows back to ``gamma``, so the agent ends up optimizing the original reward.

The wrapper only shapes the reward and publishes ``training_discount`` (``info`` and attribute);
training code reads it (train.py updates the learner's discount at each episode).

**The guidance of a hold** (vector wrapper, ``hold_h``): ``"zero"`` (impact.py's ``h = 0``, as good
as the best instance, so guidance never discourages holding: docs/learning.md) or ``"improvement"``:
``max_m r_mix(s') - max_m r_mix(s)`` for the head request that was held, how much its best
placement improved while it waited (positive when an instance drained, negative when it got
worse); the router sees both values (``info["impact"]`` before and after the hold).

**Router-queue potential** (vector wrapper, ``queue_potential`` > 0; docs/learning.md): potential-
based shaping (Ng et al., 1999), which leaves the optimal policy unchanged, with
``Phi(s) = -queue_potential * (requests waiting at the router)`` and the learner's discount of the
transition, ``training_discount ** (info["elapsed_s"] / discount_time_s)`` (the schedule's current
discount, which train.py gives the learner): the reward gets
``discount * Phi(s') - Phi(s)``. Sending a request pays ``queue_potential`` at once and holding it
costs ``(1 - discount) * queue_potential`` per step, so in tick mode the agent sees at once what it
otherwise learns only over the request's whole life.
"""

from __future__ import annotations

import math

import numpy as np
import gymnasium as gym
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import VectorWrapper

SCHEDULES = ("none", "aware", "guided")
HOLD_H = ("zero", "improvement")  # the guidance h of a hold (VectorHeuristicGuidance)


def check_discount_time_s(discount_time_s):
    """``discount_time_s`` (None: a discount per decision) validated, for the learner and the shaping alike."""
    if discount_time_s is not None and (isinstance(discount_time_s, bool) or not isinstance(discount_time_s, (int, float))
                                        or not discount_time_s > 0):
        raise ValueError(f"discount_time_s must be a positive number of seconds or None, got {discount_time_s!r}")
    return discount_time_s


def transition_discount(gamma, elapsed_s, discount_time_s):
    """The discount of a transition: ``gamma`` per decision, or (semi-MDP) ``gamma ** (elapsed_s /
    discount_time_s)``; the one formula the learner (agents/policies.py) and the shaping share."""
    return gamma ** (np.asarray(elapsed_s, dtype=np.float64) / discount_time_s) if discount_time_s else gamma


class GuidanceSchedule:
    """Heuristic weight and training discount as a function of the training episode index."""

    def __init__(self, schedule: str = "guided", gamma: float = 0.99, beta: float = 0.5, weight: float = 1.0):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
        if not isinstance(gamma, (int, float)) or not 0 <= gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")
        if not isinstance(beta, (int, float)) or not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        if not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"weight must be a finite number, got {weight!r}")
        self.schedule, self.gamma, self.beta, self.weight = schedule, float(gamma), float(beta), float(weight)

    def weight_at(self, episode):
        episode = np.asarray(episode, dtype=np.float64)
        if self.schedule == "none":
            return np.zeros_like(episode)
        if self.schedule == "aware":
            return np.full_like(episode, self.weight)
        return self.gamma * np.exp(-self.beta * episode)

    def discount_at(self, episode):
        episode = np.asarray(episode, dtype=np.float64)
        if self.schedule != "guided":
            return np.full_like(episode, self.gamma)
        return (1.0 - np.exp(-self.beta * episode)) * self.gamma


class HeuristicGuidance(gym.Wrapper, RecordConstructorArgs):
    """Adds ``w_k * info["impact_h"]`` to the reward of a single env (see the module docstring)."""

    def __init__(self, env: gym.Env, schedule: str = "guided", gamma: float = 0.99, beta: float = 0.5,
                 weight: float = 1.0):
        RecordConstructorArgs.__init__(self, schedule=schedule, gamma=gamma, beta=beta, weight=weight)
        gym.Wrapper.__init__(self, env)
        self.guidance = GuidanceSchedule(schedule, gamma, beta, weight)
        self.episode = -1

    @property
    def training_discount(self) -> float:
        return float(self.guidance.discount_at(max(self.episode, 0)))

    def reset(self, **kwargs):
        self.episode += 1
        obs, info = self.env.reset(**kwargs)
        info["training_discount"] = self.training_discount
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        w = float(self.guidance.weight_at(self.episode))
        info["guidance_weight"] = w
        info["training_discount"] = self.training_discount
        return obs, reward + w * float(info["impact_h"]), terminated, truncated, info


class VectorHeuristicGuidance(VectorWrapper):
    """The same for the native vector env; each sub-env counts its own episodes."""

    def __init__(self, env, schedule: str = "guided", gamma: float = 0.99, beta: float = 0.5, weight: float = 1.0,
                 queue_potential: float = 0.0, discount_time_s: float | None = None, hold_h: str = "zero"):
        super().__init__(env)
        self.guidance = GuidanceSchedule(schedule, gamma, beta, weight)
        if hold_h not in HOLD_H:
            raise ValueError(f"hold_h must be one of {', '.join(HOLD_H)}; got {hold_h!r}")
        self.hold_h = hold_h
        self._hold_action = env.unwrapped.config.num_instances  # (tick mode: the last action)
        self._best_impact = np.zeros(env.num_envs)  # max_m r_mix of each sub-env's head now
        self._has_head = np.zeros(env.num_envs, dtype=bool)  # a request waits at the router now
        self._autoresetting = np.zeros(env.num_envs, dtype=bool)  # NEXT_STEP: the next step resets
        if isinstance(queue_potential, bool) or not isinstance(queue_potential, (int, float)) or not queue_potential >= 0:
            raise ValueError(f"queue_potential must be a number >= 0, got {queue_potential!r}")
        self.queue_potential, self.discount_time_s = float(queue_potential), check_discount_time_s(discount_time_s)
        self.episodes = np.zeros(env.num_envs, dtype=np.int64)
        self._ended = np.zeros(env.num_envs, dtype=bool)
        self._phi = np.zeros(env.num_envs)  # Phi of each sub-env's current state

    @property
    def training_discount(self) -> float:
        """The discount of the least advanced sub-env (all advance together)."""
        return float(self.guidance.discount_at(self.episodes.min()))

    def reset(self, **kwargs):
        options = kwargs.get("options") or {}
        if "reset_mask" not in options:  # a full reset starts the schedule over; a partial one
            self.episodes[:] = 0          # (SB3's same-step autoreset) restarts episodes that ended,
            self._ended[:] = False        # which the next step counts through _ended
        obs, info = self.env.reset(**kwargs)
        fresh = np.asarray(options.get("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        self._phi = np.where(fresh, -self.queue_potential * np.asarray(info["queue_len"], dtype=np.float64), self._phi)
        self._best_impact = np.where(fresh, np.asarray(info["impact"]).max(axis=1), self._best_impact)
        self._has_head = np.where(fresh, np.asarray(info["queue_len"]) > 0, self._has_head)
        self._autoresetting &= ~fresh
        return obs, info

    def step(self, actions):
        # NEXT_STEP autoreset: a sub-env that ended last step starts its next episode now
        self.episodes += self._ended
        obs, reward, terminated, truncated, info = self.env.step(actions)
        w = self.guidance.weight_at(self.episodes)
        info["guidance_weight"] = w
        self._ended = terminated | truncated
        h = np.asarray(info["impact_h"], dtype=np.float64)
        best, has_head = np.asarray(info["impact"]).max(axis=1), np.asarray(info["queue_len"]) > 0
        if self.hold_h == "improvement":
            # a hold of a waiting head: how much its best placement improved while it waited (the same
            # request heads the queue after a hold; an autoreset step is no hold)
            held = (np.asarray(actions) == self._hold_action) & self._has_head & has_head & ~self._autoresetting
            h = np.where(held, best - self._best_impact, h)
            info["impact_h"] = h
        self._best_impact, self._has_head = best, has_head
        self._autoresetting = terminated | truncated
        reward = reward + w * h
        if self.queue_potential > 0:
            phi = np.where(terminated, 0.0, -self.queue_potential * np.asarray(info["queue_len"], dtype=np.float64))
            # the learner's current discount (the guided schedule changes it; train.py sets the learner's)
            discount = transition_discount(self.training_discount, info["elapsed_s"], self.discount_time_s)
            reward = reward + discount * phi - self._phi
            self._phi = phi
        return obs, reward, terminated, truncated, info


class DictMaskObservation(gym.ObservationWrapper, RecordConstructorArgs):
    """``{"observations": obs, "action_mask": mask}`` for libraries that read masks from the
    observation (RLlib's masking modules, TorchRL's ActionMask)."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        n = env.action_space.n
        self.observation_space = spaces.Dict({
            "observations": env.observation_space,
            "action_mask": spaces.Box(0, 1, shape=(n,), dtype=np.int8),
        })

    def observation(self, observation):
        return {"observations": observation, "action_mask": self.env.unwrapped.action_masks().astype(np.int8)}
