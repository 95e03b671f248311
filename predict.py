"""Apply a trained model to your own measurements: `python predict.py ckpt_path=zoo:hqs_blur input=blurred/
output=restored/` (or `simulate=true` on clean images, to score it on your pictures).

Thin on purpose: `unfolded.training.predicting` does the work; a bad setting stops with one line.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from unfolded.training.predicting import main as predict

    predict(cfg)


if __name__ == "__main__":
    from unfolded.training.predicting import check_arguments

    sys.argv[1:] = check_arguments(sys.argv[1:])
    main()
