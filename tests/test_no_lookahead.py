"""A router knows only the past: what it reads at time t is each instance as of its last iteration
finished by t. An iteration in flight counts its requests as running (its prefill as pending) but
has generated nothing, freed nothing and completed nothing (docs/simulator.md, "What a router sees").

Hand-computed cases on both simulators; the differential test holds the two together on random
workloads, and tests/test_env.py's property test holds every observation to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_routing_env.cluster import ClusterConfig
from llm_routing_env.profiles import get_profile
from llm_routing_env.reference_simulator import ReferenceSimulator
from llm_routing_env.simulator import ClusterSimulator
from tests.test_reference_timings import SIMPLE

SIMULATORS = [ReferenceSimulator, ClusterSimulator]


def seen(sim) -> dict:
    """Everything a router reads of instance 0 of cluster 0, as Python numbers."""
    state = sim.instance_state()
    n_dec, context = sim.decode_totals()
    count, total = sim.completions()
    out = {"running": int(state.num_running[0, 0]), "waiting": int(state.num_waiting[0, 0]),
           "kv_free": int(state.kv_blocks_free[0, 0]), "pending_prefill": int(state.pending_prefill_tokens[0, 0]),
           "decoding": int(n_dec[0, 0]), "decode_context": int(context[0, 0]), "completed": int(count[0]),
           "completion_time_sum_s": float(total[0])}
    if isinstance(sim, ClusterSimulator):
        ir = sim.instance_requests()
        valid = ir["running_valid"][0]
        out["requests"] = sorted(zip(ir["running_request"][0][valid].tolist(), ir["running_generated"][0][valid].tolist(),
                                     ir["running_prefill_done"][0][valid].tolist()))
    else:
        out["requests"] = sim.router_requests(0)[0]["running"]
    return out


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_a_lone_request_as_a_router_sees_it(simulator):
    # SIMPLE: 10 ms + 1 ms per batched token. A: 90-token prompt, 3 output tokens.
    # Prefill [0, 0.100] -> token 1; decode [0.100, 0.111] -> token 2; decode [0.111, 0.122] ->
    # token 3, A completes at 0.122 and frees its 6 blocks (92 tokens of KV).
    sim = simulator(ClusterConfig([SIMPLE]), 1, 4)
    sim.dispatch(0, 0, 0, 90, 3, 0.0)
    sim.advance_to(0.05)  # the prefill is in flight: running, prefill pending, no token
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 100 - 6, "pending_prefill": 90, "decoding": 0,
                         "decode_context": 0, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 0, False)]}
    sim.advance_to(0.105)  # the prefill is done (token 1); the first decode is in flight
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 94, "pending_prefill": 0, "decoding": 1,
                         "decode_context": 91, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 1, True)]}
    sim.advance_to(0.119)  # 3 ms before A completes: token 2 only, still running, blocks held
    assert seen(sim) == {"running": 1, "waiting": 0, "kv_free": 94, "pending_prefill": 0, "decoding": 1,
                         "decode_context": 92, "completed": 0, "completion_time_sum_s": 0.0,
                         "requests": [(0, 2, True)]}
    sim.advance_to(0.122)  # the last decode ends exactly now: finished by now, A is done
    assert seen(sim) == {"running": 0, "waiting": 0, "kv_free": 100, "pending_prefill": 0, "decoding": 0,
                         "decode_context": 0, "completed": 1, "completion_time_sum_s": pytest.approx(0.122, abs=1e-15),
                         "requests": []}


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_the_issue_case_a_long_prefill_and_an_unseen_output_length(simulator):
    """One llama2-7b-v100 instance: a 4,000-token prompt and a short request dispatched at 0. The
    joint prefill ends at 1.297 s; the short request (10 prompt tokens) then decodes. Whether its
    true output is 20 or 21 tokens, a router sees the same until its last token is generated."""
    profile = get_profile("llama2-7b-v100")

    def run(output):
        sim = simulator(ClusterConfig([profile]), 1, 4)
        sim.dispatch(0, [0, 1], 0, [4000, 10], [90, output], 0.0)
        return sim

    finished = run(20)
    finished.run_until_idle()
    rec = finished.records()
    assert rec.first_token_s[0, 1] == pytest.approx(1.297157, abs=1e-6)
    decision_s = rec.completion_s[0, 1] - 0.003  # 3 ms before the 20-token request completes
    views = {}
    for output in (20, 21):
        sim = run(output)
        sim.advance_to(0.001)
        early = seen(sim)
        assert early["running"] == 2 and early["decoding"] == 0 and early["pending_prefill"] == 4010
        assert early["requests"] == [(0, 0, False), (1, 0, False)]
        sim.advance_to(decision_s)
        views[output] = seen(sim)
    assert views[20] == views[21]
    assert views[20]["completed"] == 0 and (1, 19, True) in views[20]["requests"]
