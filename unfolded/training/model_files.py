"""Trained models on disk, read without running code from the file.

- a Lightning checkpoint (`.ckpt`, or a run folder: its best, else last checkpoint), read with
  `weights_only=True` (`checks.read_checkpoint`);
- an exported model (`python -m unfolded.export`): one `.safetensors` file holding the model's weights and,
  in the file's metadata, the YAML of what to build (`algo`, `physics`, the x₀ policy, the channels) and
  the test results of the run it came from. safetensors holds tensors only, and YAML is data: loading
  one builds only the library's own classes (`building.check_targets`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from .atomic import write_atomically
from .checks import read_checkpoint
from .errors import ConfigError

FORMAT = "unfolded-model/1"
# what a trained model needs besides its weights, taken from the run's configuration
KEPT = {"algo": None, "physics": None, "data": ("channels", "readout_crop"),
        "module": ("init", "eval_seed", "tikhonov_lambdas", "tikhonov_refine", "tikhonov_tol", "tikhonov_max_iter")}


@dataclass
class ModelFile:
    """The contents of a trained model: the configuration to build it, its weights, where it came from."""

    config: dict
    state_dict: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)  # global_step, tikhonov_lambda, test summary, source


def _model_config(run_config: dict) -> dict:
    out = {}
    for key, keep in KEPT.items():
        node = run_config.get(key)
        if node is None:
            continue
        out[key] = node if keep is None else {k: node[k] for k in keep if k in node}
    return out


def checkpoint_in(path: Path) -> Path:
    """A run folder's best checkpoint (else its last); a file is itself."""
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise ConfigError(f"{path}: a folder without checkpoints/best.ckpt or checkpoints/last.ckpt")
    return path


def _run_results(ckpt_path: Path, step: int | None) -> dict | None:
    """The test summary the run wrote beside this checkpoint (results.json), if it is of these weights: a
    run tests its best checkpoint (results.json then counts all the steps trained), else its last."""
    results = ckpt_path.parent.parent / "results.json"
    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError):
        return None
    tested = ckpt_path.name == "best.ckpt" or (step is not None and data.get("global_step") == step)
    return data.get("summary") if tested else None


def from_checkpoint(path: str | Path) -> ModelFile:
    ckpt_path = checkpoint_in(Path(path))
    return of_checkpoint(read_checkpoint(str(ckpt_path)), ckpt_path)


def of_checkpoint(ckpt: dict, ckpt_path: Path) -> ModelFile:
    """The model file of a checkpoint already read (`read_checkpoint`) from `ckpt_path`."""
    run_config = ckpt.get("unfolded_config")
    if not isinstance(run_config, dict):
        raise ConfigError(f"{ckpt_path}: a checkpoint without the run's configuration (unfolded_config); it was "
                          f"not written by train.py")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    step = ckpt.get("global_step")
    info = {"source": str(ckpt_path), "global_step": step, "tikhonov_lambda": ckpt.get("tikhonov_lambda"),
            "test_summary": _run_results(ckpt_path, step), "task_name": run_config.get("task_name")}
    return ModelFile(_model_config(run_config), state, info)


def export(model_file: ModelFile, path: str | Path) -> Path:
    """One `.safetensors` file: the weights, and the configuration and provenance as YAML metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model_file.state_dict.items()}
    metadata = {"format": FORMAT, "config": yaml.safe_dump(model_file.config, sort_keys=False),
                "info": yaml.safe_dump(model_file.info, sort_keys=False)}
    data = save(tensors, metadata=metadata)
    return write_atomically(path, lambda f: f.write(data))


def from_export(path: str | Path) -> ModelFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, SafetensorError) as e:
        raise ConfigError(f"{path}: cannot be read as an exported model ({type(e).__name__}: {e})") from None
    if metadata.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an unfolded model file (format {metadata.get('format')!r}, "
                          f"expected {FORMAT!r})")
    try:
        config, info = yaml.safe_load(metadata["config"]), yaml.safe_load(metadata.get("info") or "{}")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: its configuration is not valid YAML ({e})") from None
    return ModelFile(config, state, info or {})


def read(path: str | Path) -> ModelFile:
    """A trained model from a checkpoint, a run folder or an exported file, chosen by what the path is."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such file or folder (a .ckpt, a run folder, a .safetensors or zoo:<name>)")
    if p.suffix == ".safetensors":
        return from_export(p)
    return from_checkpoint(p)
