"""The benchmark scripts run to the end on today's code (their figures are not checked here: speed is
measured by the benchmarks themselves, never by timed tests). A benchmark broken by a change of an
API it wraps (as the single-env breakdown was by dispatch's prefix_blocks) fails here, not on the
day someone re-measures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("mode", ["tick", "arrival"])
def test_the_env_benchmark_runs_with_its_single_env_breakdown(mode):
    out = _run("benchmarks/bench_env.py", "--quick", "--seconds", "0.05", "--sizes", "1", "--modes", mode,
               "--num-requests", "100", "--warmup", "20")
    assert "gym.make_vec" in out and "single env (gym.make), microseconds per step" in out
    assert "where the overhead goes" in out


def test_the_simulator_benchmark_runs_under_both_schedulers():
    out = _run("benchmarks/bench_simulator.py", "--quick")
    assert "vllm-v0" in out and "vllm-v1" in out


def test_the_simulator_benchmark_runs_the_multiturn_scenario_with_prefix_hits():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_simulator
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    result = bench_simulator.run(1, 4, 0.0, 100, multiturn=True)
    # multiturn-chat's own cluster (vLLM v1, prefix caching on): later turns hit earlier ones
    assert result["scheduler"] == "vllm-v1" and result["N"] == 4
    assert 0.0 < result["prefix_hit_rate"] < 1.0 and result["cpu_requests_per_s"] > 0
