"""``llm_routing_env/LLMRouting-v0``: route LLM requests to the instances of a serving cluster.

Each instance is a vLLM-like engine (iteration-level batching, paged KV cache, preemption by
recompute; ``docs/simulator.md``) whose iteration times come from a latency profile measured on
real hardware. A prefill batched with decodes stalls them; running out of KV memory preempts and
recomputes requests. The router's job is to send each request where it hurts least.

**Arguments** (all given to ``gym.make`` / ``gym.make_vec``, validated, errors name the setting)

* ``scenario`` (``"paper-v100"``): a shipped scenario name or a TOML/YAML file
  (``python -m llm_routing_env.scenarios`` lists them), or a ``Scenario`` (e.g.
  ``load_scenario(...).with_overrides(trace=PATH)`` to replay a trace file); ``rate_per_s``,
  ``load``, ``num_instances``, ``profile``, ``scheduler`` (``"vllm-v0"`` or ``"vllm-v1"``),
  ``chunked_prefill`` (vLLM v0's), ``num_requests``, ``overlong``
  (requests beyond the context: ``"reject"``, ``"clip"`` or ``"error"``) override its fields.
* ``mode`` (``"tick"``): ``"tick"``, a decision every ``decision_interval_s`` (0.02 s) with a hold
  action, the paper's; or ``"arrival"``, one decision per arriving request.
* ``obs`` (``"paper"``): ``"paper"`` (the paper's 3 + 6N numbers) or ``"rich"`` (request features
  plus one row per instance, for policies with shared per-instance weights); see observations.py.
* ``reward`` (``"latency"``): ``"latency"`` or ``"paper"``; ``reward_scale`` (0.01),
  ``completion_reward`` (60, for ``"paper"``).
* ``predictor`` (``"task-prior"``): the output-length predictor whose outputs the router sees
  (``"task-prior"``, ``"learned"``, ``"noisy"`` with ``predictor_kwargs={"accuracy": 0.79}``, or
  the clairvoyant ``"oracle"``); predictors.py.
* ``render_mode`` (None): ``"ansi"`` (text) or ``"rgb_array"`` (an HxWx3 uint8 picture of the
  cluster: router queue, and per instance KV use, running batch and waiting queue; render.py).
* ``skip_idle_ticks`` (True), ``max_sim_time_s`` / ``max_episode_steps`` (truncation),
  ``impact`` (an ImpactConfig or dict: the workload-impact estimator's constants).

**Action space**: ``Discrete(N + 1)`` in tick mode (``0..N-1`` send the head of the router queue
to that instance, ``N`` holds it) and ``Discrete(N)`` in arrival mode. ``action_masks()`` (the
sb3-contrib contract; int8, the dtype ``action_space.sample(mask=...)`` takes; through
``gym.make``'s wrappers call ``env.unwrapped.action_masks()`` or
``env.get_wrapper_attr("action_masks")()``) and ``info["action_mask"]`` (bool) mark the valid
ones: in tick mode only hold when the router queue is empty. A masked action (sending with an
empty queue) does nothing, like hold.
An action outside the space raises ValueError.

**Observation**: ``Box(float32)`` of the chosen encoding; only what a real router knows at the
decision time: the router queue and the head request's prompt, each instance as of its last
iteration finished by then (an iteration in flight has generated, freed and completed nothing yet;
``docs/simulator.md``), and the predictor's outputs; never a true output length or a later arrival.
The same holds for the reward, ``info`` and ``router_view()`` (``llm_routing_env/view.py``).

**Reward**: ``"latency"``: minus the number of requests in the system (router queue and instances)
times the simulated time the step covers, times ``reward_scale``; an episode's return is exactly
``-reward_scale`` times the sum of its requests' end-to-end latencies. ``"paper"`` (§4.4): minus
the sum over requests in the system of (1 - generated / predicted tokens), plus
``completion_reward`` per completed request. ``info["impact"]`` holds the workload-impact penalty of
every instance for the request to route, ``info["impact_h"]`` the guidance term of the action
just taken (impact.py); ``HeuristicGuidance`` (wrappers.py) adds it to the reward for training.
``info["elapsed_s"]`` is the simulated time the step covered (a semi-MDP learner discounts by it).

**Episode**: starts with the scenario's workload drawn from the seed and the clock at the first
decision; ``terminated`` when every request has completed (the step that dispatches the last
request runs the cluster to completion); ``truncated`` at ``max_sim_time_s`` or
``max_episode_steps`` (given to ``gym.make_vec`` or the env class; ``gym.make(...,
max_episode_steps=k)`` instead wraps the env in Gymnasium's ``TimeLimit``, which the env does not
see). The final ``info["metrics"]`` has mean, p50, p90, p99 E2E, TTFT, TPOT, router and instance
waits, preemptions, throughput, completed and arrived counts (metrics.py; after a truncation, of
the requests completed by then), and the requests beyond the model's context (``rejected_overlong``:
refused, never served nor counted as arrived; ``clipped_at_context``: served, cut at the context);
after a ``TimeLimit`` truncation, ``env.unwrapped.episode_metrics()`` gives the same.
"""

from __future__ import annotations

import numpy as np
import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import EnvConfig
from .core import RoutingCore
from .observations import encode, observation_space
from .render import render_ansi, render_rgb
from .single_env import paper_observation_one, step_info_one, step_one


def _step_info(core: RoutingCore, envs, h) -> dict:
    v = core.view()
    return {
        "action_mask": v.action_mask[envs],
        "impact": v.impact[envs],
        "impact_h": h,
        "time_s": core.t[envs].copy(),
        "elapsed_s": core.t[envs] - core.step_start_s[envs],
        "queue_len": v.queue_len[envs],
        "arrived": core.n_arrived[envs].copy(),
        "completed": core.completed[envs].copy(),
    }


RENDER_MODES = ("ansi", "rgb_array")


def _check_render_mode(render_mode):
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array', got {render_mode!r}")
    return render_mode


def _check_action(action) -> int:
    if type(action) is int:  # the common case, checked cheaply
        return action
    a = np.asarray(action)
    if a.size != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"action must be one integer, got {action!r}")
    return int(a.reshape(()))


class LLMRoutingEnv(gym.Env):
    """One cluster; see the module docstring."""

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 50}

    def __init__(self, render_mode: str | None = None, **kwargs):
        self.render_mode = _check_render_mode(render_mode)
        self.config = EnvConfig.from_kwargs(**kwargs)
        self.core = RoutingCore(self.config, num_envs=1)
        self.observation_space = observation_space(self.config.obs, self.config.num_instances, self.config.obs_layout)
        self.action_space = spaces.Discrete(self.config.num_actions)
        self._max_len = self.config.scenario.max_model_len

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        self.core.reset([0])
        return self._obs(), step_info_one(self.core, 0.0)

    def step(self, action):
        # single_env.step_one: the vector env's step in Python numbers, much cheaper for one env
        reward, terminated, truncated, h = step_one(self.core, _check_action(action))
        info = step_info_one(self.core, h)
        if terminated or truncated:
            info["metrics"] = self.core.episode_metrics(0)
        return self._obs(), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """(A,) int8, 1 = valid: the dtype ``action_space.sample(mask=...)`` takes (sb3-contrib takes it too)."""
        return self.core.action_masks()[0].astype(np.int8)

    def episode_metrics(self) -> dict:
        """The current episode's metrics so far (what the final ``info["metrics"]`` holds)."""
        return self.core.episode_metrics(0)

    def router_view(self):
        """What a router sees now (view.RouterView with B = 1), for heuristic routers."""
        return self.core.view()

    def _obs(self) -> np.ndarray:
        if self.config.obs == "paper":
            return paper_observation_one(self.core, self._max_len)
        return encode(self.config.obs, self.core.view(), self._max_len, self.config.obs_layout)[0]

    def render(self):
        if self.render_mode == "ansi":
            return render_ansi(self.core, 0)
        if self.render_mode == "rgb_array":
            return render_rgb(self.core, 0)
        return None


class LLMRoutingVectorEnv(VectorEnv):
    """``num_envs`` clusters advanced together by one simulator (NEXT_STEP autoreset).

    Sub-env ``i`` reset with ``seed`` behaves exactly like a single ``LLMRoutingEnv`` reset with
    ``seed + i``.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 50, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, render_mode: str | None = None,
                 **kwargs):
        render_mode = _check_render_mode(render_mode)
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        self.render_mode = render_mode
        self.config = EnvConfig.from_kwargs(**kwargs)
        self.core = RoutingCore(self.config, num_envs=num_envs)
        self.num_envs = int(num_envs)
        self.single_observation_space = observation_space(self.config.obs, self.config.num_instances, self.config.obs_layout)
        self.single_action_space = spaces.Discrete(self.config.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._max_len = self.config.scenario.max_model_len

    def reset(self, *, seed=None, options: dict | None = None):
        if isinstance(seed, (list, tuple, np.ndarray)):
            if len(seed) != self.num_envs:
                raise ValueError(f"seed must be an int, None or {self.num_envs} seeds, got {len(seed)}")
            seeds = list(seed)
            super().reset(seed=None)
        else:
            super().reset(seed=seed)
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        envs = np.arange(self.num_envs)
        if options and "reset_mask" in options:
            envs = np.flatnonzero(np.asarray(options["reset_mask"], dtype=bool))
            seeds = [seeds[i] for i in envs]
        self.core.reset(envs, seeds)
        self._autoreset[envs] = False
        return self._obs(), _step_info(self.core, slice(None), np.zeros(self.num_envs))

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be {self.num_envs} integers, got {actions!r}")
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        h = np.zeros(self.num_envs)
        stepping = np.flatnonzero(~self._autoreset)
        if stepping.size:
            r, te, tr, hh = self.core.step(actions[stepping], envs=stepping)
            rewards[stepping], terminated[stepping], truncated[stepping], h[stepping] = r, te, tr, hh
        resetting = np.flatnonzero(self._autoreset)
        ended = np.flatnonzero(terminated | truncated)
        metrics = {int(b): self.core.episode_metrics(int(b)) for b in ended}
        if resetting.size:
            self.core.reset(resetting)
        self._autoreset = terminated | truncated
        infos = _step_info(self.core, slice(None), h)
        for b, m in metrics.items():
            infos = self._add_info(infos, {"metrics": m}, b)
        return self._obs(), rewards, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """(num_envs, A) int8, 1 = valid: the valid actions of each sub-env."""
        return self.core.action_masks().astype(np.int8)

    def router_view(self):
        return self.core.view()

    def _obs(self) -> np.ndarray:
        return encode(self.config.obs, self.core.view(), self._max_len, self.config.obs_layout)

    def render(self):
        if self.render_mode == "ansi":
            return "\n".join(render_ansi(self.core, b) for b in range(self.num_envs))
        if self.render_mode == "rgb_array":  # one picture per sub-env (gymnasium's vector convention)
            return tuple(render_rgb(self.core, b) for b in range(self.num_envs))
        return None
