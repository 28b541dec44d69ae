"""The trial executor: many tasks at once as Ray tasks, each in its own folder.

A trial is one task (its options, output_dir = its folder) and the names of its files
(`TrialFiles`, handed in by the caller: run.py's runs and extract.py's videos have their
own). Before anything runs, a trial whose folder holds its done-marker (and, where the
caller names an options file, the same options) is done and is skipped. The others are Ray
tasks (`num_cpus`, `num_gpus` each; Ray places them on the machine or the cluster). A task
whose worker process dies (killed, out of memory, a node lost) is retried by Ray up to
`max_retries` times and continues from the trial's resume file when the caller names one;
a trial that fails with an InputError (an option the data refuses) fails alone, with its
one-line message, and is not retried.

GPUs (Ray reuses worker processes, and torch keeps the GPU it first saw): a task that asks
for a GPU runs in a fresh worker process (max_calls=1), so each gets its own and inherits
no CUDA context; a task that asks for none runs with CUDA_VISIBLE_DEVICES empty, whatever
Ray's version does by default. `gpus=SHARE` gives each task min(1, GPUs / workers).

Generic: this module imports neither run.py nor opts.py (nor Ray, until a trial has to
run). The entry point (sweep.py, run.py --seeds --workers, extract.py) hands in
`work(opts, resume)`, the function that runs one trial in the worker: a new task with the
options `opts` (a dict), or with resume=True the continuation of the one in
opts["output_dir"].

Beside each trial's folder, `<folder>.pid` ({"pid", "host", "started", "attempt"}) says
which process runs it while it runs; it is removed when the trial ends. Each result names
the Ray node that ran the trial (`node`), and a finished trial's folder keeps it in
`files.node` when the caller names one.
"""
import json
import os
import socket
import time
from dataclasses import dataclass

from core.errors import InputError, one_line
from core.files import PROJECT_DIR, atomic_write_json
from core.safe_load import read_json

from sweeps.cluster import check_resources, node_id, start_ray, stop_ray

SHARE = "share"             # gpus=SHARE: each task min(1, the cluster's GPUs / workers)


@dataclass(frozen=True)
class TrialFiles:
    done: str                # its presence in the folder: finished; its JSON: the result
    resume: str = None       # its presence: an interrupted task that work(opts, True) resumes
    options: str = None      # the JSON of the task's options, compared with Trial.same
    node: str = None         # written when the trial finishes: where it ran
    inputs: tuple = ()       # the options naming files or folders every node must see
    added: tuple = ()        # (option, value) pairs: options added since older options files
                             # were written, and the value such a file stands for


@dataclass(frozen=True)
class Trial:
    name: str        # unique, a plain file name
    opts: dict       # the task's options; opts["output_dir"]: its folder (absolute)
    same: dict       # the options a finished or interrupted task's options file must equal
    files: TrialFiles


def trials_of(option_sets, may_differ, files):
    """Trials of resolved runs (dicts; each output_dir its own folder, named after it).
    A trial runs quietly (its console lines would interleave; log.txt has them), and with
    overwrite, so that an earlier attempt's leftovers without a checkpoint are cleared.
    may_differ: the options that change no result (opts.EXECUTION); files: the
    run's TrialFiles."""
    ignored = set(may_differ) | {"output_dir", "overwrite", "quiet"}
    trials = []
    for saved in option_sets:
        folder = os.path.abspath(saved["output_dir"])
        opts = {**saved, "output_dir": folder, "quiet": True, "overwrite": True}
        same = json.loads(json.dumps({k: v for k, v in opts.items() if k not in ignored}))
        trials.append(Trial(os.path.basename(folder), opts, same, files))
    return trials


def pid_file(trial):
    return trial.opts["output_dir"].rstrip(os.sep) + ".pid"


def same_run(trial):
    """The folder's options file holds this trial's options (trial.same); True when the
    trial has none."""
    if trial.files.options is None:
        return True
    saved = read_json(os.path.join(trial.opts["output_dir"], trial.files.options),
                      or_none=True)
    if not isinstance(saved, dict):
        return False
    saved = {**dict(trial.files.added), **saved}
    return all(k in saved and saved[k] == v for k, v in trial.same.items())


def trial_state(trial):
    """'done' (the done-marker and the same options), 'resume' (the resume file and the
    same options) or 'new' (nothing of it yet, or another task's leftovers: started over)."""
    folder, files = trial.opts["output_dir"], trial.files
    if not same_run(trial):
        return "new"
    if os.path.isfile(os.path.join(folder, files.done)):
        return "done"
    resumable = files.resume and os.path.isfile(os.path.join(folder, files.resume))
    return "resume" if resumable else "new"


def result(trial, status, **fields):
    """One finished trial, as the tables show it."""
    out = {"name": trial.name, "status": status, "metrics": None, "error": None,
           "seconds": float("nan"), "host": None, "node": None, "attempts": 0,
           "resumed": False}
    out.update(fields)
    return out


def finished_result(trial):
    """A trial found done before the sweep started."""
    metrics = read_json(os.path.join(trial.opts["output_dir"], trial.files.done),
                        or_none=True)
    saved = read_json(os.path.join(trial.opts["output_dir"], trial.files.node or ""),
                      or_none=True) if trial.files.node else None
    return result(trial, "skipped", metrics=metrics,
                  node=saved.get("node") if isinstance(saved, dict) else None)


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


def unseen(trial):
    """The first path this node cannot see, of the trial's folder's parent and its inputs
    (absolute paths only), or None."""
    paths = [os.path.dirname(trial.opts["output_dir"])]
    for key in trial.files.inputs:
        value = trial.opts.get(key)
        paths += list(value.values()) if isinstance(value, dict) else [value]
    return next((p for p in paths if isinstance(p, str) and os.path.isabs(p)
                 and not os.path.exists(p)), None)


def run_trial(work, trial):
    """The body of one Ray task (also callable in-process): run, resume or skip the trial;
    a result dict (status 'ok', 'skipped' or 'failed')."""
    missing = unseen(trial)
    if missing is not None:                 # every node must see the same paths: no retry
        where = f"node {node_id()} ({socket.gethostname()})" if node_id() else \
            socket.gethostname()
        return result(trial, "failed", host=socket.gethostname(), node=node_id(),
                      error=f"{where} cannot see {missing}: the output folder, the data and "
                            f"the weights must be at the same paths on every node")
    state = trial_state(trial)
    if state == "done":
        return finished_result(trial)
    attempt, started = _claim(trial)
    folder, node = trial.opts["output_dir"], node_id()
    try:
        work(trial.opts, state == "resume")
        metrics = read_json(os.path.join(folder, trial.files.done), or_none=True)
        status, error = "ok", None
        if trial.files.node:
            atomic_write_json(os.path.join(folder, trial.files.node),
                              {"node": node, "host": socket.gethostname(), "attempt": attempt})
    except (InputError, SystemExit) as e:   # an option the data refuse: fails alone, no retry
        metrics, status, error = None, "failed", one_line(e)
    finally:
        if os.path.lexists(pid_file(trial)):
            os.remove(pid_file(trial))
    return result(trial, status, metrics=metrics, error=error, attempts=attempt,
                  seconds=time.time() - started, host=socket.gethostname(), node=node,
                  resumed=state == "resume" or attempt > 1)


def clear_stale_pid_files(trials):
    """Remove the `<folder>.pid` files a killed earlier command left (none of its trials
    runs now)."""
    for trial in trials:
        if os.path.lexists(pid_file(trial)):
            os.remove(pid_file(trial))


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


def task_options(cpus, gpus, max_retries):
    """Ray's options of one task: a GPU task in a fresh worker process (max_calls=1), a task
    without GPU with CUDA_VISIBLE_DEVICES empty; the project importable from where the
    driver has it (the same path on every node: a shared filesystem, or the same checkout)."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (PROJECT_DIR, os.environ.get("PYTHONPATH"))
                                         if p)}
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    out = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": max_retries,
           "retry_exceptions": False, "runtime_env": {"env_vars": env}}
    if gpus:
        out["max_calls"] = 1
    return out


def gpu_share(gpus, workers, total):
    """The GPUs of one task: `gpus`, or for SHARE min(1, total / workers) (all of one GPU
    when workers is None; none on a cluster without GPUs)."""
    if gpus != SHARE:
        return gpus
    return min(1.0, total / workers) if workers else (1.0 if total else 0.0)


def run_trials(trials, work, *, cpus=1, gpus=0, workers=None, max_retries=3, address=None,
               on_done=None):
    """Run the trials that are not done as Ray tasks; their results in trial order.
    workers: at most this many at once (None: as many as Ray's resources allow); gpus: per
    task, or SHARE; on_done(result): called once per trial as it finishes (skipped ones
    first)."""
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
    for trial in todo:                  # made here: a node that cannot see it is told apart
        os.makedirs(os.path.dirname(trial.opts["output_dir"]), exist_ok=True)

    import ray
    started_here = start_ray(address)
    try:
        nodes = [{"cpus": n["Resources"].get("CPU", 0.0), "gpus": n["Resources"].get("GPU", 0.0)}
                 for n in ray.nodes() if n["Alive"]]
        gpus = gpu_share(gpus, workers, sum(n["gpus"] for n in nodes))
        check_resources(nodes, cpus, gpus)
        task = ray.remote(run_trial).options(**task_options(cpus, gpus, max_retries))
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
            stop_ray()
    return [results[t.name] for t in trials]
