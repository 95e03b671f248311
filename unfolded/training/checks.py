"""Start-up checks of a composed configuration: each failure is a `ConfigError` with a one-line message.

- every node with a `_target_` may only hold arguments of that target's constructor (typos fail);
- the top level holds only known keys;
- trainable parameter names are known ones;
- image channels equal the denoiser's channels;
- a predefined `model` (MoDL, VarNet, PDNet) replaces the `algo` + `prior` (+ `deq`) pair: not both;
- a checkpoint to resume from or to evaluate fits the model built from the configuration.
(Data checks — missing/empty folder, crop larger than the images — live in `data.py`.)
"""

from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError

TOP_LEVEL_KEYS = {
    "task_name", "tags", "seed", "train", "test", "ckpt_path", "optimized_metric", "module", "data", "physics",
    "prior", "algo", "deq", "model", "trainer", "logger", "callbacks", "paths", "hydra",
}
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
TRAINABLE = {"stepsize", "sigma_denoiser", "lambda_reg", "beta", "g_param", "lambda"}


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


def check_targets(node, where: str, provided: dict[str, set[str]] | None = None) -> None:
    """Recursively check that the keys of every `_target_` node are constructor arguments.

    `provided` maps a config path to the arguments passed at instantiation time (e.g. the algorithm
    receives `prior`): these may not appear in the config either.
    """
    provided = provided or {}
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            accepted = accepted_arguments(_locate(str(target), where))
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
    _check_model_or_algo(cfg)
    for group in ("data", "physics", "prior", "algo", "deq", "model", "module", "trainer", "logger", "callbacks"):
        node = cfg.get(group)
        if node is not None:
            check_targets(cfg._get_node(group), group)
    for group, passed in (("algo", ("prior", "DEQ")), ("module", ("model", "physics", "run_config"))):
        node = cfg.get(group)
        if node is not None:
            for key in passed:
                if key in node:
                    raise ConfigError(f"{group}.{key} is set by train.py from the '{key.lower()}' group; remove it")
    _check_trainable(cfg)
    _check_channels(cfg)
    _check_mri(cfg)
    if not cfg.get("train", True) and not cfg.get("test", True):
        raise ConfigError("train=false and test=false: nothing to do")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such file")


def _check_trainable(cfg: DictConfig) -> None:
    algo = cfg.get("algo")
    if algo is None:
        return
    names = algo.get("trainable_params")
    if names is None:
        return
    if isinstance(names, str):
        names = [names]
    valid = set(TRAINABLE)
    for name in names:
        if name not in valid:
            raise ConfigError(f"unknown trainable parameter '{name}' in algo.trainable_params; valid: "
                              f"{', '.join(sorted(valid - {'g_param', 'lambda'}))} (aliases: g_param, lambda)")


def _check_model_or_algo(cfg: DictConfig) -> None:
    if cfg.get("model") is None:
        if cfg.get("algo") is None:
            raise ConfigError("no model: choose algo=... (with prior=...) or model=... (modl, varnet, e2e_varnet, "
                              "pdnet)")
        return
    both = [g for g in ("algo", "prior", "deq") if cfg.get(g)]
    if both:
        raise ConfigError(f"model=... replaces algo, prior and deq; remove {', '.join(f'{g}=...' for g in both)} "
                          "(or drop model=... to use them)")


def _denoiser_node(cfg: DictConfig) -> tuple[str, DictConfig] | None:
    for group in ("prior", "model"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and isinstance(node.get("denoiser"), DictConfig):
            return f"{group}.denoiser", node.denoiser
    return None


def _check_channels(cfg: DictConfig) -> None:
    data, found = cfg.get("data"), _denoiser_node(cfg)
    if data is None or data.get("channels") is None:
        return
    channels = int(data.channels)
    checked = []
    if found is not None:
        where, den = found
        checked = [(f"{where}.{key}", den.get(key)) for key in ("in_channels", "out_channels") if key in den]
    model = cfg.get("model")
    if isinstance(model, DictConfig) and "channels" in model:  # PDNet
        checked.append(("model.channels", model.get("channels")))
    for where, value in checked:
        if value is not None and int(value) != channels:
            raise ConfigError(f"image channels (data.channels={channels}) != model channels ({where}={value})")


def _check_mri(cfg: DictConfig) -> None:
    """MRI works on complex images (2 channels); some models need a particular kind of physics."""
    from unfolded.models import PDNet, VarNet
    from unfolded.physics import MRI, MultiCoilMRI

    physics, model, data = cfg.get("physics"), cfg.get("model"), cfg.get("data")
    p_cls = _locate(str(physics._target_), "physics") if physics is not None and "_target_" in physics else None
    m_cls = _locate(str(model._target_), "model") if model is not None and "_target_" in model else None
    is_mri = isinstance(p_cls, type) and issubclass(p_cls, (MRI, MultiCoilMRI))
    if is_mri and data is not None and data.get("channels") is not None and int(data.channels) != 2:
        raise ConfigError(f"MRI physics needs complex images: data.channels=2 (as in data=mri), got "
                          f"data.channels={data.channels}")
    if not isinstance(m_cls, type) or p_cls is None:
        return
    if issubclass(m_cls, VarNet) and model.get("mode") == "e2e-varnet" and not is_mri:
        raise ConfigError(f"model.mode=e2e-varnet needs MRI physics (physics=mri or mri_multicoil), got "
                          f"{physics._target_}")
    if issubclass(m_cls, PDNet) and isinstance(p_cls, type) and issubclass(p_cls, MultiCoilMRI):
        raise ConfigError("model=pdnet needs 4-D measurements; multi-coil k-space is 5-D: use physics=mri")


def check_checkpoint(path: str, module) -> None:
    """The checkpoint at `path` must hold the state of the same model (keys and shapes)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"ckpt_path={path}: cannot be read ({type(e).__name__}: {e})") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"ckpt_path={path}: not a Lightning checkpoint (no state_dict)")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        saved = (ckpt.get("unfolded_config") or {})
        what = []
        if saved:
            group = "model" if saved.get("model") else "algo"
            what.append(f"saved with {group}=" + str((saved.get(group) or {}).get("_target_", "?")))
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
