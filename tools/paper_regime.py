"""Round-robin's mean E2E on paper-v100 as the arrival rate grows (docs/scenarios.md).

The paper's round-robin averages about 170 s over its 2,000-request episodes (paper-facts §6.2).
This prints how close our calibrated cluster can get:  python tools/paper_regime.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_routing_env.scenarios import load_scenario, round_robin_mean_e2e  # noqa: E402

base = load_scenario("paper-v100")
print(f"paper-v100 cluster, saturation {base.saturation_rate():.1f} req/s; 2,000 requests, seeds 0-2")
print(f"{'rate req/s':>10} {'load':>6} {'RR mean E2E s':>14}")
for rate in (20, 25, 30, 40, 80, 1000):
    s = base.with_overrides(rate_per_s=float(rate))
    e2e = sum(round_robin_mean_e2e(s, seed) for seed in range(3)) / 3
    print(f"{rate:>10} {rate / base.saturation_rate():>6.2f} {e2e:>14.1f}")
