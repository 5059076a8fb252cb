"""The cluster simulators: where each part of the architecture lives.

* :mod:`.simulator`: :class:`ClusterSimulator`, the fast one (B clusters x N instances in NumPy),
  assembled from
  * :mod:`.state`: the batched state (struct of arrays over instance rows and requests),
  * :mod:`.scheduler`: the step rules of the vLLM schedulers, vectorized over instance rows,
  * :mod:`.views`: the router queries (what a router sees at time t) and the records (the truth);
* :mod:`.reference`: :class:`ReferenceSimulator`, the slow readable one with the same semantics
  and API, the oracle of ``tests/test_differential.py``.

The semantics are specified in ``docs/simulator.md``; the latency model is
:func:`llm_routing_env.profiles.iteration_time_ms`; the cluster configuration, record layout and
input validation both simulators share are in :mod:`llm_routing_env.cluster`.
"""

from .reference import ReferenceSimulator
from .simulator import ClusterSimulator, replay_round_robin

__all__ = ["ClusterSimulator", "ReferenceSimulator", "replay_round_robin"]
