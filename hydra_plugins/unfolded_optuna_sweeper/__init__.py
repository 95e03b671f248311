"""Hydra sweeper that drives current Optuna: `python train.py -m hparams_search=optuna`.

Hydra finds it by scanning the `hydra_plugins` namespace package; the configuration lives in
`conf/hydra/sweeper/unfolded_optuna.yaml`. Modules whose name starts with `_` are helpers that Hydra's
scanner skips (so that starting any Hydra app does not import Optuna).
"""
