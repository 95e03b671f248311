"""Train (and test) an unfolded model: `python train.py algo=hqs physics=blur`.

Thin on purpose: the configuration (conf/) says what to build, `unfolded.training.pipeline` builds it,
fits, tests, and returns the metric to optimise (for sweeps). A bad configuration stops at start-up
with a one-line `config error: ...` message.
"""

import sys

import hydra
from omegaconf import DictConfig

from unfolded.training.config import preflight
from unfolded.training.errors import ConfigError


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from unfolded.training.pipeline import run

    try:
        value, _ = run(cfg)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    return value


if __name__ == "__main__":
    preflight(sys.argv[1:])
    main()
