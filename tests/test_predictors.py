"""Output-length predictors: buckets, oracle, noisy, task-prior, learned (+ save/load), factory."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from llm_routing_env import predictors as P
from llm_routing_env.mixes import PAPER_TABLE1, generate
from llm_routing_env.workload import Workload


@pytest.fixture(scope="module")
def train():
    return generate(rate_per_s=20.0, n=8000, seed=100)


@pytest.fixture(scope="module")
def test_set():
    return generate(rate_per_s=20.0, n=4000, seed=200)


@pytest.fixture(scope="module")
def learned(train):
    return P.make_predictor("learned", train=train, max_iter=40)


def test_bucket_schemes():
    b = P.PAPER_PREDICTOR_BUCKETS
    assert b.n_buckets == 4 and b.labels == ("0-250", "250-1000", "1000-4000", "4000+")
    assert b.bucket_of([0, 1, 249, 250, 999, 1000, 3999, 4000, 10**6]).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert b.upper_bounds.tolist() == [250, 1000, 4000, np.inf]
    assert b.representatives.tolist() == [125.0, 625.0, 2500.0, 6000.0]
    d = P.DQN_STATE_BUCKETS
    assert d.edges == (0, 256, 2048) and d.bucket_of([255, 256, 2047, 2048]).tolist() == [0, 1, 1, 2]
    assert d.representatives[-1] == 3072.0
    assert P.PAPER_PREDICTOR_BUCKETS_SECONDS.edges == (0, 250, 1000, 2000)
    with pytest.raises(ValueError, match="start at 0"):
        P.BucketScheme("bad", (10, 20))
    with pytest.raises(ValueError, match="unknown bucket scheme"):
        P.make_predictor("oracle", buckets="nope")


def test_oracle_is_exact(test_set):
    o = P.make_predictor("oracle")
    assert o.clairvoyant
    pred = o.predict(test_set.task, test_set.prompt_tokens, test_set.output_tokens)
    assert np.array_equal(pred.point_tokens, test_set.output_tokens)
    assert np.array_equal(pred.bucket, o.buckets.bucket_of(test_set.output_tokens))
    assert np.array_equal(pred.bucket_probs.argmax(1), pred.bucket) and np.all(pred.bucket_probs.sum(1) == 1)
    assert P.evaluate_predictor(o, test_set)["accuracy"] == 1.0
    assert P.evaluate_predictor(o, test_set)["point_mae_tokens"] == 0.0
    with pytest.raises(ValueError, match="clairvoyant: pass true_output"):
        o.predict(test_set.task, test_set.prompt_tokens)
    one = o.predict(0, 10, 300)  # scalars work
    assert one.bucket.tolist() == [1] and len(one) == 1


@pytest.mark.parametrize("accuracy", [0.0, 0.5, 0.7915, 1.0])
def test_noisy_accuracy_is_as_requested(accuracy):
    rng = np.random.default_rng(0)
    true = rng.integers(1, 6000, 100_000)
    nz = P.make_predictor("noisy", accuracy=accuracy, seed=3)
    assert nz.clairvoyant
    pred = nz.predict(None, np.full(true.size, 10), true)
    tb = nz.buckets.bucket_of(true)
    assert np.mean(pred.bucket == tb) == pytest.approx(accuracy, abs=0.005)
    assert np.abs(pred.bucket - tb).max() <= 1  # errors go to a neighbouring bucket
    assert np.allclose(pred.bucket_probs.sum(1), 1.0)
    assert np.array_equal(pred.bucket_probs.argmax(1), pred.bucket) or accuracy <= 0.5
    assert np.array_equal(pred.point_tokens, nz.buckets.representatives[pred.bucket])


def test_noisy_is_seeded():
    true = np.arange(1, 5001)
    a = P.NoisyPredictor(0.6, seed=9).predict(None, np.ones_like(true), true)
    b = P.NoisyPredictor(0.6, seed=9).predict(None, np.ones_like(true), true)
    c = P.NoisyPredictor(0.6, seed=10).predict(None, np.ones_like(true), true)
    assert np.array_equal(a.bucket, b.bucket) and not np.array_equal(a.bucket, c.bucket)
    nz = P.NoisyPredictor(0.6, seed=9)
    first = nz.predict(None, np.ones_like(true), true).bucket
    nz.reset()
    assert np.array_equal(nz.predict(None, np.ones_like(true), true).bucket, first)
    with pytest.raises(ValueError, match="accuracy"):
        P.NoisyPredictor(1.5)


def test_task_prior_is_sane(train, test_set):
    tp = P.make_predictor("task-prior", train=train)
    assert not tp.clairvoyant
    pred = tp.predict_workload(test_set)
    assert np.allclose(pred.bucket_probs.sum(1), 1.0)
    for k, target in enumerate(PAPER_TABLE1):
        m = test_set.task == k
        mt = train.task == k
        # the point estimate is the task's mean output length; the bucket its most frequent one
        assert np.all(pred.point_tokens[m] == pytest.approx(train.output_tokens[mt].mean()))
        assert pred.point_tokens[m][0] == pytest.approx(target.mean_decode, rel=0.15)
        assert np.all(pred.bucket[m] == np.bincount(tp.buckets.bucket_of(train.output_tokens[mt])).argmax())
    acc = P.evaluate_predictor(tp, test_set)["accuracy"]
    assert acc > 0.6
    # unseen task index: pooled statistics
    unseen = tp.predict([99], [10])
    assert np.allclose(unseen.bucket_probs[0], tp.global_freq) and unseen.point_tokens[0] == tp.global_point
    med = P.TaskPriorPredictor(point="median").fit(train)
    assert med.point_by_task[0] < tp.point_by_task[0]  # right-skewed: median < mean
    with pytest.raises(RuntimeError, match="not fitted"):
        P.TaskPriorPredictor().predict([0], [1])


def test_learned_predictor(learned, train, test_set):
    assert not learned.clairvoyant and learned.is_fitted
    ev = P.evaluate_predictor(learned, test_set)
    prior = P.evaluate_predictor(P.TaskPriorPredictor().fit(train), test_set)
    assert ev["accuracy"] >= prior["accuracy"] - 0.02
    assert ev["accuracy"] > 0.6
    assert ev["point_mae_tokens"] < prior["point_mae_tokens"] * 1.05
    no_task = P.LearnedPredictor(use_task=False, max_iter=40).fit(train)
    assert P.evaluate_predictor(no_task, test_set)["accuracy"] < ev["accuracy"]
    pred = learned.predict_workload(test_set)
    assert pred.bucket_probs.shape == (len(test_set), 4) and np.allclose(pred.bucket_probs.sum(1), 1.0)
    assert (pred.point_tokens >= 1).all()


def test_learned_save_load_round_trip(learned, test_set, tmp_path):
    path = learned.save(tmp_path / "pred.pkl")
    back = P.LearnedPredictor.load(path)
    a, b = learned.predict_workload(test_set), back.predict_workload(test_set)
    assert np.array_equal(a.bucket_probs, b.bucket_probs)
    assert np.array_equal(a.point_tokens, b.point_tokens)
    assert back.buckets == learned.buckets and back.task_names == learned.task_names


def test_learned_load_rejects_corrupt_and_wrong_files(learned, tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x00\x01not a pickle at all" * 10)
    with pytest.raises(P.PredictorFileError, match="junk.pkl: not a saved LearnedPredictor"):
        P.LearnedPredictor.load(junk)
    good = learned.save(tmp_path / "good.pkl")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(P.PredictorFileError, match="corrupt or wrong file"):
        P.LearnedPredictor.load(truncated)
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"something": "else"}))
    with pytest.raises(P.PredictorFileError, match="wrong file"):
        P.LearnedPredictor.load(wrong)
    with pytest.raises(ValueError):  # PredictorFileError is a ValueError
        P.LearnedPredictor.load(wrong)
    with pytest.raises(FileNotFoundError):
        P.LearnedPredictor.load(tmp_path / "absent.pkl")
    with pytest.raises(RuntimeError, match="fit the predictor"):
        P.LearnedPredictor().save(tmp_path / "unfitted.pkl")


def test_learned_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install llm-routing-env\[agents\]"):
        P.LearnedPredictor().fit(task=[0, 1], prompt_tokens=[1, 2], output_tokens=[3, 400])


def test_core_package_does_not_import_sklearn():
    code = ("import sys, llm_routing_env, llm_routing_env.workload, llm_routing_env.mixes, llm_routing_env.traces, "
            "llm_routing_env.predictors; assert 'sklearn' not in sys.modules, 'sklearn imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_factory():
    with pytest.raises(ValueError, match="unknown predictor 'bert'; known predictors: learned, noisy, oracle, task-prior"):
        P.make_predictor("bert")
    assert isinstance(P.make_predictor("noisy", accuracy=0.9, buckets=P.DQN_STATE_BUCKETS), P.NoisyPredictor)
    assert P.make_predictor("oracle", buckets="dqn-state").buckets is P.DQN_STATE_BUCKETS
    with pytest.raises(ValueError, match="not trained"):
        P.make_predictor("oracle", train=Workload([0.0], [1], [1]))
    assert P.predictor_names() == ["learned", "noisy", "oracle", "task-prior"]


def test_input_validation():
    o = P.OraclePredictor()
    with pytest.raises(ValueError, match="task has length"):
        o.predict([0, 1], [1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="prompt_tokens must be >= 1"):
        o.predict([0], [0], [1])
    with pytest.raises(ValueError, match="true_output must be >= 1"):
        o.predict([0], [1], [0])


def test_accuracy_report_small():
    r = P.learned_accuracy_report(n=6000, seed=1)
    assert r["paper_with_task"] == 0.7915 and r["paper_without_task"] == 0.055
    assert 0.55 < r["without_task"] < r["with_task"] <= r["with_task_bayes_ceiling"] + 0.03
    assert r["without_task"] <= r["without_task_bayes_ceiling"] + 0.03
    assert set(r["with_task_per_task"]) == {t.name for t in PAPER_TABLE1}
    text = P.format_accuracy_report(r)
    assert "79.15%" in text and "5.50%" in text
