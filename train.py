"""Train a learned router (Stable-Baselines3) and write its model card.

    python train.py --config configs/dqn-guided.yaml                       # a shipped agent
    python train.py --scenario paper-v100-heavy --algo dqn --variant guided --obs paper --mode tick \\
        --timesteps 300000 --seed 0 --out models/my-dqn [--n-envs 4] [--config FILE] [--resume]
    python train.py --config configs/ppo-agnostic.yaml --out models/my-ppo \\
        --hyperparams learning_rate:1e-4 n_steps:256 --env-kwargs predictor:learned   # RL Zoo-style overrides

What it does, top to bottom:
1. Settings: a YAML config (configs/, one per shipped agent) overridden by the command line.
2. Environments: native vector envs of the scenario (or of several cluster sizes and loads, padded
   into one VecEnv, for the cluster-size-agnostic agent), with the heuristic guidance of the
   chosen variant (llm_routing_env/wrappers.py), adapted to SB3 (llm_routing_env/sb3.py).
3. The learner: Double DQN (the paper's agent, agents/policies.py), PPO or MaskablePPO (with the
   per-instance scoring policy for the ``rich`` observation).
4. Callbacks: episode metrics to TensorBoard (``runs/``), the guided discount schedule, periodic
   validation keeping the best checkpoint (one line per validation on stderr; a greedy policy that
   never dispatches is cut off by the evaluator's caps, agents/evaluation.py, and the line says
   so), a progress bar.
5. The best checkpoint is saved as ``OUT.zip`` with a model card ``OUT.json`` (settings, every
   hyperparameter the learner ran with, defaults included, the timesteps actually run, wall time,
   library versions, the env seeds it trained and was validated on, and its evaluation against
   round-robin and the best heuristic).

The guided discount schedule (HuRL's training discount (1 - e^(-0.5k)) gamma over episodes k) is the
paper's, for its Double DQN: with ``--variant guided`` it is on for DQN, and PPO needs an explicit
``--discount-schedule guided`` (applied to PPO's GAE discount) or ``constant``.

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

from llm_routing_env.cli import entry_point
from llm_routing_env.observations import RICH_INSTANCE_FEATURES, RICH_LAYOUT

VARIANT_SCHEDULE = {"baseline": "none", "aware": "aware", "guided": "guided"}
DEFAULTS = {"algo": "dqn", "variant": "guided", "obs": "paper", "mode": "tick", "reward": "latency",
            "scenario": "paper-v100", "timesteps": 100_000, "seed": 0, "n_envs": 4, "eval_freq": 20_000,
            "eval_episodes": 4, "card_episodes": 20, "env": {}, "hyperparameters": {}, "guidance": {},
            "clusters": None, "discount_schedule": None}
#: hyperparameters train.py itself reads (the others go to the SB3 class as they are)
OWN_HYPERPARAMETERS = {"dqn": {"net_arch": "hidden layer sizes (default [64, 64])",
                               "exploration_episodes": "episodes of epsilon decay (default 20)",
                               "steps_per_episode": "decisions per episode for the epsilon schedule"},
                       "ppo": {"hidden": "width of the policy's layers (default 64)"}}
#: constructor arguments train.py sets itself
_FIXED_ARGUMENTS = {"self", "policy", "env", "seed", "tensorboard_log", "verbose", "device", "_init_setup_model",
                    "policy_kwargs", "args", "kwargs"}


# ------------------------------------------------------------------------------------ settings
def _key_values(text: str) -> tuple[str, object]:
    """``key:value`` (RL Zoo's form) -> (key, value); the value is a Python literal (1e-4, [64, 64],
    True, 'text') or, if it is not one, the text itself."""
    import ast

    key, sep, value = text.partition(":")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key:value")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def known_hyperparameters(algo: str) -> set[str]:
    """Keys a config's ``hyperparameters`` / ``--hyperparams`` may set for ``algo``."""
    from agents.learned import algo_class

    params = set(_init_parameters(algo_class(algo))) - _FIXED_ARGUMENTS
    return params | set(OWN_HYPERPARAMETERS["dqn" if algo == "dqn" else "ppo"])


def _init_parameters(Algo) -> dict:
    """name -> inspect.Parameter of ``Algo(...)``; a subclass that passes ``**kwargs`` on to its base
    (DoubleDQN) takes the base's parameters too, down to the library's own algorithm class."""
    import inspect

    params = {}
    for cls in Algo.__mro__:
        if "__init__" in vars(cls):
            for name, p in inspect.signature(cls.__init__).parameters.items():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    params.setdefault(name, p)
        if cls.__module__.startswith(("stable_baselines3", "sb3_contrib")):
            break  # the library's algorithm class names every setting
    return params


def parse_settings(argv=None) -> dict:
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of settings (configs/*.yaml); the flags below override it")
    p.add_argument("--scenario", help=f"a shipped scenario name or a TOML/YAML file (default {d['scenario']})")
    p.add_argument("--algo", choices=["dqn", "ppo", "maskable-ppo"],
                   help=f"dqn: the paper's Double DQN; ppo / maskable-ppo: SB3 / sb3-contrib (default {d['algo']})")
    p.add_argument("--variant", choices=list(VARIANT_SCHEDULE),
                   help="heuristic guidance (llm_routing_env/wrappers.py): baseline (none), aware (constant weight) "
                        f"or guided (HuRL's decaying weight) (default {d['variant']})")
    p.add_argument("--discount-schedule", choices=["guided", "constant"], dest="discount_schedule",
                   help="guided: the training discount (1 - e^(-0.5k)) gamma over episodes k (HuRL; needs --variant "
                        "guided); constant: gamma throughout (default: guided for dqn with --variant guided, "
                        "else constant; ppo with --variant guided must choose)")
    p.add_argument("--obs", choices=["paper", "rich"],
                   help=f"observation: paper (27 numbers for N = 4) or rich (per-instance rows) (default {d['obs']})")
    p.add_argument("--mode", choices=["tick", "arrival"],
                   help=f"tick (a decision every 0.02 s, with hold) or arrival (one per request) (default {d['mode']})")
    p.add_argument("--reward", choices=["latency", "paper"], help=f"reward (default {d['reward']})")
    p.add_argument("--timesteps", type=int,
                   help=f"environment steps to train, over all envs (default {d['timesteps']})")
    p.add_argument("--seed", type=int, help=f"learner seed and first training env seed (default {d['seed']})")
    p.add_argument("--out", help="output path without extension, e.g. models/dqn-guided (required here or in the "
                   "config)")
    p.add_argument("--n-envs", type=int, dest="n_envs", help=f"parallel training envs (default {d['n_envs']})")
    p.add_argument("--eval-freq", type=int, dest="eval_freq",
                   help=f"timesteps between validations (default {d['eval_freq']})")
    p.add_argument("--eval-episodes", type=int, dest="eval_episodes",
                   help=f"validation episodes per training cluster (default {d['eval_episodes']})")
    p.add_argument("--card-episodes", type=int, dest="card_episodes",
                   help=f"episodes of the model card's final evaluation; 0 skips it (default {d['card_episodes']})")
    p.add_argument("--hyperparams", nargs="+", type=_key_values, metavar="KEY:VALUE",
                   help="override hyperparameters, e.g. learning_rate:1e-4 net_arch:[32,32] (values are Python "
                        "literals; unknown keys are an error)")
    p.add_argument("--env-kwargs", nargs="+", type=_key_values, metavar="KEY:VALUE", dest="env_kwargs",
                   help="override environment settings (gym.make keyword arguments), e.g. predictor:learned "
                        "reward_scale:0.05")
    p.add_argument("--resume", action="store_true", help="continue from OUT.zip")
    p.add_argument("--card-only", action="store_true", help="only (re)write the model card of OUT.zip")
    args = p.parse_args(argv)
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    if args.config:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.config).read_text())
        except (OSError, yaml.YAMLError) as e:
            p.error(f"{args.config}: {e}")
        if not isinstance(loaded, dict):
            p.error(f"{args.config}: a config must be a mapping of settings")
        unknown = set(loaded) - set(settings) - {"out", "description"}
        if unknown:
            p.error(f"{args.config}: unknown setting(s) {sorted(unknown)}; known: {sorted(settings)}")
        settings.update(loaded)
    for key, value in vars(args).items():
        if value is not None and key not in ("config", "resume", "card_only", "hyperparams", "env_kwargs"):
            settings[key] = value
    settings["hyperparameters"] = {**(settings["hyperparameters"] or {}), **dict(args.hyperparams or [])}
    settings["env"] = {**(settings["env"] or {}), **dict(args.env_kwargs or [])}
    if not settings.get("out"):
        p.error("--out (or `out:` in the config) is required")
    settings["resume"], settings["card_only"] = args.resume, args.card_only
    if settings["algo"] == "dqn" and settings["obs"] == "rich":
        p.error("dqn uses the MLP of the paper: train it on --obs paper")
    unknown = set(settings["hyperparameters"]) - known_hyperparameters(settings["algo"])
    if unknown:
        p.error(f"unknown hyperparameter(s) {sorted(unknown)} for {settings['algo']}; known: "
                f"{', '.join(sorted(known_hyperparameters(settings['algo'])))}")
    schedule = settings["discount_schedule"]
    if schedule is None:
        if settings["variant"] == "guided" and settings["algo"] != "dqn":
            p.error(f"--variant guided with {settings['algo']}: choose the discount schedule, --discount-schedule "
                    "guided (HuRL's (1 - e^(-0.5k)) gamma, the paper's, for its DQN) or constant")
        schedule = "guided" if settings["variant"] == "guided" else "constant"
    if schedule == "guided" and settings["variant"] != "guided":
        p.error(f"--discount-schedule guided needs --variant guided (got {settings['variant']})")
    settings["discount_schedule"] = schedule
    try:  # every environment setting is checked here, before any training
        validation_scenarios(settings)
    except (TypeError, ValueError) as e:  # one line, exit 2 (llm_routing_env/cli.py)
        raise ValueError(f"environment settings: {e}") from e
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
        return _built(DoubleDQN, "MlpPolicy", venv, common, {"policy_kwargs": {"net_arch": net_arch},
                                                            "exploration_fraction": fraction, **hp})
    hidden = hp.pop("hidden", 64)
    if settings["obs"] == "rich":
        from agents.policies import InstanceScoringPolicy, MaskableInstanceScoringPolicy

        policy = MaskableInstanceScoringPolicy if algo == "maskable-ppo" else InstanceScoringPolicy
        kwargs = {"hidden": hidden, "hold": settings["mode"] == "tick", "instance_features": RICH_INSTANCE_FEATURES}
    else:
        policy, kwargs = "MlpPolicy", {"net_arch": [hidden, hidden]}
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO as Algo
    else:
        from stable_baselines3 import PPO as Algo
    return _built(Algo, policy, venv, common, {"policy_kwargs": kwargs, **hp})


def _built(Algo, policy, venv, common: dict, kwargs: dict):
    """``Algo(policy, venv, **kwargs, **common)`` that remembers every hyperparameter it runs with
    (the class's defaults with ``kwargs`` over them) for the model card."""
    import inspect

    model = Algo(policy, venv, **kwargs, **common)
    params = _init_parameters(Algo)
    used = {k: v.default for k, v in params.items()
            if k not in _FIXED_ARGUMENTS and v.default is not inspect.Parameter.empty}
    used.update(kwargs)
    used["policy"] = policy if isinstance(policy, str) else policy.__name__
    model.card_hyperparameters = json.loads(json.dumps(used, default=_json_name))
    return model


def _json_name(value):
    return getattr(value, "__name__", None) or str(value)


def _episode_requests(settings: dict) -> int:
    from llm_routing_env.scenarios import load_scenario

    return load_scenario(settings["scenario"]).num_requests or 2000


def load_model(settings: dict, path: str, venv=None):
    from agents.learned import algo_class

    return algo_class(settings["algo"]).load(path, env=venv, device="cpu")


# ----------------------------------------------------------------------------------- callbacks
def make_callbacks(settings: dict, out: Path):
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class TrainingCallback(BaseCallback):
        """Episode metrics to TensorBoard, the guided discount, periodic evaluation, progress."""

        def __init__(self):
            super().__init__()
            self.best = np.inf
            self.best_at = None  # timesteps of the best checkpoint
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
            if settings["discount_schedule"] == "guided":
                wrappers = guidance_wrappers(self.training_env)
                self.model.gamma = min(w.training_discount for w in wrappers)
                if hasattr(self.model, "rollout_buffer"):  # PPO computes its returns with the buffer's own gamma
                    self.model.rollout_buffer.gamma = self.model.gamma
                self.logger.record("train/discount", self.model.gamma)
            if self.num_timesteps >= self.next_eval:
                self.next_eval += settings["eval_freq"]
                score, message = evaluate_model(self.model, settings, settings["eval_episodes"], out)
                self.bar.write(f"validation at {self.num_timesteps:,} steps: {message}", file=sys.stderr)
                self.logger.record("eval/mean_e2e_s", score)
                self.history.append({"timesteps": int(self.num_timesteps), "eval_mean_e2e_s": score})
                if score < self.best:
                    self.best, self.best_at = score, int(self.num_timesteps)
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


def evaluate_model(model, settings: dict, episodes: int, out: Path) -> tuple[float, str]:
    """Mean E2E (s) of the model over ``episodes`` episodes of each training cluster, from the validation
    seed stream, run by the evaluator (agents/evaluation.py ``run_episodes``, as evaluate.py runs a
    model), and a line saying so; a truncated episode (requests left unfinished: the evaluator cuts off
    a policy that holds requests, and the line says why) scores inf."""
    from agents.evaluation import PolicySpec, run_episodes
    from agents.learned import CARD_ENV_KEYS
    from llm_routing_env.seeds import VALIDATION

    path = Path(str(out) + ".validating.zip")
    model.save(str(path))
    spec = PolicySpec(label=str(path), name=out.name, kind="learned", mode=settings["mode"], obs=settings["obs"],
                      env={k: settings["env"][k] for k in CARD_ENV_KEYS if k in settings["env"]},
                      card={"algo": settings["algo"], "obs": settings["obs"], "mode": settings["mode"],
                            **({"obs_layout": RICH_LAYOUT} if settings["obs"] == "rich" else {})})
    scores, reasons = [], []
    try:
        for scenario in validation_scenarios(settings):
            run = run_episodes(spec, scenario, 0, range(episodes), stream=VALIDATION)
            scores += [np.inf if m["truncated"] else m["mean_e2e_s"] for m in run["episodes"]]
            reasons += [m["truncated_reason"] for m in run["episodes"] if m["truncated"]]
    finally:
        path.unlink(missing_ok=True)
    score = float(np.mean(scores))
    message = f"mean E2E {score:.3f} s over {len(scores)} episode(s)"
    if reasons:
        message = (f"{len(reasons)} of {len(scores)} episode(s) left requests unfinished and scored inf "
                   f"({'; '.join(sorted(set(reasons)))})")
    return score, message


# ------------------------------------------------------------------------------------ model card
def write_model_card(settings: dict, out: Path, wall_s: float | None, history: list, model=None) -> dict:
    """The model card ``OUT.json``. With the trained ``model``: the timesteps it ran
    (``model.num_timesteps``: SB3 rounds up to whole rollouts / vector steps) and every hyperparameter
    it ran with; without (``--card-only``), those of the existing card."""
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
        **({"obs_layout": RICH_LAYOUT} if settings["obs"] == "rich" else {}),  # (observations.py)
        "mode": settings["mode"],
        "reward": settings["reward"],
        "env": settings["env"],
        "seed": settings["seed"],
        "seeds": {"training": seeds_record(TRAINING, settings["seed"], training_env_count(settings)),
                  "validation": seeds_record(VALIDATION, 0, settings["eval_episodes"])},
        "timesteps": int(model.num_timesteps) if model is not None else old.get("timesteps", settings["timesteps"]),
        "timesteps_requested": settings["timesteps"],
        "checkpoint_timesteps": settings.get("checkpoint_timesteps", old.get("checkpoint_timesteps")),
        "hyperparameters": (getattr(model, "card_hyperparameters", None) or old.get("hyperparameters")
                            or settings["hyperparameters"]),
        "hyperparameters_given": settings["hyperparameters"],
        "discount_schedule": settings["discount_schedule"],
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
@entry_point("train.py")
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
    final, message = evaluate_model(model, settings, settings["eval_episodes"], out)
    print(f"final validation at {model.num_timesteps:,} steps: {message}", file=sys.stderr)
    best = Path(str(out) + ".best.zip")
    if best.exists() and callback.best <= final:
        best.replace(str(out) + ".zip")
        settings["checkpoint_timesteps"] = callback.best_at
    else:
        model.save(str(out))
        best.unlink(missing_ok=True)
        settings["checkpoint_timesteps"] = int(model.num_timesteps)
    callback.history.append({"timesteps": int(model.num_timesteps), "eval_mean_e2e_s": final})
    card = write_model_card(settings, out, wall_s, callback.history, model)
    print(f"saved {out}.zip and {out}.json after {wall_s / 60:.1f} min; evaluation: "
          f"{json.dumps(card.get('evaluation', {}), default=float)[:400]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
