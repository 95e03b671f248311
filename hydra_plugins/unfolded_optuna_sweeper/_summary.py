"""The study as a small YAML file in the sweep folder: best trial, failed and pruned trials."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

SUMMARY_FILE = "optuna_summary.yaml"


def _number(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else str(v)


def trial_record(t) -> dict:
    rec = {"number": t.number, "state": t.state.name, "value": _number(t.value) if t.values else None,
           "params": dict(t.params)}
    for key in ("output_dir", "fail_reason"):
        if key in t.user_attrs:
            rec[key] = t.user_attrs[key]
    if t.intermediate_values:
        rec["intermediate_values"] = {int(k): _number(v) for k, v in sorted(t.intermediate_values.items())}
    return rec


def summarize(study, metric: str | None, storage: str) -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    try:
        best = trial_record(study.best_trial)
    except ValueError:  # no completed trial yet
        best = None
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}
    return {
        "study_name": study.study_name,
        "storage": storage,
        "direction": study.direction.name.lower(),
        "metric": metric,
        "n_trials": len(trials),
        "states": counts,
        "best": best,
        "failed": [t.number for t in trials if t.state == TrialState.FAIL],
        "pruned": [t.number for t in trials if t.state == TrialState.PRUNED],
        "trials": [trial_record(t) for t in trials],
    }


def write_yaml(path: Path, data: dict) -> Path:
    """Written atomically: readers (compare, the dashboard user) never see half a file."""
    from unfolded.training.atomic import write_atomically

    return write_atomically(path, lambda f: f.write(yaml.safe_dump(data, sort_keys=False).encode()))
