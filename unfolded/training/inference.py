"""A trained model as a function of measurements: `rec = unfolded.load(path)`, then `x̂ = rec(y)`.

The `Reconstructor` holds the model, its physics (one operator per image size, as in training) and the
start x₀ policy of its training (`module.init`), so that `rec(y)` is what the training's evaluation
computed on the same y: forgetting the `mean_fill` start costs several dB on a valid blur, silently.
Loading needs neither Lightning nor a Hydra run: a checkpoint, a run folder, an exported `.safetensors`
or `zoo:<name>`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from . import evaluation, model_files
from .building import build_model, build_physics, check_targets
from .errors import ConfigError
from .physics_bank import PhysicsBank
from .seeding import EVAL_SEED
from .simulation import INITS, Simulator, initial_estimate, is_measured

# what a checkpoint's module settings (loss, optimiser, scheduler) may build: physics=fastmri's loss is ours
MODULE_TRUSTED = ("torch.nn", "torch.optim", "unfolded.mri.losses")


class Reconstructor(nn.Module):
    def __init__(self, model: nn.Module, physics, init: str = "mean_fill", channels: int | None = None,
                 config: dict | None = None, info: dict | None = None):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be {' or '.join(INITS)}, got {init!r}")
        self.model = model
        self.physics_bank = PhysicsBank.wrap(physics)
        self.init, self.channels = init, channels
        self.config, self.info = config or {}, info or {}

    def physics_for(self, y: Tensor):
        """The operator of a measurement y (B, ..., H, W): one for all sizes, or the one built for images of
        y's height and width (inpainting, MRI measure images of their own size)."""
        if self.physics_bank.factory is None:
            return self.physics_bank.get(y)
        if self.channels is None:
            raise ValueError("this physics is built per image size: the Reconstructor needs `channels`")
        return self.physics_bank.get(torch.empty(1, self.channels, *y.shape[-2:], device=y.device))

    def forward(self, y: Tensor, physics=None) -> Tensor:
        """x̂ from a batch of measurements y, started as in training (`init`)."""
        return self.reconstruct(y, physics)[0]

    def reconstruct(self, y: Tensor, physics=None, x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(x̂, PSNR of each iterate or None): with the true images x, as the training's evaluation reports."""
        physics = self.physics_for(y) if physics is None else physics
        return evaluation.reconstruct(self.model, y, physics, initial_estimate(self.init, y, physics), x)

    def simulate(self, x: Tensor, seed: int | None = None, first_index: int = 0) -> tuple[object, Tensor]:
        """(physics, y) for clean images x, with noise drawn as the training's test split draws it (image i of
        the batch is test image `first_index` + i under `seed`, by default the training's `eval_seed`)."""
        if seed is None:
            seed = int(self.config.get("module", {}).get("eval_seed", EVAL_SEED))
        simulator = Simulator(self.physics_bank, None, seed)
        numbers = torch.arange(first_index, first_index + x.shape[0])
        return simulator.evaluation(x, numbers, "test")


def from_model_file(mf: model_files.ModelFile, source: str, physics_overrides: dict | None = None) -> Reconstructor:
    """Build the model and physics of a model file (its `_target_`s checked first), load its weights strictly."""
    config = copy.deepcopy(mf.config)
    if isinstance(config.get("physics"), dict) and config["physics"].get("maps_cache_dir") is not None:
        config["physics"]["maps_cache_dir"] = None  # a stored model does not choose where files are written
    if physics_overrides:
        config["physics"] = merge_physics(config.get("physics") or {}, physics_overrides, source)
    for key in ("algo", "physics"):
        if not isinstance(config.get(key), dict):
            raise ConfigError(f"{source}: the stored configuration has no {key}")
        check_targets(config[key], source, key)
    cfg = OmegaConf.create(config)
    model = build_model(cfg)
    try:
        model.load_state_dict(mf.state_dict, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{source}: its weights do not fit the model it describes ({first})") from None
    model.eval()
    channels = (config.get("data") or {}).get("channels")
    init = (config.get("module") or {}).get("init", "mean_fill")
    return Reconstructor(model, build_physics(cfg), init, channels, config, dict(mf.info, loaded_from=source))


def merge_physics(stored: dict, overrides: dict, source: str) -> dict:
    """The stored physics with some keys replaced (e.g. `filter.sigma`, `noise_model.sigma`); a key the
    stored physics lacks is a one-line error listing the keys it has."""
    merged = OmegaConf.create(stored)
    for dotted, value in _flatten(overrides):
        if OmegaConf.select(merged, dotted, default="<missing>") == "<missing>":
            parent = dotted.rsplit(".", 1)[0] if "." in dotted else ""
            while parent and not OmegaConf.is_dict(OmegaConf.select(merged, parent)):
                parent = parent.rsplit(".", 1)[0] if "." in parent else ""  # the deepest node that exists
            node = OmegaConf.select(merged, parent) if parent else merged
            keys = sorted(str(k) for k in node.keys() if k != "_target_")
            where = f"physics.{parent}." if parent else "physics."
            raise ConfigError(f"physics.{dotted}: the physics of {source} has no such key; it has "
                              f"{', '.join(where + k for k in keys)}")
        OmegaConf.update(merged, dotted, value, merge=False)
    return OmegaConf.to_container(merged, resolve=True)


def _flatten(node: dict, prefix: str = ""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "_target_" not in value:
            yield from _flatten(value, f"{path}.")
        else:
            yield path, value


def resolve(path: str | Path) -> tuple[Path, str]:
    """(file or folder, how to name it): `zoo:<name>` is a file of the shipped model zoo."""
    text = str(path)
    if text.startswith("zoo:"):
        from .zoo import zoo_path

        return zoo_path(text[len("zoo:"):]), text
    return Path(text).expanduser(), text


def load(path: str | Path, device: str | torch.device = "cpu", physics: dict | None = None) -> Reconstructor:
    """A trained model ready to reconstruct: a `.ckpt`, a run folder, an exported `.safetensors` or
    `zoo:<name>`. `physics` replaces keys of the stored physics, e.g. {"noise_model": {"sigma": 0.05}}."""
    file, name = resolve(path)
    return from_model_file(model_files.read(file), name, physics).to(device)


def module_arguments(checkpoint_path, hparams_file=None, weights_only=None, **kwargs) -> tuple[Path, dict]:
    """For `UnfoldedModule.load_from_checkpoint(path)`: the checkpoint file and the constructor's arguments,
    the model, the physics and the module's settings rebuilt from the run configuration the checkpoint
    stores (keywords given override them)."""
    if weights_only is False:
        raise ValueError("weights_only=False is refused: a checkpoint must not run code when loaded")
    if hparams_file is not None:
        raise NotImplementedError("hparams_file: the checkpoint stores its own configuration; override "
                                  "settings with keywords instead")
    path = model_files.checkpoint_in(Path(checkpoint_path))
    if "model" not in kwargs or "physics" not in kwargs:
        ckpt = model_files.read_checkpoint(str(path))
        rec = from_model_file(model_files.of_checkpoint(ckpt, path), str(path))
        kwargs.setdefault("model", rec.model)
        fixed = rec.physics_bank.fixed
        kwargs.setdefault("physics", fixed if is_measured(fixed) else rec.physics_bank)  # k-space settings as built
        settings = dict(ckpt["unfolded_config"].get("module") or {})
        settings.pop("_target_", None)
        check_targets(settings, str(path), "module", trusted=MODULE_TRUSTED)
        from hydra.utils import instantiate

        for key, value in instantiate(OmegaConf.create(settings)).items():
            kwargs.setdefault(key, value)
    return path, kwargs
