"""Synthetic multi-turn sessions (llm_routing_env/sessions.py): chaining of prefix blocks across
turns, shared prefixes, session ids, think times, steady-state rate, determinism, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llm_routing_env.sessions import SESSION_WORKLOADS, SessionWorkload, get_session_workload

TINY = SessionWorkload("tiny", "test", turns=(3, 3), message_tokens=(20, 20), answer_tokens=(10, 10),
                       think_time_median_s=5.0, think_time_sigma=0.0, shared_prefixes=2, shared_prefix_tokens=40,
                       zipf_exponent=0.0)


def _sessions(w):
    out = {}
    for i, s in enumerate(w.session_ids.tolist()):
        out.setdefault(s, []).append(i)
    return out


def test_hand_computed_session():
    """Shared prefix 40 tokens (2 full blocks, ids 2j and 2j+1), then per turn a 20-token message and
    a 10-token answer: prompts 60, 90, 120 tokens; turn k+1's blocks extend turn k's prompt blocks
    and the answer's full blocks (the block straddling old and new content is new)."""
    w = TINY.generate(n=300, rate_per_s=3.0, seed=4)
    whole = [ix for ix in _sessions(w).values() if len(ix) == 3]
    assert whole
    for ix in whole:
        a, b, c = (w.prefix_hashes[i].tolist() for i in ix)
        assert w.prompt_tokens[ix].tolist() == [60, 90, 120] and w.output_tokens[ix].tolist() == [10, 10, 10]
        assert np.allclose(np.diff(w.arrival_s[ix]), 5.0)  # sigma 0: every gap is the median
        j = a[0] // 2
        assert a[:2] == [2 * j, 2 * j + 1] and j in (0, 1)
        assert len(a) == 3 and len(b) == 5 and len(c) == 7  # 60 // 16, 90 // 16, 120 // 16
        # after turn 1: 60 + 10 = 70 tokens = 4 full blocks (the 4th holds answer tokens): turn 2 keeps them
        assert b[:3] == a and b[3] >= 4 and len(set(b[3:])) == 2
        # after turn 2: 90 + 10 = 100 tokens = 6 full blocks: b's 5 and one with answer tokens
        assert c[:5] == b and c[5] not in b and c[6] not in b
    # sessions never share blocks beyond their shared prefix
    firsts = {}
    for ix in _sessions(w).values():
        for i in ix:
            for blk in w.prefix_hashes[i][2:].tolist():
                firsts.setdefault(blk, set()).add(int(w.session_ids[i]))
    assert all(len(s) == 1 for s in firsts.values())


def test_without_history_every_turn_is_the_shared_prefix_plus_a_new_message():
    t = dataclasses.replace(TINY, history=False)
    w = t.generate(n=200, rate_per_s=3.0, seed=2)
    assert set(w.prompt_tokens.tolist()) == {60}
    for ix in _sessions(w).values():
        blocks = [w.prefix_hashes[i].tolist() for i in ix]
        assert all(b[:2] == blocks[0][:2] for b in blocks)
        assert len({b[2] for b in blocks}) == len(blocks)  # the third block holds a new message each turn


def test_seeded_and_bit_identical():
    for name, spec in SESSION_WORKLOADS.items():
        a, b = spec.generate(n=400, rate_per_s=10.0, seed=7), spec.generate(n=400, rate_per_s=10.0, seed=7)
        c = spec.generate(n=400, rate_per_s=10.0, seed=8)
        for field in ("arrival_s", "prompt_tokens", "output_tokens", "session_ids"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (name, field)
        assert all(np.array_equal(x, y) for x, y in zip(a.prefix_hashes, b.prefix_hashes))
        assert not np.array_equal(a.arrival_s, c.arrival_s)
        assert len(a) == 400 and a.prefix_block_tokens == 16


@pytest.mark.parametrize("name", list(SESSION_WORKLOADS))
def test_steady_state_rate_and_sharing(name):
    """Requests arrive at the asked rate from t = 0 on (sessions in progress: no ramp-up); chat and
    tenants share most blocks, no-sharing none."""
    w = get_session_workload(name).generate(n=4000, rate_per_s=16.0, seed=3)
    assert w.mean_rate_per_s == pytest.approx(16.0, rel=0.1)
    first, second = np.count_nonzero(w.arrival_s < w.arrival_s[-1] / 2), np.count_nonzero(w.arrival_s >= w.arrival_s[-1] / 2)
    assert first == pytest.approx(second, rel=0.15)
    share = w.repeated_prefix_fraction()
    if name == "no-sharing":
        assert share == 0.0 and len(set(w.session_ids.tolist())) == len(w)
    else:
        assert share > 0.5
    assert (w.prefix_hashes is not None) and all(h.size == p // 16 for h, p in zip(w.prefix_hashes, w.prompt_tokens))


def test_zipf_popularity_of_shared_prefixes():
    spec = dataclasses.replace(TINY, shared_prefixes=8, zipf_exponent=1.0, turns=(1, 1))
    w = spec.generate(n=8000, rate_per_s=10.0, seed=1)
    counts = np.bincount(np.array([h[0] // 2 for h in w.prefix_hashes]), minlength=8)
    expected = (1 / np.arange(1, 9)) / (1 / np.arange(1, 9)).sum()
    assert np.allclose(counts / counts.sum(), expected, atol=0.02)


def test_duration_horizon():
    w = TINY.generate(duration_s=30.0, rate_per_s=4.0, seed=1)
    assert w.arrival_s.max() < 30.0 and len(w) == pytest.approx(120, rel=0.3)


@pytest.mark.parametrize("changes, match", [
    (dict(turns=(0, 2)), r"turns must satisfy 1 <= low <= high"),
    (dict(turns=(3, 2)), r"turns must satisfy"),
    (dict(message_tokens=(5.0, 6)), r"message_tokens must be a \(low, high\) pair of integers"),
    (dict(think_time_median_s=0.0), r"think_time_median_s must be positive"),
    (dict(think_time_sigma=float("nan")), r"think_time_sigma must be a finite number >= 0"),
    (dict(shared_prefix_tokens=0), r"give both shared_prefixes and shared_prefix_tokens"),
    (dict(session_prefix_mean_tokens=100.0), r"give both session_prefix_mean_tokens and session_prefix_max_tokens"),
])
def test_bad_parameters_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **changes)


def test_bad_generate_arguments():
    with pytest.raises(ValueError, match="give a finite horizon"):
        TINY.generate(rate_per_s=1.0)
    with pytest.raises(ValueError, match="rate_per_s must be a positive finite number"):
        TINY.generate(n=5, rate_per_s=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        TINY.generate(n=0, rate_per_s=1.0)
    with pytest.raises(ValueError, match="unknown session workload 'x'; known: chat, tenants, no-sharing"):
        get_session_workload("x")
