"""``EnvConfig``: everything ``gym.make`` accepts, validated on construction (errors name the
setting). The environment, the vector environment, the evaluator and the trainer build one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from .impact import ImpactConfig
from .observations import RICH_LAYOUT, check_layout
from .predictors import predictor_names
from .scenarios import Scenario, load_scenario

MODES = ("tick", "arrival")
OBSERVATIONS = ("paper", "rich")
REWARDS = ("latency", "paper")
# environment settings that change the scenario rather than the environment
SCENARIO_OVERRIDES = ("rate_per_s", "load", "num_instances", "profile", "scheduler", "chunked_prefill", "num_requests",
                      "overlong", "cache_knowledge", "prefix_index_capacity_blocks")


@dataclass(frozen=True)
class EnvConfig:
    """Everything ``gym.make`` accepts; validated on construction (errors name the setting)."""

    scenario: Scenario
    mode: str = "tick"
    obs: str = "paper"
    obs_layout: int = RICH_LAYOUT  # the rich observation's layout version (observations.py)
    reward: str = "latency"
    reward_scale: float = 0.01
    completion_reward: float = 60.0
    predictor: str = "task-prior"
    predictor_kwargs: dict = field(default_factory=dict)
    decision_interval_s: float = 0.02
    skip_idle_ticks: bool = True
    max_sim_time_s: float | None = None
    max_episode_steps: int | None = None
    impact: ImpactConfig = ImpactConfig()

    @classmethod
    def from_kwargs(cls, scenario="paper-v100", **kwargs) -> "EnvConfig":
        """Build from ``gym.make`` keyword arguments. Scenario overrides (``rate_per_s``, ``load``,
        ``num_instances``, ``profile``, ``scheduler``, ``chunked_prefill``, ``num_requests``, ``overlong``,
        ``cache_knowledge``, ``prefix_index_capacity_blocks``) change the scenario."""
        known = {f.name for f in fields(cls)} - {"scenario"}
        overrides = {k: kwargs.pop(k) for k in SCENARIO_OVERRIDES if k in kwargs}
        unknown = set(kwargs) - known
        if unknown:
            raise ValueError(f"unknown environment setting(s) {sorted(unknown)}; known: "
                             f"{sorted(known | {'scenario', *SCENARIO_OVERRIDES})}")
        if isinstance(kwargs.get("impact"), dict):
            kwargs["impact"] = ImpactConfig(**kwargs["impact"])
        return cls(scenario=load_scenario(scenario).with_overrides(**overrides), **kwargs)

    def __post_init__(self) -> None:
        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

        choice("mode", MODES)
        choice("obs", OBSERVATIONS)
        check_layout(self.obs_layout)
        choice("reward", REWARDS)
        choice("predictor", tuple(predictor_names()))
        for name in ("reward_scale", "decision_interval_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        v = self.completion_reward
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"completion_reward must be a finite number, got {v!r}")
        if not isinstance(self.skip_idle_ticks, bool):
            raise ValueError(f"skip_idle_ticks must be True or False, got {self.skip_idle_ticks!r}")
        v = self.max_sim_time_s
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"max_sim_time_s must be a positive number or None, got {v!r}")
        v = self.max_episode_steps
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {v!r}")
        if not isinstance(self.predictor_kwargs, dict):
            raise ValueError(f"predictor_kwargs must be a dict, got {self.predictor_kwargs!r}")
        if not isinstance(self.impact, ImpactConfig):
            raise ValueError(f"impact must be an ImpactConfig or a dict of its fields, got {self.impact!r}")

    @property
    def num_instances(self) -> int:
        return self.scenario.num_instances

    @property
    def num_actions(self) -> int:
        return self.num_instances + (1 if self.mode == "tick" else 0)

    def max_requests(self) -> int:
        s = self.scenario
        if s.num_requests is not None:
            return s.num_requests
        return int(2 * s.offered_rate() * s.duration_s + 100)


