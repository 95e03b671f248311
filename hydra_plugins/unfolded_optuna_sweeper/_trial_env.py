"""How a job finds its Optuna trial: the sweeper sets three environment variables for each job (through
`hydra.job.env_set`, so that they also reach jobs run by another launcher, e.g. submitit), and code inside the
job (the pruning callback) opens the trial from the study's storage."""

from __future__ import annotations

import os

ENV_STORAGE = "UNFOLDED_OPTUNA_STORAGE"
ENV_STUDY = "UNFOLDED_OPTUNA_STUDY"
ENV_TRIAL = "UNFOLDED_OPTUNA_TRIAL"


def env_overrides(storage: str, study_name: str, number: int) -> list[str]:
    from ._search_space import override_value

    return [f"+hydra.job.env_set.{ENV_STORAGE}={override_value(storage)}",
            f"+hydra.job.env_set.{ENV_STUDY}={override_value(study_name)}",
            f"+hydra.job.env_set.{ENV_TRIAL}={number}"]


def _sweeper_pruner():
    """The pruner of the sweep's configuration (Optuna does not store it with the study)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    node = HydraConfig.get().sweeper.get("pruner")
    if node is None:
        return None
    from hydra.utils import instantiate

    return instantiate(node)


def current_trial():
    """The `optuna.Trial` this job runs, or None outside an Optuna sweep."""
    storage_url, study_name, number = (os.environ.get(k) for k in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL))
    if not (storage_url and study_name and number):
        return None
    import optuna

    storage = optuna.storages.get_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=_sweeper_pruner())
    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return optuna.Trial(study, trial_id)
