"""The simulator's counters as a router reads them (completions, decode sets, running requests),
against the request records: only iterations finished by now_s count."""

import numpy as np
import pytest

from llm_routing_env import ClusterConfig, SchedulerConfig
from llm_routing_env.cluster import COMPLETED, RUNNING, WAITING
from llm_routing_env.sim import ClusterSimulator


@pytest.mark.parametrize("chunked", [False, True])
def test_completions_count_only_what_finished_by_now(chunked):
    rng = np.random.default_rng(7)
    cfg = ClusterConfig(["llama2-7b-a100", "llama2-7b-v100", "llama2-7b-v100"], SchedulerConfig(chunked_prefill=chunked))
    B, R = 3, 120
    sim = ClusterSimulator(cfg, B, R)
    t = 0.0
    in_flight_completions = 0
    for i in range(R):
        t += rng.exponential(0.05)
        sim.advance_to(t)
        sim.dispatch(np.arange(B), i, rng.integers(0, 3, size=B), rng.integers(1, 600, size=B),
                     np.where(rng.random(B) < 0.1, 1, rng.integers(1, 400, size=B)), t)
        rec = sim.records()
        count, total = sim.completions()
        done = rec.completion_s <= t
        in_flight_completions += int(((rec.status == COMPLETED) & ~done).sum())
        np.testing.assert_array_equal(count, done.sum(axis=1))
        np.testing.assert_allclose(total, np.where(done, rec.completion_s, 0).sum(axis=1), rtol=1e-12)
    assert in_flight_completions > 0, "the test must see completions of iterations still in flight"
    sim.run_until_idle()
    count, total = sim.completions()
    rec = sim.records()
    np.testing.assert_array_equal(count, [R] * B)
    np.testing.assert_allclose(total, rec.completion_s.sum(axis=1), rtol=1e-12)
    sim.reset([1])
    assert sim.completions()[0][1] == 0


def test_instance_requests_agree_with_the_records():
    rng = np.random.default_rng(3)
    cfg = ClusterConfig(["llama2-7b-v100"] * 2)
    sim = ClusterSimulator(cfg, 2, 300)
    completing_in_flight = 0
    for i in range(300):
        sim.advance_to(i * 0.01)
        sim.dispatch([0, 1], i, rng.integers(0, 2, size=2), rng.integers(1, 1500, size=2),
                     np.where(rng.random(2) < 0.5, rng.integers(1, 20, size=2), rng.integers(1, 1500, size=2)), i * 0.01)
        if i % 3 == 0:
            view, rec = sim.instance_requests(), sim.records()
            status, generated = rec.status.ravel(), rec.generated_tokens.ravel()
            # a request completing in the iteration in flight still runs, as a router sees it
            later = (status == COMPLETED) & (np.repeat(sim.now_s, 300) < rec.completion_s.ravel())
            completing_in_flight += int(later.sum())
            running = view["running_request"][view["running_valid"]]
            waiting = view["waiting_request"][view["waiting_valid"]]
            assert sorted(running) == sorted(np.flatnonzero((status == RUNNING) | later))
            assert sorted(waiting) == sorted(np.flatnonzero(status == WAITING))
            # the tokens of the iteration in flight are not seen yet: at most one less
            lag = generated[running] - view["running_generated"][view["running_valid"]]
            assert set(lag.tolist()) <= {0, 1}
            rows = np.repeat(np.arange(4)[:, None], view["running_request"].shape[1], axis=1)[view["running_valid"]]
            np.testing.assert_array_equal(rows % 2, rec.instance.ravel()[running])
    assert completing_in_flight > 0


def test_decode_totals_agree_with_the_running_requests():
    rng = np.random.default_rng(5)
    for chunked in (False, True):
        cfg = ClusterConfig(["llama2-7b-v100", "llama2-7b-a100"], SchedulerConfig(chunked_prefill=chunked))
        sim = ClusterSimulator(cfg, 2, 200)
        for i in range(200):
            sim.advance_to(i * 0.02)
            sim.dispatch([0, 1], i, rng.integers(0, 2, size=2), rng.integers(1, 1500, size=2),
                         rng.integers(1, 900, size=2), i * 0.02)
            if i % 23 == 0:
                view = sim.instance_requests()
                decoding = view["running_valid"] & view["running_prefill_done"]
                prompt = sim.records().prompt_tokens.ravel()[view["running_request"]]
                context = np.where(decoding, prompt + view["running_generated"], 0).sum(axis=1)
                count, total = sim.decode_totals()
                np.testing.assert_array_equal(count.ravel(), decoding.sum(axis=1))
                np.testing.assert_array_equal(total.ravel(), context)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_simulator_runs_on_exactly_like_the_original(how):
    """Some state is views of other arrays; a copy must keep them views (the lookahead oracle and
    the benchmarks copy simulators)."""
    import copy
    import pickle

    rng = np.random.default_rng(11)
    cfg = ClusterConfig(["llama2-7b-v100", "llama2-7b-a100"])
    sim = ClusterSimulator(cfg, 2, 200, prediction_classes=3)
    for b in range(2):
        sim.set_predictions(b, rng.integers(0, 3, size=200), rng.uniform(1, 900, size=200))
    inputs = [(rng.integers(0, 2, size=2), rng.integers(1, 1500, size=2), rng.integers(1, 900, size=2)) for _ in range(200)]

    def run(s, steps):
        for i in steps:
            s.advance_to(i * 0.02)
            instance, prompt, output = inputs[i]
            s.dispatch([0, 1], i, instance, prompt, output, i * 0.02)

    run(sim, range(100))
    twin = copy.deepcopy(sim) if how == "deepcopy" else pickle.loads(pickle.dumps(sim))
    for s in (sim, twin):
        run(s, range(100, 200))
        s.advance_to(30.0)
    assert sim.completions()[0].sum() > 50
    for name in ("status", "generated_tokens", "completion_s", "first_token_s"):
        np.testing.assert_array_equal(getattr(twin.records(), name), getattr(sim.records(), name), err_msg=name)
    for a, b in zip(twin.predicted_decode_sets() + twin.decode_totals() + twin.completions(),
                    sim.predicted_decode_sets() + sim.decode_totals() + sim.completions()):
        np.testing.assert_array_equal(a, b)
    for b in range(2):
        assert twin.cluster_counters(b) == sim.cluster_counters(b)
    np.testing.assert_array_equal(twin.iterations, sim.iterations)
    assert sim.iterations.sum() > 0


def test_one_clusters_records_are_its_row_of_all_records():
    rng = np.random.default_rng(2)
    sim = ClusterSimulator(ClusterConfig(["llama2-7b-v100"] * 2), 3, 50)
    for i in range(50):
        sim.advance_to(i * 0.05)
        sim.dispatch([0, 1, 2], i, rng.integers(0, 2, size=3), rng.integers(1, 900, size=3),
                     rng.integers(1, 300, size=3), i * 0.05)
    everything = sim.records()
    assert ((everything.status == 2).sum(axis=1) > 0).all()  # running requests (generated = GEN0 + clock)
    for b in range(3):
        one = sim.records(b)
        for name, value in vars(one).items():
            np.testing.assert_array_equal(value, getattr(everything, name)[b], err_msg=name)
    with pytest.raises(ValueError, match="cluster must be an integer in 0..2"):
        sim.records(3)


def test_prediction_errors_name_the_problem():
    cfg = ClusterConfig(["llama2-7b-v100"] * 2)
    plain = ClusterSimulator(cfg, 1, 10)
    with pytest.raises(ValueError, match="make it with prediction_classes"):
        plain.predicted_decode_sets()
    with pytest.raises(ValueError, match="make it with prediction_classes"):
        plain.set_predictions(0, [0], [1.0])
    with pytest.raises(ValueError, match="prediction_classes must be a positive integer"):
        ClusterSimulator(cfg, 1, 10, prediction_classes=0)
    sim = ClusterSimulator(cfg, 2, 10, prediction_classes=3)
    with pytest.raises(ValueError, match="cluster in 0..1"):
        sim.set_predictions(2, [0], [1.0])
    with pytest.raises(ValueError, match="two equal 1-D arrays"):
        sim.set_predictions(0, [0, 1], [1.0])
    with pytest.raises(ValueError, match="at most 10 entries"):
        sim.set_predictions(0, [0] * 11, [1.0] * 11)
    with pytest.raises(ValueError, match="integers in 0..2"):
        sim.set_predictions(0, [3], [1.0])
    with pytest.raises(ValueError, match="integers in 0..2"):
        sim.set_predictions(0, [0.5], [1.0])
    with pytest.raises(ValueError, match="must be finite"):
        sim.set_predictions(0, [0], [np.nan])
    sim.dispatch(0, 0, 0, 10, 10, 0.0)
    with pytest.raises(ValueError, match="before the requests are dispatched"):
        sim.set_predictions(0, [0], [5.0])
    sim.set_predictions(1, [2, 1], [5.0, 7.5])  # another cluster is fine
