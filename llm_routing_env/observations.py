"""Observation encodings: the one place that turns a :class:`RouterView` into the agent's vector.

``paper`` (the paper's state, §4.2; 3 + 6N numbers, 27 for N = 4), all in [0, 4]:

====================  ===========================================================================
index                 meaning
====================  ===========================================================================
0                     router queue length, capped at 512 (4 x max batch size), / 512
1                     next request's prompt tokens / max_model_len (0 when the queue is empty)
2                     next request's predicted decode bucket / (K - 1), DQN buckets 0-256, 256-2048, 2048+
3 + 6m                instance m: requests in prefill (waiting or prefilling) / max_num_seqs (n_p = 1)
4 + 6m .. 6 + 6m      instance m: decoding requests per predicted decode bucket / max_num_seqs
7 + 6m                instance m: available capacity, min(1 - running / max_num_seqs, free KV / KV), 2 decimals
8 + 6m                instance m: predicted time to its earliest completion (s, 2 decimals) / 10
====================  ===========================================================================

Our reading where the paper is ambiguous (arXiv 2408.13510): one prefill count per instance (the
paper never gives n_p; 1 makes the stated 27 numbers for N = 4), capacity as the scarcer of batch
slots and KV blocks (the paper's g is unspecified), and every entry scaled to about unit range
(the paper only rounds and caps the queue).

``rich``: ``G = 8`` request/router features followed by ``N`` rows of ``F`` instance
features (``F = 14`` in the current layout, 12 in layout 1), so a policy can score every instance with the same weights (the row layout does not
depend on N). Request: has-request flag, router queue / 64, log prompt tokens / log max_model_len,
predicted bucket one-hot (3), predicted decode tokens / 1000, wait at the router / 10 s. Instance:
running / max_num_seqs, waiting / max_num_seqs, KV utilization, pending prefill tokens / 4096,
predicted remaining decode tokens per length class / 10,000 (3), estimated time to drain / 10 s,
decode iteration time / 0.1 s, time until the iteration in flight ends / 1 s, the head request's
mixing penalty (impact.py, in [-1, 1]), and its prefill time there (s); from layout 2 on, the
head request's matched-prefix fraction there (``head_prefix_hit_blocks`` x 16 / prompt tokens,
under the environment's ``cache_knowledge``; 0 without a request) and the instance's prefix cache
usage (``prefix_cached_blocks`` / KV capacity). Values are clipped to [-1, 4].

**Layouts.** The ``rich`` layout has a version (:data:`RICH_LAYOUT`, the current one;
:data:`RICH_LAYOUT_FEATURES` gives each version's F): a model card records the layout its model was
trained on (``obs_layout``; a card without it means layout 1, the 12 features before the cache
features), and the environment (``obs_layout``) and the learned router build that layout, so an
older model keeps its exact observations.

True output lengths never enter: only the predictor's outputs and tokens generated so far.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .profiles import KV_BLOCK_TOKENS
from .view import RouterView

RICH_GLOBAL_FEATURES = 8
RICH_LAYOUT_FEATURES = {1: 12, 2: 14}  # instance features per version of the rich layout
RICH_LAYOUT = 2                        # the current layout (what new models train on)
RICH_INSTANCE_FEATURES = RICH_LAYOUT_FEATURES[RICH_LAYOUT]
OBS_HIGH = 4.0


def check_layout(layout) -> int:
    if isinstance(layout, bool) or layout not in RICH_LAYOUT_FEATURES:
        raise ValueError(f"obs_layout must be one of {', '.join(map(str, RICH_LAYOUT_FEATURES))} (the rich "
                         f"observation's layout versions; current {RICH_LAYOUT}), got {layout!r}")
    return int(layout)


def observation_size(obs: str, num_instances: int, layout: int = RICH_LAYOUT) -> int:
    if obs == "paper":
        return 3 + 6 * num_instances
    return RICH_GLOBAL_FEATURES + RICH_LAYOUT_FEATURES[check_layout(layout)] * num_instances


def observation_space(obs: str, num_instances: int, layout: int = RICH_LAYOUT) -> spaces.Box:
    low = 0.0 if obs == "paper" else -1.0
    return spaces.Box(low=low, high=OBS_HIGH, shape=(observation_size(obs, num_instances, layout),), dtype=np.float32)


def encode(obs: str, view: RouterView, max_model_len: int, layout: int = RICH_LAYOUT) -> np.ndarray:
    """(B, D) float32 observations of the given kind (``layout``: the rich layout's version)."""
    return paper_observation(view, max_model_len) if obs == "paper" else rich_observation(view, max_model_len, layout)


def paper_observation(view: RouterView, max_model_len: int) -> np.ndarray:
    B, N, K = view.decode_bucket_counts.shape
    seqs = view.max_num_seqs[None, :]
    capacity = np.clip(np.minimum(1.0 - view.num_running / seqs, view.kv_blocks_free / view.kv_capacity_blocks), 0, 1)
    per_instance = np.concatenate([
        (view.num_prefilling / seqs)[..., None],
        view.decode_bucket_counts / seqs[..., None],
        np.round(capacity, 2)[..., None],
        (np.round(view.earliest_completion_s, 2) / 10.0)[..., None],
    ], axis=2)
    router = np.stack([
        np.minimum(view.queue_len, 512) / 512.0,
        view.head_prompt_tokens / max_model_len,
        view.head_pred_bucket / max(K - 1, 1),
    ], axis=1)
    out = np.concatenate([router, per_instance.reshape(B, 6 * N)], axis=1)
    return np.clip(out, 0.0, OBS_HIGH).astype(np.float32)


def rich_observation(view: RouterView, max_model_len: int, layout: int = RICH_LAYOUT) -> np.ndarray:
    B, N, K = view.decode_bucket_counts.shape
    layout = check_layout(layout)
    # (RICH_GLOBAL_FEATURES and RICH_LAYOUT_FEATURES[layout] for the DQN's K = 3)
    G, F = 5 + K, 9 + K + (2 if layout >= 2 else 0)
    # every feature is written into its place in one array (no concatenation of small pieces)
    out = np.zeros((B, G + F * N))
    has_request = view.has_request
    out[:, 0] = has_request
    out[:, 1] = view.queue_len / 64.0
    out[:, 2] = np.log1p(view.head_prompt_tokens) / np.log1p(max_model_len)
    out[np.arange(B), 3 + view.head_pred_bucket] = has_request  # the predicted bucket, one-hot
    out[:, 3 + K] = view.head_pred_tokens / 1000.0
    out[:, 4 + K] = view.head_wait_s / 10.0
    seqs = view.max_num_seqs[None, :]
    remaining = view.pred_remaining_tokens.sum(axis=2)
    lone_decode_s = (view.coefficients[:, 0] + view.coefficients[:, 1] + view.coefficients[:, 6])[None, :] / 1000.0
    iteration_s = np.where(view.decode_iteration_s > 0, view.decode_iteration_s, lone_decode_s)
    batch = np.clip(view.num_running + view.num_waiting, 1, seqs)
    drain_s = (view.pending_prefill_tokens * view.prefill_s_per_token[None, :] + remaining / batch * iteration_s)
    instance = out[:, G:].reshape(B, N, F)  # (a view)
    instance[..., 0] = view.num_running / seqs
    instance[..., 1] = view.num_waiting / seqs
    instance[..., 2] = view.kv_blocks_used / view.kv_capacity_blocks
    instance[..., 3] = view.pending_prefill_tokens / 4096.0
    instance[..., 4:4 + K] = view.pred_remaining_tokens / 10_000.0
    instance[..., 4 + K] = drain_s / 10.0
    instance[..., 5 + K] = view.decode_iteration_s / 0.1
    instance[..., 6 + K] = view.busy_for_s
    instance[..., 7 + K] = view.impact
    instance[..., 8 + K] = view.head_prompt_tokens[:, None] * view.prefill_s_per_token[None, :]
    if layout >= 2:  # the prefix cache: the head's matched fraction, the cache's usage
        instance[..., 9 + K] = (view.head_prefix_hit_blocks * KV_BLOCK_TOKENS
                                / np.maximum(view.head_prompt_tokens, 1)[:, None])
        instance[..., 10 + K] = view.prefix_cached_blocks / view.kv_capacity_blocks
    return np.clip(out, -1.0, OBS_HIGH, out=out).astype(np.float32)
