"""The cache-aware baselines of agents/baselines.py (issue #13 §4): each one's decision rule, pinned
on hand-built router views, including the load gate that keeps prefix affinity from herding."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import CHWBLRouter, _hash64, make_router
from llm_routing_env.view import RouterView
from tests.test_baselines import make_view

CACHE_ROUTERS = ["cache-aware", "prefix-load", "kv-router", "chwbl", "session-affinity"]


def cache_view(N=4, B=1, prompt=160, hit=0, sessions=-1, prefix_ids=None, **kw) -> RouterView:
    """make_view (an empty V100 cluster) with the head request's prefix as the router believes each
    instance holds it: ``hit`` (N,) or (B, N) blocks, ``sessions`` (B,), ``prefix_ids`` one id list
    per env (default: the prompt's full blocks numbered 0, 1, ...)."""
    prompt = np.broadcast_to(np.asarray(prompt, dtype=np.int64), (B,)).copy()
    ids = prefix_ids if prefix_ids is not None else [list(range(int(p) // 16)) for p in prompt]
    fields = dict(
        head_prefix_blocks=np.array([len(x) for x in ids], dtype=np.int64),
        head_prefix_hit_blocks=np.broadcast_to(np.asarray(hit, dtype=np.int64), (B, N)).copy(),
        head_session=np.broadcast_to(np.asarray(sessions, dtype=np.int64), (B,)).copy(),
        head_prefix_ids=[np.asarray(x, dtype=np.int64) for x in ids],
        prefix_cached_blocks=np.zeros((B, N), dtype=np.int64))
    return make_view(N, B, head_prompt_tokens=prompt, **fields, **kw)


def decide(name, view, seed=0):
    r = make_router(name)
    r.reset(view.num_running.shape[0], seed)
    return r.act(view)


# ------------------------------------------------------------------------------- cache-aware (SGLang)
def test_cache_aware_follows_a_match_above_the_threshold_while_the_load_is_balanced():
    # 160-token prompt: 5 blocks held by instance 0 = 80/160 = 0.5 > 0.3, though 0 is the busiest
    view = cache_view(hit=[5, 0, 0, 0], num_running=[10, 0, 0, 0])
    assert decide("cache-aware", view)[0] == 0
    # exactly at the threshold (3 blocks = 48/160 = 0.3): not strictly above, a miss -> least loaded
    view = cache_view(hit=[3, 0, 0, 0], num_running=[10, 2, 0, 3])
    assert decide("cache-aware", view)[0] == 2
    # the longest match wins among several holders
    view = cache_view(hit=[4, 7, 0, 5])
    assert decide("cache-aware", view)[0] == 1


def test_cache_aware_load_gate_needs_both_thresholds():
    full = [10, 0, 0, 0]  # instance 0 holds the whole prompt (capped at 9 of 10 blocks: 0.9)
    # max - min = 65 > 64 and 70 > 1.5 x 5: imbalanced -> the least loaded, match ignored
    view = cache_view(hit=full, num_running=[70, 5, 6, 7])
    assert decide("cache-aware", view)[0] == 1
    # max - min = 64: not above the absolute threshold -> the match
    view = cache_view(hit=full, num_running=[69, 5, 6, 7])
    assert decide("cache-aware", view)[0] == 0
    # max - min = 100 > 64 but 300 = 1.5 x 200, not above: balanced -> the match
    view = cache_view(hit=full, num_running=[300, 200, 200, 200])
    assert decide("cache-aware", view)[0] == 0
    # waiting requests count as load (in flight at the router)
    view = cache_view(hit=full, num_running=[40, 5, 6, 7], num_waiting=[30, 0, 0, 0])
    assert decide("cache-aware", view)[0] == 1


def test_cache_aware_misses_go_to_the_least_loaded_with_random_ties():
    view = cache_view(hit=0, num_running=[1, 0, 0, 1])
    picks = {int(decide("cache-aware", view, seed)[0]) for seed in range(40)}
    assert picks == {1, 2}


# ------------------------------------------------------------------------------- prefix-load (llm-d)
def test_prefix_load_scores_with_the_default_weights():
    # 320-token prompt: 20 full blocks; queues 4, 0, 2 -> queue scores 0, 1, 0.5; KV used 50 %, 0,
    # 25 % -> 0.5, 1, 0.75; matches 19, 0, 12 of 20 -> 0.95, 0, 0.6
    view = cache_view(N=3, prompt=320, hit=[19, 0, 12], num_waiting=[4, 0, 2], kv_blocks_used=[1000, 0, 500],
                      kv_capacity_blocks=np.full(3, 2000))
    r = make_router("prefix-load")
    valid = np.ones((1, 3), dtype=bool)
    expected = [2 * 0 + 2 * 0.5 + 3 * 0.95, 2 * 1 + 2 * 1 + 3 * 0, 2 * 0.5 + 2 * 0.75 + 3 * 0.6]
    assert r.scores(view, valid)[0] == pytest.approx(expected)
    assert decide("prefix-load", view)[0] == 2
    # equal queues: every queue score is 1
    view = cache_view(N=2, prompt=320, hit=[0, 0], num_waiting=[3, 3])
    assert r.scores(view, np.ones((1, 2), dtype=bool))[0] == pytest.approx([4.0, 4.0])


def test_prefix_load_queue_and_kv_terms_gate_the_affinity():
    # instance 0 holds the whole prompt; a long queue and a full cache there send the head to the cold idle one
    hot = dict(N=2, prompt=320, hit=[19, 0], kv_capacity_blocks=np.full(2, 1000))
    assert decide("prefix-load", cache_view(**hot, num_waiting=[10, 0], kv_blocks_used=[900, 0]))[0] == 1
    # a short queue and little KV in use: the prefix wins (2 x 0 + 2 x 0.9 + 3 x 0.95 > 4)
    assert decide("prefix-load", cache_view(**hot, num_waiting=[1, 0], kv_blocks_used=[100, 0]))[0] == 0


def test_prefix_load_caps_the_prompt_at_256_blocks():
    view = cache_view(N=2, prompt=8000, hit=[256, 128])  # 500 blocks, the scorer looks at 256
    s = make_router("prefix-load").scores(view, np.ones((1, 2), dtype=bool))[0]
    assert s == pytest.approx([4 + 3 * 1.0, 4 + 3 * 0.5])


# ------------------------------------------------------------------------------- kv-router (Dynamo)
def test_kv_router_cost_in_blocks():
    # 160-token prompt = 10 blocks. Instance 0 holds 8: prefill 2 + decode 20 + 10 = 32; instance 1: 10 + 15 + 10
    view = cache_view(N=2, hit=[8, 0], kv_blocks_used=[20, 15])
    r = make_router("kv-router")
    assert r.cost(view)[0] == pytest.approx([32.0, 35.0])
    assert decide("kv-router", view)[0] == 0
    # pending prefill work counts: 160 tokens still to prefill on instance 0 add 10 blocks
    view = cache_view(N=2, hit=[8, 0], kv_blocks_used=[20, 15], pending_prefill_tokens=[160, 0])
    assert r.cost(view)[0] == pytest.approx([42.0, 35.0]) and decide("kv-router", view)[0] == 1


def test_kv_router_load_gate_trades_cached_blocks_against_active_ones():
    # the 8 cached blocks are worth 8 active blocks: 7 more active blocks still favour the warm instance, 9 do not
    assert decide("kv-router", cache_view(N=2, hit=[8, 0], kv_blocks_used=[22, 15]))[0] == 0
    assert decide("kv-router", cache_view(N=2, hit=[8, 0], kv_blocks_used=[24, 15]))[0] == 1


# ------------------------------------------------------------------------------- chwbl (KubeAI)
def home_and_next(key: str, N: int) -> tuple[int, int]:
    """The first two instances a clockwise walk from ``key`` meets on the ring."""
    r = CHWBLRouter()
    hashes, walk = r.ring(N)
    pos = int(np.searchsorted(hashes, np.uint64(_hash64(key)))) % hashes.size
    return int(walk[pos, 0]), int(walk[pos, 1])


def test_chwbl_ring_has_256_virtual_nodes_per_instance_and_a_full_walk_from_each():
    hashes, walk = CHWBLRouter().ring(4)
    assert hashes.size == 4 * 256 and (np.diff(hashes.astype(np.float64)) >= 0).all()
    assert all(sorted(row) == [0, 1, 2, 3] for row in walk[::97])


def test_chwbl_admission_test_is_kubeai_s():
    # loads 3, 1, 0, 0: total 4, bound 1.25 x 5 / 4 = 1.5625, admissible iff load + 1 <= bound
    view = cache_view(num_running=[3, 1, 0, 0])
    assert CHWBLRouter().admissible(view)[0].tolist() == [False, False, True, True]
    assert CHWBLRouter().admissible(cache_view())[0].all()  # nothing in flight: all admissible


def test_chwbl_keys_sessions_and_prompt_starts():
    home, nxt = home_and_next("session:7", 4)
    # a session keeps its instance whatever its prompt
    for ids in ([1, 2, 3], [9, 9], []):
        assert decide("chwbl", cache_view(sessions=7, prefix_ids=[ids]))[0] == home
    # without a session: the first two prefix block ids are the key
    home_p, _ = home_and_next("prefix:5 6", 4)
    for ids in ([5, 6], [5, 6, 7, 8], [5, 6, 1]):
        assert decide("chwbl", cache_view(prefix_ids=[ids]))[0] == home_p
    home_r, _ = home_and_next("request:0", 4)  # no prefix ids: the request is its own key
    assert decide("chwbl", cache_view(prefix_ids=[[]]))[0] == home_r


def test_chwbl_bounded_load_moves_on_clockwise_and_falls_back_to_the_home():
    home, nxt = home_and_next("session:7", 4)
    loads = np.ones(4, dtype=np.int64)
    loads[home] = 4  # total 7: bound 1.25 x 8 / 4 = 2.5 -> the others (1 + 1 <= 2.5), not the home (5 > 2.5)
    assert decide("chwbl", cache_view(sessions=7, num_running=loads))[0] == nxt
    # below one request per instance on average no instance passes (1 > 1.25 x 3 / 4): the home takes it
    light = np.zeros(4, dtype=np.int64)
    light[nxt] = 2
    assert decide("chwbl", cache_view(sessions=7, num_running=light))[0] == home
    # only the home allowed: taken though over the bound (KubeAI's default endpoint)
    mask = np.zeros((1, 4), dtype=bool)
    mask[0, home] = True
    assert decide("chwbl", cache_view(sessions=7, num_running=loads, action_mask=mask))[0] == home


# ------------------------------------------------------------------------------- session-affinity
def test_session_affinity_sticks_without_a_gate_and_rebinds_when_its_instance_is_masked():
    r = make_router("session-affinity")
    r.reset(1, 0)
    assert r.act(cache_view(sessions=7, num_running=[3, 2, 0, 1]))[0] == 2  # new session: least loaded
    assert r.act(cache_view(sessions=7, num_running=[3, 2, 9, 1]))[0] == 2  # no load gate
    assert r.act(cache_view(sessions=8, num_running=[3, 2, 9, 1]))[0] == 3  # another session: least loaded
    masked = np.array([[True, True, False, True]])
    assert r.act(cache_view(sessions=7, num_running=[3, 0, 9, 1], action_mask=masked))[0] == 1  # rebinds
    assert r.act(cache_view(sessions=7, num_running=[3, 5, 0, 1]))[0] == 1
    # no session id: least loaded every time (lor)
    assert r.act(cache_view(sessions=-1, num_running=[3, 5, 0, 1]))[0] == 2


def test_session_affinity_state_is_per_env():
    r = make_router("session-affinity")
    r.reset(2, 0)
    first = r.act(cache_view(B=2, sessions=[7, 7], num_running=[[0, 1, 1, 1], [1, 1, 1, 0]]))
    assert first.tolist() == [0, 3]
    again = r.act(cache_view(B=2, sessions=[7, 7], num_running=[[5, 0, 0, 0], [0, 0, 0, 5]]))
    assert again.tolist() == [0, 3]


# ------------------------------------------------------------------------------- end to end
def test_cache_routers_keep_tenants_on_one_instance_end_to_end(tmp_path):
    """Five tenants in turn (request i: tenant i mod 5, its session), each prompt 20 shared blocks of its
    tenant + 3 blocks of its own + 5 tokens (373 tokens), 0.5 s apart on two idle A100s under vLLM v1:
    no queue ever forms, so no load gate closes. A router that keeps each tenant on one instance
    misses each tenant's 320 shared tokens once per episode (60 requests): hit rate
    (60 - 5) x 320 / (60 x 373); round-robin alternates instances, so every tenant (an odd cycle)
    misses once on each: (60 - 10) x 320 / (60 x 373). With ``polled`` knowledge the routers that
    read ``head_prefix_hit_blocks`` see no cache and lose the affinity; chwbl (keyed by session) and
    session-affinity keep it."""
    from agents import evaluation as E

    trace = tmp_path / "tenants.csv"
    with trace.open("w") as f:
        f.write("arrival_s,prompt_tokens,output_tokens,prefix_blocks,session_id\n")
        for i in range(100):
            ids = [(i % 5) * 1000 + j for j in range(20)] + [10**6 + 3 * i + k for k in range(3)]
            f.write(f"{0.5 * i:.3f},{16 * 23 + 5},20,{' '.join(map(str, ids))},{i % 5}\n")
    sticky, alternating = 55 * 320 / (60 * 373), 50 * 320 / (60 * 373)
    for knowledge in ("approximate", "exact", "polled"):
        scenario = E.build_scenario(None, trace=str(trace), instances=2, num_requests=60, scheduler="vllm-v1",
                                    profile="llama3.1-8b-a100", cache_knowledge=knowledge)
        results = {r["policy"]: r for r in E.evaluate(["rr", *CACHE_ROUTERS], scenario, episodes=1, seed=0)}
        assert all(r["completed"] == 60 and r["prefixes"] for r in results.values())
        assert results["rr"]["prefix_hit_rate"] == pytest.approx(alternating)
        for name in CACHE_ROUTERS:
            blind = knowledge == "polled" and name in ("cache-aware", "prefix-load", "kv-router")
            hit = results[name]["prefix_hit_rate"]
            assert hit < sticky - 1e-3 if blind else hit == pytest.approx(sticky), (knowledge, name)
