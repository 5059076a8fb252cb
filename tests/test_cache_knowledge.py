"""What a router knows about the instances' prefix caches (``cache_knowledge``): hand-computed
cases of ``head_prefix_hit_blocks`` and ``prefix_cached_blocks`` under each option, the KV events
seen only once their iteration has finished (both simulators), the approximate index's LRU, the
other RouterView fields, and errors for bad values.

The profile's iteration takes ``10 ms + 1 ms per batched token``: a lone prefill of ``x`` tokens
lasts ``10 + x`` ms.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_routing_env.cluster import ClusterConfig, SchedulerConfig
from llm_routing_env.config import EnvConfig
from llm_routing_env.core import RoutingCore
from llm_routing_env.prefix_index import hit_blocks, new_index, record_dispatch
from llm_routing_env.profiles import LatencyProfile
from llm_routing_env.scenarios import Scenario
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator
from llm_routing_env.view import RouterView

SIMS = (ReferenceSimulator, ClusterSimulator)


def profile(kv_capacity_blocks=6, max_model_len=96) -> LatencyProfile:
    return LatencyProfile(
        name="knowledge-simple", c0_ms=10.0, c1_ms_per_token=1.0, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
        c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0, c5_ms_per_decode_context_token=0.0,
        kv_capacity_blocks=kv_capacity_blocks, max_model_len=max_model_len,
    )


@pytest.mark.parametrize("sim_cls", SIMS)
def test_kv_events_are_seen_when_their_iteration_ends(sim_cls):
    """A's prefill (40 tokens, blocks 7 and 7-8) runs 0-50 ms and registers both blocks; D's
    (80 tokens) runs 50-140 ms and its 5 new blocks evict 7-8 (6-block pool, A's 3 blocks free,
    7-8 freed first). The router sees each change once the iteration that made it has ended."""
    sim = sim_cls(ClusterConfig([profile()], SchedulerConfig(scheduler="vllm-v1"), cache_knowledge="exact"), 1, 8)
    probe = [[7, 8]]
    sim.dispatch(0, 0, 0, 40, 1, 0.0, prefix_blocks=[[7, 8]])
    sim.advance_to(0.025)  # A's iteration in flight: its registrations are not seen yet
    assert sim.seen_prefix_hits(probe).tolist() == [[0]] and sim.prefix_cached_blocks().tolist() == [[0]]
    sim.advance_to(0.050)  # it has ended
    assert sim.seen_prefix_hits(probe).tolist() == [[2]] and sim.prefix_cached_blocks().tolist() == [[2]]
    sim.dispatch(0, 1, 0, 80, 1, 0.050)
    sim.advance_to(0.100)  # D's iteration evicted 7-8 when scheduled; in flight, not seen
    assert sim.seen_prefix_hits(probe).tolist() == [[2]] and sim.prefix_cached_blocks().tolist() == [[2]]
    sim.advance_to(0.140)
    assert sim.seen_prefix_hits(probe).tolist() == [[1]] and sim.prefix_cached_blocks().tolist() == [[1]]
    assert sim.seen_prefix_hits([[9, 8]]).tolist() == [[0]] and sim.seen_prefix_hits([None]).tolist() == [[0]]


@pytest.mark.parametrize("sim_cls", SIMS)
@pytest.mark.parametrize("knowledge", ["approximate", "polled"])
def test_kv_event_keys_only_with_exact_knowledge(sim_cls, knowledge):
    sim = sim_cls(ClusterConfig([profile()], SchedulerConfig(scheduler="vllm-v1"), cache_knowledge=knowledge), 1, 8)
    sim.dispatch(0, 0, 0, 40, 1, 0.0, prefix_blocks=[[7, 8]])
    sim.run_until_idle()
    assert sim.prefix_cached_blocks().tolist() == [[2]]  # the usage metric under every option
    with pytest.raises(ValueError, match="cache_knowledge='exact'"):
        sim.seen_prefix_hits([[7, 8]])


def _core(tmp_path, knowledge, rows, **scenario):
    """A RoutingCore replaying ``rows`` (arrival_s, prompt, output, prefix ids, session) on 2
    instances of the simple profile under vLLM v1, in arrival mode, oracle predictor."""
    lines = ["arrival_s,prompt_tokens,output_tokens,prefix_blocks,session_id"]
    lines += [f"{a},{p},{o},{ids},{s}" for a, p, o, ids, s in rows]
    path, train = tmp_path / "trace.csv", tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,30,2\n0.5,50,3\n", encoding="utf-8")
    s = Scenario("knowledge", instances=(profile(),) * 2, scheduler="vllm-v1", mix=None, trace=str(path),
                 num_requests=len(rows), predictor_train_trace=str(train), cache_knowledge=knowledge, **scenario)
    core = RoutingCore(EnvConfig(scenario=s, mode="arrival", predictor="oracle"))
    core.reset(seeds=[0])
    assert core.n_req.tolist() == [len(rows)]  # (none refused for its length)
    return core


# A (0 s, 40 tokens, 7 8) and D (0.05 s, 80 tokens, no prefix) go to instance 0: D's blocks evict
# 7-8 there (see the simulator test above); E (1 s, 40 tokens, 7 8, session 3) is the head then.
EVICTING = [(0.0, 40, 1, "7 8", -1), (0.05, 80, 1, "", -1), (1.0, 40, 1, "7 8", 3)]


@pytest.mark.parametrize("knowledge, hits", [("approximate", [2, 0]), ("exact", [1, 0]), ("polled", [0, 0])])
def test_approximate_never_reads_the_true_cache(tmp_path, knowledge, hits):
    """The true cache of instance 0 evicted 7-8; the router's own history still claims both
    blocks, the KV events show the eviction, polled metrics show no prefix at all."""
    core = _core(tmp_path, knowledge, EVICTING)
    core.step(np.array([0]))
    core.step(np.array([0]))
    view = core.view()
    assert view.time_s.tolist() == [1.0] and view.head_request.tolist() == [2]
    assert view.head_prefix_hit_blocks.tolist() == [hits]
    assert view.prefix_cached_blocks.tolist() == [[1, 0]]  # the usage metric, under every option
    assert view.head_prefix_blocks.tolist() == [2] and view.head_session.tolist() == [3]
    assert view.head_prefix_ids(0).tolist() == [7, 8]


def test_approximate_hits_by_hand(tmp_path):
    """The index holds what was routed where; a hit is a leading run, capped at (prompt - 1) // 16."""
    rows = [(0.0, 80, 1, "1 2 3 4", 0), (0.1, 80, 1, "1 2 3 5", 1), (0.2, 48, 1, "1 2 9", -1),
            (0.3, 64, 1, "1 2 3 4", 0), (0.4, 20, 1, "", -1)]
    core = _core(tmp_path, "approximate", rows)
    seen = []
    for action in (0, 1, 0, 1, 0):
        v = core.view()
        seen.append((v.head_prefix_hit_blocks[0].tolist(), int(v.head_prefix_blocks[0]), int(v.head_session[0])))
        core.step(np.array([action]))
    assert seen == [([0, 0], 4, 0),   # nothing routed yet
                    ([3, 0], 4, 1),   # 1 2 3 on instance 0, then 5 differs
                    ([2, 2], 3, -1),  # 1 2 on both; 9 nowhere; the cap (48 - 1) // 16 = 2
                    ([3, 3], 4, 0),   # all 4 on instance 0, 1 2 3 on 1; the cap (64 - 1) // 16 = 3
                    ([0, 0], 0, -1)]  # no prefix


def test_the_index_forgets_least_recently_routed_blocks(tmp_path):
    """Capacity 4 blocks per instance: r0 (1 2 3 4) then r1 (7 8) on instance 0 overflow by 2; the
    least recently routed go, r0's tail first (a dispatch's leading blocks are its most recent)."""
    rows = [(0.0, 80, 1, "1 2 3 4", -1), (0.1, 80, 1, "7 8", -1), (0.2, 80, 1, "1 2 3 4", -1)]
    core = _core(tmp_path, "approximate", rows, prefix_index_capacity_blocks=4)
    core.step(np.array([0]))
    core.step(np.array([0]))
    assert core.view().head_prefix_hit_blocks.tolist() == [[2, 0]]


def test_index_functions_by_hand():
    index = new_index([(1, 2, 3), (1, 2), (5,)], np.array([3, 10]))
    assert hit_blocks(index, 1).tolist() == [0, 0]
    record_dispatch(index, 0, 0)
    assert hit_blocks(index, 1).tolist() == [2, 0] and index.size.tolist() == [3, 0]
    record_dispatch(index, 2, 0)  # 4 > 3 blocks: 1-2-3 (the tail of the older chain) goes
    assert hit_blocks(index, 0).tolist() == [2, 0] and index.size.tolist() == [3, 0]
    record_dispatch(index, 1, 0)  # refreshes 1 and 1-2: 5 is now the least recent
    record_dispatch(index, 0, 0)  # 1-2-3 back: 5 goes
    assert hit_blocks(index, 0).tolist() == [3, 0] and hit_blocks(index, 2).tolist() == [0, 0]


def test_router_view_takes_the_new_fields_as_keywords():
    v = RouterView(head_prefix_blocks=np.array([2]), head_prefix_hit_blocks=np.array([[1, 0]]),
                   head_session=np.array([-1]), prefix_cached_blocks=np.array([[5, 0]]),
                   head_prefix_ids=[np.array([4, 5])])
    assert v.head_prefix_ids(0).tolist() == [4, 5] and v.head_prefix_hit_blocks.tolist() == [[1, 0]]
    assert v.prefix_cached_blocks.tolist() == [[5, 0]]


@pytest.mark.parametrize("bad", ["Exact", "", None, 3])
def test_bad_cache_knowledge_is_named(bad):
    with pytest.raises(ValueError, match="cache_knowledge must be one of approximate, exact, polled"):
        ClusterConfig([profile()], cache_knowledge=bad)
    with pytest.raises(ValueError, match="cache_knowledge"):
        EnvConfig.from_kwargs("paper-v100", cache_knowledge=bad if bad is not None else "none")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_index_capacity_is_named(bad):
    with pytest.raises(ValueError, match="prefix_index_capacity_blocks must be a positive integer"):
        ClusterConfig([profile()], prefix_index_capacity_blocks=bad)


def test_scenario_files_and_gym_make_take_cache_knowledge(tmp_path):
    import gymnasium as gym

    from llm_routing_env.scenarios import load_scenario

    path = tmp_path / "s.toml"
    path.write_text('[cluster]\nprofile = "llama2-7b-a100"\nscheduler = "vllm-v1"\ncache_knowledge = "exact"\n'
                    'prefix_index_capacity_blocks = 100\n[workload]\nmix = "paper-mix"\nrate_per_s = 5\n')
    s = load_scenario(path)
    assert (s.cache_knowledge, s.cluster_config().cache_knowledge) == ("exact", "exact")
    assert s.cluster_config().prefix_index_capacity_blocks == 100
    path.write_text('[cluster]\ncache_knowledge = "psychic"\n[workload]\nmix = "paper-mix"\nrate_per_s = 5\n')
    with pytest.raises(ValueError, match="cache_knowledge must be one of"):
        load_scenario(path)
    env = gym.make("llm_routing_env/LLMRouting-v0", scenario="paper-v100", cache_knowledge="polled")
    assert env.unwrapped.core.cache_knowledge == "polled"
    env.close()


# --------------------------------------------------------------------------------------------
# The rich observation's cache features and its layout versions
# --------------------------------------------------------------------------------------------

def test_rich_layout_2_adds_the_cache_features_by_hand(tmp_path):
    """At E's decision (the eviction case, approximate): instance 0 holds 2 of E's blocks in the
    router's index (2 x 16 / 40 = 0.8 matched) and 1 cached block of 6 (usage 1/6); instance 1
    nothing. Layout 2's rows are layout 1's rows plus these two columns."""
    from llm_routing_env.observations import RICH_GLOBAL_FEATURES, encode, observation_size

    core = _core(tmp_path, "approximate", EVICTING)
    core.step(np.array([0]))
    core.step(np.array([0]))
    view = core.view()
    new, old = encode("rich", view, 96, layout=2), encode("rich", view, 96, layout=1)
    assert new.shape == (1, observation_size("rich", 2)) == (1, RICH_GLOBAL_FEATURES + 2 * 14)
    assert old.shape == (1, observation_size("rich", 2, layout=1)) == (1, RICH_GLOBAL_FEATURES + 2 * 12)
    rows_new = new[0, RICH_GLOBAL_FEATURES:].reshape(2, 14)
    rows_old = old[0, RICH_GLOBAL_FEATURES:].reshape(2, 12)
    assert np.array_equal(new[0, :RICH_GLOBAL_FEATURES], old[0, :RICH_GLOBAL_FEATURES])
    assert np.array_equal(rows_new[:, :12], rows_old)
    assert rows_new[:, 12:].tolist() == [[np.float32(0.8), np.float32(1 / 6)], [0.0, 0.0]]


def test_env_builds_the_layout_it_is_given():
    import gymnasium as gym

    for layout, size in ((1, 8 + 12 * 4), (2, 8 + 14 * 4)):
        env = gym.make("llm_routing_env/LLMRouting-v0", scenario="paper-v100", obs="rich", obs_layout=layout)
        obs, _ = env.reset(seed=0)
        assert obs.shape == env.observation_space.shape == (size,)
        env.close()
    with pytest.raises(ValueError, match="obs_layout must be one of 1, 2"):
        EnvConfig.from_kwargs("paper-v100", obs="rich", obs_layout=3)


def test_a_card_without_obs_layout_means_layout_1():
    """The shipped ppo-agnostic was trained on layout 1: its card has no obs_layout, it loads with
    12-feature rows and acts on layout-1 observations (its evaluation is unchanged, README)."""
    from pathlib import Path

    from agents.learned import LearnedRouter, describe_model

    path = Path(__file__).resolve().parents[1] / "models" / "ppo-agnostic.zip"
    info = describe_model(str(path))
    assert "obs_layout" not in info.card and info.obs_layout == 1 and info.num_instances == 16
    router = LearnedRouter(info)
    assert router.model.policy.mlp_extractor.instance_features == 12
