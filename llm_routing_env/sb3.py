"""Stable-Baselines3 adapter: the native vector env as an SB3 ``VecEnv`` (extra ``agents``).

SB3 does not take Gymnasium vector envs; its ``VecEnv`` resets a finished sub-env inside the
step that finished it and puts the last observation in ``info["terminal_observation"]``. This
adapter translates from the native env's NEXT_STEP autoreset, hands out per-env info dicts with
``TimeLimit.truncated``, and answers ``env_method("action_masks")`` so MaskablePPO works::

    from sb3_contrib import MaskablePPO
    from agents.policies import MaskableInstanceScoringPolicy
    from llm_routing_env.sb3 import make_sb3_vec_env
    venv = make_sb3_vec_env(num_envs=8, mode="arrival", obs="rich")
    model = MaskablePPO(MaskableInstanceScoringPolicy, venv).learn(10_000)

(the per-instance scoring policy: a plain ``"MlpPolicy"`` learns a bias per instance and, acting
deterministically, sends every request to one instance; README, "Train your own agent").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from .env import LLMRoutingVectorEnv


class SB3VecEnv(VecEnv):
    """Wraps an :class:`LLMRoutingVectorEnv` (or any wrapper of it, e.g. VectorHeuristicGuidance)."""

    def __init__(self, venv):
        self.venv = venv
        self.render_mode = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    @property
    def core(self):
        return self.venv.unwrapped.core

    def reset(self):
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, info = self.venv.reset(seed=seeds)
        self._reset_seeds()
        self.reset_infos = self._split_infos(info, self.num_envs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos = self._split_infos(info, self.num_envs)
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            new_obs, reset_info = self.venv.reset(options={"reset_mask": dones})
            obs = np.where(dones[:, None], new_obs, obs)
            reset_infos = self._split_infos(reset_info, self.num_envs)
            for i in np.flatnonzero(dones):
                self.reset_infos[i] = reset_infos[i]
        return obs, rewards.astype(np.float32), dones, infos

    @staticmethod
    def _split_infos(info: dict, n: int) -> list[dict]:
        """Gymnasium's vector info (dict of arrays with "_key" masks) -> one dict per sub-env."""
        out = [{} for _ in range(n)]
        for key, value in info.items():
            if key.startswith("_"):
                continue
            present = info.get("_" + key, np.ones(n, dtype=bool))
            per_env = SB3VecEnv._split_infos(value, n) if isinstance(value, dict) else value
            for i in np.flatnonzero(present):
                out[i][key] = per_env[i]
        return out

    def close(self) -> None:
        self.venv.close()

    def action_masks(self) -> np.ndarray:
        return self.venv.unwrapped.action_masks()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name == "render_mode":
            return [None] * len(idx)
        value = self.action_masks if attr_name == "action_masks" else getattr(self.venv, attr_name)
        return [value] * len(idx)

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def make_sb3_vec_env(num_envs: int = 8, **env_kwargs) -> SB3VecEnv:
    """An SB3 VecEnv over a native vector env built from ``gym.make`` keyword arguments."""
    return SB3VecEnv(LLMRoutingVectorEnv(num_envs=num_envs, **env_kwargs))


class MixedClusterVecEnv(VecEnv):
    """Several SB3VecEnvs (different cluster sizes, loads or scenarios) as one VecEnv.

    With the ``rich`` observation, observations are padded to the largest cluster: missing instance
    rows are filled with -1 (below every real feature) and their actions masked out; in tick mode the
    last action is hold for every part. A policy with per-instance shared weights
    (agents/policies.py) trains on all sizes at once. The ``paper`` observation has no padding:
    every part must have the same number of instances (e.g. one scenario at several loads).
    """

    def __init__(self, parts: list[SB3VecEnv]):
        from .observations import RICH_GLOBAL_FEATURES, RICH_LAYOUT_FEATURES, observation_space

        configs = [p.core.config for p in parts]
        if len({c.obs for c in configs}) != 1:
            raise ValueError("every part of a MixedClusterVecEnv must use the same observation")
        if len({c.obs_layout for c in configs}) != 1:
            raise ValueError("every part of a MixedClusterVecEnv must use the same obs_layout")
        if len({c.mode for c in configs}) != 1:
            raise ValueError("every part of a MixedClusterVecEnv must use the same mode")
        self.parts = parts
        self.hold = configs[0].mode == "tick"
        self.sizes = [c.num_instances for c in configs]
        self.n_max = max(self.sizes)
        self.padded = configs[0].obs == "rich"
        if not self.padded and len(set(self.sizes)) != 1:
            raise ValueError(f"parts of {sorted(set(self.sizes))} instances need obs='rich' (padded); the "
                             f"{configs[0].obs!r} observation cannot mix cluster sizes")
        self._g, self._f = RICH_GLOBAL_FEATURES, RICH_LAYOUT_FEATURES[configs[0].obs_layout]
        self._bounds = np.cumsum([0] + [p.num_envs for p in parts])
        self.render_mode = None
        n_actions = self.n_max + (1 if self.hold else 0)
        from gymnasium import spaces
        super().__init__(int(self._bounds[-1]), observation_space(configs[0].obs, self.n_max, configs[0].obs_layout), spaces.Discrete(n_actions))
        self._actions = None

    def _pad_obs(self, obs: np.ndarray, n: int) -> np.ndarray:
        if not self.padded:
            return obs
        out = np.full((obs.shape[0], self._g + self.n_max * self._f), -1.0, dtype=np.float32)
        out[:, : obs.shape[1]] = obs
        return out

    def _pad_mask(self, mask: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros((mask.shape[0], self.action_space.n), dtype=bool)
        out[:, :n] = mask[:, :n]
        if self.hold:
            out[:, -1] = mask[:, n]
        return out

    def reset(self):
        obs = []
        for k, part in enumerate(self.parts):
            if any(s is not None for s in self._seeds):
                part.seed(self._seeds[self._bounds[k]])
            obs.append(self._pad_obs(part.reset(), self.sizes[k]))
        self._reset_seeds()
        return np.concatenate(obs)

    def step_async(self, actions):
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self):
        obs, rew, done, infos = [], [], [], []
        for k, part in enumerate(self.parts):
            a = self._actions[self._bounds[k]:self._bounds[k + 1]]
            n = self.sizes[k]
            # hold (tick mode) and padded instances (masked out) map to this part's hold / instance 0
            a = np.where(a >= n, n if self.hold else 0, a)
            o, r, d, info = part.step(a)
            for i in info:
                if "terminal_observation" in i:
                    i["terminal_observation"] = self._pad_obs(i["terminal_observation"][None], n)[0]
            obs.append(self._pad_obs(o, n))
            rew.append(r)
            done.append(d)
            infos.extend(info)
        return np.concatenate(obs), np.concatenate(rew), np.concatenate(done), infos

    def action_masks(self) -> np.ndarray:
        return np.concatenate([self._pad_mask(p.action_masks(), n) for p, n in zip(self.parts, self.sizes)])

    def close(self) -> None:
        for p in self.parts:
            p.close()

    def get_attr(self, attr_name: str, indices=None):
        return [None if attr_name == "render_mode" else getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        for p in self.parts:
            p.set_attr(attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        raise AttributeError(f"MixedClusterVecEnv has no env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(list(self._get_indices(indices)))
