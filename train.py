"""Train (and test) an unfolded model: `python train.py algo=hqs physics=blur`.

Thin on purpose: the configuration (conf/) says what to build, `unfolded.training.pipeline` builds it,
fits, tests, and returns the metric to optimise (for sweeps). A bad configuration stops at start-up
with a one-line `config error: ...` message.
"""

import sys

import hydra
from omegaconf import DictConfig

from unfolded.training.config import preflight
from unfolded.training.errors import ConfigError, TrainingDiverged


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from unfolded.training import logs
    from unfolded.training.pipeline import run

    logs.setup()  # each line once, and all of them in <run folder>/train.log

    try:
        value, _ = run(cfg)
    except TrainingDiverged as e:
        if _in_sweep():
            raise  # the sweeper records the trial as failed and goes on
        sys.exit(f"training diverged: {e}")
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    return value


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:])  # a dict given for a dict node replaces it
    main()
