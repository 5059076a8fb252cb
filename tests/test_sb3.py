"""The Stable-Baselines3 adapter (``llm_routing_env.sb3``): SB3's VecEnv contract over the native
vector env, masks for MaskablePPO, VecMonitor, and smoke training runs of PPO, MaskablePPO and DQN."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import llm_routing_env
from llm_routing_env.env import LLMRoutingVectorEnv
from llm_routing_env.sb3 import SB3VecEnv, make_sb3_vec_env
from llm_routing_env.wrappers import VectorHeuristicGuidance

ID = llm_routing_env.ENV_ID

torch.set_num_threads(1)


def masked_random(rng, masks) -> np.ndarray:
    return np.array([int(rng.choice(np.flatnonzero(m))) for m in masks], dtype=np.int64)


def test_reset_returns_obs_only_and_seeding_matches_the_native_env():
    venv = make_sb3_vec_env(num_envs=3, mode="arrival", num_requests=30)
    assert isinstance(venv, VecEnv) and venv.num_envs == 3
    assert venv.observation_space == gym.spaces.Box(0.0, 4.0, (27,), np.float32)
    assert venv.action_space == gym.spaces.Discrete(4)
    venv.seed(12)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (3, 27) and obs.dtype == np.float32
    assert len(venv.reset_infos) == 3 and all("action_mask" in i for i in venv.reset_infos)
    native_obs, _ = LLMRoutingVectorEnv(num_envs=3, mode="arrival", num_requests=30).reset(seed=12)
    np.testing.assert_array_equal(obs, native_obs)
    venv.seed(12)
    np.testing.assert_array_equal(venv.reset(), obs)
    assert not np.array_equal(venv.reset(), obs)  # unseeded: the next episodes


@pytest.mark.parametrize("mode", ["tick", "arrival"])
def test_step_autoresets_in_the_same_step(mode):
    """Until the first episode ends the adapter follows the native env step for step; at the end
    it returns the new episode's first obs (the native env's next-step reset obs), the last obs in
    ``terminal_observation`` and ``TimeLimit.truncated`` False for a termination."""
    n, kwargs = 3, dict(mode=mode, num_requests=25)
    venv = make_sb3_vec_env(num_envs=n, **kwargs)
    native = LLMRoutingVectorEnv(num_envs=n, **kwargs)
    venv.seed(5)
    obs = venv.reset()
    nobs, ninfo = native.reset(seed=5)
    np.testing.assert_array_equal(obs, nobs)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        masks = np.stack(venv.env_method("action_masks"))
        np.testing.assert_array_equal(masks, ninfo["action_mask"])
        actions = masked_random(rng, masks)
        obs, rewards, dones, infos = venv.step(actions)
        nobs, nrew, nterm, ntrunc, ninfo = native.step(actions)
        assert rewards.dtype == np.float32 and dones.dtype == np.bool_
        assert isinstance(infos, list) and len(infos) == n and all(isinstance(i, dict) for i in infos)
        np.testing.assert_allclose(rewards, nrew.astype(np.float32))
        np.testing.assert_array_equal(dones, nterm | ntrunc)
        if dones.any():
            break
        np.testing.assert_array_equal(obs, nobs)
        assert not any("terminal_observation" in i for i in infos)
    assert dones.any()
    for i in range(n):
        if dones[i]:
            np.testing.assert_array_equal(infos[i]["terminal_observation"], nobs[i])
            assert infos[i]["TimeLimit.truncated"] is False
            assert "metrics" in infos[i] and infos[i]["metrics"]["completed"] == 25
        else:
            np.testing.assert_array_equal(obs[i], nobs[i])
            assert "terminal_observation" not in infos[i]
    nobs, nrew, _, _, _ = native.step(np.zeros(n, dtype=np.int64))  # the native autoreset step
    for i in np.flatnonzero(dones):
        np.testing.assert_array_equal(obs[i], nobs[i])  # the adapter reset in the same step
        assert nrew[i] == 0.0


def test_time_limit_truncation_is_flagged():
    venv = make_sb3_vec_env(num_envs=2, mode="arrival", num_requests=40, max_episode_steps=6)
    venv.reset()
    for k in range(6):
        obs, rewards, dones, infos = venv.step(np.array([0, 1]))
        assert dones.all() == (k == 5)
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (27,)
        assert info["metrics"]["arrived"] >= 6
    assert not np.array_equal(infos[0]["terminal_observation"], obs[0])


def test_env_method_get_attr_and_masks():
    venv = make_sb3_vec_env(num_envs=4, mode="tick", num_requests=30, skip_idle_ticks=False)
    venv.reset()
    masks = venv.env_method("action_masks")
    assert len(masks) == 4 and all(m.shape == (5,) and m.dtype == np.int8 for m in masks)
    assert len(venv.env_method("action_masks", indices=[1, 3])) == 2
    np.testing.assert_array_equal(venv.env_method("action_masks", indices=[2])[0], masks[2])
    np.testing.assert_array_equal(get_action_masks(venv), np.stack(masks))
    assert venv.has_attr("action_masks") and is_masking_supported(venv)
    assert venv.get_attr("render_mode") == [None] * 4
    assert venv.get_attr("num_envs", indices=[0, 1]) == [4, 4]
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 4
    assert not venv.has_attr("no_such_attribute")
    venv.close()


def test_masks_through_a_wrapped_native_env():
    """SB3VecEnv documents wrappers of the native env (VectorHeuristicGuidance): masks must work."""
    venv = SB3VecEnv(VectorHeuristicGuidance(LLMRoutingVectorEnv(num_envs=2, mode="arrival", num_requests=30)))
    venv.reset()
    assert len(venv.env_method("action_masks")) == 2
    assert is_masking_supported(venv)
    assert venv.get_attr("training_discount")[0] == 0.0  # the guided schedule's first episode
    MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(128)


def test_guidance_schedule_advances_under_the_sb3_adapter():
    venv = SB3VecEnv(VectorHeuristicGuidance(LLMRoutingVectorEnv(num_envs=2, mode="arrival", num_requests=20),
                                             schedule="guided"))
    venv.reset()
    finished = np.zeros(2, dtype=int)
    for _ in range(200):
        _, _, dones, _ = venv.step(np.array([0, 1]))
        finished += dones
        if finished.min() >= 2:
            break
    assert finished.min() >= 2
    assert venv.get_attr("training_discount")[0] > 0.0
    venv.step(np.array([0, 1]))
    np.testing.assert_array_equal(venv.venv.episodes, finished)


@pytest.mark.parametrize("mode", ["tick", "arrival"])
def test_vec_monitor_reports_episode_returns(mode):
    scale = 0.01
    venv = VecMonitor(make_sb3_vec_env(num_envs=3, mode=mode, num_requests=30, reward_scale=scale))
    venv.seed(1)
    venv.reset()
    rng = np.random.default_rng(0)
    returns, lengths = np.zeros(3), np.zeros(3, dtype=int)
    episodes = 0
    for _ in range(2000):
        actions = masked_random(rng, get_action_masks(venv))
        _, rewards, dones, infos = venv.step(actions)
        returns += rewards
        lengths += 1
        for i in np.flatnonzero(dones):
            ep = infos[i]["episode"]
            assert ep["l"] == lengths[i]
            assert ep["r"] == pytest.approx(returns[i], rel=1e-5)
            m = infos[i]["metrics"]
            assert ep["r"] == pytest.approx(-scale * m["mean_e2e_s"] * m["completed"], rel=1e-5)
            returns[i], lengths[i] = 0.0, 0
            episodes += 1
        if episodes >= 6:
            break
    assert episodes >= 6


# ---------------------------------------------------------------------------------- training
SMALL = dict(mode="arrival", num_requests=50)


def test_ppo_smoke_train():
    venv = VecMonitor(make_sb3_vec_env(num_envs=4, **SMALL))
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2_000)
    assert model.num_timesteps >= 2_000
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (4,)


@pytest.mark.parametrize("mode,obs", [("arrival", "rich"), ("tick", "paper")])
def test_maskable_ppo_smoke_train(mode, obs):
    venv = VecMonitor(make_sb3_vec_env(num_envs=4, mode=mode, obs=obs, num_requests=50))
    model = MaskablePPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2_000)
    assert model.num_timesteps >= 2_000
    obs_ = venv.reset()
    masks = get_action_masks(venv)
    actions, _ = model.predict(obs_, action_masks=masks, deterministic=True)
    assert masks[np.arange(4), actions].all()


def test_dqn_smoke_train_on_a_single_env():
    env = gym.make(ID, **SMALL)
    model = DQN("MlpPolicy", env, learning_starts=500, buffer_size=5_000, train_freq=4, target_update_interval=500,
                seed=0, device="cpu")
    model.learn(2_000)
    assert model.num_timesteps >= 2_000
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
    # a deterministic policy on a seeded episode finishes it with the documented return
    rewards, done = [], False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, info = env.step(int(action))
        rewards.append(r)
        done = term or trunc
    m = info["metrics"]
    assert math.fsum(rewards) == pytest.approx(-0.01 * m["mean_e2e_s"] * m["completed"], rel=1e-9)


# ------------------------------------------------------------- tick-mode learning (docs/learning.md)
def test_elapsed_s_is_the_simulated_time_each_step_covered():
    venv = LLMRoutingVectorEnv(num_envs=2, mode="tick", num_requests=40, rate_per_s=5.0)
    _, info = venv.reset(seed=3)
    np.testing.assert_array_equal(info["elapsed_s"], 0.0)
    skipped = False
    for _ in range(400):
        before = info["time_s"].copy()
        _, _, term, trunc, info = venv.step(np.array([4, 0]))  # env 0 holds, env 1 sends to instance 0
        if (term | trunc).any():
            break
        np.testing.assert_allclose(info["elapsed_s"], info["time_s"] - before)
        skipped |= bool((info["elapsed_s"] > 0.02 + 1e-9).any())  # an idle router queue skips ticks
    assert skipped
    assert (info["elapsed_s"] >= 0.0).all()


def test_double_dqn_discounts_each_transition_by_its_elapsed_time():
    from agents.policies import DoubleDQN, ElapsedTimeReplayBuffer

    venv = make_sb3_vec_env(num_envs=2, mode="tick", num_requests=20)
    model = DoubleDQN("MlpPolicy", venv, gamma=0.5, discount_time_s=2.0, buffer_size=100, seed=0, device="cpu")
    assert isinstance(model.replay_buffer, ElapsedTimeReplayBuffer)
    obs = venv.reset()
    for elapsed in (0.02, 2.0, 4.0):
        model.replay_buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2),
                                [{"elapsed_s": elapsed}, {"elapsed_s": elapsed}])
    _, discounts = model._sample(64)
    got = sorted({round(float(d), 5) for d in discounts.numpy().ravel()})
    assert got == [0.25, 0.5, round(0.5 ** 0.01, 5)]
    with pytest.raises(ValueError, match="elapsed_s"):
        model.replay_buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), [{}, {}])
    with pytest.raises(ValueError, match="discount_time_s"):
        DoubleDQN("MlpPolicy", venv, discount_time_s=0.0, device="cpu")


def test_queue_potential_telescopes_to_minus_the_first_potential():
    """Potential-based shaping changes an episode's discounted return by -Phi(s0) only (Ng et al.):
    the shaped agent optimizes the same thing."""
    kwargs = dict(num_envs=1, mode="tick", num_requests=30, rate_per_s=30.0)
    plain = VectorHeuristicGuidance(LLMRoutingVectorEnv(**kwargs), schedule="none", gamma=0.9)
    shaped = VectorHeuristicGuidance(LLMRoutingVectorEnv(**kwargs), schedule="none", gamma=0.9,
                                     queue_potential=0.7, discount_time_s=0.5)
    rng = np.random.default_rng(0)
    _, info = plain.reset(seed=5)
    _, info_s = shaped.reset(seed=5)
    phi0 = -0.7 * float(info_s["queue_len"][0])
    total, discount, done = 0.0, 1.0, False
    while not done:
        a = np.array([int(rng.integers(0, 5))])
        _, r, term, trunc, info = plain.step(a)
        _, r_s, term_s, trunc_s, info_s = shaped.step(a)
        assert term == term_s and info["time_s"] == info_s["time_s"]
        total += discount * float(r_s[0] - r[0])
        discount *= 0.9 ** (float(info_s["elapsed_s"][0]) / 0.5)
        done = bool(term[0] or trunc[0])
    assert total == pytest.approx(-phi0, abs=1e-9)
    with pytest.raises(ValueError, match="queue_potential"):
        VectorHeuristicGuidance(LLMRoutingVectorEnv(**kwargs), queue_potential=-1.0)


def test_queue_potential_discounts_with_the_guided_schedules_current_discount():
    """Under the guided schedule the learner's discount grows over episodes (train.py sets it from
    training_discount); the shaping telescopes with that discount, not the final gamma."""
    kwargs = dict(num_envs=1, mode="tick", num_requests=30, rate_per_s=30.0)
    plain = VectorHeuristicGuidance(LLMRoutingVectorEnv(**kwargs), schedule="guided", gamma=0.9, discount_time_s=0.5)
    shaped = VectorHeuristicGuidance(LLMRoutingVectorEnv(**kwargs), schedule="guided", gamma=0.9,
                                     queue_potential=0.7, discount_time_s=0.5)
    rng = np.random.default_rng(1)
    plain.reset(seed=5)
    _, info_s = shaped.reset(seed=5)
    episode, total, discount, phi0 = 0, 0.0, 1.0, -0.7 * float(info_s["queue_len"][0])
    while episode < 2:
        a = np.array([int(rng.integers(0, 5))])
        _, r, term, trunc, _ = plain.step(a)
        _, r_s, _, _, info_s = shaped.step(a)
        if episode == 1:
            gamma_1 = (1.0 - math.exp(-0.5)) * 0.9  # the schedule's discount in the second episode
            assert shaped.training_discount == pytest.approx(gamma_1)
            total += discount * float(r_s[0] - r[0])
            discount *= gamma_1 ** (float(info_s["elapsed_s"][0]) / 0.5)
        if term[0] or trunc[0]:
            episode += 1
            if episode == 1:  # NEXT_STEP autoreset: the next step starts episode 1
                a = np.array([0])
                plain.step(a)
                _, _, _, _, info_s = shaped.step(a)
                phi0 = -0.7 * float(info_s["queue_len"][0])
    assert total == pytest.approx(-phi0, abs=1e-9)


def test_mixed_loads_with_the_paper_observation():
    from llm_routing_env.sb3 import MixedClusterVecEnv

    parts = [make_sb3_vec_env(num_envs=1, mode="tick", num_requests=20, load=x) for x in (0.5, 1.5)]
    venv = MixedClusterVecEnv(parts)
    obs = venv.reset()
    assert obs.shape == (2, parts[0].observation_space.shape[0])
    venv.step(np.array([0, 4]))
    with pytest.raises(ValueError, match="cannot mix cluster sizes"):
        MixedClusterVecEnv([make_sb3_vec_env(num_envs=1, num_requests=20, num_instances=n) for n in (2, 4)])


def test_n_step_returns_discount_by_elapsed_time_and_stop_at_the_episode_end():
    from gymnasium import spaces

    from agents.policies import ElapsedTimeReplayBuffer

    buf = ElapsedTimeReplayBuffer(10, spaces.Box(0, 10, (1,)), spaces.Discrete(2), device="cpu", n_envs=1, n_steps=3)
    # transitions 0..4: reward i + 1, 1 s each except 2 s for transition 1; the episode ends at 2
    for i in range(5):
        buf.add(np.array([[i]]), np.array([[i + 1]]), np.array([[0]]), np.array([i + 1.0]), np.array([i == 2]),
                [{"elapsed_s": 2.0 if i == 1 else 1.0}])
    samples, discounts = buf.sample_discounted(400, gamma=0.5, discount_time_s=1.0)
    got = {int(o): (float(r), float(d), int(n), float(done)) for o, r, d, n, done in zip(
        samples.observations.ravel(), samples.rewards.ravel(), discounts.ravel(), samples.next_observations.ravel(),
        samples.dones.ravel())}
    assert got == {
        0: (1 + 0.5 * 2 + 0.125 * 3, 0.0625, 3, 1.0),  # 1 s, then 2 s, then 1 s; ends with the episode
        1: (2 + 0.25 * 3, 0.125, 3, 1.0),
        2: (3.0, 0.5, 3, 1.0),
        3: (4 + 0.5 * 5, 0.25, 5, 0.0),  # only two transitions written after it: bootstrap from 5
        4: (5.0, 0.5, 5, 0.0),
    }


def test_symmetric_instances_permute_instance_blocks_and_rename_the_action():
    from agents.policies import DoubleDQN

    venv = make_sb3_vec_env(num_envs=1, mode="tick", num_requests=20)  # paper observation: 3 + 6 x 4, 5 actions
    model = DoubleDQN("MlpPolicy", venv, symmetric_instances=[3, 6], buffer_size=100, seed=0, device="cpu")
    B, N = 64, 4
    # instance m's block holds m + 1 in obs, 10 x (m + 1) in next_obs; globals hold -1
    obs = torch.cat([torch.full((B, 3), -1.0), torch.arange(1.0, N + 1).repeat_interleave(6).expand(B, -1)], dim=1)
    next_obs = torch.cat([obs[:, :3], 10 * obs[:, 3:]], dim=1)
    actions = torch.arange(B).remainder(N + 1).reshape(B, 1)  # every instance and hold
    p_obs, p_next, p_actions = model._permuted(obs, next_obs, actions)
    assert (p_obs[:, :3] == -1).all() and (p_next[:, 3:] == 10 * p_obs[:, 3:]).all()  # s and s' permuted alike
    blocks = p_obs[:, 3:].reshape(B, N, 6)
    assert (blocks == blocks[:, :, :1]).all()  # blocks move whole
    assert (blocks[:, :, 0].sort(dim=1).values == torch.arange(1.0, N + 1)).all()  # a permutation
    sent = actions[:, 0] < N
    # the renamed action points at the block of the instance the original action named
    assert (blocks[sent, p_actions[sent, 0], 0] == actions[sent, 0] + 1).all()
    assert (p_actions[~sent] == N).all()  # hold stays hold
    assert len({tuple(b[:, 0].tolist()) for b in blocks}) > 1  # the orders differ between samples
    with pytest.raises(ValueError, match="symmetric_instances"):
        DoubleDQN("MlpPolicy", venv, symmetric_instances=[3, 5], device="cpu")
    with pytest.raises(ValueError, match="symmetric_instances"):
        DoubleDQN("MlpPolicy", venv, symmetric_instances=[3], device="cpu")


def test_hold_guidance_improvement_is_the_change_of_the_heads_best_impact():
    venv = VectorHeuristicGuidance(LLMRoutingVectorEnv(num_envs=2, mode="tick", hold_until="event", num_requests=40,
                                                       rate_per_s=40.0), schedule="aware", weight=1.0,
                                   hold_h="improvement")
    plain = LLMRoutingVectorEnv(num_envs=2, mode="tick", hold_until="event", num_requests=40, rate_per_s=40.0)
    _, info = venv.reset(seed=2)
    plain.reset(seed=2)
    rng = np.random.default_rng(0)
    holds = 0
    for _ in range(300):
        a = np.array([int(rng.integers(0, 5)) for _ in range(2)])
        before_best, before_q = info["impact"].max(axis=1), info["queue_len"]
        _, r, term, trunc, info = venv.step(a)
        _, r_plain, term_p, trunc_p, info_p = plain.step(a)
        for i in range(2):
            if a[i] == 4 and before_q[i] > 0 and info["queue_len"][i] > 0 and not (term_p[i] or trunc_p[i]):
                holds += 1
                assert info["impact_h"][i] == info["impact"][i].max() - before_best[i]
                assert r[i] == pytest.approx(r_plain[i] + info["impact_h"][i], abs=1e-12)
            elif not (term_p[i] or trunc_p[i]):
                assert info["impact_h"][i] == info_p["impact_h"][i]  # sends: impact.py's h
        if (term | trunc).any():
            break
    assert holds > 5
    with pytest.raises(ValueError, match="hold_h"):
        VectorHeuristicGuidance(LLMRoutingVectorEnv(num_envs=1), hold_h="later")
