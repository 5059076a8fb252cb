"""Seed streams (llm_routing_env/seeds.py): training, validation and evaluation never share an env seed."""

from __future__ import annotations

import numpy as np
import pytest

from llm_routing_env.core import EnvConfig, RoutingCore
from llm_routing_env.seeds import EVALUATION, STREAMS, TRAINING, VALIDATION, card_seed_overlap, seeds_record


def test_streams_are_disjoint_and_env_seeds_stay_inside_theirs():
    ranges = sorted((s.env_seed_range for s in STREAMS), key=lambda r: r.start)
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:]))
    assert EVALUATION.env_seeds(4, 3) == range(4, 7)  # evaluate.py --seed 4: env seeds 4, 5, 6 as before
    assert TRAINING.env_seeds(0, 4) == range(2 * 2**32, 2 * 2**32 + 4)
    for stream in STREAMS:
        last = stream.env_seeds(stream.size - 1, 1)
        assert last[0] == stream.env_seed_range[-1]
        with pytest.raises(ValueError, match=f"past the end of the {stream.name} stream"):
            stream.env_seeds(stream.size - 1, 2)
    with pytest.raises(ValueError, match="training seed must be a non-negative integer, got -1"):
        TRAINING.env_seeds(-1, 1)
    with pytest.raises(ValueError, match="must be an integer"):
        VALIDATION.env_seeds(1.5, 1)
    with pytest.raises(ValueError, match="episode count must be a positive integer"):
        EVALUATION.env_seeds(0, 0)
    assert EVALUATION.env_seeds(np.int64(2), 1) == range(2, 3)


def test_streams_give_different_workloads():
    cfg = EnvConfig.from_kwargs("paper-v100", num_requests=20)
    core = RoutingCore(cfg, num_envs=3)
    core.reset(seeds=[EVALUATION.env_seeds(0, 1)[0], VALIDATION.env_seeds(0, 1)[0], TRAINING.env_seeds(0, 1)[0]])
    prompts = [tuple(core.prompt[b, :20]) for b in range(3)]
    assert len(set(prompts)) == 3


def test_card_seed_overlap():
    record = {"training": seeds_record(TRAINING, 0, 4), "validation": seeds_record(VALIDATION, 0, 4)}
    assert record["training"]["env_seeds"] == [2 * 2**32, 2 * 2**32 + 4]
    assert card_seed_overlap({"seeds": record}, EVALUATION.env_seeds(0, 20)) == \
        {"known": True, "overlap": False, "message": ""}
    # validation seeds among the evaluated ones (a model selected on them) count too
    check = card_seed_overlap({"seeds": record}, range(2**32 + 2, 2**32 + 10), "m.zip")
    assert check["overlap"] and "2 of its validation env seeds" in check["message"]
    unknown = card_seed_overlap({}, EVALUATION.env_seeds(0, 20), "old.zip")
    assert unknown["known"] is False and unknown["overlap"] is None and "training seeds unknown" in unknown["message"]
    with pytest.raises(ValueError, match="with a 'training' entry"):
        card_seed_overlap({"seeds": {"validation": record["validation"]}}, range(0, 1))
    with pytest.raises(ValueError, match=r"0 <= first < stop"):
        card_seed_overlap({"seeds": {"training": {"env_seeds": [5, 5]}}}, range(0, 1))
