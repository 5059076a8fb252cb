"""llm-routing-env: a fast NumPy simulator of an LLM serving cluster and a Gymnasium environment for request routing.

Importing the package registers ``llm_routing_env/LLMRouting-v0`` (every setting is a keyword
argument; single env and native vector env) and one id per common configuration (``ENV_IDS``:
the keyword arguments each fixes; any of them can still be overridden in ``gym.make``).
"""

from gymnasium.envs.registration import register, registry

from .cluster import ClusterConfig, SchedulerConfig
from .profiles import LatencyProfile, get_profile, profile_names

ENV_ID = "llm_routing_env/LLMRouting-v0"

#: registered id -> (the gym.make keyword arguments it fixes, what it is)
ENV_IDS = {
    ENV_ID: ({}, "configurable; defaults: paper-v100, tick mode, the paper's observation, latency reward"),
    "llm_routing_env/LLMRouting-arrival-v0": ({"mode": "arrival"},
                                              "paper-v100, one decision per request, the paper's observation"),
    "llm_routing_env/LLMRouting-rich-v0": ({"mode": "arrival", "obs": "rich"},
                                           "paper-v100, one decision per request, the rich observation (request "
                                           "features + one row per instance, for per-instance scoring policies)"),
    "llm_routing_env/LLMRouting-heavy-v0": ({"scenario": "paper-v100-heavy", "mode": "arrival"},
                                            "paper-v100 at 1.5x its saturation rate, one decision per request"),
    "llm_routing_env/LLMRouting-mixed-fleet-v0": ({"scenario": "mixed-fleet", "mode": "arrival", "obs": "rich"},
                                                  "2 A100 + 2 V100 instances, one decision per request, rich "
                                                  "observation"),
    "llm_routing_env/LLMRouting-azure-conv-v0": ({"scenario": "azure-conv-v100", "mode": "arrival", "obs": "rich"},
                                                 "the synthetic Azure conversation trace on 4 V100 instances "
                                                 "(KV-bound), "
                                                 "one decision per request, rich observation"),
}

for _id, (_kwargs, _) in ENV_IDS.items():
    if _id not in registry:
        register(
            id=_id,
            entry_point="llm_routing_env.env:LLMRoutingEnv",
            vector_entry_point="llm_routing_env.env:LLMRoutingVectorEnv",
            kwargs=dict(_kwargs),
        )

__all__ = ["ENV_ID", "ENV_IDS", "ClusterConfig", "SchedulerConfig", "LatencyProfile", "get_profile", "profile_names"]
