"""The paper's workload-impact estimator (arXiv 2408.13510; Eq. 1-2, whose exact forms are lost).

For the request at the head of the router queue (``p`` prompt tokens, ``d`` predicted decode tokens)
and every instance ``m``, our documented reconstruction:

* **prefill impact** (Eq. 1): the time its prefill takes on ``m``, growing with its prompt and with
  the tokens already decoding there: ``T_p = grad1 * p + grad2 * C_m`` (seconds), ``C_m`` = the
  decode context (prompt + generated tokens) of the requests decoding on ``m``. The penalty is
  ``r_p = -min(T_p, 1)`` when ``T_p > epsilon`` and 0 below the threshold: range [-1, 0].
* **decode impact** (Eq. 2): what the newcomer costs the ``n_m`` requests already on ``m`` (running
  or waiting there): each is stalled by its prefill and shares iterations with its decode,
  ``stall = n_m * (grad1 * p + grad2 * d)`` seconds; ``r_d = 1 - 2 * min(stall / tau, 1)`` with
  ``tau = 1 s``: +1 on an empty instance, -1 where it would stall others by a second or more.
* **mixing penalty**: ``r_mix = alpha * r_p + (1 - alpha) * r_d`` (alpha = 0.5); larger is better.
* **guidance** ``h`` for an action: ``r_mix(chosen) - max_m r_mix(m)`` (<= 0; 0 for the
  least-impact instance and for the hold action).

``grad1 = 3.2e-4`` s per prompt token and ``grad2 = 3.3e-5`` are the paper's V100 gradients (§1.2);
``epsilon = 0.05`` s (never stated by the paper) keeps short prefills free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImpactConfig:
    grad1_s_per_prompt_token: float = 3.2e-4
    grad2_s_per_token: float = 3.3e-5
    epsilon_s: float = 0.05
    alpha: float = 0.5
    tau_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("grad1_s_per_prompt_token", "grad2_s_per_token", "epsilon_s", "tau_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or (name == "tau_s" and v == 0):
                raise ValueError(f"impact {name} must be a finite number >= 0 (tau_s > 0), got {v!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise ValueError(f"impact alpha must be in (0, 1), got {self.alpha!r}")


def mixing_penalty(cfg: ImpactConfig, prompt_tokens, predicted_decode_tokens, decode_context_tokens,
                   requests_on_instance) -> np.ndarray:
    """``r_mix`` per instance: (B,) request features against (B, N) instance state -> (B, N)."""
    p = np.asarray(prompt_tokens, dtype=np.float64)[:, None]
    d = np.asarray(predicted_decode_tokens, dtype=np.float64)[:, None]
    prefill_s = cfg.grad1_s_per_prompt_token * p + cfg.grad2_s_per_token * decode_context_tokens
    r_prefill = np.where(prefill_s > cfg.epsilon_s, -np.minimum(prefill_s, 1.0), 0.0)
    stall_s = requests_on_instance * (cfg.grad1_s_per_prompt_token * p + cfg.grad2_s_per_token * d)
    r_decode = 1.0 - 2.0 * np.minimum(stall_s / cfg.tau_s, 1.0)
    return cfg.alpha * r_prefill + (1.0 - cfg.alpha) * r_decode


def guidance(r_mix: np.ndarray, action: np.ndarray, has_request: np.ndarray) -> np.ndarray:
    """``h`` per env: chosen instance's ``r_mix`` minus the best one; 0 for hold or no request."""
    n = r_mix.shape[1]
    dispatched = has_request & (action < n)
    chosen = np.take_along_axis(r_mix, np.minimum(action, n - 1)[:, None], axis=1)[:, 0]
    return np.where(dispatched, chosen - r_mix.max(axis=1), 0.0)
