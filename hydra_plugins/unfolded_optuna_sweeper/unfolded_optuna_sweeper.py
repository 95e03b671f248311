"""`UnfoldedOptunaSweeper`: Hydra's `-m` interface over current Optuna (ask/tell).

Each trial is one Hydra job launched by the configured launcher (in-process by default, submitit for
clusters). A job that raises, or returns None, NaN or ±inf, is recorded as a FAILED trial and the sweep goes
on; a job stopped by the pruning callback (optuna.TrialPruned) is recorded as PRUNED. The study lives in a
storage (sqlite in the sweep folder by default), so a sweep can be resumed (same `hydra.sweep.dir`, or the
same storage and study name) and browsed with `optuna-dashboard`. `optuna_summary.yaml` in the sweep folder
is rewritten after every batch. The trials being run are stamped alive (`_heartbeat`): those of a sweep killed
outright are failed when a sweep next opens the study. A sweep whose every trial failed exits non-zero.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ._heartbeat import Heartbeat
from ._search_space import SweeperConfigError

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")


def _build(node, what: str):
    """An Optuna sampler/pruner from a `_target_` node (or None / an object already built)."""
    if node is None or not isinstance(node, (DictConfig, dict)):
        return node
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except Exception as e:  # noqa: BLE001  (one line naming the node instead of Hydra's long trace)
        raise SweeperConfigError(f"hydra.sweeper.{what}: cannot build {node.get('_target_')}: {e}") from None


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


class UnfoldedOptunaSweeper(Sweeper):
    def __init__(self, params: dict | None = None, direction: str = "maximize", study_name: str = "unfolded",
                 storage: str | None = None, n_trials: int = 20, n_jobs: int = 1, sampler: Any = None,
                 pruner: Any = None, enqueue_trials: list | None = None, metric: str | None = None,
                 summary_file: str = "optuna_summary.yaml", heartbeat_interval: float = 60.0):
        if direction not in DIRECTIONS:
            raise SweeperConfigError(f"hydra.sweeper.direction must be one of {DIRECTIONS}, got {direction!r}")
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise SweeperConfigError(f"hydra.sweeper.n_trials and n_jobs must be >= 1, got {n_trials} and {n_jobs}")
        if not float(heartbeat_interval) > 0:
            raise SweeperConfigError(f"hydra.sweeper.heartbeat_interval must be > 0 seconds, got {heartbeat_interval}")
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.direction, self.study_name, self.storage = direction, str(study_name), storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.enqueue_trials = [dict(t) for t in (enqueue_trials or [])]
        self.metric, self.summary_file = metric, summary_file
        self.heartbeat_interval = float(heartbeat_interval)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None
        self.sweep_dir: Path | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # --- the search space ---------------------------------------------------------------------------
    def search_space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """(distributions, fixed overrides) from `hydra.sweeper.params` and the command line; the command
        line wins for a key given in both (a plain value there pins the key: it is no longer searched)."""
        from . import _search_space as ss

        lines = {o.get_key_element(): o.input_line for o in ss.parse(f"{k}={v}" for k, v in self.params.items())}
        for o in ss.parse(arguments):
            lines[o.get_key_element()] = o.input_line
        return ss.split(ss.parse(lines.values()))

    def storage_url(self) -> str:
        if self.storage:
            return str(self.storage)
        return f"sqlite:///{self.sweep_dir / 'optuna.db'}"

    def open_study(self):
        import optuna

        sampler = _build(self.sampler_cfg, "sampler")
        pruner = _build(self.pruner_cfg, "pruner")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage_url(), sampler=sampler,
                                    pruner=pruner, direction=self.direction, load_if_exists=True)
        for params in self.enqueue_trials:
            study.enqueue_trial(params, skip_if_exists=True)
        return study

    def fail_stale_trials(self, study) -> list[int]:
        from ._heartbeat import fail_stale_trials

        return fail_stale_trials(study, self.heartbeat_interval)

    # --- the sweep ----------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list:
        from ._search_space import override_value
        from ._trial_env import env_overrides

        space, fixed = self.search_space(arguments)
        if not space:
            raise SweeperConfigError("nothing to search: give hydra.sweeper.params or sweep overrides such as "
                             "'module.optimizer.lr=tag(log, interval(1e-4, 1e-2))'")
        self.validate_batch_is_legal([fixed])  # a typo in a fixed override stops here, not in every trial
        study = self.open_study()
        storage = self.storage_url()
        self.fail_stale_trials(study)
        before = sum(t.state.is_finished() for t in study.trials)
        log.info("Optuna study '%s' (%s, %d finished trials so far), searching %s", self.study_name, storage, before,
                 ", ".join(f"{k}: {d}" for k, d in space.items()))
        returns: list = []
        launched, numbers = 0, []
        while launched < self.n_trials:
            if launched:
                self.fail_stale_trials(study)  # trials of another sweep on this storage that died meanwhile
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - launched))]
            numbers += [t.number for t in trials]
            batch = [[*fixed, *(f"{k}={override_value(v)}" for k, v in t.params.items()),
                      *env_overrides(storage, self.study_name, t.number)] for t in trials]
            results = self._launch(study, trials, batch)
            returns.append(results)
            launched += len(trials)
            self.write_summary(study, storage)
        summary = self.write_summary(study, storage)
        best = summary["best"]
        log.info("Optuna sweep done: %d trials (%s); best %s", summary["n_trials"], summary["states"],
                 f"#{best['number']} {best['value']} {best['params']}" if best else "none (no trial completed)")
        self.exit_if_all_failed(summary, numbers)
        return returns

    def exit_if_all_failed(self, summary: dict, numbers: list[int]) -> None:
        """A sweep none of whose trials ran is an error (a broken setting, not bad luck): exit non-zero with
        one line, not a success status that a script or a scheduler would trust."""
        mine = [t for t in summary["trials"] if t["number"] in set(numbers)]
        if not mine or any(t["state"] != "FAIL" for t in mine):
            return
        last = mine[-1]
        raise SystemExit(f"optuna sweep: all {len(mine)} trials failed (trial {last['number']}: "
                         f"{last.get('fail_reason', 'no reason recorded')}); summary: "
                         f"{self.sweep_dir / self.summary_file}")

    def _launch(self, study, trials: list, batch: list[list[str]]) -> list:
        numbers = [t.number for t in trials]
        contiguous = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        # The job number (and so the job folder, hydra.sweep.subdir) is the trial number: resuming a
        # sweep in the same folder adds folders instead of overwriting those of earlier trials.
        groups = [(trials, batch)] if contiguous else [([t], [b]) for t, b in zip(trials, batch)]
        results = []
        for group_trials, group_batch in groups:
            try:
                with Heartbeat(group_trials, self.heartbeat_interval):
                    rets = list(self.launcher.launch(group_batch, initial_job_idx=group_trials[0].number))
            except SystemExit as e:
                # train.py exits with a message on a configuration error: that trial failed; an exit with a
                # status code (Ctrl-C in Lightning) stops the sweep.
                if not isinstance(e.code, str):
                    self._tell_failed(study, group_trials, f"interrupted ({e.code})")
                    raise
                self._tell_failed(study, group_trials, f"SystemExit: {e.code}")
                continue
            except Exception as e:  # noqa: BLE001  (a launcher error fails these trials, not the sweep)
                self._tell_failed(study, group_trials, _failure(e))
                continue
            except KeyboardInterrupt:
                self._tell_failed(study, group_trials, "interrupted")
                raise
            for trial, ret in zip(group_trials, rets):
                self._tell(study, trial, ret)
            results.extend(rets)
        return results

    def _tell_failed(self, study, trials: list, reason: str) -> None:
        from optuna.trial import TrialState

        for t in trials:
            log.warning("trial %d failed: %s", t.number, reason)
            t.set_user_attr("fail_reason", reason)
            study.tell(t, state=TrialState.FAIL)

    def _tell(self, study, trial, ret) -> None:
        import optuna
        from optuna.trial import TrialState

        output_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        if output_dir:
            trial.set_user_attr("output_dir", str(output_dir))
        try:
            value = ret.return_value
        except optuna.TrialPruned as e:
            log.info("trial %d pruned: %s", trial.number, e)
            study.tell(trial, state=TrialState.PRUNED)
            return
        except Exception as e:  # noqa: BLE001  (the job raised: a failed trial)
            self._tell_failed(study, [trial], _failure(e))
            return
        try:
            value = None if value is None else float(value)
        except (TypeError, ValueError):
            self._tell_failed(study, [trial], f"returned {value!r}, not a number")
            return
        if value is None or not math.isfinite(value):
            self._tell_failed(study, [trial], f"returned {value} (set optimized_metric to a logged metric)"
                              if value is None else f"returned {value}")
            return
        study.tell(trial, value)
        log.info("trial %d: %s = %.4f  %s", trial.number, self.metric or "value", value, trial.params)

    def write_summary(self, study, storage: str) -> dict:
        from . import _summary

        data = _summary.summarize(study, self.metric, storage)
        data["sweep_dir"] = str(self.sweep_dir)
        _summary.write_yaml(self.sweep_dir / self.summary_file, data)
        return data
