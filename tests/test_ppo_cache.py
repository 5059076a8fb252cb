"""The shipped cache-aware agent (models/ppo-cache, docs/cache-learning.md): it reads the rich
observation's layout 2 and has learned the affinity / load trade-off that cache-aware routers hand-code
(SGLang's balance thresholds, llm-d's weighted scorers): with loads equal it sends the request to the
instance holding its prefix, and it stops doing so when that instance has a backlog to prefill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.learned import LearnedRouter, describe_model
from llm_routing_env.core import EnvConfig
from tests.test_baselines import make_view

MODEL = Path(__file__).resolve().parents[1] / "models" / "ppo-cache.zip"
N = 4


@pytest.fixture(scope="module")
def router():
    r = LearnedRouter(describe_model(str(MODEL)))
    r.prepare(EnvConfig.from_kwargs("multiturn-chat", mode="arrival", obs="rich"))
    r.reset(1, 0)
    return r


def view(**kw):
    """Four equal idle instances and a 2,000-token prompt of 125 full prefix blocks."""
    base = dict(N=N, head_prompt_tokens=2000, head_prefix_blocks=np.array([125]),
                kv_capacity_blocks=np.full(N, 20_000), kv_blocks_free=20_000)
    return make_view(**{**base, **kw})


def test_the_card_and_the_policy_use_layout_2(router):
    assert router.info.card["obs_layout"] == 2 and router.info.obs_layout == 2
    assert router.model.policy.mlp_extractor.instance_features == 14
    assert router.info.card["scenario"] == "multiturn-chat" and router.info.mode == "arrival"


@pytest.mark.parametrize("holder", range(N))
def test_with_equal_loads_it_routes_to_the_instance_holding_the_prefix(router, holder):
    hit = np.zeros((1, N), dtype=np.int64)
    hit[0, holder] = 120  # 1,920 of the 2,000 prompt tokens cached there
    assert router.act(view(head_prefix_hit_blocks=hit))[0] == holder


def test_a_backlog_on_the_holder_outweighs_the_hit(router):
    hit = np.array([[0, 0, 120, 0]])
    light = view(head_prefix_hit_blocks=hit, num_waiting=[0, 0, 2, 0], num_running=[10, 10, 12, 10],
                 pending_prefill_tokens=[0, 0, 1_000, 0])
    heavy = view(head_prefix_hit_blocks=hit, num_waiting=[0, 0, 40, 0], num_running=[10, 10, 50, 10],
                 pending_prefill_tokens=[0, 0, 20_000, 0])
    assert router.act(light)[0] == 2
    assert router.act(heavy)[0] != 2
