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

# name -> the overrides of `python train.py` that train it (the first two longer than their defaults)
RECIPES: dict[str, list[str]] = {
    "hqs_blur": ["experiment=hqs_blur", "trainer.max_steps=2000"],
    "pgd_denoise": ["experiment=pgd_denoise", "trainer.max_steps=800"],
    "inpainting": ["experiment=inpainting", "trainer.max_steps=600"],
    "modl_mri": ["experiment=modl_mri"],
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


def table() -> str:
    """The README's zoo table (markdown), from the test results stored in the zoo files themselves."""
    from .model_files import from_export

    rows = ["| model | trained by | step of the weights | test PSNR (interior) | Tikhonov | gain | Aᵀy | size |",
            "|---|---|---|---|---|---|---|---|"]
    for name in RECIPES:
        path = ZOO_DIR / f"{name}.safetensors"
        if not path.is_file():
            continue
        info = from_export(path).info
        s = info.get("test_summary") or {}
        cells = [f"{s[k]:.2f}" if k in s else "-" for k in ("model/psnr_interior", "tikhonov/psnr_interior",
                                                            "gain/psnr_interior", "adjoint/psnr_interior")]
        rows.append(f"| `zoo:{name}` | `{command(name)}` | {info.get('global_step')} | " + " | ".join(cells)
                    + f" | {path.stat().st_size / 1e6:.2f} MB |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m unfolded.training.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to train (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--table", action="store_true", help="print the README's table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    unknown = [n for n in args.names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown zoo entries {unknown}; the zoo has {', '.join(RECIPES)}")
    from .model_files import export, from_checkpoint

    for name in args.names or list(RECIPES):
        best = train(name, REPO / "logs" / "zoo" / name)
        path = export(from_checkpoint(best), ZOO_DIR / f"{name}.safetensors")
        print(f"zoo:{name} -> {path}", flush=True)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
