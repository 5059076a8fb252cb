"""The length predictor never sees the requests it predicts (issue 11, section 2).

A trace scenario fits ``task-prior`` / ``learned`` on a declared training part, disjoint from every
episode; so a request's true output length cannot reach the router through the predictor.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llm_routing_env  # noqa: F401  (registers the environment)
from llm_routing_env.scenarios import Scenario

RUNNING_OUTPUTS = (300, 301, 900)  # true output lengths of request 0, still decoding at t = 0.5 s


def _write(path, rows, extra_column=False):
    with open(path, "w") as f:
        f.write("arrival_s,prompt_tokens,output_tokens" + (",note" if extra_column else "") + "\n")
        for t, p, o in rows:
            f.write(f"{t!r},{p},{o}" + (",x" if extra_column else "") + "\n")
    return str(path)


def _observations(tmp_path, predictor, output_0, train_on_episode=False):
    """Rich observations at both arrivals of a two-request trace whose request 0 has ``output_0``."""
    episode = [(0.0, 100, output_0), (0.5, 50, 10)]
    trace = _write(tmp_path / f"episode_{output_0}.csv", episode)
    # the control: a file with the episode's own requests (other bytes, so it is not refused as the same file)
    train = _write(tmp_path / f"train_{output_0}.csv", episode, extra_column=True) if train_on_episode else \
        _write(tmp_path / "train.csv", [(0.1 * i, 40 + 30 * i, 5 + 17 * i) for i in range(12)])
    scenario = Scenario("two", instances=("llama2-7b-v100",) * 2, mix=None, trace=trace, num_requests=2,
                        predictor_train_trace=train)
    env = gym.make("llm_routing_env/LLMRouting-v0", scenario=scenario, obs="rich", mode="arrival",
                   predictor=predictor)
    first, _ = env.reset(seed=0)
    second, _, terminated, truncated, _ = env.step(0)
    env.close()
    assert not terminated and not truncated
    return np.concatenate([np.ravel(first), np.ravel(second)])


@pytest.mark.parametrize("predictor", ["task-prior", "learned"])
def test_rich_observation_does_not_depend_on_a_running_request_s_true_output(tmp_path, predictor):
    if predictor == "learned":
        pytest.importorskip("sklearn")
    base = _observations(tmp_path, predictor, RUNNING_OUTPUTS[0])
    for output_0 in RUNNING_OUTPUTS[1:]:
        assert _observations(tmp_path, predictor, output_0).tobytes() == base.tobytes(), output_0
    # the test can fail: a predictor fitted on the episode itself lets request 0's true length through
    leaked = [_observations(tmp_path, predictor, o, train_on_episode=True) for o in RUNNING_OUTPUTS]
    assert any(x.tobytes() != leaked[0].tobytes() for x in leaked[1:])
