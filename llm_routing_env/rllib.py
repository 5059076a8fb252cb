"""Ray RLlib integration (extra ``rllib``): an env creator, per-worker seeding and episode metrics.

::

    from ray.rllib.algorithms.ppo import PPOConfig
    from llm_routing_env import rllib as lre_rllib

    name = lre_rllib.register()                       # ray.tune.registry.register_env
    config = (PPOConfig()
              .environment(name, env_config={"mode": "arrival", "obs": "rich", "seed": 0})
              .env_runners(num_env_runners=4, num_envs_per_env_runner=8,
                           gym_env_vectorize_mode="vector_entry_point")   # our native vector env
              .callbacks(lre_rllib.RoutingCallbacks))
    algo = config.build_algo()

**The creator** (:func:`env_creator`) takes RLlib's ``env_config`` (an ``EnvContext``): every key
is a ``gym.make`` argument of ``llm_routing_env/LLMRouting-v0`` except ``seed`` (the base seed of
the workloads, optional) and ``num_envs``. RLlib's ``SingleAgentEnvRunner`` registers the creator
as a Gymnasium env with a ``vector_entry_point`` that adds ``num_envs`` to the config, then calls
``gym.make_vec(..., vectorization_mode=config.gym_env_vectorize_mode)``:

* ``gym_env_vectorize_mode="vector_entry_point"`` (recommended): the creator gets ``num_envs``
  and returns one :class:`~llm_routing_env.env.LLMRoutingVectorEnv` (NEXT_STEP autoreset, which is
  what RLlib's sampling loop assumes) that advances all of the runner's clusters in NumPy;
* ``"sync"`` (RLlib's default) or ``"async"``: the creator returns single
  :class:`~llm_routing_env.env.LLMRoutingEnv` s and Gymnasium vectorizes them.

**Seeds.** With ``env_config["seed"] = s``, sub-env ``i`` of env runner ``w`` plays the workload
stream :func:`derive_seed` ``(s, w, i)``: distinct across runners and sub-envs, reproducible, and
the same on any cluster layout. The creator derives it from the ``EnvContext`` it is given
(``worker_index``; ``vector_index``). RLlib 2.60 hands the vector entry point a plain ``dict``
(``env_ctx | {"num_envs": n}`` drops the ``EnvContext`` attributes), and in sync mode every
sub-env gets the same context, so :class:`RoutingCallbacks` reseeds the runner's envs in
``on_environment_created``, where RLlib passes the real ``EnvContext``. Use it (or put its
``on_environment_created`` in your own callbacks class). Note that RLlib's own
``config.debugging(seed=S)`` additionally reseeds every env at the runner's first reset with
``S + worker_index`` (Gymnasium then gives sub-env ``i`` the seed ``S + worker_index + i``, so
neighbouring runners share workloads); to get distinct streams per runner, seed the workloads
with ``env_config["seed"]`` and leave ``debugging(seed=...)`` unset, or accept the overlap.

**Metrics.** :class:`RoutingCallbacks` logs each finished episode's ``info["metrics"]`` (mean and
p99 E2E latency, mean TTFT, …) under ``result["env_runners"]``, e.g.
``result["env_runners"]["mean_e2e_s"]`` (mean over the last
``metrics_num_episodes_for_smoothing`` episodes).

**Checks.** RLlib 2.x has no single-agent env checker any more (``ray.rllib.utils.check_env`` was
removed with the old API stack, ray PR #44891: "gym comes with its own pre-check
functionalities"); :func:`check_env` runs Gymnasium's checker on what the creator builds and
RLlib's actual consumer, a ``SingleAgentEnvRunner``, sampling from it in both vectorize modes.

Action masks: in arrival mode every instance is valid. In tick mode, masked actions (sending
with an empty router queue) behave like hold, so plain PPO works; for a masking RLModule (RLlib's
``examples/rl_modules/classes/action_masking_rlm.py``) set ``env_config["action_mask_obs"] =
True``: observations become ``{"observations": ..., "action_mask": ...}`` (single and vector).
"""

from __future__ import annotations

import itertools
from typing import Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorObservationWrapper
from gymnasium.vector.utils import batch_space

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.tune.registry import register_env

from .env import LLMRoutingEnv, LLMRoutingVectorEnv
from .wrappers import DictMaskObservation

ENV_NAME = "llm_routing_env"
"""The name :func:`register` gives the env in RLlib's registry."""

RESERVED_KEYS = ("seed", "num_envs", "action_mask_obs")
"""env_config keys that are not ``gym.make`` arguments."""

LOGGED_METRICS = ("mean_e2e_s", "p50_e2e_s", "p99_e2e_s", "mean_ttft_s", "p99_ttft_s", "mean_tpot_s",
                  "preemptions", "makespan_s")
"""Keys of the final ``info["metrics"]`` that :class:`RoutingCallbacks` logs."""

_single_env_counter = itertools.count()   # sync mode: sub-envs of one runner share one EnvContext


def derive_seed(base: int, worker_index: int, index: int) -> int:
    """The seed of sub-env ``index`` of env runner ``worker_index`` (0 = the local runner)."""
    return int(np.random.SeedSequence([int(base), int(worker_index), int(index)]).generate_state(1)[0])


def _context(env_config: Mapping) -> tuple[int, int]:
    """(worker_index, vector_index) of an EnvContext; 0, 0 for a plain dict."""
    return int(getattr(env_config, "worker_index", 0) or 0), int(getattr(env_config, "vector_index", 0) or 0)


def env_kwargs(env_config: Mapping) -> dict:
    """The ``gym.make`` arguments in an env_config."""
    return {k: v for k, v in dict(env_config).items() if k not in RESERVED_KEYS}


def env_creator(env_config: Mapping | None = None) -> gym.Env | gym.vector.VectorEnv:
    """RLlib env creator: a single env, or the native vector env when ``num_envs`` is given."""
    env_config = {} if env_config is None else env_config
    kwargs = env_kwargs(env_config)
    base = env_config.get("seed")
    num_envs = env_config.get("num_envs")
    mask_obs = bool(env_config.get("action_mask_obs", False))
    worker, vector = _context(env_config)
    if num_envs is None:
        env = LLMRoutingEnv(**kwargs)
        if base is not None:
            # the sub-envs of one runner in sync mode all get the same EnvContext (vector_index 0):
            # number them in creation order
            env.reset(seed=derive_seed(base, worker, vector + next(_single_env_counter)))
        return DictMaskObservation(env) if mask_obs else env
    venv = LLMRoutingVectorEnv(num_envs=int(num_envs), **kwargs)
    if base is not None:
        venv.reset(seed=[derive_seed(base, worker, i) for i in range(venv.num_envs)])
    return VectorDictMaskObservation(venv) if mask_obs else venv


def register(name: str = ENV_NAME) -> str:
    """Register :func:`env_creator` with ``ray.tune.registry.register_env``; returns ``name``.
    Call it in the driver: RLlib ships the registry to its (remote) env runners."""
    register_env(name, env_creator)
    return name


def seed_envs(env, env_context: Mapping) -> None:
    """Reseed the envs of one env runner from its EnvContext: sub-env ``i`` of runner ``w`` gets
    ``derive_seed(env_context["seed"], w, i)``. No-op without ``seed`` in the env_config."""
    base = env_context.get("seed")
    if base is None:
        return
    worker, _ = _context(env_context)
    n = getattr(env, "num_envs", None)
    if n is None:   # a single env
        env.reset(seed=derive_seed(base, worker, 0))
    else:           # our native vector env, or Gymnasium's Sync/AsyncVectorEnv over single envs
        env.reset(seed=[derive_seed(base, worker, i) for i in range(n)])


class RoutingCallbacks(RLlibCallback):
    """Per-runner seeding (see the module docstring) and latency metrics of finished episodes."""

    def on_environment_created(self, *, env_runner, metrics_logger=None, env, env_context, **kwargs) -> None:
        seed_envs(env, env_context)

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, env=None, env_index=None,
                       **kwargs) -> None:
        if metrics_logger is None:
            return
        info = episode.get_infos(-1)
        metrics = info.get("metrics") if isinstance(info, Mapping) else None
        if not metrics:
            return
        window = getattr(getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100)
        for key in LOGGED_METRICS:
            if key in metrics:
                metrics_logger.log_value(key, float(metrics[key]), reduce="mean", window=window)


class VectorDictMaskObservation(VectorObservationWrapper):
    """:class:`~llm_routing_env.wrappers.DictMaskObservation` for the native vector env."""

    def __init__(self, env):
        super().__init__(env)
        n = int(env.single_action_space.n)
        self.single_observation_space = spaces.Dict({
            "observations": env.single_observation_space,
            "action_mask": spaces.Box(0, 1, shape=(n,), dtype=np.int8),
        })
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations):
        return {"observations": observations, "action_mask": self.env.unwrapped.action_masks().astype(np.int8)}


def check_env(env_config: Mapping | None = None, num_envs: int = 2, steps: int = 50) -> None:
    """RLlib's view of the env: Gymnasium's ``check_env`` on a single env from the creator, then a
    local ``SingleAgentEnvRunner`` sampling ``steps`` steps in ``"vector_entry_point"`` and in
    ``"sync"`` mode (spaces, reset/step contract, NEXT_STEP episodes). Raises on failure."""
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    env_config = dict(env_config or {})
    env = env_creator(env_config)
    gym_check_env(env.unwrapped, skip_render_check=True)
    env.close()
    name = register()
    for mode in ("vector_entry_point", "sync"):
        config = (PPOConfig()
                  .environment(name, env_config=env_config)
                  .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs,
                               gym_env_vectorize_mode=mode)
                  .callbacks(RoutingCallbacks))
        runner = SingleAgentEnvRunner(config=config)
        try:
            episodes = runner.sample(num_timesteps=steps, random_actions=True)
            if sum(len(e) for e in episodes) < steps:
                raise AssertionError(f"{mode}: sampled {sum(len(e) for e in episodes)} < {steps} steps")
            for e in episodes:
                e.validate()
        finally:
            runner.stop()


__all__ = ["ENV_NAME", "RESERVED_KEYS", "LOGGED_METRICS", "derive_seed", "env_kwargs", "env_creator", "register",
           "seed_envs", "RoutingCallbacks", "VectorDictMaskObservation", "check_env"]
