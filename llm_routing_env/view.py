"""What a router sees: the one boundary between the simulated cluster and every router.

A :class:`RouterView` holds what a real router can read at its decision time ``t``: the router
queue and the request at its head (its prompt and the length predictor's outputs), and each
instance as of its last iteration *finished* by ``t``, as vLLM's metrics show it (an iteration in
flight counts its requests as running and its prefill as pending, but has generated, freed and
completed nothing; ``docs/simulator.md``). It never holds a true output length or an arrival after
``t``, and it holds no reference to the routing core, the simulator or the workload: its
per-instance fields are read on first access through :class:`RouterQueries`, functions the core
gives it that return router-visible data only. Heuristics, observation encoders, rewards and
learned agents read this.

A :class:`ClairvoyantView` adds the truth (true output lengths, the simulator itself) for the
clairvoyant oracles, which are flagged and reported apart. Only the evaluator makes one, and only
for a router whose ``clairvoyant`` flag is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from .impact import mixing_penalty
from .profiles import iteration_time_ms


@dataclass(frozen=True)
class RouterQueries:
    """Functions (no arguments) that a RouterView reads its per-instance fields through; each
    returns router-visible data only (the simulator's router queries, sim/views.py)."""

    instance_state: Callable          # -> cluster.InstanceState, (B, N) arrays
    decode_totals: Callable           # -> (number decoding, their context sum), (B, N) each
    predicted_decode_sets: Callable   # -> (members per predicted class (B, N, K), fewest predicted remaining (B, N))
    predicted_remaining: Callable     # -> (B, N, K) predicted remaining decode tokens of running + waiting requests
    prefix_cached_blocks: Callable    # -> (B, N) blocks holding a cached prefix, as of the last iteration finished
    head_prefix_hit_blocks: Callable  # -> (B, N) the head's prefix blocks each instance holds, as the router knows it
    head_prefix_ids: Callable         # (b) -> env b's head request's prefix block ids (int64, may be empty)


class RouterView:
    """What a router can see, for B environments (arrays lead with B; instances are (B, N)).

    Router queue and the request to route: ``time_s``, ``queue_len``, ``has_request`` (bool),
    ``head_request`` (id, -1 if none), ``head_prompt_tokens``, ``head_task``, ``head_pred_bucket``
    (DQN buckets 0-256, 256-2048, 2048+), ``head_pred_tokens`` (point estimate), ``head_wait_s``,
    ``head_session`` (its chat session, what an ``x-session-id`` header carries; -1 if none),
    ``head_prefix_blocks`` (the full 16-token prefix blocks its prompt declares; 0 without) and
    ``head_prefix_ids(b)`` (env b's head prefix block ids: the router reads the prompt, so it may hash it).
    Per instance (B, N), as of its last iteration finished: ``num_running``, ``num_waiting``,
    ``num_prefilling`` (waiting + running with an unfinished prefill), ``kv_blocks_used``,
    ``kv_blocks_free``, ``pending_prefill_tokens``, ``decode_context_tokens`` (KV of the decoding
    requests), ``decode_bucket_counts`` (B, N, K: decoding requests by predicted bucket),
    ``pred_remaining_tokens`` (B, N, K: predicted remaining decode tokens of running and waiting
    requests by bucket), ``decode_iteration_s`` (the decode batch's iteration time by the profile),
    ``earliest_completion_s`` (predicted time to the first completion, 0 if none), ``busy_for_s``
    (until the iteration in flight ends: the profile's time for the batch it scheduled),
    ``impact`` (the head request's mixing penalty, larger is better), ``action_mask`` (B, A),
    ``prefix_cached_blocks`` (blocks holding a cached prefix, referenced or cached free: vLLM exports
    cache usage, so every ``cache_knowledge`` sees it) and ``head_prefix_hit_blocks`` (the head
    request's leading prefix blocks the router believes the instance holds, capped as the engine
    caps a hit: ``"approximate"``, the router's own routing history (prefix_index.py);
    ``"exact"``, the engines' KV events up to their last iteration finished; ``"polled"``, 0).
    Static per instance: ``kv_capacity_blocks``, ``max_num_seqs``, ``prefill_s_per_token``,
    ``coefficients`` (N, 7).

    Made by ``RoutingCore.view()``; tests may pass any field as a keyword argument instead.
    """

    FIELDS = ("time_s", "queue_len", "has_request", "head_request", "head_prompt_tokens", "head_task",
              "head_pred_bucket", "head_pred_tokens", "head_wait_s", "head_prefix_blocks", "head_session",
              "head_prefix_hit_blocks", "prefix_cached_blocks", "head_prefix_ids", "num_running", "num_waiting",
              "num_prefilling", "kv_blocks_used", "kv_blocks_free", "pending_prefill_tokens",
              "decode_context_tokens", "decode_bucket_counts", "pred_remaining_tokens", "decode_iteration_s",
              "earliest_completion_s", "busy_for_s", "impact", "action_mask", "kv_capacity_blocks",
              "max_num_seqs", "prefill_s_per_token", "coefficients", "impact_config")

    def __init__(self, queries: RouterQueries | None = None, **fields):
        unknown = set(fields) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        self._queries = queries
        ids = fields.pop("head_prefix_ids", None)  # (given: a sequence of B arrays, read by the method)
        self._given_prefix_ids = ids
        self.__dict__.update(fields)

    def head_prefix_ids(self, b: int) -> np.ndarray:
        """Env ``b``'s head request's prefix block ids (int64; empty without a request or prefix)."""
        if self._given_prefix_ids is not None:
            return np.asarray(self._given_prefix_ids[b], dtype=np.int64)
        return self._queries.head_prefix_ids(b)

    @cached_property
    def prefix_cached_blocks(self):
        return self._queries.prefix_cached_blocks()

    @cached_property
    def head_prefix_hit_blocks(self):
        return self._queries.head_prefix_hit_blocks()

    # -- instance counters, as of each instance's last iteration finished
    @cached_property
    def _state(self):
        return self._queries.instance_state()

    @cached_property
    def num_running(self):
        return self._state.num_running

    @cached_property
    def num_waiting(self):
        return self._state.num_waiting

    @cached_property
    def kv_blocks_used(self):
        return self._state.kv_blocks_used

    @cached_property
    def kv_blocks_free(self):
        return self._state.kv_blocks_free

    @cached_property
    def pending_prefill_tokens(self):
        return self._state.pending_prefill_tokens

    @cached_property
    def busy_for_s(self):
        return np.maximum(self._state.busy_until_s - self.time_s[:, None], 0.0)

    @cached_property
    def _decode_totals(self):
        return self._queries.decode_totals()

    @cached_property
    def _n_decoding(self):
        return self._decode_totals[0]

    @cached_property
    def num_prefilling(self):
        # the running requests outside the decode set are the ones whose prefill is unfinished
        return self.num_waiting + self.num_running - self._n_decoding

    @cached_property
    def decode_context_tokens(self):
        return self._decode_totals[1]

    @cached_property
    def _predicted_decode_sets(self):
        return self._queries.predicted_decode_sets()

    @cached_property
    def decode_bucket_counts(self):
        return self._predicted_decode_sets[0]

    @cached_property
    def pred_remaining_tokens(self):
        return self._queries.predicted_remaining()

    @cached_property
    def decode_iteration_s(self):
        coeffs = self.coefficients.T[:, None, :]  # (7, 1, N) broadcast over B
        t_ms = iteration_time_ms(coeffs, self._n_decoding, 0, 0, self.decode_context_tokens)
        return np.where(self._n_decoding > 0, t_ms / 1000.0, 0.0)

    @cached_property
    def earliest_completion_s(self):
        decoding = self._n_decoding > 0
        # at least the token of the next iteration (an empty decode set has no first: inf)
        to_first = np.maximum(np.where(decoding, self._predicted_decode_sets[1], 0.0), 1.0)
        return np.where(decoding, to_first * self.decode_iteration_s, 0.0)

    @cached_property
    def impact(self):
        return mixing_penalty(self.impact_config, self.head_prompt_tokens, self.head_pred_tokens,
                              self.decode_context_tokens, self.num_running + self.num_waiting)


class ClairvoyantView(RouterView):
    """A RouterView plus the truth, for clairvoyant oracles only (reported apart).

    ``head_output_tokens`` (B,): the true output length of the head request (0 without one);
    ``remaining_tokens`` (B, N): the true remaining decode tokens of the requests on each instance
    (running and waiting, as the router sees them); ``simulator``: the live simulator (a what-if
    oracle copies it); ``head_arrival_s`` (B,): the head request's arrival time, which with
    ``head_request``, ``head_prompt_tokens`` and ``head_output_tokens`` is what dispatching it to a
    copy of the simulator takes.
    """

    FIELDS = RouterView.FIELDS + ("head_output_tokens", "remaining_tokens", "simulator", "head_arrival_s")
