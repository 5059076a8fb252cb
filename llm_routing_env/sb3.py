"""Stable-Baselines3 adapter: the native vector env as an SB3 ``VecEnv`` (extra ``agents``).

SB3 does not take Gymnasium vector envs; its ``VecEnv`` resets a finished sub-env inside the
step that finished it and puts the last observation in ``info["terminal_observation"]``. This
adapter translates from the native env's NEXT_STEP autoreset, hands out per-env info dicts with
``TimeLimit.truncated``, and answers ``env_method("action_masks")`` so MaskablePPO works::

    from llm_routing_env.sb3 import make_sb3_vec_env
    venv = make_sb3_vec_env(num_envs=8, mode="arrival", obs="rich")
    model = MaskablePPO("MlpPolicy", venv).learn(10_000)
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
        value = getattr(self.venv, attr_name)
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
