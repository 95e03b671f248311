"""Trials whose sweep died with them (kill -9, a lost node) would stay RUNNING in the study forever: nothing
is left to tell Optuna. While a trial's job runs, the sweeper stamps the trial with the time every
`interval` seconds (user attribute `heartbeat`); a RUNNING trial whose last stamp (or start, if none) is older
than `STALE_AFTER` intervals belongs to a dead sweep and is failed with a reason when a sweep opens the study.

Why not Optuna's own heartbeat (RDBStorage(heartbeat_interval=...) + fail_stale_trials): it needs an RDB
storage (not the journal files used on clusters), a failed trial can no longer get a `fail_reason`
attribute, and its callback argument was renamed in Optuna 4.9 while we support 4.0 and later.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
STALE_AFTER = 3  # intervals without a stamp: one missed write (a busy database) is not a death


class Heartbeat:
    """`with Heartbeat(trials, interval):` stamps `trials` (optuna.Trial) now and every `interval` seconds
    until the block ends."""

    def __init__(self, trials: list, interval: float):
        self.trials, self.interval = list(trials), float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def beat(self) -> None:
        now = time.time()
        for t in self.trials:
            try:
                t.set_user_attr(HEARTBEAT, now)
            except Exception as e:  # noqa: BLE001  (a locked database: the next beat will do)
                log.debug("heartbeat of trial %d not written: %s", t.number, e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study, interval: float, now: float | None = None) -> list[int]:
    """Fail the RUNNING trials of `study` not stamped for STALE_AFTER × `interval` seconds; their numbers."""
    import optuna
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    grace = STALE_AFTER * float(interval)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.user_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - last <= grace:
            continue  # alive, perhaps run by another sweep on the same storage
        reason = (f"stale: no sign of life for {now - last:.0f} s (> {grace:.0f} s); its sweep was killed "
                  f"while it ran")
        try:
            trial = optuna.Trial(study, t._trial_id)
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            continue  # finished meanwhile by its own sweep
        log.warning("trial %d failed: %s", t.number, reason)
        failed.append(t.number)
    return failed
