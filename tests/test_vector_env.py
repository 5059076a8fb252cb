"""The native vector env ``LLMRoutingVectorEnv`` (``gym.make_vec``): sub-env i seeded ``s + i`` behaves
exactly like a single env seeded ``s + i``, with Gymnasium's NEXT_STEP autoreset."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import llm_routing_env
from llm_routing_env.env import LLMRoutingVectorEnv
from llm_routing_env.single_env import step_one
from llm_routing_env.wrappers import VectorHeuristicGuidance

ID = llm_routing_env.ENV_ID
STEP_INFO_KEYS = ("action_mask", "impact", "impact_h", "time_s", "elapsed_s", "queue_len", "arrived", "completed")


def random_actions(rngs, masks) -> np.ndarray:
    """One uniformly random valid action per sub-env, each from its own generator."""
    return np.array([int(rng.choice(np.flatnonzero(m))) for rng, m in zip(rngs, masks)], dtype=np.int64)


def assert_sub_info_equal(vinfo: dict, i: int, info: dict) -> None:
    """Sub-env i of a vector info dict equals a single env's info dict."""
    for key in STEP_INFO_KEYS:
        np.testing.assert_array_equal(np.asarray(vinfo[key][i]), np.asarray(info[key]), err_msg=key)
    has_metrics = "metrics" in vinfo and bool(vinfo["_metrics"][i])
    assert has_metrics == ("metrics" in info)
    if has_metrics:
        for key, value in info["metrics"].items():
            np.testing.assert_equal(vinfo["metrics"][key][i], value, err_msg=key)
            assert vinfo["metrics"]["_" + key][i]


@pytest.mark.parametrize("mode,obs,reward,scenario", [
    ("tick", "paper", "latency", {}), ("arrival", "rich", "paper", {}), ("tick", "rich", "paper", {}),
    ("arrival", "paper", "latency", {}),
    # single envs step in Python numbers (single_env.py): other fleets, chunked prefill, other
    # predictors, more instances (NumPy sums 8 or more numbers pairwise), truncation
    ("tick", "paper", "latency", {"scenario": "mixed-fleet"}),
    ("arrival", "paper", "latency", {"scenario": "paper-a100-chunked", "predictor": "noisy"}),
    ("tick", "paper", "latency", {"num_instances": 8, "rate_per_s": 40.0, "max_sim_time_s": 3.0}),
    # holds as options (a hold lasts until an event the router sees)
    ("tick", "paper", "latency", {"hold_until": "event"}),
    ("tick", "rich", "latency", {"hold_until": "event", "scenario": "paper-v100-regime", "max_sim_time_s": 2.0}),
])
def test_vector_env_equals_single_envs_across_autoresets(mode, obs, reward, scenario):
    n, seed = 3, 21
    kwargs = dict(mode=mode, obs=obs, reward=reward, num_requests=30, **scenario)
    venv = gym.make_vec(ID, num_envs=n, **kwargs)
    singles = [gym.make(ID, **kwargs) for _ in range(n)]
    vobs, vinfo = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs_i, info_i = env.reset(seed=seed + i)
        np.testing.assert_array_equal(vobs[i], obs_i)
        assert_sub_info_equal(vinfo, i, info_i)
    assert venv.observation_space.contains(vobs)

    rngs = [np.random.default_rng(100 + i) for i in range(n)]
    ended = np.zeros(n, dtype=bool)   # the previous step ended the sub-env's episode
    episodes = np.zeros(n, dtype=int)
    autoresets = 0
    for _ in range(2000):
        actions = random_actions(rngs, vinfo["action_mask"])
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        assert venv.observation_space.contains(vobs)
        for i, env in enumerate(singles):
            if ended[i]:
                # NEXT_STEP: the action is ignored; the sub-env starts its next episode like
                # a single env's reset() without a seed, with reward 0 and both flags False
                obs_i, info_i = env.reset()
                rew_i, term_i, trunc_i = 0.0, False, False
                autoresets += 1
            else:
                obs_i, rew_i, term_i, trunc_i, info_i = env.step(actions[i])
            np.testing.assert_array_equal(vobs[i], obs_i)
            # the paper reward sums floats over padded per-instance arrays whose width depends on the
            # whole batch: equal to the last few ulps only (the latency reward is bit-identical)
            if reward == "latency":
                assert vrew[i] == rew_i
            else:
                assert vrew[i] == pytest.approx(rew_i, rel=1e-12, abs=1e-12)
            assert vterm[i] == term_i and vtrunc[i] == trunc_i
            assert_sub_info_equal(vinfo, i, info_i)
        ended = vterm | vtrunc
        episodes += ended
        if episodes.min() >= 2 and not ended.any():
            break
    assert episodes.min() >= 2 and autoresets >= 2 * n
    assert vrew.dtype == np.float64 and vterm.dtype == np.bool_ and vtrunc.dtype == np.bool_


def test_vector_env_matches_gymnasium_sync_vector_env():
    """The same trajectories as Gymnasium's own SyncVectorEnv of single envs (both NEXT_STEP)."""
    n, kwargs = 2, dict(mode="tick", num_requests=30)
    native = gym.make_vec(ID, num_envs=n, **kwargs)
    sync = gym.make_vec(ID, num_envs=n, vectorization_mode="sync", **kwargs)
    assert isinstance(sync, gym.vector.SyncVectorEnv)
    o1, i1 = native.reset(seed=3)
    o2, i2 = sync.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    rngs = [np.random.default_rng(i) for i in range(n)]
    dones = 0
    for _ in range(300):
        a = random_actions(rngs, i1["action_mask"])
        o1, r1, t1, u1, i1 = native.step(a)
        o2, r2, t2, u2, i2 = sync.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(i1["action_mask"], i2["action_mask"])
        dones += int((t1 | u1).sum())
    assert dones >= 2


def test_reset_with_a_list_of_seeds_and_with_a_reset_mask():
    kwargs = dict(mode="arrival", num_requests=30)
    venv = LLMRoutingVectorEnv(num_envs=3, **kwargs)
    vobs, _ = venv.reset(seed=[7, 70, 700])
    for i, s in enumerate((7, 70, 700)):
        single = gym.make(ID, **kwargs)
        np.testing.assert_array_equal(vobs[i], single.reset(seed=s)[0])
    with pytest.raises(ValueError, match="seed"):
        venv.reset(seed=[1, 2])
    # a partial reset re-seeds only the masked sub-envs
    venv.reset(seed=0)
    for _ in range(5):
        venv.step(np.array([0, 1, 2]))
    before = venv.core.arrival.copy()
    t_before = venv.core.t.copy()
    obs, _ = venv.reset(seed=50, options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(venv.core.arrival[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(venv.core.t[[0, 2]], t_before[[0, 2]])
    single = gym.make(ID, **kwargs)
    np.testing.assert_array_equal(obs[1], single.reset(seed=51)[0])  # sub-env 1 gets seed + 1


@pytest.mark.parametrize("mode", ["tick", "arrival"])
def test_vector_latency_returns_per_episode(mode):
    n, scale = 4, 0.02
    venv = gym.make_vec(ID, num_envs=n, mode=mode, num_requests=40, reward_scale=scale)
    _, info = venv.reset(seed=9)
    rngs = [np.random.default_rng(i) for i in range(n)]
    returns = np.zeros(n)
    checked = 0
    ended = np.zeros(n, dtype=bool)
    for _ in range(3000):
        _, rew, term, trunc, info = venv.step(random_actions(rngs, info["action_mask"]))
        returns = np.where(ended, 0.0, returns) + rew
        for i in np.flatnonzero(term | trunc):
            assert term[i] and not trunc[i]
            m = {k: v[i] for k, v in info["metrics"].items() if not k.startswith("_")}
            assert m["completed"] == m["arrived"] == 40
            assert returns[i] == pytest.approx(-scale * m["mean_e2e_s"] * m["completed"], rel=1e-9)
            checked += 1
        ended = term | trunc
        if checked >= 2 * n:
            break
    assert checked >= 2 * n


def test_make_vec_max_episode_steps_truncates_with_metrics():
    venv = gym.make_vec(ID, num_envs=2, max_episode_steps=5, mode="arrival", num_requests=40)
    venv.reset(seed=0)
    for k in range(5):
        obs, rew, term, trunc, info = venv.step(np.array([0, 1]))
        assert not term.any()
        assert trunc.all() == (k == 4)
    assert info["_metrics"].all() and (info["metrics"]["arrived"] >= 5).all()
    obs, rew, term, trunc, info = venv.step(np.array([0, 1]))  # the autoreset step
    np.testing.assert_array_equal(rew, 0.0)
    assert not term.any() and not trunc.any() and "metrics" not in info


def test_vector_max_sim_time_truncation():
    venv = LLMRoutingVectorEnv(num_envs=2, mode="tick", num_requests=200, max_sim_time_s=1.0)
    _, info = venv.reset(seed=0)
    truncated_once = np.zeros(2, dtype=bool)
    for _ in range(500):
        _, _, term, trunc, info = venv.step(np.where(info["action_mask"][:, 0], 0, 4))
        assert not term.any()
        assert (info["time_s"] <= 1.0).all()
        np.testing.assert_allclose(info["time_s"][trunc], 1.0)
        assert info["_metrics"][trunc].all() if trunc.any() else "metrics" not in info
        truncated_once |= trunc
        if truncated_once.all():
            break
    assert truncated_once.all()


def test_vector_action_validation():
    venv = LLMRoutingVectorEnv(num_envs=3, mode="arrival", num_requests=30)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="3 integers"):
        venv.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="3 integers"):
        venv.step(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="outside the action space 0..3.*env 1"):
        venv.step(np.array([0, 4, 0]))
    with pytest.raises(ValueError, match="outside the action space"):
        venv.step(np.array([0, 0, -1]))
    venv.step(np.array([0, 1, 2]))


def test_vector_action_masks_agree_with_info():
    venv = LLMRoutingVectorEnv(num_envs=3, mode="tick", skip_idle_ticks=False, num_requests=30)
    _, info = venv.reset(seed=1)
    rngs = [np.random.default_rng(i) for i in range(3)]
    saw_empty = False
    for _ in range(200):
        masks = venv.action_masks()
        assert masks.shape == (3, 5) and masks.dtype == np.int8
        np.testing.assert_array_equal(masks, info["action_mask"])
        empty = info["queue_len"] == 0
        np.testing.assert_array_equal(masks[:, :4], np.repeat(~empty[:, None], 4, axis=1))
        assert masks[:, 4].all()
        saw_empty |= empty.any()
        _, _, _, _, info = venv.step(random_actions(rngs, masks))
    assert saw_empty


def test_vector_render_ansi():
    venv = LLMRoutingVectorEnv(num_envs=2, num_requests=30, render_mode="ansi")
    venv.reset(seed=0)
    text = venv.render()
    assert text.count("router queue") == 2


@pytest.mark.parametrize("schedule", ["none", "aware", "guided"])
def test_vector_heuristic_guidance(schedule):
    n, gamma, beta, weight = 3, 0.9, 0.5, 0.4
    kwargs = dict(mode="arrival", num_requests=20)
    base = LLMRoutingVectorEnv(num_envs=n, **kwargs)
    env = VectorHeuristicGuidance(LLMRoutingVectorEnv(num_envs=n, **kwargs), schedule=schedule, gamma=gamma,
                                  beta=beta, weight=weight)
    _, ib = base.reset(seed=4)
    env.reset(seed=4)
    w_of = {"none": lambda k: 0.0 * k, "aware": lambda k: weight + 0.0 * k,
            "guided": lambda k: gamma * np.exp(-beta * k)}[schedule]
    k = np.zeros(n, dtype=int)
    ended = np.zeros(n, dtype=bool)
    saw_h = False
    for _ in range(500):
        a = np.argmin(ib["impact"], axis=1)  # the worst instance: the guidance term is often < 0
        ob, rb, tb, ub, ib = base.step(a)
        ow, rw, tw, uw, iw = env.step(a)
        k += ended  # each sub-env counts its own episodes (the step after one ended starts the next)
        np.testing.assert_array_equal(ob, ow)
        np.testing.assert_array_equal(iw["impact_h"], ib["impact_h"])
        np.testing.assert_allclose(iw["guidance_weight"], w_of(k))
        np.testing.assert_allclose(rw, rb + w_of(k) * ib["impact_h"], rtol=1e-12, atol=1e-12)
        saw_h |= (ib["impact_h"] < 0).any()
        ended = tb | ub
        if k.min() >= 2:
            break
    assert k.min() >= 2 and saw_h
    np.testing.assert_array_equal(env.episodes, k)
    expected_discount = (1 - math.exp(-beta * k.min())) * gamma if schedule == "guided" else gamma
    assert env.training_discount == pytest.approx(expected_discount)


def test_gymnasium_vector_wrappers_work():
    """Gymnasium's own vector wrappers read the info dict (DictInfoToList) and episode statistics."""
    from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

    venv = DictInfoToList(RecordEpisodeStatistics(gym.make_vec(ID, num_envs=2, num_requests=20, mode="arrival")))
    _, infos = venv.reset(seed=0)
    assert isinstance(infos, list) and len(infos) == 2 and set(STEP_INFO_KEYS) <= set(infos[0])
    returns = np.zeros(2)
    for _ in range(20):
        _, rew, term, trunc, infos = venv.step(np.array([0, 1]))
        returns += rew
    assert term.all()  # one decision per request in arrival mode: 20 steps, 20 requests
    for i in range(2):
        assert infos[i]["metrics"]["completed"] == 20
        assert infos[i]["episode"]["l"] == 20
        assert infos[i]["episode"]["r"] == pytest.approx(returns[i])


def test_the_single_env_step_refuses_a_batched_core():
    venv = LLMRoutingVectorEnv(num_envs=2, mode="arrival", num_requests=30)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="single environment; this core has 2"):
        step_one(venv.core, 0)
