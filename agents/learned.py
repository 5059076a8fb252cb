"""Learned routers: a Stable-Baselines3 model (DQN / Double DQN, PPO, MaskablePPO) behind the router
interface of agents/baselines.py.

    info = describe_model("models/dqn-guided.zip")          # checks the file, reads the model card
    mode, obs = check_compatible(info, num_instances=4)      # ModelError if it cannot run there
    router = LearnedRouter(info)                             # loads the network
    router.prepare(config); router.reset(B); router.act(view)

**Model card.** ``models/NAME.json`` next to ``models/NAME.zip`` (train.py writes it) gives
``algo`` (``dqn``, ``ppo``, ``maskable-ppo``; SB3 class names are accepted too), ``obs``
(``paper`` / ``rich``), ``mode`` (``tick`` / ``arrival``), ``scenario`` and optionally
``num_instances``, ``clusters`` and ``env`` (environment settings; the predictor and decision
settings are reused at evaluation, reward settings are not) and, for ``rich``, ``obs_layout`` (the
rich layout's version, observations.py; absent: the row width the instance-scoring policy saved,
else layout 1, the 12 features before the prefix-cache ones; without a card, the first layout the
observation size fits, the current one first). Without a card, the algorithm comes
from the zip's policy class (DQN policy -> DQN, maskable policy -> MaskablePPO, actor-critic ->
PPO), the observation kind and instance count from the observation size (paper: 3 + 6N, rich:
8 + F N with the layout's F) and the mode from the action count (N: arrival, N + 1: tick).

**Compatibility.** The model runs only where its observation size and action count match the
environment's; otherwise :class:`ModelError` says what the model expects and what the scenario
gives. One exception: a ``rich``-observation model whose policy scores every instance with shared
weights (agents/policies.py ``InstanceScoringPolicy``, the cluster-size-agnostic agent trained on
padded clusters) runs on any cluster of at most its padded size: the observation is padded with
-1 rows and the padded actions masked, as in ``llm_routing_env.sb3.MixedClusterVecEnv``.

**Acting.** The observation is ``observations.encode(obs, view, max_model_len, obs_layout)``;
MaskablePPO gets ``view.action_mask`` (padded). The policy is deterministic (SB3's
``predict(deterministic=True)``: the most likely action), or with ``stochastic=True`` sampled from
the policy's action distribution (PPO / MaskablePPO; masked) with the router's per-episode
Generator, so that a sampled evaluation is seeded and does not depend on batching. An action the
mask forbids (an instance while the router queue is empty in tick mode, a padded instance) becomes
hold in tick mode and the first allowed instance in arrival mode.

**Observation normalization.** A model trained on a ``VecNormalize``-wrapped env sees normalized
observations; its saved statistics are found beside the model: the card's ``vecnormalize`` (a
path relative to the model), ``NAME.vecnormalize.pkl``, or RL Zoo's ``NAME/vecnormalize.pkl``,
and applied (``ModelInfo.vecnormalize``; evaluate.py says so). When the card (``normalize`` or
``hyperparameters.normalize``) or RL Zoo's ``NAME/config.yml`` says the model was trained with
normalization and no statistics are found, ``ModelInfo.notes`` holds a warning.
"""

from __future__ import annotations

import base64
import json
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llm_routing_env.observations import RICH_GLOBAL_FEATURES, RICH_LAYOUT, RICH_LAYOUT_FEATURES, encode, observation_size

from .baselines import Router

__all__ = ["ModelError", "ModelInfo", "describe_model", "check_compatible", "LearnedRouter", "card_path",
           "is_model_path", "ALGOS"]

ALGOS = ("dqn", "ppo", "maskable-ppo")
_ALGO_ALIASES = {"dqn": "dqn", "doubledqn": "dqn", "double-dqn": "dqn", "ppo": "ppo", "maskable-ppo": "maskable-ppo",
                 "maskableppo": "maskable-ppo", "maskable_ppo": "maskable-ppo"}
#: card "env" settings that change what the router sees or when it decides (reused at evaluation)
CARD_ENV_KEYS = ("predictor", "predictor_kwargs", "decision_interval_s", "skip_idle_ticks", "impact")


class ModelError(ValueError):
    """A model file that is missing, unreadable, or trained for another environment."""


def card_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def is_model_path(spec: str) -> bool:
    """Whether a --policies entry names a model file rather than a heuristic."""
    return spec.endswith(".zip") or "/" in spec or Path(spec).suffix != ""


@dataclass
class ModelInfo:
    """What the zip and its card say about a model (no network loaded)."""

    path: str
    name: str
    algo: str
    obs_dim: int
    n_actions: int
    policy_module: str
    policy_name: str
    card: dict = field(default_factory=dict)
    vecnormalize: str | None = None    # VecNormalize statistics applied to the observations
    notes: tuple = ()                  # (level, message): "note" / "warning" for the user
    obs: str | None = None
    mode: str | None = None
    num_instances: int | None = None   # the instance count the observation was built for
    obs_layout: int = 1                # the rich layout it was trained on (module docstring)

    @property
    def shared_instance_weights(self) -> bool:
        """Policy scores instances with shared weights (agents/policies.py): paddable."""
        return self.obs == "rich" and "InstanceScoring" in self.policy_name

    @property
    def env_settings(self) -> dict:
        env = self.card.get("env") or {}
        return {k: env[k] for k in CARD_ENV_KEYS if k in env}


def _normalize_algo(name) -> str:
    key = str(name).strip().lower()
    if key not in _ALGO_ALIASES:
        raise ModelError(f"unknown algorithm {name!r}; known: {', '.join(ALGOS)}")
    return _ALGO_ALIASES[key]


def _read_card(path: Path, card: dict | None) -> dict:
    if card is not None:
        if not isinstance(card, dict):
            raise ModelError(f"{path}: the model card must be a mapping, got {type(card).__name__}")
        return card
    cp = card_path(path)
    if not cp.exists():
        return {}
    try:
        data = json.loads(cp.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{cp}: unreadable model card: {e}") from e
    if not isinstance(data, dict):
        raise ModelError(f"{cp}: a model card must be a JSON object")
    return data


def _zip_data(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise ModelError(f"{path}: not a Stable-Baselines3 model (no 'data' / 'policy.pth' in the zip)")
            return json.loads(z.read("data"))
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise ModelError(f"{path}: corrupt or unreadable model file ({type(e).__name__}: {e})") from e


def _class_ref(entry, path: Path) -> tuple[str, str]:
    """(module, class name) of a class SB3 saved by reference, read from the pickle opcodes
    without unpickling anything; ("", "") if the zip has no such entry. ModelError if the entry
    is there but is not a readable pickle (SB3 could not load the model either)."""
    if not isinstance(entry, dict):
        return "", ""
    module, name = str(entry.get("__module__", "")), ""
    serialized = entry.get(":serialized:", "")
    if serialized == "":
        return module, ""
    if not isinstance(serialized, str):
        raise ModelError(f"{path}: corrupt model file (its policy class entry is a {type(serialized).__name__}, "
                         "not a serialized class)")
    try:
        strings = []
        for op, arg, _ in pickletools.genops(base64.b64decode(serialized)):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("STACK_GLOBAL", "GLOBAL") and len(strings) >= 1:
                if op.name == "GLOBAL":
                    module, name = arg.split(" ", 1) if " " in arg else (module, arg)
                else:
                    module, name = strings[-2] if len(strings) >= 2 else module, strings[-1]
                break
    except ValueError as e:  # bad base64 (binascii.Error) or a truncated / garbled pickle
        raise ModelError(f"{path}: corrupt model file (its policy class entry is not a readable pickle: {e})") from e
    return module, name


def _space_shape(entry, path: Path, what: str):
    try:
        if what == "n":
            return int(entry["n"])
        shape = json.loads(entry["_shape"]) if isinstance(entry["_shape"], str) else list(entry["_shape"])
        return tuple(int(x) for x in shape)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: the model's {'action' if what == 'n' else 'observation'} space is not a "
                         f"{'Discrete' if what == 'n' else 'Box'} space a router can use") from e


def _trained_with_normalization(path: Path, card: dict) -> bool:
    hp = card.get("hyperparameters") if isinstance(card.get("hyperparameters"), dict) else {}
    if card.get("normalize") or hp.get("normalize"):
        return True
    zoo_config = path.with_suffix("") / "config.yml"  # RL Zoo writes the hyperparameters it used there
    try:
        text = zoo_config.read_text()
    except OSError:
        return False
    # RL Zoo's config.yml is a list of [key, value] pairs: "- - normalize" then "  - VALUE"
    m = re.search(r"-\s*normalize\s*\n\s*-\s*(\S.*)", text)
    return bool(m) and m.group(1).strip().lower() not in ("false", "null", "~")


def _find_vecnormalize(path: Path, card: dict) -> tuple[str | None, tuple]:
    """(statistics file or None, notes) for a model; see the module docstring."""
    given = card.get("vecnormalize")
    if given:
        p = Path(given) if Path(given).is_absolute() else path.parent / given
        if not p.is_file():
            raise ModelError(f"{card_path(path)}: vecnormalize {given!r}: no such file ({p})")
        candidates = [p]
    else:
        candidates = [path.with_suffix(".vecnormalize.pkl"), path.with_suffix("") / "vecnormalize.pkl"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        return str(found), (("note", f"{path}: observations normalized with the VecNormalize statistics {found}"),)
    if _trained_with_normalization(path, card):
        return None, (("warning", f"{path} was trained with VecNormalize but no statistics were found (looked for "
                       f"{', '.join(str(c) for c in candidates)}): evaluating it on raw observations"),)
    return None, ()


def load_vecnormalize(path: str, obs_dim: int):
    """The saved VecNormalize (statistics only, no env), in evaluation mode; ModelError if unusable."""
    import pickle

    try:
        with open(path, "rb") as f:
            vn = pickle.load(f)
        vn.training, vn.norm_reward = False, False
        shape = tuple(vn.obs_rms.mean.shape)
    except Exception as e:  # a pickle of anything can fail in many ways
        raise ModelError(f"{path}: not a readable VecNormalize file ({type(e).__name__}: {e})") from e
    if shape != (obs_dim,):
        raise ModelError(f"{path}: VecNormalize statistics of shape {shape}, the model takes {obs_dim} numbers")
    return vn


def describe_model(path, card: dict | None = None) -> ModelInfo:
    """Read a model zip (without loading the network) and its card; ModelError if unusable."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such model file")
    if not p.is_file():
        raise ModelError(f"{p}: not a file")
    data = _zip_data(p)
    card = _read_card(p, card)
    module, doc_name = _class_ref(data.get("policy_class"), p)
    obs_shape = _space_shape(data.get("observation_space") or {}, p, "shape")
    if len(obs_shape) != 1:
        raise ModelError(f"{p}: the model takes observations of shape {obs_shape}; routers give flat vectors")
    n_actions = _space_shape(data.get("action_space") or {}, p, "n")
    if "algo" in card:
        algo = _normalize_algo(card["algo"])
    elif "dqn" in module.lower() or doc_name.startswith("DQN"):
        algo = "dqn"
    elif "maskable" in module.lower() or "Maskable" in doc_name:
        algo = "maskable-ppo"
    elif "policies" in module:
        algo = "ppo"
    else:
        raise ModelError(f"{p}: cannot tell the algorithm (policy module {module!r}) and there is no model card "
                         f"{card_path(p)} with an 'algo' key")
    vecnormalize, notes = _find_vecnormalize(p, card)
    info = ModelInfo(path=str(p), name=p.stem, algo=algo, obs_dim=obs_shape[0], n_actions=n_actions,
                     policy_module=module, policy_name=doc_name, card=card, vecnormalize=vecnormalize, notes=notes)
    d = info.obs_dim
    # the card's layout; without it, the row width given to the scorer policy (agents/policies.py);
    # else a card means layout 1 (the layout before the cache features), and no card the first
    # layout, the current one first, that the observation size fits
    saved = data.get("policy_kwargs")
    width = saved.get("instance_features") if isinstance(saved, dict) else None
    rows = d - RICH_GLOBAL_FEATURES
    fits = [k for k in (RICH_LAYOUT, *RICH_LAYOUT_FEATURES) if rows > 0 and rows % RICH_LAYOUT_FEATURES[k] == 0]
    layout = card.get("obs_layout", next((k for k, f in RICH_LAYOUT_FEATURES.items() if f == width),
                                         1 if card or not fits else fits[0]))
    if isinstance(layout, bool) or layout not in RICH_LAYOUT_FEATURES:
        raise ModelError(f"{card_path(p)}: unknown obs_layout {layout!r}; known: "
                         f"{', '.join(map(str, RICH_LAYOUT_FEATURES))}")
    info.obs_layout = int(layout)
    F = RICH_LAYOUT_FEATURES[info.obs_layout]
    inferred = {"paper": (d - 3) // 6 if d > 3 and (d - 3) % 6 == 0 else None,
                "rich": (d - RICH_GLOBAL_FEATURES) // F if d > RICH_GLOBAL_FEATURES and (d - RICH_GLOBAL_FEATURES) % F == 0
                else None}
    obs = card.get("obs")
    if obs is not None and obs not in inferred:
        raise ModelError(f"{card_path(p)}: unknown observation {obs!r}; known: paper, rich")
    if obs is None:
        obs = next((k for k, n in inferred.items() if n), None)
    if obs is None or not inferred[obs]:
        raise ModelError(f"{p}: its {d} observation numbers fit neither the paper encoding (3 + 6N) nor the rich "
                         f"one (8 + {F}N, layout {info.obs_layout})" + (f" (the card says obs={card['obs']!r})" if "obs" in card else ""))
    info.obs, info.num_instances = obs, inferred[obs]
    mode = card.get("mode")
    if mode is not None and mode not in ("tick", "arrival"):
        raise ModelError(f"{card_path(p)}: unknown mode {mode!r}; known: tick, arrival")
    if mode is None:
        mode = {info.num_instances: "arrival", info.num_instances + 1: "tick"}.get(n_actions)
        if mode is None:
            raise ModelError(f"{p}: {n_actions} actions fit neither arrival ({info.num_instances}) nor tick "
                             f"({info.num_instances + 1}) mode for {info.num_instances} instances")
    info.mode = mode
    return info


def check_compatible(info: ModelInfo, num_instances: int) -> tuple[str, str]:
    """(mode, obs) the model runs with on a cluster of ``num_instances``; ModelError otherwise."""
    N = int(num_instances)
    hold = 1 if info.mode == "tick" else 0
    want_obs, want_actions = observation_size(info.obs, N, info.obs_layout), N + hold
    card_n = info.card.get("num_instances")
    trained = (f"{info.path}: the model ({info.algo}, {info.obs} observation, {info.mode} mode) takes "
               f"{info.obs_dim} observation numbers and has {info.n_actions} actions "
               f"({info.num_instances} instances)")
    if info.shared_instance_weights and N <= info.num_instances and info.n_actions == info.num_instances + hold:
        return info.mode, info.obs  # padded, see the module docstring
    if info.obs_dim != want_obs or info.n_actions != want_actions:
        if info.shared_instance_weights:
            hint = f"; this cluster-size-agnostic model runs on at most {info.num_instances} instances"
        else:
            hint = f"; run it on a {info.num_instances}-instance cluster (e.g. --instances {info.num_instances})"
        raise ModelError(f"{trained}, but the scenario has {N} instances: {info.obs} observations of {want_obs} "
                         f"numbers and {want_actions} actions{hint}")
    if card_n is not None and int(card_n) != N:
        raise ModelError(f"{trained}; its model card says num_instances={card_n}, but the scenario has {N}")
    return info.mode, info.obs


def algo_class(algo: str):
    """The SB3 class of an ``algo`` name (dqn: the project's Double DQN; maskable-ppo; ppo)."""
    if algo == "dqn":
        try:
            from agents.policies import DoubleDQN as cls  # the project's Double DQN (loads plain DQN zips too)
        except ImportError:  # pragma: no cover - policies ship with the repo
            from stable_baselines3 import DQN as cls
        return cls
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO
        return MaskablePPO
    from stable_baselines3 import PPO
    return PPO


def load_model(info: ModelInfo):
    """The SB3 model (CPU); ModelError if the file does not load."""
    if info.policy_module.startswith("agents."):
        import agents.policies  # noqa: F401  (custom policy classes must be importable to unpickle)
    cls = algo_class(info.algo)
    custom = None
    if info.shared_instance_weights:  # its scorer's row width is the card's layout (absent: layout 1)
        saved = _zip_data(Path(info.path)).get("policy_kwargs")
        if isinstance(saved, dict) and "instance_features" not in saved:
            custom = {"policy_kwargs": {**saved, "instance_features": RICH_LAYOUT_FEATURES[info.obs_layout]}}
    try:
        model = cls.load(info.path, device="cpu", custom_objects=custom)
    except Exception as e:  # SB3/torch raise many types for bad files
        raise ModelError(f"{info.path}: the {info.algo} model does not load ({type(e).__name__}: {e})") from e
    obs_shape = tuple(model.observation_space.shape or ())
    if obs_shape != (info.obs_dim,) or int(getattr(model.action_space, "n", -1)) != info.n_actions:
        raise ModelError(f"{info.path}: the loaded model's spaces {obs_shape} / {model.action_space} disagree "
                         "with its saved data")
    return model


class LearnedRouter(Router):
    """An SB3 model as a router (see the module docstring). ``modes`` is the mode it was trained in."""

    clairvoyant = False

    def __init__(self, model_or_info, card: dict | None = None, model=None, stochastic: bool = False):
        super().__init__()
        info = model_or_info if isinstance(model_or_info, ModelInfo) else describe_model(model_or_info, card)
        if stochastic and info.algo == "dqn":
            raise ModelError(f"{info.path}: a DQN model has no action distribution to sample (its policy is greedy "
                             "on Q-values); --stochastic applies to PPO and MaskablePPO models")
        self.info = info
        self.stochastic = bool(stochastic)
        self.name = info.name
        self.modes = (info.mode,)
        self.obs = info.obs
        self.source = f"Stable-Baselines3 {info.algo} model {info.path} ({info.obs} observation, {info.mode} mode)"
        self.model = model if model is not None else load_model(info)
        self.maskable = info.algo == "maskable-ppo"
        self.normalizer = load_vecnormalize(info.vecnormalize, info.obs_dim) if info.vecnormalize else None

    def prepare(self, config) -> None:
        if config.obs != self.obs:
            raise ModelError(f"{self.info.path}: the model was trained on the {self.obs!r} observation, the "
                             f"environment gives {config.obs!r}")
        check_compatible(self.info, config.num_instances)
        super().prepare(config)

    def _choose(self, view, valid, go):
        B, N = valid.shape
        obs = encode(self.obs, view, self.max_model_len, self.info.obs_layout)
        mask = np.asarray(view.action_mask, dtype=bool)
        if obs.shape[1] != self.info.obs_dim:  # padded cluster-size-agnostic model
            padded = np.full((B, self.info.obs_dim), -1.0, dtype=np.float32)
            padded[:, : obs.shape[1]] = obs
            obs = padded
            pm = np.zeros((B, self.info.n_actions), dtype=bool)
            pm[:, :N] = mask[:, :N]
            if mask.shape[1] > N:
                pm[:, -1] = mask[:, N]
            mask = pm
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs).astype(np.float32)
        if self.stochastic:
            actions = self._sample(obs, mask, go)
        elif self.maskable:
            actions, _ = self.model.predict(obs, deterministic=True, action_masks=mask)
        else:
            actions, _ = self.model.predict(obs, deterministic=True)
        actions = np.asarray(actions, dtype=np.int64).reshape(B)
        return np.where(actions < N, actions, -1)  # hold / padded -> -1 (hold in tick mode)

    def _sample(self, obs, mask, go) -> np.ndarray:
        """An action per env drawn from the policy's distribution with the env's own Generator (only
        the envs that dispatch draw, so a sampled episode does not depend on the others)."""
        import torch as th

        policy = self.model.policy
        with th.no_grad():
            obs_t = policy.obs_to_tensor(obs)[0]
            kwargs = {"action_masks": mask} if self.maskable else {}
            dist = policy.get_distribution(obs_t, **kwargs)
            probs = dist.distribution.probs.cpu().numpy().astype(np.float64)
        rows = np.flatnonzero(go)
        actions = np.full(len(obs), -1, dtype=np.int64)
        if rows.size:
            u = self._uniform(rows, 1)[:, 0]
            cdf = np.cumsum(probs[rows], axis=1)
            actions[rows] = np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), probs.shape[1] - 1)
        return actions
