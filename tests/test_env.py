"""The single Gymnasium environment ``llm_routing_env/LLMRouting-v0`` against its spec (env.py docstring).

Every test uses a small scenario (``num_requests=`` 30-120) so the whole file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_routing_env
from llm_routing_env.cluster import COMPLETED
from llm_routing_env.config import EnvConfig
from llm_routing_env.core import RoutingCore
from llm_routing_env.env import LLMRoutingEnv, LLMRoutingVectorEnv
from llm_routing_env.impact import ImpactConfig, guidance, mixing_penalty
from llm_routing_env.observations import encode
from llm_routing_env.scenarios import Scenario
from llm_routing_env.wrappers import DictMaskObservation, GuidanceSchedule, HeuristicGuidance

ID = llm_routing_env.ENV_ID
MODES = ("tick", "arrival")
OBS = ("paper", "rich")
REWARDS = ("latency", "paper")


# ------------------------------------------------------------------------------------- helpers
def make(**kwargs) -> gym.Env:
    kwargs.setdefault("num_requests", 60)
    return gym.make(ID, **kwargs)


class RoundRobin:
    """Sends every routable request to the next instance in turn; holds when nothing can be sent."""

    def __init__(self, n: int):
        self.n, self.i = n, 0

    def __call__(self, mask: np.ndarray) -> int:
        if not mask[: self.n].any():
            return int(np.flatnonzero(mask)[-1])  # hold (tick mode, empty router queue)
        a = self.i % self.n
        self.i += 1
        return a


class RandomMasked:
    """A uniformly random valid action (hold included in tick mode)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, mask: np.ndarray) -> int:
        return int(self.rng.choice(np.flatnonzero(mask)))


def run_episode(env, policy, seed=None, max_steps=100_000):
    """Resets, runs to the end; returns (observations, rewards, infos, terminated, truncated)."""
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(policy(info["action_mask"]))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            return observations, rewards, infos, terminated, truncated
    raise AssertionError("episode did not end")


def caught(fn, *args, **kwargs) -> list[str]:
    """Runs fn and returns the messages of every warning it emitted."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [f"{x.category.__name__}: {x.message}" for x in w]


# ---------------------------------------------------------------------------------- registration
def test_registration_single_and_vector():
    assert ID in gym.registry
    spec = gym.spec(ID)
    assert spec.entry_point == "llm_routing_env.env:LLMRoutingEnv"
    assert spec.vector_entry_point == "llm_routing_env.env:LLMRoutingVectorEnv"

    env = gym.make(ID, num_requests=30)
    assert isinstance(env.unwrapped, LLMRoutingEnv)
    assert env.action_space == gym.spaces.Discrete(5)  # paper-v100: 4 instances + hold
    env.close()

    messages = caught(lambda: gym.make_vec(ID, num_envs=3, num_requests=30).close())
    assert messages == []
    venv = gym.make_vec(ID, num_envs=3, num_requests=30, mode="arrival")
    assert type(venv) is LLMRoutingVectorEnv
    assert venv.num_envs == 3
    assert venv.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    assert venv.single_action_space == gym.spaces.Discrete(4)
    assert venv.action_space == gym.spaces.MultiDiscrete([4, 4, 4])
    assert venv.observation_space.shape == (3, 27)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (3, 27) and obs.dtype == np.float32
    venv.close()


def test_string_entry_point_with_module_prefix():
    env = gym.make("llm_routing_env:llm_routing_env/LLMRouting-v0", num_requests=30)
    assert isinstance(env.unwrapped, LLMRoutingEnv)


# ------------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("mode,obs,reward", list(itertools.product(MODES, OBS, REWARDS)))
def test_gymnasium_and_sb3_checkers_pass_without_warnings(mode, obs, reward):
    env = gym.make(ID, mode=mode, obs=obs, reward=reward, num_requests=30)
    assert caught(gym_check_env, env.unwrapped) == []
    env = gym.make(ID, mode=mode, obs=obs, reward=reward, num_requests=30)
    assert caught(sb3_check_env, env.unwrapped) == []


def test_passive_checker_and_render():
    env = gym.make(ID, num_requests=30, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "instance 3" in text and "router queue" in text
    with pytest.raises(ValueError, match="render_mode"):
        LLMRoutingEnv(render_mode="human")


# ------------------------------------------------------------------------------ latency reward
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["round-robin", "random"])
def test_latency_return_is_minus_scaled_sum_of_e2e(mode, policy):
    scale = 0.037
    env = make(mode=mode, reward="latency", reward_scale=scale, num_requests=80)
    n = env.unwrapped.config.num_instances
    pol = RoundRobin(n) if policy == "round-robin" else RandomMasked(3)
    _, rewards, infos, terminated, truncated = run_episode(env, pol, seed=11)
    assert terminated and not truncated
    m = infos[-1]["metrics"]
    assert m["completed"] == m["arrived"] == 80
    ret = math.fsum(rewards)
    assert ret == pytest.approx(-scale * m["mean_e2e_s"] * m["completed"], rel=1e-9)
    rec = env.unwrapped.core.sim.records(0)
    assert (rec.status[:80] == COMPLETED).all()
    e2e = rec.completion_s[:80] - rec.arrival_s[:80]
    assert ret == pytest.approx(-scale * math.fsum(e2e), rel=1e-9)
    assert all(r <= 0 for r in rewards)


@pytest.mark.parametrize("mode", MODES)
def test_an_episode_on_vllm_v1_instances(mode):
    env = make(mode=mode, scheduler="vllm-v1", num_requests=80)
    assert env.unwrapped.core.sim.v1
    _, rewards, infos, terminated, _ = run_episode(env, RoundRobin(env.unwrapped.config.num_instances), seed=11)
    m = infos[-1]["metrics"]
    assert terminated and m["completed"] == m["arrived"] == 80
    rec = env.unwrapped.core.sim.records(0)
    assert math.fsum(rewards) == pytest.approx(-0.01 * math.fsum(rec.completion_s[:80] - rec.arrival_s[:80]), rel=1e-9)


def test_latency_return_without_skipping_idle_ticks():
    env = make(mode="tick", skip_idle_ticks=False, num_requests=40)
    _, rewards, infos, terminated, _ = run_episode(env, RandomMasked(5), seed=2)
    assert terminated
    m = infos[-1]["metrics"]
    assert math.fsum(rewards) == pytest.approx(-0.01 * m["mean_e2e_s"] * m["completed"], rel=1e-9)


def test_paper_reward_pays_completion_reward():
    env = make(mode="arrival", reward="paper", completion_reward=7.0, num_requests=40)
    _, rewards, infos, terminated, _ = run_episode(env, RoundRobin(4), seed=0)
    assert terminated
    # the last step runs the cluster to completion: whatever completes there earns 7 each
    done_last = infos[-1]["completed"] - infos[-2]["completed"]
    assert done_last > 0
    assert rewards[-1] == pytest.approx(7.0 * done_last)  # nothing is left in the system at the end


# --------------------------------------------------------------------------------- determinism
def _trajectory(seed, mode, obs="rich", policy_seed=0, n=60):
    env = make(mode=mode, obs=obs, num_requests=n)
    return run_episode(env, RandomMasked(policy_seed), seed=seed)


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_episode(mode):
    a, b = _trajectory(5, mode), _trajectory(5, mode)
    assert len(a[0]) == len(b[0])
    np.testing.assert_equal(a[0], b[0])   # observations
    np.testing.assert_equal(a[1], b[1])   # rewards
    np.testing.assert_equal(a[2], b[2])   # infos, including the final metrics
    assert a[3:] == b[3:]


def test_different_seeds_different_workloads():
    env = make(num_requests=60)
    env.reset(seed=1)
    core = env.unwrapped.core
    first = (core.arrival[0].copy(), core.prompt[0].copy(), core.output[0].copy())
    env.reset(seed=2)
    assert not np.array_equal(first[0], core.arrival[0])
    assert not np.array_equal(first[1], core.prompt[0])
    assert not np.array_equal(first[2], core.output[0])
    # ... and so do the observed trajectories
    a, b = _trajectory(1, "arrival", policy_seed=0), _trajectory(2, "arrival", policy_seed=0)
    assert any(not np.array_equal(x, y) for x, y in zip(a[0], b[0]))


def test_reset_without_seed_continues_the_seeded_stream():
    """reset() without a seed draws the next episode from the generator of the last seeded reset."""
    e1, e2 = make(num_requests=30), make(num_requests=30)
    e1.reset(seed=9)
    e2.reset(seed=9)
    o1, _ = e1.reset()
    o2, _ = e2.reset()
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(e1.unwrapped.core.arrival, e2.unwrapped.core.arrival)
    e3 = make(num_requests=30)
    e3.reset(seed=9)
    assert not np.array_equal(e3.unwrapped.core.arrival, e1.unwrapped.core.arrival)


# ---------------------------------------------------------------------------------- action masks
def test_action_masks_agree_with_info_and_follow_the_router_queue_in_tick_mode():
    env = make(mode="tick", skip_idle_ticks=False, num_requests=40)
    n = 4
    obs, info = env.reset(seed=3)
    pol = RandomMasked(1)
    saw_empty = saw_full = False
    for _ in range(10_000):
        mask = env.unwrapped.action_masks()
        assert mask.dtype == np.int8 and mask.shape == (n + 1,)
        np.testing.assert_array_equal(mask, info["action_mask"])
        assert mask[n]  # hold is always valid in tick mode
        if info["queue_len"] == 0:
            saw_empty = True
            np.testing.assert_array_equal(mask, [False] * n + [True])
        else:
            saw_full = True
            assert mask.all()
        obs, r, te, tr, info = env.step(pol(mask))
        if te or tr:
            break
    assert saw_empty and saw_full


def test_action_masks_arrival_mode_all_valid():
    env = make(mode="arrival", num_requests=30)
    _, _, infos, _, _ = run_episode(env, RoundRobin(4), seed=0)
    for info in infos:
        np.testing.assert_array_equal(info["action_mask"], np.ones(4, dtype=bool))
    assert env.unwrapped.action_masks().shape == (4,)


def test_masked_action_does_nothing_like_hold():
    """With an empty router queue (tick mode), sending to an instance is the same as holding."""
    e_send, e_hold = (make(mode="tick", skip_idle_ticks=False, num_requests=40) for _ in range(2))
    o1, i1 = e_send.reset(seed=8)
    o2, i2 = e_hold.reset(seed=8)
    rr, masked_steps = RoundRobin(4), 0
    for _ in range(10_000):
        mask = i1["action_mask"]
        if mask[:4].any():
            a1 = a2 = rr(mask)
        else:
            a1, a2 = masked_steps % 4, 4  # a masked action vs hold
            masked_steps += 1
        o1, r1, t1, u1, i1 = e_send.step(a1)
        o2, r2, t2, u2, i2 = e_hold.step(a2)
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2 and t1 == t2 and u1 == u2
        np.testing.assert_equal(i1, i2)
        if not mask[:4].any():
            assert i1["impact_h"] == 0.0
        if t1 or u1:
            break
    assert masked_steps > 10


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", ["too-big", "next", -1, 2.5, "x", np.float32(1.0), None, [0, 1]])
def test_action_outside_the_space_raises(mode, bad):
    env = make(mode=mode, num_requests=30)
    n_actions = env.action_space.n
    action = {"too-big": n_actions + 1, "next": n_actions}.get(bad, bad) if isinstance(bad, str) else bad
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(action)
    # the env is untouched: a valid step afterwards is the same as in a fresh env
    fresh = make(mode=mode, num_requests=30)
    fresh.reset(seed=0)
    a = env.step(0)
    b = fresh.step(0)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_action_error_message_names_the_range():
    env = make(mode="tick", num_requests=30)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the action space 0\.\.4"):
        env.step(6)
    with pytest.raises(ValueError, match="must be one integer"):
        env.step("x")
    env.step(np.int32(4))  # numpy integers are fine
    env.step(np.array(2))


# --------------------------------------------------------------------------- invalid configuration
@pytest.mark.parametrize("kwargs,setting", [
    ({"scenario": "no-such-scenario"}, "scenario"),
    ({"mode": "continuous"}, "mode"),
    ({"obs": "pixels"}, "obs"),
    ({"reward": "throughput"}, "reward"),
    ({"predictor": "crystal-ball"}, "predictor"),
    ({"reward_scale": -0.01}, "reward_scale"),
    ({"reward_scale": 0.0}, "reward_scale"),
    ({"decision_interval_s": float("nan")}, "decision_interval_s"),
    ({"decision_interval_s": 0}, "decision_interval_s"),
    ({"completion_reward": float("inf")}, "completion_reward"),
    ({"skip_idle_ticks": 1}, "skip_idle_ticks"),
    ({"max_sim_time_s": -1.0}, "max_sim_time_s"),
    ({"max_episode_steps": 0}, "max_episode_steps"),
    ({"max_episode_steps": 2.5}, "max_episode_steps"),
    ({"predictor_kwargs": [1]}, "predictor_kwargs"),
    ({"impact": {"alpha": 1.5}}, "alpha"),
    ({"num_request": 30}, "num_request"),  # a typo is an unknown setting
    ({"foo": 1}, "foo"),
    ({"num_instances": -2}, "num_instances"),
    ({"num_instances": 2.5}, "num_instances"),
    ({"num_requests": 0}, "num_requests"),
    ({"rate_per_s": -3.0}, "rate_per_s"),
    ({"profile": "no-such-gpu"}, "no-such-gpu"),
    ({"scheduler": "vllm-v2"}, "scheduler must be one of vllm-v0, vllm-v1"),
])
def test_invalid_configuration_names_the_setting(kwargs, setting):
    # gym.make keeps max_episode_steps for its TimeLimit wrapper: the env's own one is tested directly
    single = LLMRoutingEnv if "max_episode_steps" in kwargs else lambda **kw: gym.make(ID, **kw)
    with pytest.raises(ValueError, match=setting):
        single(**kwargs)
    with pytest.raises(ValueError, match=setting):
        LLMRoutingVectorEnv(num_envs=2, **kwargs)


def test_num_instances_zero_is_rejected():
    with pytest.raises(ValueError, match="num_instances"):
        gym.make(ID, num_instances=0)


def test_num_instances_override_changes_the_spaces():
    env = gym.make(ID, num_instances=2, num_requests=30, mode="tick")
    assert env.action_space.n == 3 and env.observation_space.shape == (3 + 6 * 2,)
    env = gym.make(ID, num_instances=3, num_requests=30, mode="arrival", obs="rich")
    assert env.action_space.n == 3 and env.observation_space.shape == (8 + 14 * 3,)


VALID_TOML = """\
name = "tiny"
description = "two V100s, a small episode"
[cluster]
profile = "llama2-7b-v100"
num_instances = 2
[workload]
mix = "paper-mix"
arrivals = "poisson"
rate_per_s = 8.0
num_requests = 40
"""


def test_scenario_toml_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(VALID_TOML)
    env = gym.make(ID, scenario=str(path), mode="arrival")
    assert env.action_space.n == 2 and env.observation_space.shape == (15,)
    _, rewards, infos, terminated, _ = run_episode(env, RoundRobin(2), seed=0)
    assert terminated and infos[-1]["metrics"]["completed"] == 40
    # a pathlib.Path works too, and overrides still apply
    env = gym.make(ID, scenario=path, num_requests=20)
    assert env.unwrapped.core.R == 20


@pytest.mark.parametrize("bad,key", [
    (VALID_TOML.replace("num_instances = 2", "num_instances = 2\ngpus = 3"), "gpus"),
    (VALID_TOML.replace('name = "tiny"', 'name = "tiny"\ncolour = "red"'), "colour"),
    (VALID_TOML + "[extra]\nx = 1\n", "extra"),
    (VALID_TOML.replace("rate_per_s = 8.0", "rate_per_sec = 8.0"), "rate_per_sec"),
])
def test_scenario_toml_unknown_key_is_rejected(tmp_path, bad, key):
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ValueError, match=key):
        gym.make(ID, scenario=str(path))


def test_scenario_toml_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ValueError, match="not a valid scenario file"):
        gym.make(ID, scenario=str(path))


# ---------------------------------------------------------------------------------- observations
@pytest.mark.parametrize("mode,obs", list(itertools.product(MODES, OBS)))
def test_observation_always_in_space(mode, obs):
    env = make(mode=mode, obs=obs, num_requests=120, rate_per_s=40.0)  # overloaded: long queues
    space = env.observation_space
    for seed, pol in ((0, RandomMasked(0)), (1, RoundRobin(4))):
        observations, _, _, _, _ = run_episode(env, pol, seed=seed)
        for o in observations:
            assert o.dtype == np.float32 and o.shape == space.shape
            assert np.isfinite(o).all()
            assert space.contains(o), o


def _run_core(core: RoutingCore, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Round-robin (a function of what the router sees only) for ``steps`` decisions."""
    cfg = core.config
    observations, rewards = [], []
    rr = RoundRobin(core.N)
    for _ in range(steps):
        v = core.view()
        observations.append(encode(cfg.obs, v, cfg.scenario.max_model_len)[0])
        reward, te, tr, _ = core.step(np.array([rr(v.action_mask[0])]))
        rewards.append(float(reward[0]))
        if te[0] or tr[0]:
            break
    return observations, rewards


@pytest.mark.parametrize("mode,obs", list(itertools.product(MODES, OBS)))
def test_observations_do_not_depend_on_hidden_output_lengths(monkeypatch, mode, obs):
    """Two workloads that differ only in the TRUE output lengths of requests that have not completed
    must look the same to the router until one of those requests completes.

    Construction: run episode A (seed s) for ``S`` decisions with round-robin (which only reads the
    action mask) and note the requests not completed by then (by their completion times: the
    simulator has already applied iterations still in flight). Episode B replays the same seed, but
    its workload (monkeypatched ``Scenario.make_workload``, so the predictor sees B's workload too)
    gives each of those requests a *longer* output. A request finishes when it has generated its
    output; up to decision S, in A none of the altered requests has finished, and in B they need
    even more tokens, so nothing in the two clusters can differ before decision S: every
    observation (and reward) must be identical. Anything else means a true output length leaked
    into the observation (or into the predictor). A positive control with the clairvoyant
    ``oracle`` predictor (whose predictions are the true lengths, by design) must see a difference.
    """
    cfg = EnvConfig.from_kwargs(mode=mode, obs=obs, num_requests=100, rate_per_s=30.0, predictor="task-prior")
    max_len = cfg.scenario.max_model_len
    steps = 45

    core_a = RoutingCore(cfg)
    core_a.reset([0], [123])
    obs_a, rew_a = _run_core(core_a, steps)
    assert len(obs_a) == steps
    rec = core_a.sim.records(0)
    n = int(core_a.n_req[0])
    # not completed by the last decision (the records already hold the completions of iterations
    # still in flight then: those requests count as unfinished, as a router sees them)
    unfinished = np.flatnonzero(~(rec.completion_s[:n] <= core_a.t[0]))
    assert 30 < unfinished.size < n  # some completed, many in flight or yet to come
    in_flight = np.flatnonzero(~(rec.completion_s[:n] <= core_a.t[0]) & (rec.generated_tokens[:n] > 0))
    assert in_flight.size > 0  # some altered requests are decoding: their progress is visible

    original = Scenario.make_workload

    def longer_outputs(self, seed):
        w = original(self, seed)
        out = w.output_tokens.copy()
        idx = unfinished[unfinished < len(out)]
        out[idx] = np.minimum(out[idx] + 700, max_len - w.prompt_tokens[idx])
        return dataclasses.replace(w, output_tokens=out)

    def run_b(config):
        core = RoutingCore(config)  # (the predictor is fitted here, on the unaltered training sample)
        monkeypatch.setattr(Scenario, "make_workload", longer_outputs)
        try:
            core.reset([0], [123])
        finally:
            monkeypatch.setattr(Scenario, "make_workload", original)
        return core

    core_b = run_b(cfg)
    changed = np.flatnonzero(core_b.output[0, :n] != core_a.output[0, :n])
    assert changed.size > 20 and set(changed) <= set(unfinished)
    assert (core_b.output[0, changed] > core_a.output[0, changed]).all()
    obs_b, rew_b = _run_core(core_b, steps)
    assert len(obs_b) == len(obs_a)
    for k, (x, y) in enumerate(zip(obs_a, obs_b)):
        np.testing.assert_array_equal(x, y, err_msg=f"observation {k} depends on hidden output lengths")
    assert rew_a == rew_b
    # the alteration is real: the clusters' futures differ ...
    _run_core(core_a, 10_000)
    _run_core(core_b, 10_000)
    e2e = lambda c: np.nansum(c.sim.records().completion_s[0] - c.sim.records().arrival_s[0])  # noqa: E731
    assert e2e(core_b) > e2e(core_a)
    # ... and a predictor that reads the true lengths does show it (positive control)
    if obs == "rich":
        oracle_cfg = dataclasses.replace(cfg, predictor="oracle")
        core_a = RoutingCore(oracle_cfg)
        core_a.reset([0], [123])
        core_b = run_b(oracle_cfg)
        obs_a, _ = _run_core(core_a, steps)
        obs_b, _ = _run_core(core_b, steps)
        assert any(not np.array_equal(x, y) for x, y in zip(obs_a, obs_b))


# ---------------------------------------------------------------------------------------- info
METRIC_KEYS = [f"{s}_{m}_s" for m in ("e2e", "ttft", "tpot", "router_wait") for s in ("mean", "p50", "p90", "p99")]


@pytest.mark.parametrize("mode", MODES)
def test_final_info_has_metrics(mode):
    env = make(mode=mode, num_requests=60)
    _, _, infos, terminated, _ = run_episode(env, RoundRobin(4), seed=4)
    assert terminated
    assert all("metrics" not in i for i in infos[:-1])
    m = infos[-1]["metrics"]
    for key in METRIC_KEYS + ["preemptions", "completed", "arrived"]:
        assert key in m, key
    for key in METRIC_KEYS:
        assert np.isfinite(m[key]) and m[key] >= 0, key
    for name in ("e2e", "ttft", "tpot", "router_wait"):
        assert m[f"p50_{name}_s"] <= m[f"p90_{name}_s"] <= m[f"p99_{name}_s"]
    assert m["completed"] == m["arrived"] == 60
    assert m["mean_ttft_s"] < m["mean_e2e_s"]
    if mode == "arrival":
        assert m["mean_router_wait_s"] == 0.0
    else:
        assert m["mean_router_wait_s"] > 0  # a request waits at least for the next tick
    assert isinstance(m["preemptions"], int)


@pytest.mark.parametrize("mode", MODES)
def test_the_step_that_routes_the_last_request_ends_the_episode(mode):
    env = make(mode=mode, num_requests=50)
    _, _, infos, terminated, _ = run_episode(env, RandomMasked(0), seed=6)
    assert terminated
    dispatched = [int(env.unwrapped.core.n_dispatched[0])]
    assert dispatched == [50]
    if mode == "arrival":  # one decision per request
        assert len(infos) == 1 + 50
    assert infos[-2]["arrived"] == 50 and infos[-2]["queue_len"] == 1  # the last request waited to be sent
    assert infos[-1]["completed"] == 50


def test_info_keys_at_reset_and_step():
    env = make(num_requests=30)
    _, info = env.reset(seed=0)
    for key in ("action_mask", "impact", "impact_h", "time_s", "queue_len", "arrived", "completed"):
        assert key in info
    assert info["impact"].shape == (4,) and info["impact_h"] == 0.0
    _, _, _, _, info = env.step(0)
    assert info["impact_h"] <= 0.0


# ---------------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("mode", MODES)
def test_truncation_by_max_episode_steps(mode):
    for env in (LLMRoutingEnv(mode=mode, num_requests=60, max_episode_steps=7),
                gym.make(ID, mode=mode, num_requests=60, max_episode_steps=7)):  # TimeLimit
        env.reset(seed=0)
        for k in range(7):
            _, _, terminated, truncated, info = env.step(0)
            assert not terminated
            assert truncated == (k == 6)
    # the env's own limit publishes the episode's metrics
    env = LLMRoutingEnv(mode=mode, num_requests=60, max_episode_steps=7)
    _, rewards, infos, terminated, truncated = run_episode(env, RoundRobin(4), seed=0)
    assert truncated and not terminated and len(rewards) == 7
    assert infos[-1]["metrics"]["arrived"] == infos[-1]["arrived"]


def test_gym_make_max_episode_steps_truncates_in_time_limit():
    # Gymnasium's TimeLimit truncates outside the env: the metrics come from episode_metrics()
    env = gym.make(ID, num_requests=60, max_episode_steps=5)
    _, _, infos, _, truncated = run_episode(env, RoundRobin(4), seed=0)
    assert truncated and len(infos) == 6  # reset info + 5 steps
    metrics = env.unwrapped.episode_metrics()
    assert metrics["arrived"] == infos[-1]["arrived"] and metrics["completed"] == infos[-1]["completed"]


@pytest.mark.parametrize("mode", MODES)
def test_truncation_by_max_sim_time(mode):
    env = make(mode=mode, num_requests=200, max_sim_time_s=1.5)
    _, _, infos, terminated, truncated = run_episode(env, RoundRobin(4), seed=0)
    assert truncated and not terminated
    assert infos[-1]["time_s"] == pytest.approx(1.5)
    assert all(i["time_s"] <= 1.5 for i in infos)
    m = infos[-1]["metrics"]
    assert 0 < m["completed"] < m["arrived"] < 200


def test_metrics_at_truncation_match_the_latency_return_so_far():
    """At a truncation the return covers the time in system up to the cut, completed or not."""
    env = make(mode="arrival", num_requests=200, max_sim_time_s=2.0)
    _, rewards, infos, _, truncated = run_episode(env, RoundRobin(4), seed=1)
    assert truncated
    rec = env.unwrapped.core.sim.records(0)
    core = env.unwrapped.core
    arrived = core.arrival[0, : core.n_arrived[0]]
    end = np.where(rec.completion_s[: arrived.size] <= 2.0, rec.completion_s[: arrived.size], 2.0)
    assert math.fsum(rewards) == pytest.approx(-0.01 * math.fsum(end - arrived), rel=1e-9)


def test_metrics_at_truncation_count_only_what_finished_by_the_cut():
    """The records already hold the completions of an iteration in flight at the cut; the final
    metrics count only the requests completed by then (as the return does)."""
    seen_in_flight = 0
    for seed in range(6):
        env = make(mode="arrival", num_requests=200, max_sim_time_s=2.0)
        _, _, infos, _, truncated = run_episode(env, RoundRobin(4), seed=seed)
        assert truncated
        rec = env.unwrapped.core.sim.records(0)
        by_cut = rec.completion_s <= 2.0
        seen_in_flight += int(((rec.status == COMPLETED) & ~by_cut).sum())
        m = infos[-1]["metrics"]
        assert m["completed"] == int(by_cut.sum())
        assert m["mean_e2e_s"] == pytest.approx(float(np.mean((rec.completion_s - rec.arrival_s)[by_cut])), rel=1e-12)
    assert seen_in_flight > 0, "no seed had a completion in flight at the cut: the test would be vacuous"


# ------------------------------------------------------------------------------------ wrappers
def _worst_impact(info) -> int:
    """Picks the instance with the lowest mixing penalty, so the guidance term is often < 0."""
    mask = info["action_mask"]
    if not mask[:4].any():
        return int(np.flatnonzero(mask)[-1])
    return int(np.argmin(info["impact"]))


@pytest.mark.parametrize("schedule,weight", [("none", 1.0), ("aware", 1.0), ("aware", 0.3), ("guided", 1.0)])
def test_heuristic_guidance_adds_weighted_impact(schedule, weight):
    gamma, beta = 0.95, 0.5
    base = make(num_requests=40, mode="arrival", max_sim_time_s=1.0)
    wrapped = HeuristicGuidance(make(num_requests=40, mode="arrival", max_sim_time_s=1.0),
                                schedule=schedule, gamma=gamma, beta=beta, weight=weight)
    expected_w = {"none": lambda k: 0.0, "aware": lambda k: weight,
                  "guided": lambda k: gamma * math.exp(-beta * k)}[schedule]
    expected_gamma = {"none": lambda k: gamma, "aware": lambda k: gamma,
                      "guided": lambda k: (1 - math.exp(-beta * k)) * gamma}[schedule]
    saw_h = False
    for episode in range(3):
        seed = 5 if episode == 0 else None
        _, ib = base.reset(seed=seed)
        _, iw = wrapped.reset(seed=seed)
        assert wrapped.episode == episode
        assert iw["training_discount"] == pytest.approx(expected_gamma(episode))
        assert wrapped.training_discount == pytest.approx(expected_gamma(episode))
        while True:
            a = _worst_impact(ib)
            ob, rb, tb, ub, ib = base.step(a)
            ow, rw, tw, uw, iw = wrapped.step(a)
            np.testing.assert_array_equal(ob, ow)
            assert iw["impact_h"] == ib["impact_h"] <= 0
            saw_h |= ib["impact_h"] < 0
            assert iw["guidance_weight"] == pytest.approx(expected_w(episode))
            assert rw == pytest.approx(rb + expected_w(episode) * ib["impact_h"], rel=1e-12, abs=1e-12)
            if tb or ub:
                break
    assert saw_h


def test_guidance_schedule_values_and_validation():
    s = GuidanceSchedule("guided", gamma=0.9, beta=0.5)
    np.testing.assert_allclose(s.weight_at([0, 1, 2]), 0.9 * np.exp(-0.5 * np.arange(3)))
    np.testing.assert_allclose(s.discount_at([0, 1, 2]), (1 - np.exp(-0.5 * np.arange(3))) * 0.9)
    assert GuidanceSchedule("aware", weight=2.0).weight_at(7) == 2.0
    assert GuidanceSchedule("none").weight_at(0) == 0.0
    for kwargs, name in (({"schedule": "sometimes"}, "schedule"), ({"gamma": 1.0}, "gamma"),
                         ({"beta": 0}, "beta"), ({"weight": float("nan")}, "weight")):
        with pytest.raises(ValueError, match=name):
            GuidanceSchedule(**kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_dict_mask_observation(mode):
    # on an env without a spec (constructed directly): check_env then also notes that it cannot
    # re-make the env for the render check, and advises to check the unwrapped env; nothing else
    expected = ("env.unwrapped", "not able to test alternative render modes")
    env = DictMaskObservation(LLMRoutingEnv(mode=mode, num_requests=30))
    messages = caught(gym_check_env, env)
    assert [m for m in messages if not any(e in m.lower() for e in expected)] == []
    assert caught(sb3_check_env, DictMaskObservation(LLMRoutingEnv(mode=mode, num_requests=30))) == []
    assert isinstance(env.observation_space, gym.spaces.Dict)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(20):
        np.testing.assert_array_equal(obs["action_mask"], info["action_mask"].astype(np.int8))
        np.testing.assert_array_equal(obs["action_mask"], env.unwrapped.action_masks())
        assert obs["action_mask"].dtype == np.int8
        obs, _, te, tr, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        assert env.observation_space.contains(obs)
        if te or tr:
            break


def test_dict_mask_observation_on_a_made_env_passes_check_env():
    env = DictMaskObservation(gym.make(ID, num_requests=30).unwrapped)
    messages = caught(gym_check_env, env)
    assert [m for m in messages if "env.unwrapped" not in m] == []


# -------------------------------------------------------------------------------------- impact
def test_mixing_penalty_hand_computed():
    cfg = ImpactConfig()  # grad1 3.2e-4, grad2 3.3e-5, epsilon 0.05, alpha 0.5, tau 1
    prompt = np.array([100, 3000])
    decode = np.array([200.0, 10.0])
    context = np.array([[0, 1000, 40000], [0, 0, 0]])
    on_instance = np.array([[0, 2, 10], [0, 1, 30]])
    r = mixing_penalty(cfg, prompt, decode, context, on_instance)
    # row 0: prefill 0.032 (< epsilon: free), 0.065, 1.352 (capped at 1); stall n * 0.0386 s
    # row 1: prefill 0.96 everywhere; stall n * 0.96033 s (30 -> capped at 1)
    expected = np.array([
        [0.5 * 0 + 0.5 * 1.0, 0.5 * -0.065 + 0.5 * (1 - 2 * 0.0772), 0.5 * -1.0 + 0.5 * (1 - 2 * 0.386)],
        [0.5 * -0.96 + 0.5 * 1.0, 0.5 * -0.96 + 0.5 * (1 - 2 * 0.96033), 0.5 * -0.96 + 0.5 * -1.0],
    ])
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(expected, [[0.5, 0.3903, -0.386], [0.02, -0.94033, -0.98]], atol=1e-12)
    # another alpha and no epsilon: every prefill counts
    cfg2 = ImpactConfig(alpha=0.25, epsilon_s=0.0, tau_s=2.0)
    r2 = mixing_penalty(cfg2, np.array([100]), np.array([200.0]), np.array([[0, 1000]]), np.array([[0, 2]]))
    np.testing.assert_allclose(r2, [[0.25 * -0.032 + 0.75 * 1.0, 0.25 * -0.065 + 0.75 * (1 - 2 * 0.0772 / 2)]],
                               rtol=1e-12)


def test_guidance_hand_computed():
    r = np.array([[0.5, 0.3903, -0.386], [0.02, -0.94033, -0.98], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    actions = np.array([1, 2, 3, 2])  # row 2: hold (action N); row 3: no request
    has_request = np.array([True, True, True, False])
    h = guidance(r, actions, has_request)
    np.testing.assert_allclose(h, [0.3903 - 0.5, -0.98 - 0.02, 0.0, 0.0], rtol=1e-12)
    assert guidance(r[:1], np.array([0]), np.array([True]))[0] == 0.0  # the best instance


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.0}, {"tau_s": 0.0}, {"epsilon_s": -1.0},
                                    {"grad1_s_per_prompt_token": float("nan")}])
def test_impact_config_validation(kwargs):
    with pytest.raises(ValueError, match="impact"):
        ImpactConfig(**kwargs)


def test_info_impact_matches_mixing_penalty_of_the_view():
    env = make(num_requests=60, mode="arrival")
    _, info = env.reset(seed=0)
    core = env.unwrapped.core
    for _ in range(30):
        v = core.view()
        expected = mixing_penalty(ImpactConfig(), v.head_prompt_tokens, v.head_pred_tokens,
                                  v.decode_context_tokens, v.num_running + v.num_waiting)[0]
        np.testing.assert_allclose(info["impact"], expected, rtol=1e-12)
        a = int(np.argmin(info["impact"]))
        best = info["impact"].max()
        chosen = info["impact"][a]
        _, _, te, tr, info = env.step(a)
        assert info["impact_h"] == pytest.approx(chosen - best, abs=1e-12)
        if te or tr:
            break
