"""Baseline routers (agents/baselines.py) and the learned-agent adapter (agents/learned.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from agents.baselines import ROUTERS, BucketRouter, Router, make_router, router_names
from llm_routing_env.config import EnvConfig
from llm_routing_env.core import RoutingCore
from llm_routing_env.view import ClairvoyantView, RouterView
from llm_routing_env.profiles import get_profile

K = 3
V100 = np.array(get_profile("llama2-7b-v100").coefficients, dtype=np.float64)
HEURISTICS = router_names(clairvoyant=False)
ALL = router_names()


def make_view(N=4, B=1, tick=False, clairvoyant=False, **kw) -> RouterView:
    """A hand-built view: an empty V100 cluster with one 100 + 100-token request to route. A
    clairvoyant one (for oracle-lwl) has the predicted lengths as the true ones."""

    def inst(value, dtype=np.float64):
        a = np.asarray(value, dtype=dtype)
        return np.broadcast_to(a, (B, N)).copy() if a.ndim <= 1 else a

    has = np.asarray(kw.pop("has_request", np.ones(B, dtype=bool)), dtype=bool).reshape(B)
    fields = dict(
        time_s=np.zeros(B), queue_len=has.astype(np.int64), has_request=has, head_request=np.where(has, 0, -1),
        head_prompt_tokens=np.full(B, 100), head_task=np.zeros(B, dtype=np.int64),
        head_pred_bucket=np.zeros(B, dtype=np.int64), head_pred_tokens=np.full(B, 100.0), head_wait_s=np.zeros(B),
        num_running=inst(0, np.int64), num_waiting=inst(0, np.int64), num_prefilling=inst(0, np.int64),
        kv_blocks_used=inst(0, np.int64), kv_blocks_free=inst(1958, np.int64),
        pending_prefill_tokens=inst(0, np.int64), decode_context_tokens=inst(0, np.int64),
        decode_bucket_counts=np.zeros((B, N, K)), pred_remaining_tokens=np.zeros((B, N, K)),
        decode_iteration_s=inst(0.0), earliest_completion_s=inst(0.0), busy_for_s=inst(0.0), impact=inst(1.0),
        kv_capacity_blocks=np.full(N, 1958), max_num_seqs=np.full(N, 128), prefill_s_per_token=np.full(N, 3.2e-4),
        coefficients=np.tile(V100, (N, 1)),
        # no prefixes, no sessions (tests/test_cache_baselines.py sets them)
        head_prefix_blocks=np.zeros(B, dtype=np.int64), head_session=np.full(B, -1, dtype=np.int64),
        head_prefix_hit_blocks=np.zeros((B, N), dtype=np.int64), prefix_cached_blocks=np.zeros((B, N), dtype=np.int64),
        head_prefix_ids=[np.zeros(0, dtype=np.int64)] * B)
    for name in ("num_running", "num_waiting", "kv_blocks_used", "kv_blocks_free", "pending_prefill_tokens",
                 "decode_context_tokens", "earliest_completion_s", "busy_for_s", "impact"):
        if name in kw:
            kw[name] = inst(kw[name], fields[name].dtype)
    for name in ("time_s", "queue_len", "head_prompt_tokens", "head_pred_bucket", "head_pred_tokens"):
        if name in kw:
            kw[name] = np.broadcast_to(np.asarray(kw[name]), (B,)).copy()
    if "pred_remaining" in kw:  # (N,) remaining decode tokens, all in bucket 0
        fields["pred_remaining_tokens"][:, :, 0] = kw.pop("pred_remaining")
    fields.update(kw)
    if "action_mask" not in kw:
        mask = np.ones((B, N + int(tick)), dtype=bool)
        if tick:
            mask[:, :N] = has[:, None]
        fields["action_mask"] = mask
    if clairvoyant:
        return ClairvoyantView(**fields, remaining_tokens=fields["pred_remaining_tokens"].sum(axis=2),
                               head_output_tokens=fields["head_pred_tokens"])
    return RouterView(**fields)


def tiny_config(mode="arrival", n=30, **kw) -> EnvConfig:
    return EnvConfig.from_kwargs("paper-v100", mode=mode, num_requests=n, **kw)


def run_episode(router: Router, cfg: EnvConfig, seed=0, B=2, check=None):
    """Run B episodes to completion with ``router``; ``check(view, actions)`` at every decision."""
    core = RoutingCore(cfg, num_envs=B)
    router.prepare(cfg)
    router.reset(B, seed)
    core.reset(seeds=[seed + i for i in range(B)])
    done = np.zeros(B, dtype=bool)
    while not done.all():
        envs = np.flatnonzero(~done)
        view = core.clairvoyant_view() if router.clairvoyant else core.view()
        actions = router.act(view)
        if check is not None:
            check(view, actions)
        _, te, tr, _ = core.step(actions[envs], envs=envs)
        done[envs] |= te | tr
    return core


# ------------------------------------------------------------------------------------- registry
def test_registry_and_attributes():
    assert set(ALL) >= {"random", "rr", "lor", "lor-waiting", "p2c", "lot", "least-kv", "lwl",
                        "max-capacity", "min-min", "impact", "bucket", "late-binding", "kv-admission",
                        "oracle-lwl", "oracle-lookahead"}
    for name in ALL:
        r = make_router(name)
        assert r.name == name and isinstance(r.source, str) and r.source
        # the routers that hold by design exist in tick mode only (arrival mode has no hold)
        assert set(r.modes) == ({"tick"} if name in ("late-binding", "kv-admission") else {"arrival", "tick"})
    assert [n for n in ALL if ROUTERS[n].holds] == ["max-capacity", "late-binding", "kv-admission"]
    assert router_names(clairvoyant=True) == ["oracle-lwl", "oracle-lookahead"]
    assert all(not ROUTERS[n].clairvoyant for n in HEURISTICS)
    with pytest.raises(ValueError, match="unknown router 'nope'"):
        make_router("nope")
    core = RoutingCore(tiny_config(n=5), num_envs=1)
    core.reset(seeds=[0])
    with pytest.raises(TypeError, match="clairvoyant: give it RoutingCore.clairvoyant_view"):
        make_router("oracle-lwl").act(core.view())


def test_the_router_view_holds_nothing_but_what_a_router_may_know():
    """No attribute of a RouterView leads to the core, the simulator or the workload's true
    lengths (today's and future requests' lengths stay in the core); a ClairvoyantView does."""
    from llm_routing_env.sim import ClusterSimulator

    cfg = tiny_config(n=20)
    core = RoutingCore(cfg, num_envs=1)
    core.reset(seeds=[1])
    for _ in range(5):
        core.step(np.array([0]))
    view = core.view()
    for name in RouterView.FIELDS:
        getattr(view, name)  # every field computed
    forbidden = (RoutingCore, ClusterSimulator)
    for name, value in vars(view).items():
        assert not isinstance(value, forbidden), name
        if isinstance(value, np.ndarray):
            assert not any(value is a or (value.base is not None and value.base is a)
                           for a in (core.output, core.arrival, core.prompt, core.sim.output)), name
    for name, query in vars(view._queries).items():  # only functions, no bound methods of the core
        assert not hasattr(query, "__self__"), name
    clairvoyant = core.clairvoyant_view()
    assert isinstance(clairvoyant, ClairvoyantView) and isinstance(clairvoyant.simulator, ClusterSimulator)


# ------------------------------------------------------------------- valid actions on real episodes
@pytest.mark.parametrize("mode", ["arrival", "tick"])
@pytest.mark.parametrize("name", ALL)
def test_valid_actions_on_episodes(name, mode):
    if mode not in ROUTERS[name].modes:
        with pytest.raises(ValueError, match=f"router '{name}' supports mode\\(s\\) tick, not 'arrival'"):
            make_router(name).prepare(tiny_config(mode, n=5))
        return
    cfg = tiny_config(mode, n=12 if name == "oracle-lookahead" else 30)
    N = cfg.num_instances

    def check(view, actions):
        assert actions.shape == (view.has_request.shape[0],) and actions.dtype == np.int64
        assert ((actions >= 0) & (actions < cfg.num_actions)).all()
        send = view.has_request & (actions < N)
        assert view.action_mask[np.flatnonzero(send), actions[send]].all()
        if mode == "tick":
            assert (actions[~view.has_request] == N).all()  # nothing to send: hold
            if not ROUTERS[name].holds:
                assert (actions[view.has_request] < N).all()  # the others never hold a request

    router = make_router(name)
    core = run_episode(router, cfg, check=check)
    for b in range(core.B):
        assert core.episode_metrics(b)["completed"] == core.n_req[b]
    if name == "oracle-lookahead":
        assert router.decisions == 24 and router.ms_per_decision > 0


@pytest.mark.parametrize("name", [n for n in ALL if n != "oracle-lookahead"])
@pytest.mark.parametrize("tick", [False, True])
def test_masks_are_respected(name, tick):
    if not tick and "arrival" not in ROUTERS[name].modes:
        return
    N, B = 4, 3
    mask = np.zeros((B, N + int(tick)), dtype=bool)
    mask[:, 2] = True
    mask[1, 0] = True  # env 1 may use 0 or 2
    if tick:
        mask[:, N] = True
    r = make_router(name)
    view = make_view(N, B, tick=tick, action_mask=mask, num_running=[[5, 0, 9, 0]] * B,
                     pred_remaining=[400, 0, 900, 0], impact=[0.9, 0.9, -0.9, 0.9], clairvoyant=r.clairvoyant)
    for _ in range(5):
        a = r.act(view)
        allowed = mask[np.arange(B), a]
        assert allowed.all(), (name, a)
        assert a[0] == 2 or (tick and a[0] == N)
        if not tick:
            assert a[0] == 2 and a[2] == 2


def test_tick_mode_holds_without_a_request():
    for name in [n for n in ALL if n != "oracle-lookahead"]:
        r = make_router(name)
        a = r.act(make_view(4, 2, tick=True, has_request=[False, True], clairvoyant=r.clairvoyant))
        assert a[0] == 4, name
        assert a[1] < 4 or ROUTERS[name].holds, name


# ------------------------------------------------------------------------ hand-built choices
def test_round_robin_order_and_mask_skip():
    r = make_router("rr")
    r.reset(1)
    view = make_view(4)
    assert [int(r.act(view)[0]) for _ in range(6)] == [0, 1, 2, 3, 0, 1]
    masked = make_view(4, action_mask=np.array([[True, True, False, True]]))
    assert [int(r.act(masked)[0]) for _ in range(4)] == [3, 0, 1, 3]  # 2 is skipped
    # no request: the counter does not move
    r.reset(1)
    r.act(make_view(4, tick=True, has_request=[False]))
    assert int(r.act(view)[0]) == 0


def test_rr_counters_are_per_env():
    r = make_router("rr")
    r.reset(2)
    v = make_view(3, 2, has_request=[True, False])
    r.act(v)
    r.act(v)
    a = r.act(make_view(3, 2))
    assert a.tolist() == [2, 0]


def test_lor_picks_least_loaded_with_random_ties():
    r = make_router("lor")
    r.reset(1, 0)
    view = make_view(4, num_running=[3, 1, 2, 5], num_waiting=[0, 2, 0, 0])  # outstanding 3, 3, 2, 5
    assert int(r.act(view)[0]) == 2
    tie = make_view(4, num_running=[1, 0, 1, 0], num_waiting=[0, 1, 0, 1])
    picks = {int(r.act(tie)[0]) for _ in range(60)}
    assert picks == {0, 1, 2, 3}


def test_lor_waiting_counts_waiting_only_lowest_index():
    r = make_router("lor-waiting")
    view = make_view(4, num_running=[100, 0, 0, 0], num_waiting=[0, 0, 3, 0])
    assert {int(r.act(view)[0]) for _ in range(10)} == {0}
    assert int(r.act(make_view(4, num_waiting=[2, 1, 1, 4]))[0]) == 1


def test_p2c_never_picks_the_more_loaded_of_its_pair():
    r = make_router("p2c")
    r.reset(1, 1)
    view = make_view(3, num_running=[0, 5, 10])
    picks = [int(r.act(view)[0]) for _ in range(200)]
    assert 2 not in picks  # the most loaded loses to whichever other instance is drawn
    assert set(picks) == {0, 1}
    assert 0.5 < np.mean(np.array(picks) == 0) < 0.85  # 0 wins 2 of 3 pairs


def test_token_routers_pick_fewest_tokens():
    # outstanding tokens: 500 + 0, 0 + 300, 200 + 200, 50 + 100 -> instance 3
    view = make_view(4, pending_prefill_tokens=[500, 0, 200, 50], pred_remaining=[0, 300, 200, 100],
                     num_running=[1, 1, 1, 1])
    assert int(make_router("lot").act(view)[0]) == 3


def test_least_kv():
    view = make_view(4, kv_blocks_used=[900, 100, 400, 1500], kv_blocks_free=[1058, 1858, 1558, 458])
    assert int(make_router("least-kv").act(view)[0]) == 1


def test_lwl_uses_time_and_profiles():
    view = make_view(4, num_running=[2, 2, 2, 2], pred_remaining=[4000, 900, 2500, 3000],
                     pending_prefill_tokens=[0, 2000, 0, 0])
    # 900 decode tokens + 2000 prompt tokens (~0.64 s) is still the least work
    assert int(make_router("lwl").act(view)[0]) == 1
    # identical backlogs, but instance 1 is twice as fast: LWL takes it, token counting cannot tell
    coeffs = np.tile(V100, (2, 1))
    coeffs[1, [0, 1, 2, 4, 5, 6]] /= 2
    het = make_view(2, num_running=[4, 4], pred_remaining=[2000, 2000], coefficients=coeffs,
                    prefill_s_per_token=np.array([3.2e-4, 1.6e-4]))
    assert int(make_router("lwl").act(het)[0]) == 1


def test_impact_picks_largest_r_mix():
    view = make_view(4, impact=[-0.5, 0.8, 0.2, 0.799])
    assert int(make_router("impact").act(view)[0]) == 1


def test_min_min_avoids_a_full_instance():
    # instance 0: full batch, first completion in 5 s; instance 1: idle
    view = make_view(2, num_running=[128, 0], decode_context_tokens=[40000, 0], earliest_completion_s=[5.0, 0.0])
    assert int(make_router("min-min").act(view)[0]) == 1
    # upper bound of the head's bucket: the open bucket is closed at max_model_len - prompt
    r = make_router("min-min")
    assert r.head_upper_bound(make_view(2, head_pred_bucket=[2], head_prompt_tokens=[96])).tolist() == [4000.0]
    assert r.head_upper_bound(make_view(2, head_pred_bucket=[0])).tolist() == [256.0]


def test_late_binding_holds_until_an_instance_has_nothing_waiting_and_kv_room():
    r = make_router("late-binding")
    r.reset(1, 0)
    # every instance has a request waiting: hold (action N = 4)
    assert r.act(make_view(tick=True, num_running=3, num_waiting=[1, 1, 2, 1], kv_blocks_free=1500))[0] == 4
    # nothing waiting; the 100-token prompt takes 7 blocks and 19 (1% watermark) + 195.8 (10% of
    # 1,958) must stay free after it: 221 free blocks leave 214 (hold), 222 leave 215 (send there)
    assert r.act(make_view(tick=True, num_running=5, kv_blocks_free=221))[0] == 4
    assert r.act(make_view(tick=True, num_running=5, kv_blocks_free=[221, 222, 221, 221]))[0] == 1
    # prompts already sent there count against the free KV (1,600 tokens = 100 blocks)
    assert r.act(make_view(tick=True, num_running=5, kv_blocks_free=[300, 222, 221, 221],
                           pending_prefill_tokens=[1600, 0, 0, 0]))[0] == 1
    # among the instances that may take it: the most free KV, never one with a request waiting
    assert r.act(make_view(tick=True, num_running=5, num_waiting=[0, 1, 0, 0],
                           kv_blocks_free=[500, 1900, 800, 700]))[0] == 2
    # a full batch is no room either
    assert r.act(make_view(tick=True, num_running=128, kv_blocks_free=1958))[0] == 4
    # an idle instance always takes it, even a prompt its headroom rule would refuse (94 of 100 blocks)
    tiny = dict(tick=True, kv_capacity_blocks=np.full(4, 100), kv_blocks_free=100, head_prompt_tokens=1500)
    assert r.act(make_view(num_running=[1, 0, 1, 1], **tiny))[0] == 1
    assert r.act(make_view(num_running=1, **tiny))[0] == 4


def test_kv_admission_sends_where_the_predicted_peak_fits_else_holds():
    r = make_router("kv-admission")
    r.reset(1, 0)
    # head: 100 prompt + 100 predicted = 13 blocks; capacity 1,958 - 19 watermark. Predicted peak =
    # used + pending prompts' blocks + predicted remaining / 16 + one partly filled block per request
    view = make_view(tick=True, num_running=2, kv_blocks_used=[1800, 1000, 1900, 1000],
                     kv_blocks_free=[158, 958, 58, 958], pred_remaining=[0, 16000, 0, 4800])
    # 1958-19-13 = 1926 minus peaks 1802, 2002, 1902, 1302
    np.testing.assert_array_equal(r.room_left_blocks(view), [[124, -76, 24, 624]])
    assert r.act(view)[0] == 3
    # nowhere fits: hold
    full = make_view(tick=True, num_running=2, kv_blocks_used=1000, kv_blocks_free=958, pred_remaining=16000)
    assert r.act(full)[0] == 4
    # exactly full at the predicted peak still fits (no preemption if the predictions hold)
    exact = make_view(tick=True, num_running=2, kv_blocks_used=[1926 - 2, 1000, 1000, 1000], kv_blocks_free=[34, 958, 958, 958],
                      pred_remaining=[0, 16000, 16000, 16000])
    assert r.room_left_blocks(exact)[0, 0] == 0 and r.act(exact)[0] == 0
    # the predicted output (not the true one, which the view does not hold) sizes the head
    assert r.act(make_view(tick=True, num_running=2, kv_blocks_used=[1900, 1800, 1900, 1900],
                           kv_blocks_free=[58, 158, 58, 58], head_pred_tokens=900))[0] == 1
    # a full batch does not fit; an idle instance takes a head that fits nowhere
    assert r.act(make_view(tick=True, num_running=128))[0] == 4
    tiny = dict(tick=True, kv_capacity_blocks=np.full(4, 100), kv_blocks_free=100, head_prompt_tokens=1500,
                head_pred_tokens=2000.0)
    assert r.act(make_view(num_running=[1, 1, 0, 1], **tiny))[0] == 2


@pytest.mark.parametrize("name", ["late-binding", "kv-admission"])
def test_holding_routers_hold_on_a_memory_bound_cluster_and_finish_every_request(name):
    cfg = tiny_config("tick", n=200, profile="llama2-7b-v100-16gb", rate_per_s=200.0)
    held = []

    def check(view, actions):
        held.append(int((view.has_request & (actions == cfg.num_instances)).sum()))

    core = run_episode(make_router(name), cfg, check=check)
    assert sum(held) > 0
    for b in range(core.B):
        m = core.episode_metrics(b)
        assert m["completed"] == core.n_req[b] and m["mean_router_wait_s"] > 0


def test_max_capacity_arrival_and_tick_windows():
    # arrival: the most available capacity that fits
    busy = dict(num_running=[100, 10, 60], kv_blocks_used=[1000, 1900, 100], kv_blocks_free=[958, 58, 1858])
    assert int(make_router("max-capacity").act(make_view(3, **busy))[0]) == 2
    # tick: the requests queued at a 1 s mark go out one per tick, later arrivals wait for the next mark
    r = make_router("max-capacity")
    r.reset(1)
    seq = [(0.00, 2), (0.02, 1), (0.04, 1), (0.50, 1), (1.00, 1), (1.02, 1)]
    got = [int(r.act(make_view(3, tick=True, time_s=[t], queue_len=[q]))[0]) for t, q in seq]
    assert [g < 3 for g in got] == [True, True, False, False, True, False]
    # a mark where the router queue was empty opens no window for later arrivals (skipped ticks)
    assert int(r.act(make_view(3, tick=True, time_s=[2.3], queue_len=[1]))[0]) == 3
    # nothing fits (no batch slot anywhere): hold until the next mark
    full = make_view(3, tick=True, time_s=[3.0], queue_len=[1], num_running=[128, 128, 128])
    assert int(r.act(full)[0]) == 3


def test_bucket_groups_and_routing():
    assert BucketRouter.group_sizes(np.array([346.0, 168.0, 0.0]), 4).tolist() == [3, 1, 0]
    assert BucketRouter.group_sizes(np.array([1.0, 1.0, 10.0]), 4).tolist() == [1, 1, 2]
    assert BucketRouter.group_sizes(np.array([0.0, 5.0, 0.0]), 4).tolist() == [0, 4, 0]
    r = make_router("bucket")
    r.reset(1, 0)
    short = dict(head_pred_bucket=[0], head_pred_tokens=[100.0])
    long = dict(head_pred_bucket=[1], head_pred_tokens=[600.0])
    assert int(r.act(make_view(4, **long))[0]) in range(4)  # the only class seen: all instances
    r.act(make_view(4, **short))
    # shares now 200 : 630 tokens -> short class gets instance 0, long class instances 1-3
    assert r.owners(0, 4).tolist() == [0, 1, 1, 1]
    assert {int(r.act(make_view(4, **long))[0]) for _ in range(20)} <= {1, 2, 3}


def test_oracles_are_flagged_and_read_true_lengths():
    """oracle-lwl's remaining work is the true remaining decode tokens of every request on each
    instance as a router sees them, checked against the readable reference simulator replaying the
    same dispatches (an independent implementation of what a router sees)."""
    from llm_routing_env.cluster import NOT_DISPATCHED
    from llm_routing_env.sim import ReferenceSimulator

    for name in ("oracle-lwl", "oracle-lookahead"):
        assert make_router(name).clairvoyant
    cfg = tiny_config(n=40)
    core = RoutingCore(cfg, num_envs=1)
    core.reset(seeds=[3])
    r = make_router("oracle-lwl")
    r.prepare(cfg)
    checked = 0
    for step in range(30):
        view = core.clairvoyant_view()
        if step % 5 == 4:
            remaining, head = r.remaining(view)
            rec = core.sim.records(0)
            ref = ReferenceSimulator(core.sim.config, 1, core.R)
            for rid in np.flatnonzero(rec.status != NOT_DISPATCHED):  # dispatched in id order
                ref.advance_to(rec.dispatch_s[rid])
                ref.dispatch(0, int(rid), int(rec.instance[rid]), int(rec.prompt_tokens[rid]),
                             int(rec.output_tokens[rid]), float(rec.arrival_s[rid]))
            ref.advance_to(core.t[0])
            expected = np.zeros(core.N)
            for n, inst in enumerate(ref.router_requests(0)):
                expected[n] = sum(rec.output_tokens[q] - g for q, g, _ in inst["running"])
                expected[n] += sum(rec.output_tokens[q] - rec.generated_tokens[q] for q in inst["waiting"])
            np.testing.assert_array_equal(remaining[0], expected)
            assert head[0] == (core.output[0, core.n_dispatched[0]] if view.has_request[0] else 0)
            checked += expected.sum() > 0
        core.step(r.act(view))
    assert checked >= 3


def test_random_routers_are_reproducible_per_env():
    cfg = tiny_config(n=20)
    a = run_episode(make_router("random"), cfg, seed=5, B=2).sim.records().instance
    b = run_episode(make_router("random"), cfg, seed=5, B=2).sim.records().instance
    assert np.array_equal(a, b)
    # env 1 of a batch of two behaves like env 0 of a batch of one with the same generator
    r = make_router("random")
    r.reset(2, [np.random.default_rng(1), np.random.default_rng(2)])
    s = make_router("random")
    s.reset(1, [np.random.default_rng(2)])
    v2, v1 = make_view(4, 2), make_view(4, 1)
    assert [int(r.act(v2)[1]) for _ in range(10)] == [int(s.act(v1)[0]) for _ in range(10)]


# --------------------------------------------------------------------------------- learned agents
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """DQN, PPO and MaskablePPO trained for 500 steps on a 4-instance arrival-mode scenario."""
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO

    from llm_routing_env.sb3 import make_sb3_vec_env

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models")
    venv = make_sb3_vec_env(num_envs=1, scenario="paper-v100", num_requests=30, mode="arrival", obs="paper")
    paths = {}
    for cls in (DQN, PPO, MaskablePPO):
        kw = dict(learning_starts=100, buffer_size=1000) if cls is DQN else dict(n_steps=128, batch_size=64, n_epochs=1)
        model = cls("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [16]}, **kw)
        model.learn(500)
        paths[cls.__name__] = out / f"{cls.__name__.lower()}.zip"
        model.save(paths[cls.__name__])
    return paths


def test_learned_adapter_detects_algo_and_acts(tiny_models):
    from agents.learned import LearnedRouter, describe_model

    cfg = tiny_config(n=20, obs="paper")
    for cls_name, algo in (("DQN", "dqn"), ("PPO", "ppo"), ("MaskablePPO", "maskable-ppo")):
        info = describe_model(tiny_models[cls_name])
        assert (info.algo, info.obs, info.mode, info.num_instances) == (algo, "paper", "arrival", 4)
        router = LearnedRouter(info)
        assert router.modes == ("arrival",) and not router.clairvoyant
        core = run_episode(router, cfg, B=2)
        assert all(core.episode_metrics(b)["completed"] == 20 for b in range(2))
        mask = np.zeros((1, 4), dtype=bool)
        mask[0, 1] = True
        assert int(router.act(make_view(4, action_mask=mask))[0]) == 1  # masked (or mapped) to the allowed one


def test_learned_adapter_errors(tiny_models, tmp_path):
    import json

    from agents.learned import LearnedRouter, ModelError, check_compatible, describe_model

    with pytest.raises(ModelError, match="no such model file"):
        describe_model(tmp_path / "missing.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="corrupt"):
        describe_model(bad)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelError, match="not a Stable-Baselines3 model"):
        describe_model(other)
    # truncated network weights: the zip reads, the network does not load
    src = zipfile.ZipFile(tiny_models["PPO"])
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        for item in src.namelist():
            z.writestr(item, src.read(item)[:20] if item == "policy.pth" else src.read(item))
    with pytest.raises(ModelError, match="does not load"):
        LearnedRouter(broken)
    # a garbled policy class entry in the zip's data: said so, not guessed around
    data = json.loads(src.read("data"))
    data["policy_class"][":serialized:"] = "gARjb3JydXB0"  # valid base64, a truncated pickle
    garbled = tmp_path / "garbled.zip"
    with zipfile.ZipFile(garbled, "w") as z:
        for item in src.namelist():
            z.writestr(item, json.dumps(data) if item == "data" else src.read(item))
    with pytest.raises(ModelError, match="policy class entry is not a readable pickle"):
        describe_model(garbled)
    info = describe_model(tiny_models["DQN"])
    with pytest.raises(ModelError, match="27 observation numbers.*8 instances"):
        check_compatible(info, 8)
    # the card names the mode / obs / instance count; a mismatch is an error too
    card_model = tmp_path / "carded.zip"
    card_model.write_bytes(tiny_models["MaskablePPO"].read_bytes())
    (tmp_path / "carded.json").write_text(json.dumps({"algo": "maskable-ppo", "obs": "rich", "mode": "arrival"}))
    with pytest.raises(ModelError, match="fit neither"):
        describe_model(card_model)
    (tmp_path / "carded.json").write_text(json.dumps({"algo": "maskable-ppo", "obs": "paper", "mode": "tick"}))
    with pytest.raises(ModelError, match="tick mode"):
        check_compatible(describe_model(card_model), 4)
    (tmp_path / "carded.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable model card"):
        describe_model(card_model)


def test_cluster_size_agnostic_model_runs_padded(tmp_path):
    """A shared-weight instance scorer trained on padded 2- and 3-instance clusters runs on 2 or 3."""
    import torch
    from sb3_contrib import MaskablePPO

    from agents.learned import LearnedRouter, ModelError, check_compatible, describe_model
    from agents.policies import MaskableInstanceScoringPolicy
    from llm_routing_env.sb3 import MixedClusterVecEnv, make_sb3_vec_env

    torch.set_num_threads(1)
    parts = [make_sb3_vec_env(num_envs=1, scenario="paper-v100", num_instances=n, num_requests=20, mode="tick",
                              obs="rich") for n in (2, 3)]
    model = MaskablePPO(MaskableInstanceScoringPolicy, MixedClusterVecEnv(parts), n_steps=64, batch_size=64,
                        n_epochs=1, policy_kwargs={"hidden": 8, "hold": True}, device="cpu", seed=0)
    model.learn(128)
    model.save(tmp_path / "agnostic.zip")
    info = describe_model(tmp_path / "agnostic.zip")  # no card: everything from the zip
    assert (info.algo, info.obs, info.mode, info.num_instances, info.shared_instance_weights) == \
        ("maskable-ppo", "rich", "tick", 3, True)
    assert check_compatible(info, 2) == ("tick", "rich")
    with pytest.raises(ModelError, match="at most 3 instances"):
        check_compatible(info, 4)
    router = LearnedRouter(info)
    for n in (2, 3):
        def check(view, actions, n=n):
            assert ((actions >= 0) & (actions <= n)).all()

        # (a step limit: the untrained policy may hold every request, which tick mode allows)
        run_episode(router, tiny_config("tick", n=15, obs="rich", num_instances=n, max_episode_steps=400), B=1,
                    check=check)
