"""Train a learned router (Stable-Baselines3) and write its model card.

    python train.py --config configs/dqn-guided.yaml                       # a shipped agent
    python train.py --scenario paper-v100-heavy --algo dqn --variant guided --obs paper --mode tick \\
        --timesteps 300000 --seed 0 --out models/my-dqn [--n-envs 4] [--config FILE] [--resume]

What it does, top to bottom:
1. Settings: a YAML config (configs/, one per shipped agent) overridden by the command line.
2. Environments: native vector envs of the scenario (or of several cluster sizes and loads, padded
   into one VecEnv, for the cluster-size-agnostic agent), with the heuristic guidance of the
   chosen variant (llm_routing_env/wrappers.py), adapted to SB3 (llm_routing_env/sb3.py).
3. The learner: Double DQN (the paper's agent, agents/policies.py), PPO or MaskablePPO (with the
   per-instance scoring policy for the ``rich`` observation).
4. Callbacks: episode metrics to TensorBoard (``runs/``), the guided discount schedule, periodic
   validation keeping the best checkpoint, a progress bar.
5. The best checkpoint is saved as ``OUT.zip`` with a model card ``OUT.json`` (settings, wall time,
   library versions, the env seeds it trained and was validated on, and its evaluation against
   round-robin and the best heuristic).

Seeds (llm_routing_env/seeds.py): training episodes come from the training seed stream (``--seed S``
with K sub-envs: env seeds 2 * 2**32 + S + k), the periodic validation runs agents/evaluation.py's
episodes on the validation stream, and the model card's evaluation and evaluate.py use the
evaluation stream: the three never share a workload.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

VARIANT_SCHEDULE = {"baseline": "none", "aware": "aware", "guided": "guided"}


# ------------------------------------------------------------------------------------ settings
def parse_settings(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of settings (configs/*.yaml); the flags below override it")
    p.add_argument("--scenario")
    p.add_argument("--algo", choices=["dqn", "ppo", "maskable-ppo"])
    p.add_argument("--variant", choices=list(VARIANT_SCHEDULE))
    p.add_argument("--obs", choices=["paper", "rich"])
    p.add_argument("--mode", choices=["tick", "arrival"])
    p.add_argument("--reward", choices=["latency", "paper"])
    p.add_argument("--timesteps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output path without extension, e.g. models/dqn-guided")
    p.add_argument("--n-envs", type=int, dest="n_envs")
    p.add_argument("--eval-freq", type=int, dest="eval_freq", help="timesteps between evaluations")
    p.add_argument("--eval-episodes", type=int, dest="eval_episodes")
    p.add_argument("--card-episodes", type=int, dest="card_episodes", help="episodes of the final evaluation")
    p.add_argument("--resume", action="store_true", help="continue from OUT.zip")
    p.add_argument("--card-only", action="store_true", help="only (re)write the model card of OUT.zip")
    args = p.parse_args(argv)
    settings = {"algo": "dqn", "variant": "guided", "obs": "paper", "mode": "tick", "reward": "latency",
                "scenario": "paper-v100", "timesteps": 100_000, "seed": 0, "n_envs": 4, "eval_freq": 20_000,
                "eval_episodes": 4, "card_episodes": 20, "env": {}, "hyperparameters": {}, "guidance": {},
                "clusters": None}
    if args.config:
        import yaml

        loaded = yaml.safe_load(Path(args.config).read_text())
        if not isinstance(loaded, dict):
            p.error(f"{args.config}: a config must be a mapping of settings")
        unknown = set(loaded) - set(settings) - {"out", "description"}
        if unknown:
            p.error(f"{args.config}: unknown setting(s) {sorted(unknown)}; known: {sorted(settings)}")
        settings.update(loaded)
    for key, value in vars(args).items():
        if value is not None and key not in ("config", "resume", "card_only"):
            settings[key] = value
    if not settings.get("out"):
        p.error("--out (or `out:` in the config) is required")
    settings["resume"], settings["card_only"] = args.resume, args.card_only
    if settings["algo"] == "dqn" and settings["obs"] == "rich":
        p.error("dqn uses the MLP of the paper: train it on --obs paper")
    return settings


# -------------------------------------------------------------------------------- environments
def env_kwargs(settings: dict, **overrides) -> dict:
    kw = {"scenario": settings["scenario"], "mode": settings["mode"], "obs": settings["obs"],
          "reward": settings["reward"], **settings["env"]}
    kw.update(overrides)
    return kw


def training_env_count(settings: dict) -> int:
    """Sub-envs of the training VecEnv (over every cluster part)."""
    if settings["clusters"]:
        return sum(int(c.get("n_envs", 1)) for c in settings["clusters"])
    return int(settings["n_envs"])


def seed_training_episodes(venv, settings: dict) -> None:
    """Sub-env k's episodes come from env seed k of the training stream from ``--seed``. Call it after
    the SB3 model exists: SB3 seeds its env with the model's own seed when it builds or loads a model."""
    from llm_routing_env.seeds import TRAINING

    venv.seed(TRAINING.env_seeds(settings["seed"], venv.num_envs).start)


def make_train_env(settings: dict):
    """The training VecEnv: guided native vector env(s) adapted to SB3, with episode monitoring
    (seeded by :func:`seed_training_episodes`)."""
    from stable_baselines3.common.vec_env import VecMonitor

    from llm_routing_env.env import LLMRoutingVectorEnv
    from llm_routing_env.sb3 import MixedClusterVecEnv, SB3VecEnv
    from llm_routing_env.wrappers import VectorHeuristicGuidance

    schedule = VARIANT_SCHEDULE[settings["variant"]]
    hp = settings["hyperparameters"]
    guidance = {"gamma": hp.get("gamma", 0.99), "discount_time_s": hp.get("discount_time_s"), **settings["guidance"]}

    def part(n_envs, **overrides):
        venv = LLMRoutingVectorEnv(num_envs=n_envs, **env_kwargs(settings, **overrides))
        return SB3VecEnv(VectorHeuristicGuidance(venv, schedule=schedule, **guidance))

    if settings["clusters"]:
        parts = [part(c.get("n_envs", 1), **{k: v for k, v in c.items() if k != "n_envs"}) for c in settings["clusters"]]
        venv = MixedClusterVecEnv(parts)
    else:
        venv = part(settings["n_envs"])
    return VecMonitor(venv)


def guidance_wrappers(venv):
    """The VectorHeuristicGuidance wrappers inside a training VecEnv (one per part)."""
    inner = venv.venv
    parts = inner.parts if hasattr(inner, "parts") else [inner]
    return [p.venv for p in parts]


# ------------------------------------------------------------------------------------- learner
def make_model(settings: dict, venv, tensorboard_dir: str):
    hp = dict(settings["hyperparameters"])
    algo = settings["algo"]
    common = {"seed": settings["seed"], "tensorboard_log": tensorboard_dir, "verbose": 0, "device": "cpu"}
    if algo == "dqn":
        from agents.policies import DoubleDQN

        net_arch = hp.pop("net_arch", [64, 64])
        episodes = hp.pop("exploration_episodes", 20)
        steps_per_episode = hp.pop("steps_per_episode", 2 * _episode_requests(settings))
        # "random exploration only in the first 20 episodes" (counted over all envs): epsilon decays
        # linearly over their timesteps, then stays at exploration_final_eps
        fraction = min(1.0, episodes * steps_per_episode / settings["timesteps"])
        return DoubleDQN("MlpPolicy", venv, policy_kwargs={"net_arch": net_arch},
                         exploration_fraction=fraction, **hp, **common)
    hidden = hp.pop("hidden", 64)
    if settings["obs"] == "rich":
        from agents.policies import InstanceScoringPolicy, MaskableInstanceScoringPolicy

        policy = MaskableInstanceScoringPolicy if algo == "maskable-ppo" else InstanceScoringPolicy
        kwargs = {"hidden": hidden, "hold": settings["mode"] == "tick"}
    else:
        policy, kwargs = "MlpPolicy", {"net_arch": [hidden, hidden]}
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO as Algo
    else:
        from stable_baselines3 import PPO as Algo
    return Algo(policy, venv, policy_kwargs=kwargs, **hp, **common)


def _episode_requests(settings: dict) -> int:
    from llm_routing_env.scenarios import load_scenario

    return load_scenario(settings["scenario"]).num_requests or 2000


def load_model(settings: dict, path: str, venv=None):
    algo = settings["algo"]
    if algo == "dqn":
        from agents.policies import DoubleDQN as Algo
    elif algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO as Algo
    else:
        from stable_baselines3 import PPO as Algo
    return Algo.load(path, env=venv, device="cpu")


# ----------------------------------------------------------------------------------- callbacks
def make_callbacks(settings: dict, out: Path):
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class TrainingCallback(BaseCallback):
        """Episode metrics to TensorBoard, the guided discount, periodic evaluation, progress."""

        def __init__(self):
            super().__init__()
            self.best = np.inf
            self.next_eval = settings["eval_freq"]
            self.bar = None
            self.history = []

        def _on_training_start(self) -> None:
            self.bar = tqdm(total=settings["timesteps"], initial=self.num_timesteps, unit="step",
                            desc=out.name, file=sys.stderr, mininterval=2.0)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            for info in self.locals.get("infos", []):
                m = info.get("metrics")
                if m:
                    for key in ("mean_e2e_s", "p99_e2e_s", "preemptions", "mean_router_wait_s", "mean_ttft_s"):
                        self.logger.record_mean(f"episode/{key}", m[key])
                if "guidance_weight" in info:
                    self.logger.record_mean("train/guidance_weight", float(info["guidance_weight"]))
            if settings["variant"] == "guided" and hasattr(self.model, "gamma"):
                wrappers = guidance_wrappers(self.training_env)
                self.model.gamma = min(w.training_discount for w in wrappers)
                self.logger.record("train/discount", self.model.gamma)
            if self.num_timesteps >= self.next_eval:
                self.next_eval += settings["eval_freq"]
                score = evaluate_model(self.model, settings, settings["eval_episodes"], out)
                self.logger.record("eval/mean_e2e_s", score)
                self.history.append({"timesteps": int(self.num_timesteps), "eval_mean_e2e_s": score})
                if score < self.best:
                    self.best = score
                    self.model.save(str(out) + ".best.zip")
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return TrainingCallback()


def validation_scenarios(settings: dict) -> list:
    """The scenario of every training cluster part (the scenario alone without ``clusters``)."""
    from llm_routing_env.core import EnvConfig

    parts = settings["clusters"] or [{}]
    return [EnvConfig.from_kwargs(**env_kwargs(settings, **{k: v for k, v in part.items() if k != "n_envs"})).scenario
            for part in parts]


def evaluate_model(model, settings: dict, episodes: int, out: Path) -> float:
    """Mean E2E (s) of the model over ``episodes`` episodes of each training cluster, from the validation
    seed stream, run by the evaluator (agents/evaluation.py ``run_episodes``, as evaluate.py runs a
    model); a truncated episode (requests left unfinished) scores inf."""
    from agents.evaluation import PolicySpec, run_episodes
    from agents.learned import CARD_ENV_KEYS
    from llm_routing_env.seeds import VALIDATION

    path = Path(str(out) + ".validating.zip")
    model.save(str(path))
    spec = PolicySpec(label=str(path), name=out.name, kind="learned", mode=settings["mode"], obs=settings["obs"],
                      env={k: settings["env"][k] for k in CARD_ENV_KEYS if k in settings["env"]},
                      card={"algo": settings["algo"], "obs": settings["obs"], "mode": settings["mode"]})
    scores = []
    try:
        for scenario in validation_scenarios(settings):
            run = run_episodes(spec, scenario, 0, range(episodes), stream=VALIDATION)
            scores += [np.inf if m["truncated"] else m["mean_e2e_s"] for m in run["episodes"]]
    finally:
        path.unlink(missing_ok=True)
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------ model card
def write_model_card(settings: dict, out: Path, wall_s: float | None, history: list) -> dict:
    import importlib.metadata as md

    from llm_routing_env.seeds import TRAINING, VALIDATION, seeds_record

    card_path = out.with_suffix(".json")
    old = json.loads(card_path.read_text()) if card_path.exists() else {}
    card = {
        "name": out.name,
        "description": settings.get("description", ""),
        "scenario": settings["scenario"],
        "clusters": settings["clusters"],
        "algo": settings["algo"],
        "variant": settings["variant"],
        "obs": settings["obs"],
        "mode": settings["mode"],
        "reward": settings["reward"],
        "env": settings["env"],
        "seed": settings["seed"],
        "seeds": {"training": seeds_record(TRAINING, settings["seed"], training_env_count(settings)),
                  "validation": seeds_record(VALIDATION, 0, settings["eval_episodes"])},
        "timesteps": settings["timesteps"],
        "hyperparameters": settings["hyperparameters"],
        "guidance": settings["guidance"],
        "wall_time_s": wall_s if wall_s is not None else old.get("wall_time_s"),
        "training_history": history or old.get("training_history", []),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "versions": {pkg: md.version(pkg) for pkg in ("llm-routing-env", "stable-baselines3", "sb3-contrib",
                                                        "torch", "gymnasium", "numpy")},
    }
    try:
        from agents.evaluation import model_card_evaluation
    except ImportError:  # pragma: no cover - the evaluation module ships with the repo
        model_card_evaluation = None
    if model_card_evaluation is not None and settings["card_episodes"] > 0:
        card["evaluation"] = model_card_evaluation(str(out) + ".zip", card, episodes=settings["card_episodes"])
    card_path.write_text(json.dumps(card, indent=2, default=float) + "\n")
    return card


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    settings = parse_settings(argv)
    import torch

    torch.set_num_threads(1)  # small networks: threads only contend with the simulator for cores
    out = Path(settings["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings["card_only"]:
        card = write_model_card(settings, out, None, [])
        print(json.dumps(card.get("evaluation", {}), indent=2, default=float))
        return 0

    venv = make_train_env(settings)
    if settings["resume"]:
        model = load_model(settings, str(out) + ".zip", venv)
    else:
        model = make_model(settings, venv, "runs")
    seed_training_episodes(venv, settings)
    callback = make_callbacks(settings, out)
    start = time.perf_counter()
    model.learn(total_timesteps=settings["timesteps"], callback=callback, tb_log_name=out.name,
                reset_num_timesteps=not settings["resume"])
    wall_s = time.perf_counter() - start
    # keep the best checkpoint of the periodic evaluations (or the last one if it is better)
    final = evaluate_model(model, settings, settings["eval_episodes"], out)
    best = Path(str(out) + ".best.zip")
    if best.exists() and callback.best <= final:
        best.replace(str(out) + ".zip")
    else:
        model.save(str(out))
        best.unlink(missing_ok=True)
    callback.history.append({"timesteps": int(model.num_timesteps), "eval_mean_e2e_s": final})
    card = write_model_card(settings, out, wall_s, callback.history)
    print(f"saved {out}.zip and {out}.json after {wall_s / 60:.1f} min; evaluation: "
          f"{json.dumps(card.get('evaluation', {}), default=float)[:400]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
