"""Seed streams: training, validation and evaluation episodes never share a workload, by construction.

An *env seed* ``s`` (``LLMRoutingEnv.reset(seed=s)``, sub-env ``i`` of ``LLMRoutingVectorEnv.reset(seed=s0)``
with ``s = s0 + i``, ``RoutingCore.reset(seeds=[s])``) starts a generator from which the env draws
the workload of its first episode and, when it resets again without a seed, of every later one.
Distinct env seeds give independent generators. The env seeds are split into three disjoint ranges,
one per use; every script takes its episodes from its own range through this module::

    stream          env seeds               used by
    evaluation      [0, 2**32)              evaluate.py / agents/evaluation.py: episode i of --seed S
                                            is env seed S + i (as LLMRoutingVectorEnv.reset(seed=S) gives
                                            sub-env i); the model cards' evaluation (seed 20000)
    validation      [2**32, 2 * 2**32)      train.py's periodic evaluation (model selection)
    training        [2 * 2**32, 3 * 2**32)  train.py --seed S with K sub-envs: env seeds
                                            2 * 2**32 + S + k, k < K, each continuing its generator

``stream.env_seeds(seed, count)`` is the only way the scripts turn a user's ``--seed`` into env
seeds, and it refuses a seed whose episodes would leave the stream. Model cards record the
training and validation env seeds (:func:`seeds_record`); :func:`card_seed_overlap` tells the
evaluator whether a model's recorded seeds meet the episodes it is evaluated on.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

__all__ = ["SeedStream", "EVALUATION", "VALIDATION", "TRAINING", "STREAMS", "seeds_record", "card_seed_overlap"]

STREAM_SIZE = 2**32


def _integer(value, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # int and NumPy integers, not floats
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class SeedStream:
    """A range of env seeds reserved for one use (see the module docstring)."""

    name: str
    first_env_seed: int
    size: int = STREAM_SIZE

    def env_seeds(self, seed: int, count: int) -> range:
        """The env seeds of ``count`` consecutive episodes (or sub-envs) from the stream's ``seed``-th;
        ValueError if ``seed`` is not a non-negative integer or the episodes would leave the stream."""
        seed, count = _integer(seed, f"{self.name} seed"), _integer(count, f"{self.name} episode count")
        if seed < 0:
            raise ValueError(f"{self.name} seed must be a non-negative integer, got {seed}")
        if count < 1:
            raise ValueError(f"{self.name} episode count must be a positive integer, got {count}")
        if seed + count > self.size:
            raise ValueError(f"{self.name} seeds run from 0 to {self.size - 1}: seed {seed} with {count} "
                             f"episodes goes past the end of the {self.name} stream")
        return range(self.first_env_seed + seed, self.first_env_seed + seed + count)

    @property
    def env_seed_range(self) -> range:
        return range(self.first_env_seed, self.first_env_seed + self.size)


EVALUATION = SeedStream("evaluation", 0)
VALIDATION = SeedStream("validation", STREAM_SIZE)
TRAINING = SeedStream("training", 2 * STREAM_SIZE)
STREAMS = (EVALUATION, VALIDATION, TRAINING)


def seeds_record(stream: SeedStream, seed: int, count: int) -> dict:
    """What a model card stores about the episodes a model learned from (or was selected on)."""
    r = stream.env_seeds(seed, count)
    return {"stream": stream.name, "seed": seed, "env_seeds": [r.start, r.stop],
            "note": "env seeds [first, stop); each sub-env's generator continues across its episodes"}


def _recorded_range(record, what: str, card_name: str) -> range:
    try:
        first, stop = record["env_seeds"]
        first, stop = int(first), int(stop)
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"{card_name}: model card field seeds.{what} must hold env_seeds: [first, stop), "
                         f"got {record!r}") from e
    if not 0 <= first < stop:
        raise ValueError(f"{card_name}: model card field seeds.{what}.env_seeds must satisfy 0 <= first < stop, "
                         f"got [{first}, {stop})")
    return range(first, stop)


def card_seed_overlap(card: dict | None, env_seeds: range, card_name: str = "model card") -> dict:
    """Whether a model card's training / validation env seeds meet the evaluated ``env_seeds``.

    Returns ``{"known": bool, "overlap": bool | None, "message": str}``: ``known`` is False for a
    card without a ``seeds`` field (trained before seed streams: "training seeds unknown"), then
    ``overlap`` is None. ValueError if the field is there but malformed."""
    seeds = (card or {}).get("seeds")
    if seeds is None:
        return {"known": False, "overlap": None,
                "message": f"{card_name}: training seeds unknown (the model card records none); "
                           "cannot check them against the evaluated episodes"}
    if not isinstance(seeds, dict) or "training" not in seeds:
        raise ValueError(f"{card_name}: model card field seeds must be a mapping with a 'training' entry, "
                         f"got {seeds!r}")
    shared = []
    for what in ("training", "validation"):
        if seeds.get(what) is None:
            continue
        used = _recorded_range(seeds[what], what, card_name)
        lo, hi = max(used.start, env_seeds.start), min(used.stop, env_seeds.stop)
        if lo < hi:
            shared.append(f"{hi - lo} of its {what} env seeds [{used.start}, {used.stop})")
    if shared:
        return {"known": True, "overlap": True,
                "message": f"{card_name}: the evaluated episodes (env seeds [{env_seeds.start}, {env_seeds.stop})) "
                           f"include {' and '.join(shared)}: the model is scored on workloads it learned from"}
    return {"known": True, "overlap": False, "message": ""}
