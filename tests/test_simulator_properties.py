"""Property tests that hold for both simulators (reference and fast) on random call sequences.

After every call we observe records(), instance_state() and now_s and check invariants against
the previous observation: requests are never lost nor completed twice, KV blocks stay within the
capacity, clocks and completion times never go back, token counts and timestamps are consistent.
Each simulator is also run twice on the same calls and must give bit-identical records.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_routing_env.cluster import COMPLETED, NOT_DISPATCHED, RUNNING, WAITING, ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import LatencyProfile

SIMULATORS = ["reference", "fast"]
MAX_REQUESTS = 48

PROFILES = [
    # 24 blocks: a few concurrent requests force preemptions
    LatencyProfile(
        name="prop-tiny", c0_ms=4.1, c1_ms_per_token=0.09, c2_ms_per_token_above_knee=0.2, knee_tokens=40,
        c3_ms_per_chunk_token_sq=1e-4, c4_ms_per_chunk_prior_token=2e-4, c5_ms_per_decode_context_token=1.5e-3,
        kv_capacity_blocks=24, max_model_len=384,
    ),
    # 150 blocks: watermark of 1 block
    LatencyProfile(
        name="prop-medium", c0_ms=8.3, c1_ms_per_token=0.05, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
        c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0, c5_ms_per_decode_context_token=8e-4,
        kv_capacity_blocks=150, max_model_len=512,
    ),
]


@pytest.fixture(scope="module", params=SIMULATORS)
def simulator_class(request):
    """The simulator class under test (an import failure fails the tests, never skips them)."""
    if request.param == "reference":
        from llm_routing_env.sim import ReferenceSimulator

        return ReferenceSimulator
    from llm_routing_env.sim import ClusterSimulator

    return ClusterSimulator


# --------------------------------------------------------------------------------------------
# Random call sequences
# --------------------------------------------------------------------------------------------


@st.composite
def workloads(draw):
    """(config, num_clusters, calls); a call is ("dispatch", c, rid, n, prompt, output, frac),
    ("advance", steps per cluster) or ("idle",)."""
    num_instances = draw(st.integers(1, 3))
    profiles = draw(st.lists(st.sampled_from(PROFILES), min_size=num_instances, max_size=num_instances))
    kind = draw(st.sampled_from(["vllm-v0", "vllm-v0-chunked", "vllm-v1"]))
    if kind == "vllm-v1":
        scheduler = SchedulerConfig(scheduler="vllm-v1", max_num_seqs=draw(st.sampled_from([1, 2, 8])),
                                    max_num_batched_tokens=draw(st.sampled_from([None, 8, 32])))
    elif kind == "vllm-v0-chunked":
        scheduler = SchedulerConfig(chunked_prefill=True, max_num_seqs=draw(st.sampled_from([1, 2, 8])),
                                    max_num_batched_tokens=draw(st.sampled_from([None, 32])))
    else:
        scheduler = SchedulerConfig(max_num_seqs=draw(st.sampled_from([None, 1, 3])))
    config = ClusterConfig(profiles, scheduler)
    num_clusters = draw(st.integers(1, 2))
    calls, next_id = [], [0] * num_clusters
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["dispatch", "dispatch", "advance", "advance", "idle"]))
        if kind == "dispatch":
            c = draw(st.integers(0, num_clusters - 1))
            if next_id[c] >= MAX_REQUESTS:
                continue
            n = draw(st.integers(0, num_instances - 1))
            prompt = draw(st.integers(1, 250))
            output = draw(st.integers(1, profiles[n].max_model_len - prompt))
            calls.append(("dispatch", c, next_id[c], n, prompt, min(output, 250), draw(st.sampled_from([0.0, 0.7, 1.0]))))
            next_id[c] += 1
        elif kind == "advance":
            steps = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.5), st.just(1e3)),
                                  min_size=num_clusters, max_size=num_clusters))
            calls.append(("advance", steps))
        else:
            calls.append(("idle",))
    return config, num_clusters, calls


def make_call(sim, call) -> None:
    if call[0] == "dispatch":
        _, c, rid, n, prompt, output, frac = call
        sim.dispatch(c, rid, n, prompt, output, float(sim.now_s[c]) * frac)
    elif call[0] == "advance":
        sim.advance_to(sim.now_s + np.array(call[1]))
    else:
        sim.run_until_idle()


def observe(sim):
    return sim.records(), sim.instance_state(), sim.now_s.copy()


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


def check_observation(config: ClusterConfig, dispatched: np.ndarray, obs, previous) -> None:
    """Invariants of one observation, and between it and the previous one (None at the start)."""
    rec, state, now = obs
    capacity = config.per_instance("kv_capacity_blocks")

    # Every dispatched request is waiting, running or completed; nothing else is.
    assert ((rec.status != NOT_DISPATCHED) == dispatched).all(), "a request was lost (or appeared)"
    assert np.isin(rec.status[dispatched], [WAITING, RUNNING, COMPLETED]).all()
    # Per-instance counts agree with the records as of now: a request completing in the iteration
    # in flight is still running to a router.
    with np.errstate(invalid="ignore"):
        done_later = (rec.status == COMPLETED) & (rec.completion_s > now[:, None])
    for b in range(rec.status.shape[0]):
        for n in range(config.num_instances):
            on_n = rec.instance[b] == n
            assert state.num_running[b, n] == (on_n & ((rec.status[b] == RUNNING) | done_later[b])).sum()
            assert state.num_waiting[b, n] == (on_n & (rec.status[b] == WAITING)).sum()

    # KV blocks within the capacity; used + free = capacity.
    assert (state.kv_blocks_used >= 0).all() and (state.kv_blocks_used <= capacity).all()
    assert (state.kv_blocks_used + state.kv_blocks_free == capacity).all()
    assert (state.pending_prefill_tokens >= 0).all()
    idle = (state.num_running == 0) & (state.num_waiting == 0)
    assert (state.kv_blocks_used[idle] == 0).all() and (state.pending_prefill_tokens[idle] == 0).all()
    # An instance with work has started an iteration that ends at or after the cluster's time.
    assert (state.busy_until_s[~idle] >= np.broadcast_to(now[:, None], idle.shape)[~idle]).all()

    # Token counts.
    assert (rec.generated_tokens >= 0).all() and (rec.generated_tokens <= rec.output_tokens).all()
    completed = rec.status == COMPLETED
    assert (rec.generated_tokens[completed] == rec.output_tokens[completed]).all()
    assert (np.isnan(rec.completion_s) == ~completed).all()

    # Timestamps: arrival <= dispatch <= first scheduled < first token <= completion.
    d = dispatched
    assert (rec.dispatch_s[d] >= rec.arrival_s[d]).all()
    started = ~np.isnan(rec.first_scheduled_s)
    assert (rec.first_scheduled_s[started] >= rec.dispatch_s[started]).all()
    has_token = ~np.isnan(rec.first_token_s)
    assert (has_token == (rec.generated_tokens > 0)).all() and (has_token <= started).all()
    assert (rec.first_token_s[has_token] > rec.first_scheduled_s[has_token]).all()
    assert (rec.first_token_s[completed] <= rec.completion_s[completed]).all()

    if previous is None:
        return
    prev_rec, prev_state, prev_now = previous
    # Clocks never go back.
    assert (now >= prev_now).all(), "now_s went back"
    assert (state.busy_until_s >= prev_state.busy_until_s).all(), "an instance clock went back"
    # A completed request stays completed, with the same completion time and tokens.
    was_done = prev_rec.status == COMPLETED
    assert (rec.status[was_done] == COMPLETED).all(), "a request completed twice"
    assert (rec.completion_s[was_done] == prev_rec.completion_s[was_done]).all()
    assert (rec.generated_tokens[was_done] == prev_rec.generated_tokens[was_done]).all()
    # Timestamps once set never change; generated tokens only grow.
    for name in ("arrival_s", "dispatch_s", "first_scheduled_s", "first_token_s"):
        before, after = getattr(prev_rec, name), getattr(rec, name)
        set_before = ~np.isnan(before)
        assert (after[set_before] == before[set_before]).all(), f"{name} changed"
    assert (rec.generated_tokens >= prev_rec.generated_tokens).all()
    assert (rec.preemptions >= prev_rec.preemptions).all()
    # On one instance, new completions come at or after the earlier ones.
    newly_done = completed & ~was_done
    for b in range(rec.status.shape[0]):
        for n in range(config.num_instances):
            earlier = was_done[b] & (rec.instance[b] == n)
            later = newly_done[b] & (rec.instance[b] == n)
            if earlier.any() and later.any():
                assert rec.completion_s[b][later].min() >= rec.completion_s[b][earlier].max()


def run_and_check(simulator_class, config, num_clusters, calls):
    sim = simulator_class(config, num_clusters, MAX_REQUESTS)
    dispatched = np.zeros((num_clusters, MAX_REQUESTS), dtype=bool)
    previous = None
    for call in calls + [("idle",)]:
        make_call(sim, call)
        if call[0] == "dispatch":
            dispatched[call[1], call[2]] = True
        obs = observe(sim)
        check_observation(config, dispatched, obs, previous)
        previous = obs
    # After run_until_idle: everything completed, every block free, the clock past every completion.
    rec, state, now = previous
    assert (rec.status[dispatched] == COMPLETED).all()
    assert (state.kv_blocks_used == 0).all() and (state.num_running == 0).all() and (state.num_waiting == 0).all()
    last_completion = np.nanmax(np.where(dispatched, rec.completion_s, -np.inf), axis=1)
    assert (now >= last_completion).all()
    return sim


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY_SETTINGS
@given(workloads())
def test_invariants_hold_after_every_call(simulator_class, workload):
    run_and_check(simulator_class, *workload)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(workloads())
def test_same_inputs_give_bit_identical_records(simulator_class, workload):
    config, num_clusters, calls = workload
    first = run_and_check(simulator_class, config, num_clusters, calls)
    second = run_and_check(simulator_class, config, num_clusters, calls)
    a, b = first.records(), second.records()
    for f in fields(a):
        assert np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True), f.name
    sa, sb = first.instance_state(), second.instance_state()
    for f in fields(sa):
        assert np.array_equal(getattr(sa, f.name), getattr(sb, f.name)), f.name
    assert np.array_equal(first.now_s, second.now_s) and np.array_equal(first.iterations, second.iterations)


def test_reset_of_some_clusters_matches_a_fresh_simulator(simulator_class):
    """Clusters reset to time 0 then replayed give the same records as a fresh simulator."""
    config = ClusterConfig([PROFILES[0], PROFILES[1]])
    calls = [("dispatch", 0, 0, 0, 100, 50, 1.0), ("dispatch", 1, 0, 1, 30, 20, 1.0),
             ("advance", [0.2, 0.1]), ("dispatch", 0, 1, 0, 200, 150, 0.5), ("advance", [0.3, 0.0])]
    sim = simulator_class(config, 2, 4)
    for call in calls:
        make_call(sim, call)
    sim.reset(np.array([True, False]))          # cluster 0 back to time 0, cluster 1 untouched
    assert sim.now_s[0] == 0.0 and (sim.iterations[0] == 0).all()
    assert (sim.records().status[0] == NOT_DISPATCHED).all()
    assert (sim.instance_state().kv_blocks_used[0] == 0).all()
    kept = sim.records(1)
    for call in calls:
        if call[0] != "dispatch" or call[1] == 0:
            make_call(sim, ("advance", [call[1][0], 0.0]) if call[0] == "advance" else call)
    fresh = simulator_class(config, 2, 4)
    for call in calls:
        if call[0] != "dispatch" or call[1] == 0:
            make_call(fresh, ("advance", [call[1][0], 0.0]) if call[0] == "advance" else call)
    a, b = sim.records(0), fresh.records(0)
    for f in fields(a):
        assert np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True), f.name
    after = sim.records(1)
    for f in fields(kept):
        assert np.array_equal(getattr(kept, f.name), getattr(after, f.name), equal_nan=True), f.name
