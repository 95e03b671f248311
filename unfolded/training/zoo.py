"""The model zoo: small models trained by `make zoo` on the bundled pictures with the repo's own experiment
configs, shipped in `unfolded/zoo/<name>.safetensors` and loaded as `zoo:<name>` (no download).

`python -m unfolded.training.zoo` trains every entry (or the names given) and exports its best checkpoint;
`python -m unfolded.training.zoo --table` prints the README's table from the files themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
REPO = Path(__file__).resolve().parents[2]

# name -> the overrides of `python train.py` that train it (longer than `make train`: the gains were worth it)
RECIPES: dict[str, list[str]] = {
    "hqs_blur": ["experiment=hqs_blur", "trainer.max_steps=2000"],
    "pgd_denoise": ["experiment=pgd_denoise", "trainer.max_steps=1000"],
    "inpainting": ["experiment=inpainting", "trainer.max_steps=1000"],
    "modl_mri": ["experiment=modl_mri", "trainer.max_steps=800"],
}


def zoo_path(name: str) -> Path:
    """The file of `zoo:<name>`; an unknown name is a one-line error listing the zoo."""
    from .errors import ConfigError

    path = ZOO_DIR / f"{name}.safetensors"
    if name not in RECIPES or not path.is_file():
        have = sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))
        raise ConfigError(f"zoo:{name} is not in the model zoo; available: {', '.join('zoo:' + h for h in have)}")
    return path


def command(name: str) -> str:
    return "python train.py " + " ".join(RECIPES[name])


def train(name: str, run_dir: Path) -> Path:
    """Train one entry into `run_dir`; returns its best checkpoint."""
    argv = [sys.executable, "train.py", *RECIPES[name], "logger=csv", f"hydra.run.dir={run_dir}"]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, cwd=REPO, check=True)
    return run_dir / "checkpoints" / "best.ckpt"
