"""Short runs of the library examples in examples/ (their speed is measured in benchmarks/, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _e2e(text: str, label: str) -> float:
    match = re.search(rf"mean E2E\s+{re.escape(label)}\s*:\s*([0-9.]+) s", text)
    assert match, text
    return float(match.group(1))


@pytest.mark.parametrize("extra", [[], ["--group-size", "1", "--num-steps", "64"]],
                         ids=["input-driven-baseline", "plain-gae"])
def test_cleanrl_ppo_short_run(extra):
    pytest.importorskip("torch")
    out = _run("cleanrl_ppo.py", "--num-requests", "60", "--num-envs", "8", "--total-timesteps", "2000",
               "--eval-episodes", "4", *extra)
    learned, rr = _e2e(out, "learned PPO"), _e2e(out, "round-robin")
    assert 0 < learned < 600 and 0 < rr < 60
    assert "iter" in out and "wall time" in out


def test_cleanrl_ppo_tick_mode_masks():
    """Tick mode has the hold action and masked sends (empty router queue): -inf logits path."""
    pytest.importorskip("torch")
    out = _run("cleanrl_ppo.py", "--mode", "tick", "--num-requests", "30", "--num-envs", "4", "--num-steps", "64",
               "--total-timesteps", "500", "--eval-episodes", "2")
    assert _e2e(out, "round-robin") > 0


@pytest.mark.slow
def test_cleanrl_ppo_beats_round_robin():
    """The default run (about a minute on 2 cores) learns a router better than round-robin."""
    pytest.importorskip("torch")
    out = _run("cleanrl_ppo.py", timeout=900)
    assert _e2e(out, "learned PPO") < _e2e(out, "round-robin")



def test_torchrl_ppo_short_run(load_example):
    pytest.importorskip("torchrl")
    pytest.importorskip("tensordict")
    example = load_example("torchrl_ppo")
    out = example.main(["--num-requests", "40", "--num-envs", "4", "--frames-per-batch", "320",
                        "--total-frames", "960", "--minibatch", "160", "--eval-episodes", "3"])
    assert out["training_mean_e2e_s"] and all(0 < x < 60 for x in out["training_mean_e2e_s"])
    assert 0 < out["learned_mean_e2e_s"] < 600 and 0 < out["round_robin_mean_e2e_s"] < 60


def test_torchrl_manual_reset_adapter(load_example):
    """TorchRL resets finished sub-envs itself (AutoresetMode.DISABLED): the adapter never lets
    the native env's NEXT_STEP autoreset happen, and TorchRL's spec check passes."""
    pytest.importorskip("torchrl")
    import numpy as np
    from torchrl.envs.utils import check_env_specs

    example = load_example("torchrl_ppo")
    args = example.parse_args(["--num-requests", "10"])
    env = example.make_env(args, num_envs=3, seed=0)
    check_env_specs(env)
    td = env.rollout(35, break_when_any_done=False)       # 3 episodes of 10 decisions per sub-env
    assert int(td["next", "done"].sum()) == 9
    assert td["action_mask"].shape == (3, 35, env.action_spec.space.n)
    # a finished sub-env that is stepped without a reset is an error, not a silent autoreset
    raw = example.ManualResetVectorEnv(example.LLMRoutingVectorEnv(num_envs=1, num_requests=2, mode="arrival"))
    raw.reset(seed=0)
    for _ in range(2):
        raw.step(np.zeros(1, dtype=np.int64))
    with pytest.raises(RuntimeError, match="not reset"):
        raw.step(np.zeros(1, dtype=np.int64))
    raw.reset(options={"reset_mask": np.array([True])})
    raw.step(np.zeros(1, dtype=np.int64))
