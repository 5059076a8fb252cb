"""llm-routing-env: a fast NumPy simulator of an LLM serving cluster and a Gymnasium environment for request routing."""

from .cluster import ClusterConfig, SchedulerConfig
from .profiles import LatencyProfile, get_profile, profile_names

__all__ = ["ClusterConfig", "SchedulerConfig", "LatencyProfile", "get_profile", "profile_names"]
