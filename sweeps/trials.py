"""The trial executor: many runs at once as Ray tasks, each a normal run in its own folder.

A trial is one run (its resolved options, output_dir = its folder). Before anything runs,
a trial whose folder holds metrics.json and the same options is done and is skipped. The
others are Ray tasks (`num_cpus`, `num_gpus` each; Ray places them on the machine or the
cluster). A task whose worker process dies (killed, out of memory, a node lost) is
retried by Ray up to `max_retries` times and continues from the trial's last checkpoint
(run.py --resume); a trial that fails with an InputError (an option the data refuses)
fails alone, with its one-line message, and is not retried.

Generic: this module imports neither run.py nor opts.py (nor Ray, until a trial has to
run). The entry point (sweep.py, run.py --seeds --workers) hands in `work(opts, resume)`,
the function that runs one trial in the worker: a new run with the resolved options
`opts` (a dict), or with resume=True the continuation of the run in opts["output_dir"].

Beside each trial's folder, `<folder>.pid` ({"pid", "host", "started", "attempt"}) says
which process runs it while it runs; it is removed when the trial ends.
"""
import json
import os
import socket
import time
from dataclasses import dataclass

from core.errors import InputError, one_line
from core.files import PROJECT_DIR, atomic_write_json
from core.safe_load import read_json

METRICS, OPTS, CHECKPOINT = "metrics.json", "opts.json", "checkpoint_last.pt"


@dataclass(frozen=True)
class Trial:
    name: str        # unique, a plain file name
    opts: dict       # the run's resolved options; opts["output_dir"]: its folder (absolute)
    same: dict       # the options a finished or interrupted run's opts.json must equal


def trials_of(option_sets, may_differ):
    """Trials of resolved runs (dicts; each output_dir its own folder, named after it).
    A trial runs quietly (its console lines would interleave; log.txt has them), and with
    overwrite, so that an earlier attempt's leftovers without a checkpoint are cleared.
    may_differ: the options that change no result (opts.EXECUTION)."""
    ignored = set(may_differ) | {"output_dir", "overwrite", "quiet"}
    trials = []
    for saved in option_sets:
        folder = os.path.abspath(saved["output_dir"])
        opts = {**saved, "output_dir": folder, "quiet": True, "overwrite": True}
        same = json.loads(json.dumps({k: v for k, v in opts.items() if k not in ignored}))
        trials.append(Trial(os.path.basename(folder), opts, same))
    return trials


def pid_file(trial):
    return trial.opts["output_dir"].rstrip(os.sep) + ".pid"


def same_run(trial):
    """The folder's opts.json holds this trial's options (trial.same)."""
    saved = read_json(os.path.join(trial.opts["output_dir"], OPTS), or_none=True)
    return isinstance(saved, dict) and all(k in saved and saved[k] == v
                                           for k, v in trial.same.items())


def trial_state(trial):
    """'done' (metrics.json and the same options), 'resume' (a checkpoint of the same
    options) or 'new' (nothing of it yet, or another run's leftovers: started over)."""
    folder = trial.opts["output_dir"]
    if not same_run(trial):
        return "new"
    if os.path.isfile(os.path.join(folder, METRICS)):
        return "done"
    return "resume" if os.path.isfile(os.path.join(folder, CHECKPOINT)) else "new"


def result(trial, status, **fields):
    """One finished trial, as the tables show it."""
    out = {"name": trial.name, "status": status, "metrics": None, "error": None,
           "seconds": float("nan"), "host": None, "attempts": 0, "resumed": False}
    out.update(fields)
    return out


def finished_result(trial):
    """A trial found done before the sweep started."""
    metrics = read_json(os.path.join(trial.opts["output_dir"], METRICS), or_none=True)
    return result(trial, "skipped", metrics=metrics)


def _claim(trial):
    """Write `<folder>.pid` for this attempt; (attempt number, start time of the first
    attempt of this command: a retry finds the dead attempt's file)."""
    path = pid_file(trial)
    earlier = read_json(path, or_none=True)
    attempt, started = 1, time.time()
    if isinstance(earlier, dict) and isinstance(earlier.get("attempt"), int):
        attempt, started = earlier["attempt"] + 1, earlier.get("started", started)
    atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname(),
                             "started": started, "attempt": attempt})
    return attempt, started


def run_trial(work, trial):
    """The body of one Ray task (also callable in-process): run, resume or skip the trial;
    a result dict (status 'ok', 'skipped' or 'failed')."""
    state = trial_state(trial)
    if state == "done":
        return finished_result(trial)
    attempt, started = _claim(trial)
    try:
        work(trial.opts, state == "resume")
        metrics = read_json(os.path.join(trial.opts["output_dir"], METRICS), or_none=True)
        status, error = "ok", None
    except (InputError, SystemExit) as e:   # an option the data refuse: fails alone, no retry
        metrics, status, error = None, "failed", one_line(e)
    finally:
        if os.path.lexists(pid_file(trial)):
            os.remove(pid_file(trial))
    return result(trial, status, metrics=metrics, error=error, attempts=attempt,
                  seconds=time.time() - started, host=socket.gethostname(),
                  resumed=state == "resume" or attempt > 1)


def clear_stale_pid_files(trials):
    """Remove the `<folder>.pid` files a killed earlier command left (none of its trials
    runs now)."""
    for trial in trials:
        if os.path.lexists(pid_file(trial)):
            os.remove(pid_file(trial))


def start_ray(address, num_cpus=None):
    """Join a running Ray cluster (address: 'auto', 'HOST:6379', 'ray://HOST:10001') or
    start a local one sized to the machine (num_cpus: fewer). False when Ray was already
    started by the caller (it is then left running)."""
    import ray
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="ERROR")
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level="ERROR")
    return True


def _failure(trial, error):
    """A result for a task Ray gave up on (its worker died more than max_retries times)
    or one that raised something other than an InputError."""
    import ray
    cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) \
        else None
    if cause is not None:
        message = f"{type(cause).__name__}: {one_line(cause)}"
    else:
        message = f"{type(error).__name__}: {one_line(error)}"
    return result(trial, "failed", error=message[:300])


def run_trials(trials, work, *, cpus=1, gpus=0, workers=None, max_retries=3, address=None,
               on_done=None):
    """Run the trials that are not done as Ray tasks; their results in trial order.
    workers: at most this many at once (None: as many as Ray's resources allow);
    on_done(result): called once per trial as it finishes (skipped ones first)."""
    on_done = on_done or (lambda r: None)
    results = {}
    todo = []
    for trial in trials:
        if trial_state(trial) == "done":
            results[trial.name] = finished_result(trial)
            on_done(results[trial.name])
        else:
            todo.append(trial)
    if not todo:
        return [results[t.name] for t in trials]
    clear_stale_pid_files(todo)

    import ray
    started_here = start_ray(address)
    try:
        # the worker imports this project from where the driver has it (the same path on
        # every node: a shared filesystem, or the same checkout on each)
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (PROJECT_DIR, os.environ.get("PYTHONPATH")) if p)}}
        task = ray.remote(run_trial).options(num_cpus=cpus, num_gpus=gpus,
                                             max_retries=max_retries, retry_exceptions=False,
                                             runtime_env=env)
        running = {}                                         # ObjectRef -> Trial
        while todo or running:
            while todo and (workers is None or len(running) < workers):
                trial = todo.pop(0)
                running[task.remote(work, trial)] = trial
            ready, _ = ray.wait(list(running), num_returns=1)
            trial = running.pop(ready[0])
            try:
                results[trial.name] = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                results[trial.name] = _failure(trial, e)
            on_done(results[trial.name])
    finally:
        if started_here:
            ray.shutdown()
    return [results[t.name] for t in trials]
