"""Objects from configuration nodes, without Lightning: the physics and the model of a run, for training
(`pipeline.py`) and for every later use of a trained model (`inference.py`).

A configuration from elsewhere (a checkpoint, an exported model file) goes through `check_targets` first:
its `_target_`s may only name the library's own classes and functions, never arbitrary callables.
"""

from __future__ import annotations

import functools
import importlib

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from .errors import ConfigError
from .physics_bank import PhysicsBank
from .simulation import is_measured

# packages whose classes and functions a stored configuration may build (the model and the physics)
TRUSTED_PACKAGES = ("unfolded.physics", "unfolded.optim", "unfolded.models", "unfolded.solvers", "torch.nn")


def _cause(e: BaseException) -> BaseException:
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def build(node: DictConfig, what: str, **kwargs):
    """`instantiate`, turning a constructor's error into a one-line ConfigError naming the group."""
    try:
        return instantiate(node, **kwargs)
    except ConfigError:
        raise
    except (InstantiationException, ValueError, TypeError) as e:
        cause = _cause(e)
        if isinstance(cause, ConfigError):
            raise cause from None
        msg = str(cause).strip().splitlines()
        raise ConfigError(f"cannot build {what}: {type(cause).__name__}: {msg[-1] if msg else ''}") from None


def _locate(path: str):
    """The object a dotted path names, by importing its longest importable module prefix. (Hydra's
    `get_object` does the same but logs a multi-line error for each path it cannot find, and a refused
    target must stay a one-line error.)"""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def check_targets(node, source: str, where: str = "", trusted: tuple[str, ...] = TRUSTED_PACKAGES) -> None:
    """Refuse a stored configuration whose `_target_` is not a class or function defined in the library's
    physics/optim/models/solvers or in torch.nn: building it must not run anything else (e.g. a path
    through a module attribute, `unfolded.physics.blur.torch.load`, is refused by where it is defined)."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None:
            try:
                obj = _locate(str(target))
                home = getattr(obj, "__module__", "") or ""
            except (ImportError, AttributeError):
                obj, home = None, ""
            if not (callable(obj) and home.startswith(trusted)):
                raise ConfigError(f"{source}: refused to build {target!r} at {where or 'the top'}: a stored model "
                                  f"may only build classes and functions of {', '.join(trusted)}")
        for key, value in node.items():
            check_targets(value, source, f"{where}.{key}" if where else str(key), trusted)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_targets(value, source, f"{where}[{i}]", trusted)


def _build_sized_physics(node: DictConfig, size) -> object:
    return build(node, "physics", img_size=list(size))


def build_physics(cfg: DictConfig):
    """A PhysicsBank; or, for measured k-space (`simulation.is_measured`), its settings as they are."""
    node = cfg.physics
    if "img_size" in node and node.img_size is None:
        # Built per image size (training crops and test images get their own operator). A partial, not a
        # lambda: DDP-spawn pickles the module with its physics.
        bank = PhysicsBank(factory=functools.partial(_build_sized_physics, node))
        data = cfg.get("data") or {}
        if data.get("channels") and data.get("crop_size"):
            bank.example((int(data.channels), int(data.crop_size), int(data.crop_size)))  # bad settings fail now
        return bank
    physics = build(node, "physics")
    return physics if is_measured(physics) else PhysicsBank(physics=physics)


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """The `algo` tree in one recursive instantiate: an algorithm with its `prior` and `DEQ`, or a predefined
    architecture with its own network."""
    return build(cfg.algo, "algo")
