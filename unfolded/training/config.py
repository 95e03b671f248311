"""Composing the run configuration outside `train.py` (tests, notebooks), and the start-up check of
command-line overrides that turns Hydra's multi-line composition errors into one line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from omegaconf import DictConfig, open_dict

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "train"


def compose(overrides: list[str] | None = None, output_dir: str | Path | None = None,
            config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """The configuration `python train.py *overrides` would run, with its outputs in `output_dir`.

    Registers the Hydra config (so `${hydra:...}` interpolations resolve) for the current process.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = hydra_compose(CONFIG_NAME, overrides=list(overrides or []), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.runtime.cwd = str(Path.cwd())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def one_line(message: str) -> str:
    """Hydra's composition error in one line."""
    text = str(message)
    m = re.search(r"Could not override '([^']+)'.*?use (\+\S+)", text, re.S)
    if m:
        return f"unknown key '{m.group(1)}' (a typo? to add a new key on purpose, use {m.group(2)})"
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("Config search path", "provider=", "full_key:", "object_type=",
                                        "Set the environment variable HYDRA_FULL_ERROR")):
            continue
        lines.append(line)
    out = " ".join(lines)
    out = re.sub(r"\s*Available options in '([^']+)':\s*", r"; available options in '\1': ", out)
    return out


def preflight(argv: list[str], config_dir: str | Path = CONFIG_DIR) -> None:
    """Compose the configuration of `train.py argv` once and exit with a one-line message if Hydra
    cannot. Runs only for plain overrides (Hydra's own flags such as --multirun are left to Hydra)."""
    if any(a.startswith("-") for a in argv):
        return
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            hydra_compose(CONFIG_NAME, overrides=list(argv), return_hydra_config=True)
    except Exception as e:  # noqa: BLE001  (any composition error is a configuration error)
        sys.exit(f"config error: {one_line(str(e))}")
    finally:
        GlobalHydra.instance().clear()
