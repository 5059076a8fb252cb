"""``hold_until="event"`` (core.py): in tick mode a hold lasts until the router sees an arrival, a
completion or an idle cluster, on the 0.02 s tick grid. Hand-computed timings, and the hold's end
depends only on what the router has seen (the no-look-ahead property test covers the rest)."""

from __future__ import annotations

import math

import pytest

from llm_routing_env.env import LLMRoutingEnv
from llm_routing_env.profiles import LatencyProfile, register_profile
from llm_routing_env.scenarios import Scenario

# one iteration takes 10 ms + 1 ms per batched token: a 20-token prefill 30 ms, a decode of one request 11 ms
SIMPLE = register_profile(LatencyProfile(
    name="test-hold-simple", c0_ms=10.0, c1_ms_per_token=1.0, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
    c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0, c5_ms_per_decode_context_token=0.0,
    kv_capacity_blocks=100, max_model_len=256, source="tests/test_hold_option.py: 10 ms + 1 ms per batched token"))
HOLD = 1


def _env(tmp_path, write_trace, arrival, prompt, output, hold_until="event") -> LLMRoutingEnv:
    train = write_trace(tmp_path / "train.csv", [0.0, 1.0], [20, 30], [4, 8])
    trace = write_trace(tmp_path / "trace.csv", arrival, prompt, output)
    scenario = Scenario("hold", instances=("test-hold-simple",), mix=None, trace=trace, num_requests=100,
                        predictor_train_trace=train)
    return LLMRoutingEnv(scenario=scenario, mode="tick", hold_until=hold_until)


def test_a_hold_lasts_until_the_router_sees_a_completion_then_one_tick_on_an_idle_cluster(tmp_path, write_trace):
    env = _env(tmp_path, write_trace, [0.0, 0.001, 1.0], [20, 20, 10], [4, 2, 1])
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)  # t = 0: request 0 to the instance; next tick 0.02, request 1 waiting
    assert info["time_s"] == 0.02 and info["queue_len"] == 1
    # request 0: prefill 10 + 20 = 30 ms, then 3 decodes of 10 + 1 = 11 ms: completes at 0.063, which
    # the router sees at the first tick after it, 4 x 0.02 = 0.08
    _, reward, _, _, info = env.step(HOLD)
    assert info["time_s"] == 4 * 0.02 and info["elapsed_s"] == pytest.approx(0.06, abs=1e-15)
    assert info["completed"] == 1
    # the latency reward covers the whole hold: request 0 from 0.02 to 0.063, request 1 from 0.02 to 0.08
    assert reward == pytest.approx(-0.01 * ((0.063 - 0.02) + (0.08 - 0.02)), rel=1e-9)
    # nothing runs: nothing can change but an arrival (at 1.0), so a hold is one tick
    _, _, _, _, info = env.step(HOLD)
    assert info["time_s"] == 5 * 0.02
    env.step(0)  # request 1 sent at 0.10; the queue is empty: the clock jumps to request 2 at 1.0
    assert env.unwrapped.core.t[0] == 1.0


def test_a_hold_ends_at_the_first_tick_after_an_arrival(tmp_path, write_trace):
    # request 0 runs until 0.030 + 99 x 0.011 = 1.119 s; request 2 arrives at 0.05
    env = _env(tmp_path, write_trace, [0.0, 0.001, 0.05], [20, 20, 10], [100, 2, 1])
    env.reset(seed=0)
    env.step(0)
    _, _, _, _, info = env.step(HOLD)
    assert info["time_s"] == 3 * 0.02 and info["queue_len"] == 2 and info["completed"] == 0


def test_with_ticks_a_hold_lasts_one_tick(tmp_path, write_trace):
    env = _env(tmp_path, write_trace, [0.0, 0.001, 1.0], [20, 20, 10], [4, 2, 1], hold_until="tick")
    env.reset(seed=0)
    env.step(0)
    _, _, _, _, info = env.step(HOLD)
    assert info["time_s"] == 2 * 0.02 and math.isclose(info["elapsed_s"], 0.02)


def test_hold_until_is_validated():
    with pytest.raises(ValueError, match="hold_until must be one of tick, event"):
        LLMRoutingEnv(hold_until="forever")
    with pytest.raises(ValueError, match="hold_until='event' needs mode='tick'"):
        LLMRoutingEnv(mode="arrival", hold_until="event")
