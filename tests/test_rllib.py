"""Ray RLlib integration (extra ``rllib``): creator, per-worker seeds, RLlib's env check, one
PPO iteration of examples/rllib_ppo.py on a local Ray with one env runner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.rllib")
pytest.importorskip("torch")

from gymnasium import spaces  # noqa: E402
from ray.rllib.env.env_context import EnvContext  # noqa: E402

from llm_routing_env import rllib as lre_rllib  # noqa: E402
from llm_routing_env.env import LLMRoutingEnv, LLMRoutingVectorEnv  # noqa: E402

SMALL = {"scenario": "paper-v100", "num_requests": 30, "rate_per_s": 40.0, "mode": "arrival", "obs": "rich"}


def test_creator_returns_single_env_or_native_vector_env():
    env = lre_rllib.env_creator(EnvContext(SMALL, worker_index=1))
    assert isinstance(env, LLMRoutingEnv)
    venv = lre_rllib.env_creator({**SMALL, "num_envs": 3})   # what RLlib's vector_entry_point passes
    assert isinstance(venv, LLMRoutingVectorEnv) and venv.num_envs == 3
    with pytest.raises(ValueError, match="unknown environment setting"):
        lre_rllib.env_creator({**SMALL, "not_a_setting": 1})


def _first_episode(env_config: dict, worker: int, num_envs: int = 2) -> np.ndarray:
    """Each sub-env's first observation (its first request) after RLlib's (unseeded) initial reset."""
    ctx = EnvContext(env_config, worker_index=worker, num_workers=4)
    venv = lre_rllib.env_creator(ctx | {"num_envs": num_envs})   # RLlib 2.60: a plain dict, no worker_index
    lre_rllib.seed_envs(venv, ctx)                              # RoutingCallbacks.on_environment_created
    obs, _ = venv.reset()                                        # the runner's first reset (seed=None)
    return obs


def test_seeds_derive_from_env_context():
    cfg = {**SMALL, "seed": 7}
    w1, w1_again, w2 = _first_episode(cfg, 1), _first_episode(cfg, 1), _first_episode(cfg, 2)
    np.testing.assert_array_equal(w1, w1_again)          # reproducible
    assert not np.array_equal(w1[0], w1[1])               # sub-envs of a runner differ
    assert not any(np.array_equal(x, y) for x in w1 for y in w2)   # runners differ
    assert lre_rllib.derive_seed(7, 1, 0) != lre_rllib.derive_seed(7, 0, 1)


def test_single_env_creator_seeds_from_env_context(monkeypatch):
    """Sync mode: the creator seeds from (worker_index, vector_index + creation count)."""
    cfg = {**SMALL, "seed": 7}

    def first_obs(worker):
        monkeypatch.setattr(lre_rllib, "_single_env_counter", itertools.count())
        return lre_rllib.env_creator(EnvContext(cfg, worker_index=worker)).reset()[0]

    np.testing.assert_array_equal(first_obs(1), first_obs(1))
    assert not np.array_equal(first_obs(1), first_obs(2))
    monkeypatch.setattr(lre_rllib, "_single_env_counter", itertools.count())
    a, b = (lre_rllib.env_creator(EnvContext(cfg, worker_index=1)).reset()[0] for _ in range(2))
    assert not np.array_equal(a, b)     # sub-envs of one runner (same EnvContext) differ


def test_action_mask_observation():
    env = lre_rllib.env_creator({**SMALL, "action_mask_obs": True, "mode": "tick"})
    obs, _ = env.reset(seed=0)
    assert isinstance(env.observation_space, spaces.Dict) and env.observation_space.contains(obs)
    venv = lre_rllib.env_creator({**SMALL, "action_mask_obs": True, "mode": "tick", "num_envs": 2})
    obs, _ = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    obs, *_ = venv.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(obs["action_mask"], venv.unwrapped.action_masks().astype(np.int8))


def test_rllib_env_check():
    """Gymnasium's checker plus RLlib's SingleAgentEnvRunner sampling in vector-entry-point and sync mode."""
    lre_rllib.check_env({**SMALL, "seed": 3}, num_envs=2, steps=80)


def test_routing_callbacks_log_latency_metrics():
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    name = lre_rllib.register()
    config = (PPOConfig().environment(name, env_config={**SMALL, "num_requests": 20, "seed": 1})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2, gym_env_vectorize_mode="vector_entry_point")
              .callbacks(lre_rllib.RoutingCallbacks))
    runner = SingleAgentEnvRunner(config=config)
    try:
        assert isinstance(runner.env.unwrapped, LLMRoutingVectorEnv)
        runner.sample(num_episodes=2, random_actions=True)
        value = runner.get_metrics()["mean_e2e_s"]
        value = value.peek() if hasattr(value, "peek") else value    # a Stats object before reduction
        assert 0 < float(value) < 60
    finally:
        runner.stop()


def test_one_ppo_iteration_with_one_env_runner(load_example, tmp_path, capsys, monkeypatch):
    """examples/rllib_ppo.py: local Ray, one remote env runner, one training iteration, evaluation
    against round-robin and a checkpoint (about 20-30 s, most of it starting Ray)."""
    example = load_example("rllib_ppo")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)      # a local Ray, never a cluster
    out = example.main(["--iterations", "1", "--num-env-runners", "1", "--envs-per-runner", "2",
                        "--num-requests", "30", "--train-batch", "240", "--eval-episodes", "2",
                        "--num-cpus", "2", "--checkpoint-dir", str(tmp_path / "ckpt")])
    text = capsys.readouterr().out
    assert "mean E2E  round-robin" in text and "checkpoint:" in text
    assert len(out["training_mean_e2e_s"]) == 1 and 0 < out["training_mean_e2e_s"][0] < 60
    assert 0 < out["learned_mean_e2e_s"] < 600 and 0 < out["round_robin_mean_e2e_s"] < 60
    assert any((tmp_path / "ckpt").iterdir())
