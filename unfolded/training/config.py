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


def one_line(message: str, argv: list[str] | None = None, config_dir: str | Path = CONFIG_DIR) -> str:
    """Hydra's composition error in one line; for an unknown key, the keys the user may have meant."""
    text = str(message)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return unknown_key(m.group(1), argv or [], config_dir)
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


def _key_paths(node, prefix: str = "") -> dict[str, object]:
    """Every key path of a config (interpolations unresolved) -> its node."""
    out = {}
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}{key}"
            child = node._get_node(key)
            out[path] = child
            out.update(_key_paths(child, path + "."))
    return out


def _in_other_options(key: str, config_dir: Path) -> list[str]:
    """'data=folder' for key 'data.path': options of the key's group that have the rest of the key."""
    import yaml

    group, _, rest = key.partition(".")
    folder = config_dir / group
    found = []
    for f in sorted(folder.glob("*.yaml")) if rest and folder.is_dir() else []:
        node, present = yaml.safe_load(f.read_text()) or {}, True
        for part in rest.split("."):
            present = isinstance(node, dict) and part in node
            node = node[part] if present else None
            if not present:
                break
        if present:
            found.append(f"{group}={f.stem}")
    return found


def unknown_key(key: str, argv: list[str], config_dir: str | Path = CONFIG_DIR) -> str:
    """`unknown key 'max_steps'; did you mean trainer.max_steps?`: keys with the same last name, else
    close spellings; options of the group that have the key; `+key` only where adding a key works (a
    node whose constructor takes any keyword)."""
    import difflib

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .checks import accepted_arguments

    others = [a for a in argv if not a.split("=", 1)[0].lstrip("+~") == key]
    cfg = None
    for attempt in (others, []):
        try:
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
                cfg = hydra_compose(CONFIG_NAME, overrides=list(attempt))
            break
        except Exception:  # noqa: BLE001  (the suggestions are a best effort)
            continue
        finally:
            GlobalHydra.instance().clear()
    paths = _key_paths(cfg) if cfg is not None else {}
    leaf = key.split(".")[-1]
    meant = [p for p in paths if p.split(".")[-1] == leaf and p != key]
    candidates = [p for p in paths if not p.endswith("._target_") and not key.startswith(p + ".")]
    meant = meant or difflib.get_close_matches(key, candidates, n=3, cutoff=0.75)
    hints = [f"did you mean {' or '.join(meant[:3])}?"] if meant else []
    # a group merged at the top (data, physics, trainer, ...): which of its options has the key
    options = _in_other_options(key, Path(config_dir)) if key.split(".")[0] in paths else []
    if options:
        hints.append(f"{key} exists with {' or '.join(options)}")
    parent = paths.get(key.rpartition(".")[0]) if "." in key else None
    if isinstance(parent, DictConfig) and "_target_" in parent:
        from hydra.utils import get_object

        try:
            if accepted_arguments(get_object(str(parent._target_))) is None:
                hints.append(f"to add a new key on purpose, use +{key}")
        except Exception:  # noqa: BLE001
            pass
    return f"unknown key '{key}'" + (f"; {'; '.join(hints)}" if hints else "")


def _replacing(argv: list[str], error: Exception) -> list[str] | None:
    """`key={...}` where `key` holds a dict: Hydra merges the two key by key and refuses keys the old dict
    lacks, whereas the user means a new node (e.g. `physics.filter={_target_: torch.load, f: k.pt}`).
    Returns argv with that override spelled as a replacement (`~key +key={...}`), or None."""
    m = re.search(r"Could not override '([^']+)'", str(error))
    cause = error.__cause__
    if not m or cause is None or "not in struct" not in str(cause):
        return None
    key = m.group(1)
    for i, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if name == key and value.strip().startswith("{"):
            return [*argv[:i], f"~{key}", f"+{key}={value}", *argv[i + 1:]]
    return None


def preflight(argv: list[str], config_dir: str | Path = CONFIG_DIR) -> list[str]:
    """Compose the configuration of `train.py argv` once and exit with a one-line message if Hydra
    cannot; returns the overrides to run (a dict given for a dict node replaces it). Runs only for plain
    overrides (Hydra's own flags such as --multirun are left to Hydra)."""
    if any(a.startswith("-") for a in argv):
        return list(argv)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    argv = list(argv)
    for _ in range(len(argv) + 1):
        try:
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
                cfg = hydra_compose(CONFIG_NAME, overrides=argv, return_hydra_config=True)
            break
        except Exception as e:  # noqa: BLE001  (any composition error is a configuration error)
            replaced = _replacing(argv, e)
            if replaced is None:
                sys.exit(f"config error: {one_line(str(e), argv, config_dir)}")
            argv = replaced
        finally:
            GlobalHydra.instance().clear()
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None:  # before Hydra makes a run folder: a bad file leaves nothing behind
        from .checks import read_checkpoint
        from .errors import ConfigError

        try:
            read_checkpoint(str(ckpt))
        except ConfigError as e:
            sys.exit(f"config error: {e}")
    return argv
