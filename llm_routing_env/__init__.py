"""llm-routing-env: a fast NumPy simulator of an LLM serving cluster and a Gymnasium environment for request routing.

Importing the package registers ``llm_routing_env/LLMRouting-v0`` (single env and native vector env).
"""

from gymnasium.envs.registration import register, registry

from .cluster import ClusterConfig, SchedulerConfig
from .profiles import LatencyProfile, get_profile, profile_names

ENV_ID = "llm_routing_env/LLMRouting-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="llm_routing_env.env:LLMRoutingEnv",
        vector_entry_point="llm_routing_env.env:LLMRoutingVectorEnv",
    )

__all__ = ["ENV_ID", "ClusterConfig", "SchedulerConfig", "LatencyProfile", "get_profile", "profile_names"]
