"""Output-length predictors: what a router may know about a request's decode length.

One interface, vectorised over requests::

    pred = predictor.predict(task, prompt_tokens, true_output=None)
    pred.bucket_probs  # (n, K) float, rows sum to 1
    pred.bucket        # (n,) int, the predicted bucket
    pred.point_tokens  # (n,) float, a point estimate of the output length

Predictors see only observable features: the task index and the prompt length. Those flagged
``clairvoyant = True`` read the TRUE output length as well (``true_output``; routers must not),
namely the exact ``oracle`` and the ``noisy`` one, which simulates a predictor of a chosen
accuracy by corrupting the true bucket.

Bucket schemes (:class:`BucketScheme`, half-open intervals ``[lo, hi)`` of output tokens):

* :data:`PAPER_PREDICTOR_BUCKETS` ``0-250, 250-1000, 1000-4000, 4000+`` tokens: the token edges
  the paper states (§5.1). The paper derives them from completion times (0-0.5 s, 0.5-2 s,
  2-4 s, ... at ~500 tokens/s), which would give 0-250, 250-1000, 1000-2000, ...; the stated
  token edges are geometric (x4) and disagree with the seconds. We follow the *token* edges (what
  the classifier was trained on, and what routers compare); the seconds reading is available as
  :data:`PAPER_PREDICTOR_BUCKETS_SECONDS` (``0-250, 250-1000, 1000-2000, 2000+``).
* :data:`DQN_STATE_BUCKETS` ``0-256, 256-2048, 2048+``: the coarser decode bucketing of the
  paper's DQN state (A.9).

Predictors: ``oracle`` (exact), ``task-prior`` (per-task bucket frequencies and mean or median
length, fitted on a sample), ``noisy`` (the true bucket with probability ``accuracy``, else a
neighbouring bucket; seeded) and ``learned`` (scikit-learn gradient boosting on
``[task one-hot, prompt tokens]``; needs ``pip install llm-routing-env[agents]``). Build them
with :func:`make_predictor`.

``python -m llm_routing_env.predictors`` prints the learned predictor's held-out accuracy on the
paper mix with and without the task feature, next to the paper's 79.15 % / 5.5 % and the exact
Bayes ceiling of our synthetic mix (see ``docs/workloads.md``).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BucketScheme",
    "PAPER_PREDICTOR_BUCKETS",
    "PAPER_PREDICTOR_BUCKETS_SECONDS",
    "DQN_STATE_BUCKETS",
    "Prediction",
    "OutputLengthPredictor",
    "OraclePredictor",
    "TaskPriorPredictor",
    "NoisyPredictor",
    "LearnedPredictor",
    "PredictorFileError",
    "make_predictor",
    "predictor_names",
    "bucket_accuracy",
    "evaluate_predictor",
    "learned_accuracy_report",
    "PAPER_ACCURACY_WITH_TASK",
    "PAPER_ACCURACY_WITHOUT_TASK",
]

PAPER_ACCURACY_WITH_TASK = 0.7915  # §5.1, unequal buckets, "This is a <task> task" hint
PAPER_ACCURACY_WITHOUT_TASK = 0.055  # §5.1, S3-style DistilBERT without the hint
SKLEARN_HINT = "pip install llm-routing-env[agents]"


# =============================================================================================
# Buckets and predictions
# =============================================================================================


@dataclass(frozen=True)
class BucketScheme:
    """Output-length buckets ``[edges[j], edges[j+1])``, the last one open; ``edges[0] == 0``.

    ``cap_tokens`` closes the open bucket for its representative length (the midpoint of
    ``[edges[-1], max(cap_tokens, 2 * edges[-1])]``).
    """

    name: str
    edges: tuple[int, ...]
    cap_tokens: int = 4096

    def __post_init__(self) -> None:
        e = tuple(int(x) for x in self.edges)
        if not e or e[0] != 0 or any(b <= a for a, b in zip(e, e[1:])):
            raise ValueError(f"bucket edges must start at 0 and increase strictly, got {self.edges!r}")
        object.__setattr__(self, "edges", e)

    @property
    def n_buckets(self) -> int:
        return len(self.edges)

    @property
    def labels(self) -> tuple[str, ...]:
        e = self.edges
        return tuple(f"{a}-{b}" for a, b in zip(e, e[1:])) + (f"{e[-1]}+",)

    @property
    def upper_bounds(self) -> np.ndarray:
        """Exclusive upper edge of each bucket (``inf`` for the last)."""
        return np.array(self.edges[1:] + (math.inf,), dtype=np.float64)

    @property
    def representatives(self) -> np.ndarray:
        """A representative length per bucket (midpoint; the open bucket is closed at the cap)."""
        lo = np.array(self.edges, dtype=np.float64)
        hi = self.upper_bounds.copy()
        hi[-1] = max(float(self.cap_tokens), 2.0 * lo[-1], lo[-1] + 1.0)
        return (lo + hi) / 2.0

    def bucket_of(self, tokens) -> np.ndarray:
        """Bucket index of each output length."""
        t = np.asarray(tokens)
        return (np.searchsorted(np.asarray(self.edges), t, side="right") - 1).astype(np.int64)


PAPER_PREDICTOR_BUCKETS = BucketScheme("paper-predictor", (0, 250, 1000, 4000))
PAPER_PREDICTOR_BUCKETS_SECONDS = BucketScheme("paper-predictor-seconds", (0, 250, 1000, 2000))
DQN_STATE_BUCKETS = BucketScheme("dqn-state", (0, 256, 2048))

_SCHEMES = {s.name: s for s in (PAPER_PREDICTOR_BUCKETS, PAPER_PREDICTOR_BUCKETS_SECONDS, DQN_STATE_BUCKETS)}


def _scheme(buckets) -> BucketScheme:
    if isinstance(buckets, BucketScheme):
        return buckets
    if isinstance(buckets, str) and buckets in _SCHEMES:
        return _SCHEMES[buckets]
    raise ValueError(f"unknown bucket scheme {buckets!r}; known: {', '.join(sorted(_SCHEMES))} (or a BucketScheme)")


@dataclass(frozen=True, eq=False)
class Prediction:
    """Per request: bucket probabilities (n, K), the predicted bucket (n,), a point estimate (n,)."""

    bucket_probs: np.ndarray
    bucket: np.ndarray
    point_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.bucket.size)


def _as_int_vector(name: str, value, n: int | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1) if n is None else np.full(n, arr.item())
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if arr.size and (~np.isfinite(arr) | (arr != np.floor(arr))).any():
            raise ValueError(f"{name} must hold integers")
    elif arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


# =============================================================================================
# Predictors
# =============================================================================================


class OutputLengthPredictor:
    """Base class. ``clairvoyant`` predictors need ``true_output`` (hidden from real routers)."""

    name = "base"
    clairvoyant = False

    def __init__(self, buckets=PAPER_PREDICTOR_BUCKETS):
        self.buckets = _scheme(buckets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(buckets={self.buckets.name!r})"

    def _inputs(self, task, prompt_tokens, true_output):
        prompt = _as_int_vector("prompt_tokens", prompt_tokens)
        n = prompt.size
        task = np.zeros(n, dtype=np.int64) if task is None else _as_int_vector("task", task, n)
        if task.size != n:
            raise ValueError(f"task has length {task.size} but prompt_tokens has length {n}")
        if (task < 0).any():
            raise ValueError("task indices must be >= 0")
        if (prompt < 1).any():
            raise ValueError("prompt_tokens must be >= 1")
        if true_output is not None:
            true_output = _as_int_vector("true_output", true_output, n)
            if true_output.size != n:
                raise ValueError(f"true_output has length {true_output.size} but prompt_tokens has length {n}")
            if (true_output < 1).any():
                raise ValueError("true_output must be >= 1")
        elif self.clairvoyant:
            raise ValueError(f"the {self.name!r} predictor is clairvoyant: pass true_output")
        return task, prompt, true_output

    def predict(self, task, prompt_tokens, true_output=None) -> Prediction:
        raise NotImplementedError  # pragma: no cover

    def predict_workload(self, workload) -> Prediction:
        """Predict for every request of a Workload (true lengths passed only to clairvoyant ones)."""
        return self.predict(workload.task, workload.prompt_tokens,
                            workload.output_tokens if self.clairvoyant else None)


class OraclePredictor(OutputLengthPredictor):
    """The exact output length (clairvoyant)."""

    name = "oracle"
    clairvoyant = True

    def predict(self, task, prompt_tokens, true_output=None) -> Prediction:
        task, prompt, true = self._inputs(task, prompt_tokens, true_output)
        b = self.buckets.bucket_of(true)
        probs = np.zeros((b.size, self.buckets.n_buckets))
        probs[np.arange(b.size), b] = 1.0
        return Prediction(probs, b, true.astype(np.float64))


def _fit_arrays(data, task, prompt_tokens, output_tokens):
    if data is not None:
        if any(x is not None for x in (task, prompt_tokens, output_tokens)):
            raise ValueError("pass either a Workload or the task/prompt_tokens/output_tokens arrays, not both")
        return (np.asarray(data.task, dtype=np.int64), np.asarray(data.prompt_tokens, dtype=np.int64),
                np.asarray(data.output_tokens, dtype=np.int64), tuple(data.task_names))
    if prompt_tokens is None or output_tokens is None:
        raise ValueError("fitting needs a Workload or prompt_tokens and output_tokens (and task)")
    p = _as_int_vector("prompt_tokens", prompt_tokens)
    o = _as_int_vector("output_tokens", output_tokens, p.size)
    t = np.zeros(p.size, dtype=np.int64) if task is None else _as_int_vector("task", task, p.size)
    if not (t.size == p.size == o.size) or p.size == 0:
        raise ValueError("task, prompt_tokens and output_tokens must be non-empty and of one length")
    if (t < 0).any():
        raise ValueError("task indices must be >= 0")
    return t, p, o, None


class TaskPriorPredictor(OutputLengthPredictor):
    """Per-task statistics of a training sample: bucket frequencies (argmax = predicted bucket) and
    the task's mean (or median) output length as the point estimate. Ignores the prompt length.
    Tasks absent from the training sample fall back to the pooled statistics."""

    name = "task-prior"

    def __init__(self, buckets=PAPER_PREDICTOR_BUCKETS, point: str = "mean"):
        super().__init__(buckets)
        if point not in ("mean", "median"):
            raise ValueError(f"point must be 'mean' or 'median', got {point!r}")
        self.point = point
        self.freq: np.ndarray | None = None
        self.point_by_task: np.ndarray | None = None
        self.global_freq: np.ndarray | None = None
        self.global_point: float | None = None

    def fit(self, data=None, *, task=None, prompt_tokens=None, output_tokens=None) -> "TaskPriorPredictor":
        t, _, o, names = _fit_arrays(data, task, prompt_tokens, output_tokens)
        n_tasks = max(int(t.max()) + 1, len(names) if names else 0)
        K = self.buckets.n_buckets
        b = self.buckets.bucket_of(o)
        stat = np.mean if self.point == "mean" else np.median
        self.global_freq = np.bincount(b, minlength=K) / b.size
        self.global_point = float(stat(o))
        self.freq = np.tile(self.global_freq, (n_tasks, 1))
        self.point_by_task = np.full(n_tasks, self.global_point)
        for k in range(n_tasks):
            m = t == k
            if m.any():
                self.freq[k] = np.bincount(b[m], minlength=K) / m.sum()
                self.point_by_task[k] = float(stat(o[m]))
        return self

    def predict(self, task, prompt_tokens, true_output=None) -> Prediction:
        if self.freq is None:
            raise RuntimeError("the task-prior predictor is not fitted: call fit(workload) first")
        task, prompt, _ = self._inputs(task, prompt_tokens, None)
        known = task < self.freq.shape[0]
        idx = np.where(known, task, 0)
        probs = np.where(known[:, None], self.freq[idx], self.global_freq[None, :])
        point = np.where(known, self.point_by_task[idx], self.global_point)
        return Prediction(probs, probs.argmax(axis=1).astype(np.int64), point.astype(np.float64))


class NoisyPredictor(OutputLengthPredictor):
    """A simulated predictor of a chosen accuracy (clairvoyant: it corrupts the true bucket).

    With probability ``accuracy`` the true bucket, otherwise a neighbouring one (either side with
    equal probability; the only neighbour at the ends). ``bucket_probs`` put ``accuracy`` on the
    predicted bucket and the rest evenly on its neighbours; ``point_tokens`` is the predicted
    bucket's representative length (the truth does not leak through the point estimate). Draws
    come from a Generator seeded with ``seed`` (``reset`` restarts it).
    """

    name = "noisy"
    clairvoyant = True

    def __init__(self, accuracy: float = 0.7915, buckets=PAPER_PREDICTOR_BUCKETS, seed=0):
        super().__init__(buckets)
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
            raise ValueError(f"accuracy must be a number in [0, 1], got {accuracy!r}")
        self.accuracy = float(accuracy)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed=None) -> None:
        self.rng = np.random.default_rng(self.seed if seed is None else seed)

    def predict(self, task, prompt_tokens, true_output=None) -> Prediction:
        task, prompt, true = self._inputs(task, prompt_tokens, true_output)
        K = self.buckets.n_buckets
        b = self.buckets.bucket_of(true)
        u = self.rng.random((b.size, 2))
        pred = b.copy()
        if K > 1:
            wrong = u[:, 0] >= self.accuracy
            step = np.where(u[:, 1] < 0.5, -1, 1)
            step = np.where(b == 0, 1, np.where(b == K - 1, -1, step))
            pred = np.where(wrong, b + step, b)
        probs = np.zeros((b.size, K))
        rows = np.arange(b.size)
        if K == 1:
            probs[:, 0] = 1.0
        else:
            probs[rows, pred] = self.accuracy
            left, right = pred - 1, pred + 1
            n_nb = (left >= 0).astype(float) + (right < K)
            share = (1.0 - self.accuracy) / n_nb
            probs[rows[left >= 0], left[left >= 0]] = share[left >= 0]
            probs[rows[right < K], right[right < K]] = share[right < K]
        return Prediction(probs, pred.astype(np.int64), self.buckets.representatives[pred])


class PredictorFileError(ValueError):
    """A file that is not a saved LearnedPredictor (corrupt, truncated or something else)."""


def _require_sklearn():
    try:
        import sklearn  # noqa: F401
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the learned output-length predictor needs scikit-learn, which is not installed: {SKLEARN_HINT}"
        ) from exc
    return sklearn, HistGradientBoostingClassifier, HistGradientBoostingRegressor


_MAGIC = "llm_routing_env.predictors.LearnedPredictor"
_FILE_VERSION = 1


class LearnedPredictor(OutputLengthPredictor):
    """Gradient-boosted trees (scikit-learn) on ``[task one-hot, prompt tokens]``.

    A ``HistGradientBoostingClassifier`` predicts the bucket, a ``HistGradientBoostingRegressor``
    (squared error, i.e. the conditional mean) the point estimate. ``use_task=False`` drops the
    task one-hot (the paper's "without hint" setting). ``n_threads`` caps scikit-learn's OpenMP
    threads during fit/predict (default 1: with six features, threads only add overhead, and
    oversubscribed machines slow down tenfold; None keeps the library default). ``save``/``load``
    use pickle: load only files you trust.
    """

    name = "learned"

    def __init__(self, buckets=PAPER_PREDICTOR_BUCKETS, use_task: bool = True, n_tasks: int | None = None,
                 max_iter: int = 100, learning_rate: float = 0.1, random_state: int = 0, n_threads: int | None = 1):
        super().__init__(buckets)
        self.n_threads = n_threads
        self.use_task = bool(use_task)
        self.n_tasks = n_tasks
        self.task_names: tuple[str, ...] | None = None
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.random_state = random_state
        self.classifier = None
        self.regressor = None

    def __repr__(self) -> str:
        return f"LearnedPredictor(buckets={self.buckets.name!r}, use_task={self.use_task}, fitted={self.is_fitted})"

    @property
    def is_fitted(self) -> bool:
        return self.classifier is not None

    def _threads(self):
        import contextlib

        if self.n_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        return threadpool_limits(limits=int(self.n_threads), user_api="openmp")

    def _features(self, task: np.ndarray, prompt: np.ndarray) -> np.ndarray:
        cols = [prompt.astype(np.float64)[:, None]]
        if self.use_task:
            onehot = np.zeros((task.size, self.n_tasks))
            ok = task < self.n_tasks
            onehot[np.flatnonzero(ok), task[ok]] = 1.0  # an unseen task is all zeros
            cols.insert(0, onehot)
        return np.hstack(cols)

    def fit(self, data=None, *, task=None, prompt_tokens=None, output_tokens=None) -> "LearnedPredictor":
        _, Clf, Reg = _require_sklearn()
        t, p, o, names = _fit_arrays(data, task, prompt_tokens, output_tokens)
        if self.n_tasks is None:
            self.n_tasks = max(int(t.max()) + 1, len(names) if names else 0)
        self.task_names = names
        X = self._features(t, p)
        y = self.buckets.bucket_of(o)
        kw = dict(max_iter=self.max_iter, learning_rate=self.learning_rate, random_state=self.random_state,
                  early_stopping=False)
        with self._threads():
            if np.unique(y).size > 1:
                self.classifier = Clf(**kw).fit(X, y)
            else:  # a single class: a constant classifier
                self.classifier = ("constant", int(y[0]))
            self.regressor = Reg(**kw).fit(X, o.astype(np.float64))
        return self

    def predict(self, task, prompt_tokens, true_output=None) -> Prediction:
        if not self.is_fitted:
            raise RuntimeError("the learned predictor is not fitted: call fit(workload) or load(path) first")
        task, prompt, _ = self._inputs(task, prompt_tokens, None)
        X = self._features(task, prompt)
        K = self.buckets.n_buckets
        probs = np.zeros((prompt.size, K))
        with self._threads():
            if isinstance(self.classifier, tuple):
                probs[:, self.classifier[1]] = 1.0
            else:
                probs[:, self.classifier.classes_.astype(np.int64)] = self.classifier.predict_proba(X)
            point = np.maximum(self.regressor.predict(X), 1.0)
        return Prediction(probs, probs.argmax(axis=1).astype(np.int64), point.astype(np.float64))

    def save(self, path) -> Path:
        if not self.is_fitted:
            raise RuntimeError("fit the predictor before saving it")
        sklearn, _, _ = _require_sklearn()
        path = Path(path)
        state = {
            "magic": _MAGIC, "version": _FILE_VERSION, "sklearn_version": sklearn.__version__,
            "buckets": (self.buckets.name, self.buckets.edges, self.buckets.cap_tokens),
            "use_task": self.use_task, "n_tasks": self.n_tasks, "task_names": self.task_names,
            "max_iter": self.max_iter, "learning_rate": self.learning_rate, "random_state": self.random_state,
            "n_threads": self.n_threads, "classifier": self.classifier, "regressor": self.regressor,
        }
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @classmethod
    def load(cls, path) -> "LearnedPredictor":
        """Load a predictor written by :meth:`save` (PredictorFileError for anything else)."""
        _require_sklearn()
        path = Path(path)
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except FileNotFoundError:
            raise
        except Exception as exc:  # corrupt pickles raise many kinds of errors
            raise PredictorFileError(
                f"{path}: not a saved LearnedPredictor (corrupt or wrong file: {type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(state, dict) or state.get("magic") != _MAGIC:
            raise PredictorFileError(f"{path}: not a saved LearnedPredictor (wrong file: no predictor header)")
        if state.get("version") != _FILE_VERSION:
            raise PredictorFileError(f"{path}: LearnedPredictor file version {state.get('version')!r}, "
                                     f"this code reads version {_FILE_VERSION}")
        try:
            name, edges, cap = state["buckets"]
            obj = cls(BucketScheme(name, tuple(edges), cap), use_task=state["use_task"], n_tasks=state["n_tasks"],
                      max_iter=state["max_iter"], learning_rate=state["learning_rate"],
                      random_state=state["random_state"], n_threads=state.get("n_threads", 1))
            obj.task_names = state["task_names"]
            obj.classifier = state["classifier"]
            obj.regressor = state["regressor"]
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorFileError(f"{path}: damaged LearnedPredictor file ({exc})") from None
        return obj


# =============================================================================================
# Factory, evaluation, accuracy report
# =============================================================================================

_PREDICTORS = {
    "oracle": OraclePredictor,
    "task-prior": TaskPriorPredictor,
    "noisy": NoisyPredictor,
    "learned": LearnedPredictor,
}


def predictor_names() -> list[str]:
    return sorted(_PREDICTORS)


def predictor_is_clairvoyant(name: str) -> bool:
    """Whether the named predictor reads true output lengths (a router using it is an oracle)."""
    if name not in _PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; known: {', '.join(predictor_names())}")
    return _PREDICTORS[name].clairvoyant


def make_predictor(name: str, *, train=None, **kwargs) -> OutputLengthPredictor:
    """A predictor by name (``oracle``, ``task-prior``, ``noisy``, ``learned``); keyword arguments
    go to its constructor (``buckets=...``, ``accuracy=``/``seed=`` for noisy, ``use_task=`` for
    learned...). ``train=`` (a Workload) fits ``task-prior`` and ``learned`` right away."""
    if name not in _PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; known predictors: {', '.join(predictor_names())}")
    pred = _PREDICTORS[name](**kwargs)
    if train is not None:
        if not hasattr(pred, "fit"):
            raise ValueError(f"the {name!r} predictor is not trained; do not pass train=")
        pred.fit(train)
    return pred


def bucket_accuracy(predictor: OutputLengthPredictor, task, prompt_tokens, output_tokens) -> float:
    """Fraction of requests whose bucket the predictor gets right."""
    o = _as_int_vector("output_tokens", output_tokens)
    pred = predictor.predict(task, prompt_tokens, o if predictor.clairvoyant else None)
    return float(np.mean(pred.bucket == predictor.buckets.bucket_of(o)))


def evaluate_predictor(predictor: OutputLengthPredictor, workload) -> dict:
    """Held-out metrics on a Workload: bucket accuracy overall and per task, and the mean absolute
    error of the point estimate."""
    pred = predictor.predict_workload(workload)
    true_b = predictor.buckets.bucket_of(workload.output_tokens)
    hit = pred.bucket == true_b
    out = {
        "requests": len(workload),
        "accuracy": float(hit.mean()),
        "point_mae_tokens": float(np.mean(np.abs(pred.point_tokens - workload.output_tokens))),
        "per_task": {},
    }
    for k, nm in enumerate(workload.task_names):
        m = workload.task == k
        if m.any():
            out["per_task"][nm] = float(hit[m].mean())
    return out


def learned_accuracy_report(n: int = 31329, seed: int = 0, test_frac: float = 0.2,
                            buckets=PAPER_PREDICTOR_BUCKETS, profile="llama2-7b-v100") -> dict:
    """Train/test the learned predictor on the paper mix (the paper's 31,329 samples, 80:20) with
    and without the task feature; report the held-out accuracies, the exact Bayes ceilings of our
    synthetic mix and the paper's numbers."""
    from .mixes import get_mix  # local: mixes does not import predictors
    from .workload import Workload

    mix = get_mix("paper-mix", profile)
    buckets = _scheme(buckets)
    rng = np.random.default_rng(seed)
    p, o, t = mix.sample(n, rng)
    n_test = int(round(test_frac * n))
    perm = rng.permutation(n)
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    def wl(idx):
        return Workload(np.zeros(idx.size), p[idx], o[idx], t[idx], mix.task_names, name="paper-mix sample")

    train, test = wl(train_idx), wl(test_idx)
    report = {"n_samples": n, "n_test": n_test, "seed": seed, "buckets": buckets.name, "profile": str(profile),
              "paper_with_task": PAPER_ACCURACY_WITH_TASK, "paper_without_task": PAPER_ACCURACY_WITHOUT_TASK}
    for use_task, key in ((True, "with_task"), (False, "without_task")):
        pred = LearnedPredictor(buckets, use_task=use_task, n_tasks=len(mix.task_names)).fit(train)
        ev = evaluate_predictor(pred, test)
        report[key] = ev["accuracy"]
        report[key + "_per_task"] = ev["per_task"]
        report[key + "_train"] = evaluate_predictor(pred, train)["accuracy"]
        report[key + "_bayes_ceiling"] = mix.bayes_accuracy(buckets.edges, use_task=use_task)
    prior = TaskPriorPredictor(buckets).fit(train)
    report["task_prior"] = evaluate_predictor(prior, test)["accuracy"]
    report["majority_bucket"] = float(np.max(np.bincount(buckets.bucket_of(test.output_tokens),
                                                         minlength=buckets.n_buckets)) / n_test)
    return report


def format_accuracy_report(r: dict) -> str:
    pct = lambda x: f"{100 * x:6.2f}%"  # noqa: E731
    lines = [
        f"Learned output-length predictor on the paper mix ({r['n_samples']} samples, {r['n_test']} held out, "
        f"seed {r['seed']}, buckets {r['buckets']}, profile {r['profile']})",
        f"{'':28s} {'ours (test)':>12s} {'ours (train)':>12s} {'Bayes ceiling':>14s} {'paper':>8s}",
        f"{'with task feature':28s} {pct(r['with_task']):>12s} {pct(r['with_task_train']):>12s} "
        f"{pct(r['with_task_bayes_ceiling']):>14s} {pct(r['paper_with_task']):>8s}",
        f"{'without task feature':28s} {pct(r['without_task']):>12s} {pct(r['without_task_train']):>12s} "
        f"{pct(r['without_task_bayes_ceiling']):>14s} {pct(r['paper_without_task']):>8s}",
        f"{'task-prior predictor':28s} {pct(r['task_prior']):>12s}",
        f"{'always the majority bucket':28s} {pct(r['majority_bucket']):>12s}",
        "per task (with / without task feature):",
    ]
    for k in r["with_task_per_task"]:
        lines.append(f"  {k:26s} {pct(r['with_task_per_task'][k]):>12s} {pct(r['without_task_per_task'][k]):>12s}")
    return "\n".join(lines)


def main(argv=None) -> int:  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=31329)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--buckets", default=PAPER_PREDICTOR_BUCKETS.name, choices=sorted(_SCHEMES))
    ap.add_argument("--profile", default="llama2-7b-v100")
    args = ap.parse_args(argv)
    print(format_accuracy_report(learned_accuracy_report(args.n, args.seed, buckets=args.buckets,
                                                         profile=args.profile)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import entry_point

    raise SystemExit(entry_point()(main)())
