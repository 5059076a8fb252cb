"""The router view's per-instance fields against a slow, readable recomputation from every running
and waiting request (simulator.instance_requests joined with the predictor's outputs)."""

import numpy as np
import pytest

from llm_routing_env.config import EnvConfig
from llm_routing_env.core import RoutingCore
from llm_routing_env.profiles import iteration_time_ms


def view_from_every_request(core: RoutingCore) -> dict:
    """The fields as their definitions read, one request at a time."""
    B, N, K = core.B, core.N, core.K
    ir = core.sim.instance_requests()
    pred_bucket, pred_tokens = core.pred_bucket.ravel(), core.pred_tokens.ravel()
    counts = np.zeros((B * N, K), dtype=np.int64)
    to_first = np.full(B * N, np.inf)
    prefilling = ir["waiting_valid"].sum(axis=1)
    for row in range(B * N):
        for j in np.flatnonzero(ir["running_valid"][row]):
            q = ir["running_request"][row, j]
            if not ir["running_prefill_done"][row, j]:
                prefilling[row] += 1
                continue
            counts[row, pred_bucket[q]] += 1
            remaining = max(pred_tokens[q] - ir["running_generated"][row, j], 0.0)
            to_first[row] = min(to_first[row], max(remaining, 1.0))
    n_dec, context = core.sim.decode_totals()
    iteration_s = np.where(n_dec > 0, iteration_time_ms(core.coefficients.T[:, None, :], n_dec, 0, 0, context) / 1000, 0)
    earliest = np.where(n_dec > 0, np.where(n_dec > 0, to_first.reshape(B, N), 0.0) * iteration_s, 0.0)
    return {"decode_bucket_counts": counts.reshape(B, N, K), "earliest_completion_s": earliest,
            "num_prefilling": prefilling.reshape(B, N)}


@pytest.mark.parametrize("settings,to_first", [
    ({"scenario": "paper-v100"}, 0.0),
    ({"scenario": "paper-v100", "predictor": "noisy", "predictor_kwargs": {"accuracy": 0.5}}, 0.0),
    ({"scenario": "paper-a100-chunked", "predictor": "oracle"}, 0.0),
    ({"scenario": "mixed-fleet"}, 0.0),
    # most requests to the first instance: its KV cache runs out and requests are preempted
    ({"scenario": "paper-v100"}, 0.9),
    ({"scenario": "paper-v100", "chunked_prefill": True, "predictor": "noisy", "predictor_kwargs": {"accuracy": 0.5}},
     0.9),
    ({"scenario": "paper-v100", "scheduler": "vllm-v1", "predictor": "noisy", "predictor_kwargs": {"accuracy": 0.5}},
     0.9),
])
def test_view_fields_match_a_recomputation_from_every_request(settings, to_first):
    cfg = EnvConfig.from_kwargs(mode="tick", num_requests=300, **settings)
    core = RoutingCore(cfg, num_envs=3)
    core.reset(seeds=[1, 2, 3])
    rng = np.random.default_rng(0)
    checked = preempted = 0
    for step in range(3000):
        view = core.view()
        if step % 7 == 0:
            expected = view_from_every_request(core)
            for name, value in expected.items():
                np.testing.assert_array_equal(getattr(view, name), value, err_msg=name)
            checked += int((view.decode_bucket_counts.sum(axis=2) > 0).sum())
        instance = np.where(rng.random(core.B) < to_first, 0, rng.integers(0, core.N, size=core.B))
        _, terminated, _, _ = core.step(np.where(view.has_request, instance, core.N))
        if terminated.any():  # episodes restart; the summaries must follow the reset
            preempted += int(core.sim.records().preemptions[terminated].sum())
            core.reset(np.flatnonzero(terminated))
    assert checked > 500  # most checks saw busy instances
    if to_first:
        assert preempted > 50
