"""Small, named experiments on one instance, used to calibrate profiles against the paper."""

from __future__ import annotations

from .cluster import COMPLETED, ClusterConfig
from .profiles import get_profile
from .sim import ClusterSimulator


def paper_interference_experiment(profile="llama2-7b-v100", joiners: bool = True,
                                  first=(1000, 1000), joiner=(500, 500), every_iterations: int = 50) -> float:
    """E2E latency (s) of one request run on one instance, as in the paper's Fig. 4c (§1.4).

    A request of ``first`` = (prompt, output) tokens runs alone; with ``joiners``, a request of
    ``joiner`` tokens is dispatched each time the first one has generated another
    ``every_iterations`` tokens. The paper reports about 17 s alone and 31 s with joiners on
    Llama-2-7B / V100.
    """
    sim = ClusterSimulator(ClusterConfig([get_profile(profile)]), num_clusters=1, max_requests=2 + first[1] // every_iterations)
    sim.dispatch(0, 0, 0, first[0], first[1], 0.0)
    next_request, next_join_at = 1, every_iterations
    while sim.records().status[0, 0] != COMPLETED:
        # run exactly the next iteration: the one starting at the instance's clock
        sim.advance_to(max(float(sim.busy_until_s[0]), float(sim.now_s[0])) + 1e-9)
        if joiners and sim.records().generated_tokens[0, 0] >= next_join_at and sim.records().status[0, 0] != COMPLETED:
            sim.dispatch(0, next_request, 0, joiner[0], joiner[1], float(sim.now_s[0]))
            next_request += 1
            next_join_at += every_iterations
    return float(sim.records().completion_s[0, 0])
