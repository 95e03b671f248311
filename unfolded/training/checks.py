"""Start-up checks of a composed configuration: each failure is a `ConfigError` with a one-line message.

Only what no constructor can know: each constructor validates its own arguments (a bad value is its
one-line error, see `building.build`), and `pipeline.check_compatible` lets the model meet the physics once.
- every node with a `_target_` may only hold arguments of that target's constructor (typos fail);
- the top level holds only known keys;
- image channels (data) equal the denoiser's channels (algo), and are complex (2) for MRI physics;
- a denoiser that takes the noise level as an input (DRUNet) gets one: algo.sigma_denoiser is set;
- a predefined architecture (algo=modl, ...) brings its own network: no prior=/deq= beside it; algo=gd
  (RED around the prior's denoiser) needs a prior with a denoiser;
- a checkpoint to resume from or to evaluate fits the model built from the configuration, and is read
  without running code (`weights_only=True`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError

TOP_LEVEL_KEYS = {
    "task_name", "tags", "seed", "train", "test", "ckpt_path", "optimized_metric", "module", "data", "physics",
    "algo", "trainer", "logger", "callbacks", "paths", "hydra",
}
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _locate(path: str, where: str):
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception:
        raise ConfigError(f"{where}._target_: cannot import '{path}'") from None


def accepted_arguments(target) -> set[str] | None:
    """Names the constructor accepts; None if it takes arbitrary keywords.

    For classes of this package, `**kwargs` is followed to the base classes' constructors.
    """
    if inspect.isclass(target):
        names: set[str] = set()
        for cls in target.__mro__:
            if "__init__" not in cls.__dict__:
                continue
            params = inspect.signature(cls.__dict__["__init__"]).parameters
            names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                return names - {"self"}
            if not cls.__module__.startswith("unfolded."):
                return None
        return names - {"self"}
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _defaults(target) -> dict:
    """Default values of the constructor's arguments (following `**kwargs` like `accepted_arguments`)."""
    out: dict = {}
    for fn in ([c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
               if inspect.isclass(target) else [target]):
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            break
        for name, p in params.items():
            if p.default is not p.empty:
                out.setdefault(name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return out


def _check_type(where: str, value, default) -> None:
    """A value of a documented key must have the type of its default: a number where the default is one,
    true/false where it is a flag (ranges are the constructor's to check)."""
    if value is None or isinstance(value, (DictConfig, ListConfig)):
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}={value!r}: must be true or false")
    elif isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ConfigError(f"{where}={value!r}: must be {kind} (default {default})")


def check_targets(node, where: str) -> None:
    """Recursively check that the keys of every `_target_` node are constructor arguments, of the type of
    the argument's default."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            located = _locate(str(target), where)
            defaults = _defaults(located)
            for key in node.keys():
                if key in defaults and key not in HYDRA_KEYS:
                    _check_type(f"{where}.{key}", node[key], defaults[key])
            accepted = accepted_arguments(located)
            if accepted is not None:
                extra = {str(k) for k in node.keys()} - HYDRA_KEYS - accepted
                if extra:
                    key = sorted(extra)[0]
                    raise ConfigError(
                        f"unknown key '{where}.{key}': {target} accepts {', '.join(sorted(accepted))}")
        for key in node.keys():
            if key in HYDRA_KEYS:
                continue
            check_targets(node._get_node(key), f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node._iter_ex(resolve=False)):
            check_targets(item, f"{where}[{i}]")


def check_config(cfg: DictConfig) -> None:
    extra = {str(k) for k in cfg.keys()} - TOP_LEVEL_KEYS
    if extra:
        raise ConfigError(f"unknown top-level key '{sorted(extra)[0]}'; known: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    if cfg.get("algo") is None:
        raise ConfigError("no model: choose algo=gd | pgd | hqs | admm | fista | drs | pdcp (with prior=...) or a "
                          "predefined architecture algo=modl | varnet | e2e_varnet | pdnet")
    _check_predefined(cfg.algo)
    for group in ("data", "physics", "algo", "module", "trainer", "logger", "callbacks"):
        if cfg.get(group) is not None:
            check_targets(cfg._get_node(group), group)
    module = cfg.get("module")
    for key in ("model", "physics", "run_config"):
        if module is not None and key in module:
            raise ConfigError(f"module.{key} is set by train.py (from the algo/physics groups); remove it")
    _check_channels(cfg)
    _check_noise_level(cfg)
    if not cfg.get("train", True) and not cfg.get("test", True):
        raise ConfigError("train=false and test=false: nothing to do")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such file")


def _check_predefined(algo: DictConfig) -> None:
    """prior=... and deq=... are merged into algo.prior / algo.DEQ: a predefined architecture has neither."""
    target = _locate(str(algo._target_), "algo") if "_target_" in algo else None
    accepted = accepted_arguments(target) if target is not None else None
    if accepted is None:
        return
    for key, group in (("prior", "prior"), ("DEQ", "deq")):
        if key in algo and key not in accepted:
            raise ConfigError(f"{algo._target_} is a predefined architecture with its own network: remove "
                              f"{group}=... ({group} applies to algo=gd | pgd | hqs | admm | fista | drs | pdcp)")
    prior = algo.get("prior")
    if isinstance(prior, DictConfig) and str(prior.get("_target_", "")).endswith(".RED") and "denoiser" not in prior:
        # algo=gd replaces the prior's _target_ by RED around its denoiser; an explicit prior has none
        raise ConfigError("algo=gd wraps the prior's denoiser in RED, and this prior (prior=tv | wavelet) has no "
                          "denoiser: use it with algo=pgd | hqs | admm | fista | drs | pdcp")


def _denoiser_node(cfg: DictConfig) -> tuple[str, DictConfig] | None:
    algo = cfg.get("algo")
    for where, node in (("algo.prior.denoiser", (algo.get("prior") or {}).get("denoiser")),
                        ("algo.denoiser", algo.get("denoiser"))):
        if isinstance(node, DictConfig):
            return where, node
    return None


def _check_noise_level(cfg: DictConfig) -> None:
    """A prior's denoiser that takes σ as an input (DRUNet) needs the algorithm to give one."""
    found, algo = _denoiser_node(cfg), cfg.get("algo")
    if found is None or found[0] != "algo.prior.denoiser" or "_target_" not in found[1]:
        return
    target = _locate(str(found[1]._target_), found[0])
    if getattr(target, "uses_sigma", False) is True and algo.get("sigma_denoiser") is None \
            and algo.get("g_param") is None:
        raise ConfigError(f"{found[0]}={target.__name__} takes the noise level as an input: set algo.sigma_denoiser "
                          "(e.g. algo.sigma_denoiser=0.05; add sigma_denoiser to algo.trainable_params to learn it)")


KSPACE_PHYSICS = ("MRI", "MultiCoilMRI", "KspacePhysics")


def physics_measures_kspace(physics) -> bool:
    """The one rule on a configuration's physics node, before anything is built (`metrics.measures_kspace`
    is its twin on built operators): its measurements are k-space (MRI, MultiCoilMRI, physics=fastmri's
    KspacePhysics), by the class its `_target_` names; its images are then complex (2 channels)."""
    return str(physics.get("_target_", "")).rsplit(".", 1)[-1] in KSPACE_PHYSICS


def _check_channels(cfg: DictConfig) -> None:
    data, found = cfg.get("data"), _denoiser_node(cfg)
    if data is None or data.get("channels") is None:
        return
    channels = int(data.channels)
    checked = []
    if found is not None:
        where, den = found
        checked = [(f"{where}.{key}", den.get(key)) for key in ("in_channels", "out_channels") if key in den]
    algo = cfg.get("algo")
    if "channels" in algo:  # PDNet
        checked.append(("algo.channels", algo.get("channels")))
    for where, value in checked:
        if value is not None and int(value) != channels:
            raise ConfigError(f"image channels (data.channels={channels}) != model channels ({where}={value})")
    physics = cfg.get("physics")
    if channels != 2 and physics is not None and physics_measures_kspace(physics):
        raise ConfigError(f"MRI physics needs complex images: data.channels=2 (as in data=mri), got "
                          f"data.channels={channels}")


def read_checkpoint(path: str) -> dict:
    """A Lightning checkpoint's contents, read without running code (`weights_only=True`: a checkpoint
    someone shares cannot execute anything); a file that is not one is a one-line ConfigError."""
    import torch

    if not Path(str(path)).is_file():
        raise ConfigError(f"ckpt_path={path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        if "Weights only load failed" in first:  # torch's advice (weights_only=False) is what we refuse to do
            first = "not a checkpoint, or it holds objects that could run code when loaded; refused"
        raise ConfigError(f"ckpt_path={path}: cannot be read as a checkpoint ({type(e).__name__}: "
                          f"{first[:160]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ConfigError(f"ckpt_path={path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def check_checkpoint(path: str, module) -> None:
    """The checkpoint at `path` must hold the state of the same model (keys and shapes)."""
    ckpt = read_checkpoint(path)
    state = ckpt["state_dict"]
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        saved = (ckpt.get("unfolded_config") or {})
        what = []
        if saved:
            what.append("saved with algo=" + str((saved.get("algo") or saved.get("model") or {}).get("_target_", "?")))
        if missing:
            what.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
        if unexpected:
            what.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if shapes:
            k = shapes[0]
            what.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise ConfigError(f"ckpt_path={path} is from a different model than the configuration ({'; '.join(what)})")


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
