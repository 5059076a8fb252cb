"""Workloads: the Workload container, the calibrated paper mix and the arrival processes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llm_routing_env import mixes as W
from llm_routing_env.workload import Workload
from llm_routing_env.arrivals import (
    ConstantArrivals,
    GammaArrivals,
    PoissonArrivals,
    interarrival_cv,
    make_arrivals,
    mean_rate,
)
from llm_routing_env.profiles import get_profile, iteration_time_ms

PROFILE = "llama2-7b-v100"
TOTAL_SAMPLES = 31329


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable")
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable")
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def draw():
    return W.sample_paper_mix(100_000, np.random.default_rng(2024))


# --- the paper mix ----------------------------------------------------------------------------


def test_table1_means_and_heavy_shares_on_100k_draws(draw):
    p, o, t = draw
    heavy = W.is_heavy_decode(p, o, PROFILE)
    for k, target in enumerate(W.PAPER_TABLE1):
        m = t == k
        assert m.mean() == pytest.approx(target.samples / TOTAL_SAMPLES, abs=0.01), target.name
        assert p[m].mean() == pytest.approx(target.mean_prompt, rel=0.03), target.name
        assert o[m].mean() == pytest.approx(target.mean_decode, rel=0.03), target.name
        assert abs(heavy[m].mean() - target.heavy_share) < 0.02, target.name
    # the Table 1 totals follow
    assert p.mean() == pytest.approx(89.03, rel=0.03)
    assert o.mean() == pytest.approx(175.71, rel=0.03)
    assert abs(heavy.mean() - 0.3554) < 0.02


def test_paper_mix_limits(draw):
    p, o, t = draw
    max_len = get_profile(PROFILE).max_model_len
    assert p.min() >= 1 and o.min() >= 1
    assert p.max() <= W.PAPER_MAX_PROMPT_TOKENS
    assert (p + o <= max_len).all()
    assert p.dtype == o.dtype == t.dtype == np.int64


def test_fit_table_hits_the_targets_exactly():
    rows = W.get_mix("paper-mix").fit_table()
    assert [r["task"] for r in rows] == [t.name for t in W.PAPER_TABLE1]
    for r in rows:
        assert r["mean_prompt"] == pytest.approx(r["target_mean_prompt"], rel=1e-7)
        assert r["mean_decode"] == pytest.approx(r["target_mean_decode"], rel=1e-7)
        assert r["heavy_share"] == pytest.approx(r["target_heavy_share"], abs=1e-7)
        assert r["light_mean_decode"] < r["threshold_tokens"][0] <= r["heavy_mean_decode"]


def test_translation_and_ner_outputs_grow_with_the_prompt(draw):
    p, o, t = draw
    names = W.get_mix().task_names
    books, wnut, eli5 = (names.index(n) for n in ("books-translation", "wnut-ner", "eli5-qna"))
    assert spearman(p[t == books], o[t == books]) > 0.5
    assert spearman(p[t == wnut], o[t == wnut]) > 0.15
    assert abs(spearman(p[t == eli5], o[t == eli5])) < 0.05  # open questions: no dependence


def test_decode_time_is_the_sum_of_lone_decode_iterations():
    prof = get_profile(PROFILE)
    for p, o in [(1, 1), (1, 2), (29, 62), (211, 340), (1000, 2000), (3000, 1096)]:
        brute = sum(iteration_time_ms(prof.coefficients, 1, 0, 0, p + g) for g in range(1, o)) / 1000.0
        assert W.single_decode_time_s(p, o, prof) == pytest.approx(brute, rel=1e-12, abs=1e-12)
    prompts = np.array([1, 30, 211, 999, 1000, 3000])
    T = W.heavy_decode_threshold(prompts, prof)
    assert (W.single_decode_time_s(prompts, T, prof) >= W.HEAVY_DECODE_S).all()
    assert (W.single_decode_time_s(prompts, T - 1, prof) < W.HEAVY_DECODE_S).all()
    assert (W.is_heavy_decode(prompts, T, prof)).all() and not W.is_heavy_decode(prompts, T - 1, prof).any()
    assert np.all(np.diff(T) <= 0)  # longer contexts decode slower: fewer tokens reach 5 s


def test_calibration_follows_the_profile():
    base = get_profile(PROFILE)
    slow = dataclasses.replace(base, name="test-slow-decode", c0_ms=2 * base.c0_ms)
    mix = W.get_mix("paper-mix", slow)
    assert mix is W.get_mix("paper-mix", slow)  # cached
    t_base = W.get_mix("paper-mix").fit_table()[0]["threshold_tokens"]
    rows = mix.fit_table()
    assert rows[0]["threshold_tokens"][1] < t_base[1]
    for r in rows:
        assert r["mean_decode"] == pytest.approx(r["target_mean_decode"], rel=1e-7)
        assert r["heavy_share"] == pytest.approx(r["target_heavy_share"], abs=1e-7)
    p, o, t = mix.sample(20_000, np.random.default_rng(0))
    heavy = W.is_heavy_decode(p, o, slow)
    for k, target in enumerate(W.PAPER_TABLE1):
        assert abs(heavy[t == k].mean() - target.heavy_share) < 0.03


def test_calibration_relaxes_or_fails_loudly():
    base = get_profile(PROFILE)
    # faster decode: IMDb's 41 % heavy at a mean of 142.5 tokens becomes infeasible
    fast = dataclasses.replace(base, name="test-fast-decode", c0_ms=0.8 * base.c0_ms)
    with pytest.warns(W.CalibrationWarning, match="imdb-sentiment"):
        mix = W.TaskMix("paper-mix", W.PAPER_TABLE1, W.PAPER_MIX_DESIGN, fast)
    imdb = mix.fit_table()[2]
    assert imdb["mean_decode"] == pytest.approx(142.53, rel=1e-7)
    assert imdb["heavy_share"] < 0.4101
    # a decode so fast that 5 s does not fit in the context at all
    absurd = dataclasses.replace(base, name="test-absurd", c0_ms=0.5, c1_ms_per_token=0.0,
                                 c5_ms_per_decode_context_token=0.0)
    with pytest.raises(W.CalibrationError, match="heavy-decode threshold"):
        W.TaskMix("paper-mix", W.PAPER_TABLE1, W.PAPER_MIX_DESIGN, absurd)


def test_sampling_is_reproducible_and_prefix_stable():
    a = W.sample_paper_mix(5000, np.random.default_rng(7))
    b = W.sample_paper_mix(5000, np.random.default_rng(7))
    c = W.sample_paper_mix(1234, np.random.default_rng(7))
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x, y)
        assert np.array_equal(x[:1234], z)
    d = W.sample_paper_mix(5000, np.random.default_rng(8))
    assert not np.array_equal(a[1], d[1])


def test_bayes_accuracy_is_a_probability():
    mix = W.get_mix()
    _, joint, cond = mix.bucket_probabilities((0, 250, 1000, 4000))
    assert joint.sum() == pytest.approx(1.0)
    assert np.allclose(cond.sum(axis=2)[joint.sum(axis=2) > 0], 1.0)
    with_task = mix.bayes_accuracy((0, 250, 1000, 4000))
    without = mix.bayes_accuracy((0, 250, 1000, 4000), use_task=False)
    assert 0.5 < without <= with_task < 1.0


def test_unknown_mix():
    with pytest.raises(ValueError, match="known mixes: paper-mix"):
        W.get_mix("no-such-mix")


# --- generate ---------------------------------------------------------------------------------


def test_generate_by_count_and_duration():
    w = W.generate(rate_per_s=20.0, n=2000, seed=1)
    assert len(w) == 2000 and w.arrival_s[0] == 0.0
    assert w.task_names == tuple(t.name for t in W.PAPER_TABLE1)
    assert w.mean_rate_per_s == pytest.approx(20.0, rel=0.1)
    w2 = W.generate(rate_per_s=20.0, duration_s=100.0, seed=1)
    assert w2.arrival_s.max() < 100.0
    assert len(w2) == pytest.approx(2000, rel=0.1)
    w3 = W.generate(rate_per_s=20.0, duration_s=10.0, n=50, seed=1)
    assert len(w3) == 50


def test_generate_same_seed_bit_identical_and_contents_paired():
    a = W.generate("paper-mix", "gamma", rate_per_s=20.0, cv=3.0, n=3000, seed=42)
    b = W.generate("paper-mix", "gamma", rate_per_s=20.0, cv=3.0, n=3000, seed=42)
    for f in ("arrival_s", "prompt_tokens", "output_tokens", "task"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert a.arrival_s.tobytes() == b.arrival_s.tobytes()
    c = W.generate("paper-mix", "constant", rate_per_s=5.0, n=3000, seed=42)
    assert np.array_equal(a.prompt_tokens, c.prompt_tokens)  # contents do not depend on the arrivals
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    d = W.generate("paper-mix", "gamma", rate_per_s=20.0, cv=3.0, n=3000, seed=43)
    assert not np.array_equal(a.arrival_s, d.arrival_s)


def test_generate_from_a_pool():
    pool = W.generate(rate_per_s=1.0, n=50, seed=0)
    w = W.generate(pool, "poisson", rate_per_s=10.0, n=500, seed=3)
    pairs = set(zip(pool.prompt_tokens.tolist(), pool.output_tokens.tolist()))
    assert set(zip(w.prompt_tokens.tolist(), w.output_tokens.tolist())) <= pairs
    assert w.task_names == pool.task_names


def test_generate_needs_a_horizon_and_rate():
    with pytest.raises(ValueError, match="horizon"):
        W.generate(rate_per_s=1.0)
    with pytest.raises(ValueError, match="rate_per_s"):
        W.generate(n=10)


# --- arrivals ---------------------------------------------------------------------------------


def test_poisson_rate_and_cv():
    t = PoissonArrivals(20.0).sample(np.random.default_rng(0), n=200_000)
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    assert mean_rate(t) == pytest.approx(20.0, rel=0.01)
    assert interarrival_cv(t) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_rate_and_cv(cv):
    t = GammaArrivals(50.0, cv).sample(np.random.default_rng(1), n=200_000)
    assert mean_rate(t) == pytest.approx(50.0, rel=0.03)
    assert interarrival_cv(t) == pytest.approx(cv, rel=0.05)


def test_constant_arrivals_are_exact():
    t = ConstantArrivals(4.0).sample(np.random.default_rng(0), n=9)
    assert np.array_equal(t, np.arange(9) * 0.25)
    t2 = ConstantArrivals(4.0).sample(np.random.default_rng(0), duration_s=2.0)
    assert np.array_equal(t2, np.arange(8) * 0.25)


@pytest.mark.parametrize("proc", [PoissonArrivals(20.0), GammaArrivals(20.0, 3.0), ConstantArrivals(20.0)])
def test_arrivals_by_duration_and_reproducible(proc):
    a = proc.sample(np.random.default_rng(5), duration_s=500.0)
    b = proc.sample(np.random.default_rng(5), duration_s=500.0)
    assert a.tobytes() == b.tobytes()
    assert a.max() < 500.0 and a[0] == 0.0
    assert a.size == pytest.approx(10_000, rel=0.15 if proc.kind == "gamma" else 0.05)
    c = proc.sample(np.random.default_rng(5), n=300, duration_s=500.0)
    assert c.size == 300
    assert proc.sample(np.random.default_rng(5), n=0).size == 0


def test_make_arrivals():
    assert make_arrivals("poisson", 3.0) == PoissonArrivals(3.0)
    assert make_arrivals("bursty", 3.0) == GammaArrivals(3.0, 3.0)
    assert make_arrivals({"kind": "gamma", "rate_per_s": 2, "cv": 0.5}) == GammaArrivals(2.0, 0.5)
    with pytest.raises(ValueError, match="unknown arrival process"):
        make_arrivals("uniform", 1.0)
    with pytest.raises(ValueError, match="needs rate_per_s"):
        make_arrivals("poisson")
    with pytest.raises(ValueError, match="rate_per_s"):
        PoissonArrivals(0.0)
    with pytest.raises(ValueError, match="cv"):
        GammaArrivals(1.0, -1.0)


# --- the Workload container --------------------------------------------------------------------


def small_workload(**kw):
    base = dict(arrival_s=[0.0, 0.5, 1.0, 4.0, 5.0], prompt_tokens=[10, 4000, 20, 30, 5000],
                output_tokens=[5, 200, 7, 4090, 10], task=[0, 1, 0, 1, 1], task_names=("a", "b"))
    base.update(kw)
    return Workload(**base)


def test_workload_is_immutable_and_typed():
    w = small_workload()
    assert len(w) == 5
    assert w.arrival_s.dtype == np.float64 and w.prompt_tokens.dtype == np.int64 and w.task.dtype == np.int64
    with pytest.raises(ValueError):
        w.prompt_tokens[0] = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.name = "x"
    ok = Workload([0.0, 1.0], [1.0, 2.0], [3, 4])  # integral floats are accepted
    assert ok.prompt_tokens.dtype == np.int64 and ok.task_names == ("default",)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(prompt_tokens=[10, 4000, 20, 30]), r"prompt_tokens has length 4 but arrival_s has length 5"),
        (dict(output_tokens=[5, 200, 7.5, 4090, 10]), r"output_tokens\[2\] = 7.5 is not an integer"),
        (dict(prompt_tokens=[10, 0, 20, 30, 5000]), r"prompt_tokens\[1\] = 0 must be a positive integer"),
        (dict(output_tokens=[5, 200, -7, 4090, 10]), r"output_tokens\[2\] = -7 must be a positive integer"),
        (dict(arrival_s=[0.0, 0.5, 0.4, 4.0, 5.0]), r"arrival_s is not sorted: arrival_s\[2\] = 0.4 < arrival_s\[1\] = 0.5"),
        (dict(arrival_s=[0.0, 0.5, np.nan, 4.0, 5.0]), r"arrival_s\[2\] = nan is not finite"),
        (dict(arrival_s=[-1.0, 0.5, 1.0, 4.0, 5.0]), r"arrival_s\[0\] = -1.0 is negative"),
        (dict(task=[0, 1, 2, 1, 1]), r"task\[2\] = 2 is not an index into task_names"),
        (dict(task_names=("a", "a")), r"task_names must be unique"),
        (dict(prompt_tokens=[[1, 2]] * 5), r"prompt_tokens must be a 1-D array"),
        (dict(prompt_tokens=["1"] * 5), r"prompt_tokens must hold integers"),
        (dict(session_ids=[0, 1, 2]), r"session_ids has length 3 but arrival_s has length 5"),
        (dict(session_ids=[0, 1, -2, 1, 0]), r"session_ids\[2\] = -2 must be a session id >= 0, or -1 for none"),
        (dict(session_ids=[0, 1, 0.5, 1, 0]), r"session_ids\[2\] = 0.5 is not an integer"),
        (dict(session_ids=["a"] * 5), r"session_ids must hold integers"),
    ],
)
def test_workload_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        small_workload(**changes)


def test_head_window_shift_rate():
    w = small_workload()
    assert np.array_equal(w.head(2).prompt_tokens, [10, 4000])
    assert len(w.head(99)) == 5
    win = w.window(0.5, 3.5)  # [0.5, 4.0)
    assert np.array_equal(win.arrival_s, [0.5, 1.0])
    assert np.array_equal(win.shifted().arrival_s, [0.0, 0.5])
    assert np.array_equal(w.window(0.5, 3.6).arrival_s, [0.5, 1.0, 4.0])
    assert w.mean_rate_per_s == pytest.approx(4 / 5.0)
    fast = w.with_rate(8.0)
    assert fast.mean_rate_per_s == pytest.approx(8.0)
    assert np.allclose(fast.arrival_s, w.arrival_s / 10.0)
    assert np.array_equal(fast.output_tokens, w.output_tokens)
    with pytest.raises(ValueError, match="rate_per_s"):
        w.with_rate(0)
    one = w.head(1)
    assert one.with_rate(1.0) is one  # a single request spans no time: no rate to change (a valid trace)


def test_fit_context_reject_clip_error():
    w = small_workload()
    # (10,5) fits; (4000,200): output stops at the context -> 96; (20,7) fits; (30,4090) -> 4066;
    # (5000,10): the prompt leaves no room for an output token
    served = w.fit_context(4096)
    fit = served.context_fit
    assert fit.overlong == "reject" and fit.max_model_len == 4096
    assert (fit.rejected_overlong, fit.clipped_at_context) == (1, 2)
    assert np.array_equal(served.prompt_tokens, [10, 4000, 20, 30])
    assert np.array_equal(served.output_tokens, [5, 96, 7, 4066])
    assert np.array_equal(fit.served_index, [0, 1, 2, 3]) and np.array_equal(fit.rejected_index, [4])
    assert np.array_equal(fit.clipped, [False, True, False, True])
    clipped = w.fit_context(4096, "clip")
    assert (clipped.context_fit.rejected_overlong, clipped.context_fit.clipped_at_context) == (0, 3)
    assert np.array_equal(clipped.prompt_tokens, [10, 4000, 20, 30, 4095])
    assert np.array_equal(clipped.output_tokens, [5, 96, 7, 4066, 1])
    with pytest.raises(ValueError, match=r"request 1 .*prompt_tokens=4000 \+ output_tokens=200 = 4200 > max_model_len=4096"):
        w.fit_context(4096, "error")
    # the boundary: a prompt of max_model_len - 1 tokens is served with one output token;
    # max_model_len tokens is refused (vLLM v0's server: prompt_tokens >= max_model_len)
    edge = Workload([0.0, 1.0], [4095, 4096], [1, 1])
    assert np.array_equal(edge.fit_context(4096).prompt_tokens, [4095])
    assert edge.head(1).fit_context(4096, "error").context_fit.clipped_at_context == 0
    same = w.fit_context(100_000, "error")
    assert np.array_equal(same.prompt_tokens, w.prompt_tokens) and same.context_fit.rejected_overlong == 0
    assert w.fit_context(PROFILE).context_fit.rejected_overlong == 1
    assert served.head(2).context_fit is None  # a derived workload is not the fitted one
    with pytest.raises(ValueError, match="overlong must be one of reject, clip, error"):
        w.fit_context(4096, "drop")
    with pytest.raises(ValueError, match="max_model_len must be an integer"):
        w.fit_context(1.5)


def test_clip_cuts_prefix_hashes():
    w = Workload([0.0, 1.0], [1500, 100], [10, 10], prefix_hashes=([1, 2, 3], [4]), prefix_block_tokens=512)
    c = w.fit_context(1025, "clip")
    assert c.context_fit.clipped_at_context == 1
    # (1500 tokens, 10 out) with max 1025: prompt clipped to 1024 tokens = 2 blocks, output to 1
    assert c.prompt_tokens[0] == 1024 and c.output_tokens[0] == 1
    assert list(c.prefix_hashes[0]) == [1, 2]
    assert list(c.prefix_hashes[1]) == [4]
    r = w.fit_context(1025)  # refused instead: its hashes leave with it
    assert len(r) == 1 and list(r.prefix_hashes[0]) == [4]


def test_session_ids_follow_every_transformation():
    w = small_workload(session_ids=[3, -1, 3, 8, 8])
    assert w.session_ids.dtype == np.int64 and not w.session_ids.flags.writeable
    assert small_workload().session_ids is None
    assert w.head(2).session_ids.tolist() == [3, -1]
    assert w.subset(np.array([False, True, True, False, True])).session_ids.tolist() == [-1, 3, 8]
    assert w.window(0.5, 3.6).session_ids.tolist() == [-1, 3, 8]
    assert w.shifted(2.0).with_rate(8.0).session_ids.tolist() == [3, -1, 3, 8, 8]
    assert w.fit_context(4096).session_ids.tolist() == [3, -1, 3, 8]  # the refused request's id leaves with it
    assert w.fit_context(4096, "clip").session_ids.tolist() == [3, -1, 3, 8, 8]


def test_summary():
    s = small_workload().summary()
    assert s["requests"] == 5 and set(s["tasks"]) == {"a", "b"}
    assert s["tasks"]["a"]["mean_prompt_tokens"] == 15.0
