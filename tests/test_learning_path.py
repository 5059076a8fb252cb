"""Issue #15, the learning path: what a researcher bringing their own agent and library relies on.

Evaluation caps and their messages, train.py's defaults, overrides and model card, rgb_array
rendering under SB3's make_vec_env, masks through gym.make's wrappers, sampled (stochastic)
evaluation, VecNormalize statistics, one error path for every entry point, public citations,
registered ids per configuration and the README's SB3 example.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import llm_routing_env
from llm_routing_env import ENV_ID, ENV_IDS

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_requests": 30}


# ----------------------------------------------------------------------------- 1. evaluation caps
def _drip_router():
    """A tick policy that dispatches only while every instance is idle (as a degenerate greedy agent
    does): before the router-wait cap it ran ~185,000 decisions per 2,000-request episode."""
    from agents.baselines import Router

    class Drip(Router):
        name = "drip"
        modes = ("tick",)

        def _choose(self, view, valid, go):
            idle = (view.num_running + view.num_waiting).sum(axis=1) == 0
            return np.where(idle, 0, -1)

    return Drip


def _run_drip(monkeypatch, num_requests=30, **guards):
    from agents import baselines, evaluation as E

    monkeypatch.setitem(baselines.ROUTERS, "drip", _drip_router())
    spec = E.PolicySpec(label="drip", name="drip", kind="heuristic", mode="tick")
    scenario = E.build_scenario("paper-v100", num_requests=num_requests)
    return E.run_episodes(spec, scenario, 0, range(2), **guards)["episodes"]


def test_a_policy_that_dispatches_only_now_and_then_is_cut_off_with_the_reason(monkeypatch):
    episodes = _run_drip(monkeypatch, router_wait_guard_s=20.0)
    for m in episodes:
        assert m["truncated"] and m["completed"] < 30
        assert m["truncated_reason"] == "cut off: a request waited 20 s at the router"
        assert m["makespan_s"] < 20.0 + 5.0  # arrivals end at ~1.5 s; cut within a few ticks of the cap


def test_the_default_router_wait_cap_ends_a_drip_policy_at_300_s(monkeypatch):
    from agents.evaluation import ROUTER_WAIT_GUARD_S

    assert ROUTER_WAIT_GUARD_S == 300.0
    for m in _run_drip(monkeypatch, num_requests=200):  # about 2.6 s per request alone: 520 s of drip
        assert m["truncated_reason"] == "cut off: a request waited 300 s at the router"
        assert 0 < m["completed"] < 200 and m["makespan_s"] < 310.0


def test_a_policy_that_holds_forever_on_an_idle_cluster_is_cut_off_by_the_idle_cap():
    from agents import evaluation as E
    from agents.baselines import Router, ROUTERS

    class Hold(Router):
        name = "hold"
        modes = ("tick",)

        def _choose(self, view, valid, go):
            return np.full(valid.shape[0], -1)

    ROUTERS["hold-test"] = Hold
    try:
        spec = E.PolicySpec(label="hold-test", name="hold", kind="heuristic", mode="tick")
        m = E.run_episodes(spec, E.build_scenario("paper-v100", num_requests=10), 0, [0])["episodes"][0]
    finally:
        del ROUTERS["hold-test"]
    assert m["completed"] == 0
    assert m["truncated_reason"].startswith("cut off: held requests for 60 s")


def test_evaluate_py_says_why_episodes_were_cut_off(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT))
    import evaluate
    from agents import baselines

    monkeypatch.setitem(baselines.ROUTERS, "drip", _drip_router())
    assert evaluate.main(["--policies", "rr,drip", "--mode", "tick", "--episodes", "1", "--num-requests", "200",
                          "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "drip: 1 of 1 episode(s) cut off: a request waited 300 s at the router" in out
    assert not any(line.startswith("rr: ") for line in out.splitlines())  # round-robin finished: nothing said


@pytest.fixture(scope="module")
def train_module():
    sys.path.insert(0, str(ROOT))
    import train

    return train


def test_train_py_defaults_run_with_a_tiny_budget_and_report_validation(tmp_path, capsys, train_module):
    out = tmp_path / "agent"
    # the defaults (dqn, guided, tick, paper-v100) with a tiny budget and short episodes
    rc = train_module.main(["--out", str(out), "--timesteps", "200", "--eval-freq", "100", "--eval-episodes", "1",
                            "--card-episodes", "0", "--env-kwargs", "num_requests:20",
                            "--hyperparams", "learning_starts:50", "buffer_size:1000"])
    assert rc == 0
    err = capsys.readouterr().err
    assert re.search(r"validation at [\d,]+ steps: ", err)
    assert "final validation at" in err
    card = json.loads(out.with_suffix(".json").read_text())
    # what ran: SB3 steps the 4 envs together, so it overshoots the budget to a multiple of 4
    assert card["timesteps_requested"] == 200 and card["timesteps"] >= 200 and card["timesteps"] % 4 == 0
    hp = card["hyperparameters"]
    assert hp["learning_starts"] == 50 and hp["buffer_size"] == 1000  # given
    assert hp["batch_size"] == 32 and hp["tau"] == 1.0 and hp["gamma"] == 0.99  # SB3's defaults, recorded
    assert hp["policy_kwargs"] == {"net_arch": [64, 64]} and hp["policy"] == "MlpPolicy"
    assert card["hyperparameters_given"] == {"learning_starts": 50, "buffer_size": 1000}
    assert card["discount_schedule"] == "guided"
    assert card["env"] == {"num_requests": 20}


# ------------------------------------------------------------------------ 5. settings and overrides
def test_hyperparams_and_env_kwargs_overrides_are_parsed_and_validated(train_module, capsys):
    s = train_module.parse_settings(["--out", "x", "--config", str(ROOT / "configs/ppo-agnostic.yaml"),
                                     "--hyperparams", "learning_rate:1e-4", "n_steps:256", "hidden:32",
                                     "--env-kwargs", "predictor:learned", "reward_scale:0.05"])
    assert s["hyperparameters"]["learning_rate"] == 1e-4 and s["hyperparameters"]["n_steps"] == 256
    assert s["hyperparameters"]["hidden"] == 32 and s["hyperparameters"]["gae_lambda"] == 0.95  # config kept
    assert s["env"] == {"predictor": "learned", "reward_scale": 0.05}
    with pytest.raises(SystemExit) as e:
        train_module.parse_settings(["--out", "x", "--hyperparams", "lerning_rate:1e-4"])
    assert e.value.code == 2
    assert "unknown hyperparameter(s) ['lerning_rate'] for dqn" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_module.parse_settings(["--out", "x", "--hyperparams", "learning_rate"])  # not key:value
    assert "is not key:value" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown environment setting\(s\) \['rewrd'\]"):
        train_module.parse_settings(["--out", "x", "--env-kwargs", "rewrd:1"])


def test_the_guided_discount_schedule_is_an_explicit_choice_for_ppo(train_module, capsys):
    with pytest.raises(SystemExit):
        train_module.parse_settings(["--out", "x", "--algo", "ppo"])  # variant guided by default
    assert "--discount-schedule" in capsys.readouterr().err
    s = train_module.parse_settings(["--out", "x", "--algo", "ppo", "--discount-schedule", "constant"])
    assert s["discount_schedule"] == "constant"
    assert train_module.parse_settings(["--out", "x"])["discount_schedule"] == "guided"  # dqn: the paper's
    assert train_module.parse_settings(["--out", "x", "--variant", "aware"])["discount_schedule"] == "constant"
    with pytest.raises(SystemExit):
        train_module.parse_settings(["--out", "x", "--variant", "aware", "--discount-schedule", "guided"])


# ------------------------------------------------------------------------------------- 9. help
def test_train_help_documents_every_flag_with_its_default(train_module, capsys):
    with pytest.raises(SystemExit):
        train_module.parse_settings(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--scenario", "paper-v100"), ("--algo", "dqn"), ("--variant", "guided"),
                          ("--obs", "paper"), ("--mode", "tick"), ("--reward", "latency"), ("--timesteps", "100000"),
                          ("--seed", "0"), ("--n-envs", "4"), ("--eval-freq", "20000"), ("--eval-episodes", "4"),
                          ("--card-episodes", "20")):
        assert re.search(re.escape(flag) + r" .*?\(default " + re.escape(default) + r"\)", text), flag
    for flag in ("--hyperparams", "--env-kwargs", "--discount-schedule", "--out", "--resume", "--card-only"):
        assert re.search(re.escape(flag) + r"\S* [^-]*[a-z]{4}", text), flag


def test_evaluate_scenario_defaults_to_paper_v100():
    sys.path.insert(0, str(ROOT))
    import evaluate

    assert evaluate.parse_args(["--policies", "rr"]).scenario == "paper-v100"
    assert evaluate.parse_args(["--policies", "rr", "--trace", "t.csv"]).scenario is None  # the trace's own name


# --------------------------------------------------------------------------------- 2. rgb_array
def test_rgb_array_is_a_picture_of_the_cluster():
    env = gym.make(ENV_ID, render_mode="rgb_array", mode="arrival", **SMALL)
    env.reset(seed=0)
    empty = env.render()
    assert empty.dtype == np.uint8 and empty.shape == (30 + 40 * 4, 320, 3)
    for i in range(12):
        env.step(0)  # everything to instance 0: its bars fill, the others stay empty
    busy = env.render()
    assert busy.shape == empty.shape and not np.array_equal(busy, empty)
    band = lambda img, m: img[30 + 40 * m: 30 + 40 * (m + 1)]  # noqa: E731
    assert not np.array_equal(band(busy, 0), band(empty, 0))
    np.testing.assert_array_equal(band(busy, 3), band(empty, 3))
    venv = gym.make_vec(ENV_ID, num_envs=2, render_mode="rgb_array", **SMALL)
    venv.reset(seed=0)
    pictures = venv.render()
    assert len(pictures) == 2 and all(p.shape == empty.shape for p in pictures)
    from llm_routing_env.env import LLMRoutingEnv

    with pytest.raises(ValueError, match="render_mode must be None, 'ansi' or 'rgb_array'"):
        LLMRoutingEnv(render_mode="bogus")  # ("human" through gym.make: Gymnasium's HumanRendering over rgb_array)


def test_sb3_make_vec_env_works_as_is():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"mode": "arrival", **SMALL})
    venv.reset()
    venv.step(np.array([0, 1]))
    images = venv.get_images()
    assert len(images) == 2 and images[0].dtype == np.uint8 and images[0].ndim == 3
    venv.close()


# ------------------------------------------------------------------------------------- 6. masks
def test_masks_through_gym_make_wrappers_in_the_dtype_gymnasium_samples_with():
    env = gym.make(ENV_ID, mode="tick", **SMALL)
    obs, info = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    assert mask.dtype == np.int8
    np.testing.assert_array_equal(env.get_wrapper_attr("action_masks")(), mask)
    np.testing.assert_array_equal(mask, info["action_mask"])
    for _ in range(50):
        action = env.action_space.sample(mask=env.unwrapped.action_masks())
        assert env.unwrapped.action_masks()[action] == 1
        env.step(action)
    assert gym.make_vec(ENV_ID, num_envs=2, **SMALL).unwrapped.action_masks().dtype == np.int8


# --------------------------------------------------------------------- 3./4. learned-policy evaluation
def _small_model(path: Path, algo: str = "maskable-ppo", obs: str = "rich", card: dict | None = None):
    """An untrained model (nearly uniform action probabilities) saved with its card."""
    from llm_routing_env.env import LLMRoutingVectorEnv
    from llm_routing_env.sb3 import SB3VecEnv

    venv = SB3VecEnv(LLMRoutingVectorEnv(num_envs=1, mode="arrival", obs=obs, **SMALL))
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        from agents.policies import MaskableInstanceScoringPolicy

        model = MaskablePPO(MaskableInstanceScoringPolicy, venv, n_steps=8, batch_size=8, seed=0, device="cpu")
    elif algo == "ppo":
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu")
    else:
        from agents.policies import DoubleDQN

        model = DoubleDQN("MlpPolicy", venv, seed=0, device="cpu", buffer_size=100)
    model.save(str(path))
    path.with_suffix(".json").write_text(json.dumps({"algo": algo, "obs": obs, "mode": "arrival",
                                                     **({"obs_layout": 2} if obs == "rich" else {}),
                                                     "scenario": "paper-v100", **(card or {})}))
    return path


def test_stochastic_evaluation_samples_the_policy_seeded(tmp_path):
    from agents.evaluation import PolicyError, evaluate

    model = str(_small_model(tmp_path / "agent.zip"))
    kw = {"scenario": "paper-v100", "episodes": 3, "seed": 5, "num_requests": 30}
    sampled = evaluate([model], stochastic=True, **kw)
    again = evaluate([model], stochastic=True, workers=2, **kw)  # other batching, same samples
    greedy = evaluate([model], **kw)
    s = next(r for r in sampled if r["kind"] == "learned")
    assert s["policy"] == "agent (stochastic)" and s["stochastic"]
    a = next(r for r in again if r["kind"] == "learned")
    g = next(r for r in greedy if r["kind"] == "learned")
    assert s["per_episode"]["mean_e2e_s"] == a["per_episode"]["mean_e2e_s"]
    assert s["per_episode"]["mean_e2e_s"] != g["per_episode"]["mean_e2e_s"]
    assert not g["stochastic"]
    sys.path.insert(0, str(ROOT))
    import evaluate as evaluate_cli

    assert evaluate_cli.parse_args(["--policies", model, "--stochastic"]).stochastic
    dqn = str(_small_model(tmp_path / "dqn.zip", algo="dqn", obs="paper"))
    with pytest.raises(PolicyError, match="no action distribution to sample"):
        evaluate([dqn], stochastic=True, **kw)


def _vecnormalize(path: Path, obs_dim: int, mean: float) -> Path:
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    vn = VecNormalize(DummyVecEnv([lambda: gym.make(ENV_ID, mode="arrival", **SMALL)]))
    vn.obs_rms = RunningMeanStd(shape=(obs_dim,))
    vn.obs_rms.mean[:] = mean
    vn.save(str(path))
    return path


def test_vecnormalize_statistics_beside_the_model_are_applied_and_announced(tmp_path, capsys):
    from agents.learned import LearnedRouter, describe_model

    model = _small_model(tmp_path / "agent.zip", algo="ppo", obs="paper")
    assert describe_model(model).vecnormalize is None and describe_model(model).notes == ()
    stats = _vecnormalize(tmp_path / "agent.vecnormalize.pkl", 27, mean=1000.0)
    info = describe_model(model)
    assert info.vecnormalize == str(stats) and info.notes[0][0] == "note"
    router = LearnedRouter(info)
    seen = []
    router.model.predict = lambda obs, **kw: (seen.append(obs) or np.zeros(len(obs), dtype=np.int64), None)
    env = gym.make(ENV_ID, mode="arrival", **SMALL)
    env.reset(seed=0)
    router.prepare(env.unwrapped.config)
    router.reset(1, 0)
    router.act(env.unwrapped.router_view())
    assert seen and np.all(seen[0] <= -9.9)  # (obs - 1000) / 1, clipped at -10: normalized
    sys.path.insert(0, str(ROOT))
    import evaluate

    assert evaluate.main(["--policies", str(model), "--episodes", "1", "--num-requests", "20", "--no-progress",
                          "--workers", "1"]) == 0
    assert f"evaluate.py: note: {model}: observations normalized with the VecNormalize statistics {stats}" \
        in capsys.readouterr().err


def test_a_model_trained_with_normalization_without_its_statistics_gets_a_warning(tmp_path):
    from agents.learned import describe_model

    model = _small_model(tmp_path / "agent.zip", algo="ppo", obs="paper", card={"normalize": True})
    [(level, message)] = describe_model(model).notes
    assert level == "warning" and "trained with VecNormalize but no statistics were found" in message
    zoo = _small_model(tmp_path / "zoo.zip", algo="ppo", obs="paper")
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "config.yml").write_text("!!python/object/apply:collections.OrderedDict\n- - - n_envs\n"
                                                 "    - 8\n  - - normalize\n    - true\n")
    assert describe_model(zoo).notes[0][0] == "warning"
    _vecnormalize(tmp_path / "zoo" / "vecnormalize.pkl", 27, mean=0.0)  # RL Zoo's layout
    assert describe_model(zoo).notes[0][0] == "note"


# --------------------------------------------------------------------------- 7. one error path
@pytest.fixture()
def bad_scenario(tmp_path):
    (tmp_path / "bad.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,10,5\n0.1,abc,5\n")
    path = tmp_path / "bad.toml"
    path.write_text('[workload]\ntrace = "bad.csv"\nnum_requests = 2\n')
    return path


def _one_line_error(proc, prog):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prog}: error: ") and "line 3, column 'prompt_tokens'" in lines[0]


@pytest.mark.parametrize("command, prog", [
    (["-m", "llm_routing_env.scenarios", "{bad}"], "python -m llm_routing_env.scenarios"),
    (["evaluate.py", "--scenario", "{bad}", "--policies", "rr"], "evaluate.py"),
    (["evaluate.py", "--trace", "{csv}", "--policies", "rr"], "evaluate.py"),
    (["train.py", "--scenario", "{bad}", "--out", "{tmp}/x"], "train.py"),
    (["tools/fit_trace_generator.py", "{csv}"], "fit_trace_generator.py"),
])
def test_a_malformed_trace_gives_one_line_and_exit_2_at_every_entry_point(command, prog, bad_scenario, tmp_path):
    args = [a.format(bad=bad_scenario, csv=bad_scenario.with_suffix(".csv"), tmp=tmp_path) for a in command]
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    _one_line_error(proc, prog)


def test_scenarios_cli_help_and_listing(capsys):
    from llm_routing_env import scenarios

    with pytest.raises(SystemExit) as e:
        scenarios.main(["--help"])
    assert e.value.code == 0 and "usage: python -m llm_routing_env.scenarios" in capsys.readouterr().out
    assert scenarios.main(["paper-v100"]) == 0
    assert capsys.readouterr().out.startswith("paper-v100")
    assert scenarios.main(["no-such-scenario"]) == 2
    assert capsys.readouterr().err.startswith("python -m llm_routing_env.scenarios: error: unknown scenario")


# ------------------------------------------------------------------------------- 8. citations
PRIVATE_NOTES = ("routers.md", "paper-facts.md", "prefix-caching.md", "conventions.md")
# the notes are also cited without their suffix ("paper-facts §6.2"): their names alone are refused
PRIVATE_NOTE_NAMES = ("paper-facts", "shared/reference")


def test_no_file_cites_the_private_reference_notes():
    suffixes = {".py", ".md", ".json", ".txt", ".yaml", ".yml", ".toml"}
    files = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in suffixes
             and not any(part in (".git", ".venv", "build", "dist") or part.endswith(".egg-info")
                         or part.startswith(".")
                         for part in p.relative_to(ROOT).parts) and p.name != Path(__file__).name]
    assert len(files) > 50
    cited = [f"{p.relative_to(ROOT)}: {name}" for p in files for name in PRIVATE_NOTES + PRIVATE_NOTE_NAMES
             if name in p.read_text()]
    assert cited == []


def test_evaluate_list_names_public_sources(capsys):
    sys.path.insert(0, str(ROOT))
    import evaluate

    assert evaluate.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "oracle-lwl" in out and not any(name in out for name in PRIVATE_NOTES)


# ------------------------------------------------------------------------------ registered ids
@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_every_registered_id_passes_check_env_and_has_its_configuration(env_id):
    from gymnasium.utils.env_checker import check_env

    fixed, _ = ENV_IDS[env_id]
    env = gym.make(env_id, **SMALL)
    check_env(env.unwrapped)
    config = env.unwrapped.config
    assert config.mode == fixed.get("mode", "tick") and config.obs == fixed.get("obs", "paper")
    assert config.scenario.name.startswith(fixed.get("scenario", "paper-v100"))
    venv = gym.make_vec(env_id, num_envs=2, **SMALL)
    assert venv.unwrapped.config.mode == config.mode and venv.unwrapped.config.obs == config.obs


def test_readme_lists_every_registered_id():
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{env_id}`" in readme for env_id in ENV_IDS)


# --------------------------------------------------------------------------- 3. README SB3 example
def test_readme_sb3_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- sb3-example -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "the README's SB3 example (marked <!-- sb3-example -->)"
    code = block.group(1).replace("total_timesteps=50_000", "total_timesteps=64").replace(
        '"models/my-ppo"', repr(str(tmp_path / "my-ppo")))
    assert "total_timesteps=64" in code
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "my-ppo.zip").exists() and (tmp_path / "my-ppo.json").exists()


def test_rl_zoo_files_name_policies_sb3_knows():
    import yaml
    from stable_baselines3 import PPO

    import agents.policies  # noqa: F401  (registers the policy names)

    files = sorted((ROOT / "configs" / "rl_zoo").glob("*.yml"))
    assert [f.stem for f in files] == ["dqn-aware", "dqn-baseline", "dqn-guided", "ppo-agnostic"]
    for f in files:
        [(env_id, hp)] = yaml.safe_load(f.read_text()).items()
        assert env_id in ENV_IDS
        if hp["policy"] != "MlpPolicy":
            assert PPO.policy_aliases[hp["policy"]] is agents.policies.InstanceScoringPolicy


MOONCAKE_CONV = ROOT.parent / "shared" / "data" / "mooncake_fast25" / "conversation_trace.jsonl"


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_passes_the_hyperparameter_check(config, train_module, monkeypatch):
    import yaml

    from llm_routing_env.scenarios import FILE_SCENARIOS

    settings = yaml.safe_load((ROOT / "configs" / config).read_text())
    main = settings.get("scenario", train_module.DEFAULTS["scenario"])
    needs = {c.get("scenario", main) for c in settings.get("clusters") or []} | {main}
    if needs & {"mooncake-conv", "mooncake-conv-heldout"} and MOONCAKE_CONV.exists():
        monkeypatch.setenv(FILE_SCENARIOS["mooncake-conv"].env_var, str(MOONCAKE_CONV))
    missing = [FILE_SCENARIOS[n].missing() for n in sorted(needs & set(FILE_SCENARIOS))]
    if any(missing):  # a trace we do not ship: the config cannot be checked without it
        pytest.skip("; ".join(m for m in missing if m))
    s = train_module.parse_settings(["--config", str(ROOT / "configs" / config)])
    assert s["hyperparameters"] and s["discount_schedule"] == ("guided" if s["variant"] == "guided" else "constant")


def test_readme_environment_example_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## The environment\s*```python\n(.*?)```", readme, re.S)
    assert block and "action_masks()" in block.group(1)
    exec(compile(block.group(1), "README.md", "exec"), {})
