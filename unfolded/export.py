"""`python -m unfolded.export <checkpoint or run folder> <file.safetensors>`: a portable model file.

It holds the weights (safetensors) and, as YAML metadata, the model and physics configuration, the x₀
policy and the run's test results; `unfolded.load(file)` reads it without Lightning or the repo's configs,
and reconstructs exactly as the checkpoint does.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unfolded.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py, or a run folder (its best checkpoint)")
    parser.add_argument("output", help="the model file to write (.safetensors)")
    args = parser.parse_args(argv)
    from unfolded.training import model_files
    from unfolded.training.errors import ConfigError

    if not args.output.endswith(".safetensors"):
        print(f"error: output={args.output}: the model file must end in .safetensors", file=sys.stderr)
        return 2
    try:
        mf = model_files.from_checkpoint(args.checkpoint)
        path = model_files.export(mf, args.output)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.2f} MB, {len(mf.state_dict)} tensors, step {mf.info.get('global_step')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
