"""Optuna study storage, shared by the search and by the job queue of long experiments.

:class:`JobQueue` uses an Optuna study as a queue of independent jobs (one enqueued trial per job, its key
in the user attribute ``job``): several processes, on one machine (SQLite) or many (an RDB URL), pull
the next waiting job with ``study.optimize(n_trials=1)``, so no two run the same job. While a job
runs, Optuna records a heartbeat; a job whose worker was killed goes stale after ``grace_seconds``
and is failed and re-enqueued (``RetryHeartbeatStaleTrialCallback``) by the next worker that looks.
"""
from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Callable, Collection

STALE_RETRIES = 3


def open_storage(url: str | None, attempts: int = 5, **kwargs: Any):
    """The RDB storage at ``url`` (``None``: in memory). Workers starting together race to create its
    schema; the losers get an integrity error and retry, finding the schema their rival created."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if url is None:
        return None
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs.setdefault("engine_kwargs", {"connect_args": {"timeout": 60}})  # wait for a writer, don't fail
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(url, **kwargs)
            break
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    if sqlite:
        _serialise_sqlite(storage.engine)
    return storage


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna pops a waiting trial by reading its state and then writing RUNNING; in SQLite's default
    deferred transactions two processes can both read WAITING and both run the trial. With the lock
    taken at BEGIN the second one reads RUNNING and moves on (SQLAlchemy's pysqlite recipe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections made before the listeners are dropped


class JobQueue:
    """A queue of named jobs in an Optuna study at ``url``.

    ``heartbeat_seconds`` / ``grace_seconds``: how often a running job proves it is alive, and how
    long after its last heartbeat it counts as abandoned.
    """

    def __init__(self, url: str, name: str, *, heartbeat_seconds: int = 30, grace_seconds: int = 120) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES)
        storage = open_storage(url, heartbeat_interval=heartbeat_seconds, grace_period=grace_seconds,
                               heartbeat_stale_trial_callback=retry)
        self.study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, direction="maximize")
        self._storage, self._study_id = storage, storage.get_study_id_from_name(name)

    def _keys(self, *states) -> set[str]:
        return {t.user_attrs["job"] for t in self.study.get_trials(deepcopy=False, states=states) if "job" in t.user_attrs}

    def enqueue(self, keys: list[str]) -> int:
        """Add the jobs not yet waiting, running or complete, in order; returns how many were added."""
        from optuna.trial import TrialState

        known = self._keys(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
        added = 0
        for key in keys:
            if key not in known:
                self.study.enqueue_trial({}, user_attrs={"job": key})
                added += 1
        return added

    def waiting(self) -> int:
        """Jobs waiting for a worker (after failing the stale ones, which re-enqueues them)."""
        import optuna
        from optuna.trial import TrialState

        optuna.storages.fail_stale_trials(self.study)
        return len(self._keys(TrialState.WAITING))

    def done(self) -> set[str]:
        """Keys of the finished jobs."""
        from optuna.trial import TrialState

        return self._keys(TrialState.COMPLETE)

    def work(self, run: Callable[[str], float], max_jobs: int | None = None,
             known: Collection[str] | None = None) -> list[str]:
        """Run waiting jobs one by one (``run(key)`` returns the job's value) until none waits or
        ``max_jobs`` ran; returns the keys this worker ran. An exception in ``run`` fails the job and stops.
        A waiting job outside ``known`` (when given) is a leftover of an older plan: it is dropped
        (pruned, so a later plan that has it enqueues it again), with a warning."""
        import optuna

        ran: list[str] = []

        def objective(trial: optuna.Trial) -> float:
            key = trial.user_attrs.get("job")
            if key is None:  # the queue emptied between the check and the ask: nothing to do
                raise optuna.TrialPruned()
            if known is not None and key not in known:
                print(f"warning: dropping the queued job {key!r}: not a job of this plan", file=sys.stderr)
                raise optuna.TrialPruned()
            # the heartbeat thread may not have written yet: a worker killed before its first
            # heartbeat would leave a RUNNING job that never goes stale, so write one now
            self._storage.record_heartbeat(self._storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number))
            ran.append(key)
            return run(key)

        while (max_jobs is None or len(ran) < max_jobs) and self.waiting():
            self.study.optimize(objective, n_trials=1, catch=())
        return ran
