"""An extraction: the videos, each an independent task, and the folder they go to
(inputs.py: the videos given; folder.py: the output folder; one_video.py: one video's task;
to_hdf5.py: --to-hdf5).

    DIR/features/<split>/{rgb,flow}/<video>.npy    float32 (T, 1024) per video and stream
    DIR/split_<split>.txt                           the finished videos of the split
    DIR/extraction.json                             the options, comparability, what is done

`plan` checks everything before the first write (the videos' names and splits, what the
container of each says, the weights, the folder); `run` does the videos one after another in
this process, or as Ray tasks through the trial executor of sweeps/trials.py (`--workers N`
on this machine, `--address auto` on a cluster: then DIR must be on a filesystem every node
sees). Each feature file is written atomically; only this process writes extraction.json and
the split files, after each video, so a rerun skips what is finished (and checks it: the
same source file, its feature files there). The writing happens under the folder's lock,
after the record is read again (another command may have finished since the plan). A video
that cannot be read fails alone (one line naming it); one shorter than a chunk is left out
with a warning.
"""
import os
import shutil
import sys
from dataclasses import dataclass, field

import cv2
import torch

from extraction import record as rec
from extraction.folder import (LOCK, VIDEO_TRIAL, WORK, check_folder, our_files, sort_jobs,
                               source_of, write_splits)
from extraction.frames import GAP_WARN, MAX_HOURS, probe
from extraction.i3d import load_i3d, random_i3d, weights_identity
from extraction.inputs import find_videos, jobs_of
from extraction.one_video import RANDOM_SEEDS, extract_one, video_task
from core.errors import InputError, one_line
from core.files import hold_lock
from sweeps.trials import SHARE, Trial, run_trials
from utils import resolve_device


@dataclass
class Plan:
    """An extraction checked and ready: nothing written yet."""
    out: str
    streams: tuple
    flow: str
    weights: dict                 # {stream: weights path, or None with --random-init}
    record: dict                  # extraction.json as it will be written
    jobs: list                    # the videos to do
    done: list = field(default_factory=list)       # names finished before
    problems: list = field(default_factory=list)   # one line per video refused
    nets: dict = None             # {stream: InceptionI3d} on the CPU, checked
    clear: bool = False           # --overwrite: remove an earlier extraction first
    adopt: list = field(default_factory=list)      # finished by a task, not yet recorded
    warnings: list = field(default_factory=list)   # one line per video warned of
    given: list = field(default_factory=list)      # every video named, readable or done
    fresh: dict = None            # the record of these options before any video
    taken: list = field(default_factory=list)      # the problems of names taken in DIR
    max_hours: float = MAX_HOURS  # the longest video accepted


# ----------------------------------------------------------------------------- weights

def check_weights(streams, weights, random_init):
    """({stream: identity for extraction.json}, {stream: checked network on the CPU})."""
    if random_init:
        return ({s: {"random_init_seed": RANDOM_SEEDS[s]} for s in streams},
                {s: random_i3d(s, RANDOM_SEEDS[s]) for s in streams})
    for stream in streams:
        if not weights.get(stream):
            raise InputError(f"--{stream}-weights: needed for the {stream} stream (piergiaj's "
                             f"{rec.PIERGIAJ_FILES[stream]}), or --streams without {stream}")
        if not os.path.isfile(weights[stream]):
            raise InputError(f"{weights[stream]}: file not found (--{stream}-weights)")
    nets = {s: load_i3d(weights[s], s) for s in streams}
    return {s: weights_identity(weights[s], s) for s in streams}, nets


# ----------------------------------------------------------------------------- the plan

def plan(out, inputs, *, split="test", split_list=None, streams=("rgb", "flow"), flow="tvl1",
         weights=None, random_init=False, overwrite=False, max_hours=MAX_HOURS):
    """Everything checked before the first write: a Plan."""
    out = os.path.abspath(out)
    paths, problems = find_videos(inputs)
    jobs, named = jobs_of(paths, split, split_list, out)
    identities, nets = check_weights(streams, weights or {}, random_init)
    fresh = rec.new_record(streams, flow, identities)
    record, clear = check_folder(out, fresh, overwrite)
    the_plan = Plan(out, tuple(streams), flow, dict(weights or {}) if not random_init else
                    {s: None for s in streams}, record, [], nets=nets, clear=clear,
                    given=jobs, fresh=fresh, max_hours=max_hours)
    sort(the_plan)
    for job in list(the_plan.jobs):         # what the container says: a video stream
        try:
            probe(job.path, max_hours)
        except InputError as e:
            problems.append(str(e))
            the_plan.given.remove(job)
            the_plan.jobs.remove(job)
    the_plan.problems[:0] = problems + named
    return the_plan


def sort(the_plan):
    """The plan's videos sorted against its record: to do, done before, refused (a name
    taken), finished by a task but not recorded (folder.sort_jobs)."""
    todo, done, taken, adopt, warnings = sort_jobs(the_plan.record, the_plan.given,
                                                   the_plan.out, the_plan.streams)
    kept = [line for line in the_plan.problems if line not in the_plan.taken]
    the_plan.jobs, the_plan.done, the_plan.adopt = todo, done, adopt
    the_plan.problems, the_plan.taken, the_plan.warnings = kept + taken, taken, warnings


def reread(the_plan):
    """Under the folder's lock: the record read again, and the videos sorted against it, so
    that another command that finished since the plan was made loses nothing (its videos
    stay in the record; those it did are done)."""
    if the_plan.clear:
        return
    the_plan.record, _ = check_folder(the_plan.out, the_plan.fresh, False)
    sort(the_plan)


# ----------------------------------------------------------------------------- the run


class Progress:
    """Records each finished video in extraction.json and says one line about it."""

    def __init__(self, plan, say, warn):
        self.plan, self.say, self.warn = plan, say, warn
        self.failed, self.finished, self.short = [], [], []

    def video(self, job, done):
        record, out = self.plan.record, self.plan.out
        about = {**source_of(job.path), "rotation": done.get("rotation", 0)}
        about.pop("source")
        if done["snippets"] == 0:
            reason = (f"{done['frames']} frames at 25 fps, fewer than one chunk of "
                      f"{rec.CHUNK}: no feature")
            rec.left_out(record, job.name, job.path, reason, **about)
            self.short.append(job.name)
            self.warn(f"warning: {job.path}: {reason}; video left out")
        else:
            rec.finished(record, job.name, job.split, job.path, done["snippets"],
                         done["frames"], **about, **self.notes(job, done))
            self.finished.append(job.name)
            took = sum((done.get("seconds") or {}).values())
            self.say(f"{job.name}: {done['snippets']} snippets ({done['frames']} frames at "
                     f"25 fps) in {took:.1f} s")
        rec.write_record(out, record)
        write_splits(out, record)

    def notes(self, job, done):
        """What extraction.json keeps of a video's oddities, each also warned of: a long gap
        between frames (kept: it is real time), frames of another size (scaled)."""
        kept = {"node": done["node"]} if done.get("node") else {}     # the Ray node
        gap, at = done.get("longest_gap") or (0.0, 0.0)
        if gap > GAP_WARN:
            kept["longest_gap"] = {"seconds": round(gap, 3), "at": round(at, 3)}
            self.warn(f"warning: {job.path}: no frame for {gap:.1f} s after {at:.2f} s; kept "
                      f"(the frame before is repeated), gaps over {GAP_WARN:g} s are said")
        if done.get("rescaled"):
            h, w = done["size"]
            kept["rescaled_frames"] = done["rescaled"]
            self.warn(f"warning: {job.path}: {done['rescaled']} decoded frames change size "
                      f"mid-stream; scaled to the first frame's {w} x {h}")
        return kept

    def failure(self, job, message):
        self.failed.append(job.name)
        self.warn(f"error: {one_line(message, 400)}")


def task_options(plan, job, device, threads):
    return {"output_dir": os.path.join(plan.out, WORK, job.name), "name": job.name,
            "source": job.path, "split": job.split, "out": plan.out,
            "streams": list(plan.streams), "flow": plan.flow, "device": device,
            "weights": {s: (os.path.abspath(p) if p else None) for s, p in plan.weights.items()},
            "random_init": all(p is None for p in plan.weights.values()), "threads": threads,
            "max_hours": plan.max_hours}


def tell(plan, progress, say, warn):
    """The lines said before any video: those refused, those warned of, those done."""
    for line in plan.problems:
        progress.failed.append(line)
        warn(f"error: {one_line(line, 400)}")
    for line in plan.warnings:
        warn(f"warning: {one_line(line, 400)}")
    if plan.done:
        say(f"{len(plan.done)} videos were finished before: skipped")


def clear(out):
    """--overwrite: what an earlier extraction wrote in out removed (not the lock)."""
    for path in our_files(out):
        if os.path.basename(path) == LOCK:
            continue
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) \
            else os.remove(path)


def run(plan, *, device="auto", workers=1, address=None, threads=0, gpus_per_task=None,
        say=print, warn=lambda line: print(line, file=sys.stderr)):
    """Do the plan's videos: in this process (workers 1, no address) or as Ray tasks. The
    first write happens here, under the folder's lock, after the record is read again
    (reread). Returns the Progress (finished, left out, failed)."""
    progress = Progress(plan, say, warn)
    if not (plan.jobs or plan.adopt or plan.clear):
        tell(plan, progress, say, warn)
        return progress                                 # nothing to write
    os.makedirs(plan.out, exist_ok=True)
    fd = hold_lock(plan.out, LOCK, "another extract.py is writing in it")
    try:
        reread(plan)
        tell(plan, progress, say, warn)
        if plan.clear:
            clear(plan.out)
        for job, done in plan.adopt:
            progress.video(job, done)
        for job in plan.jobs:                           # redone: not finished until it is
            plan.record["videos"].pop(job.name, None)
        rec.write_record(plan.out, plan.record)
        write_splits(plan.out, plan.record)
        if (workers or 1) <= 1 and not address:
            in_process(plan, progress, resolve_device(device), threads)
        else:
            on_ray(plan, progress, device, workers, address, threads, gpus_per_task)
        work = os.path.join(plan.out, WORK)
        if os.path.isdir(work) and not os.listdir(work):
            os.rmdir(work)
        return progress
    finally:
        os.remove(os.path.join(plan.out, LOCK))
        os.close(fd)


def in_process(plan, progress, device, threads):
    if threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    nets = {s: n.to(device) for s, n in plan.nets.items()}
    for job in plan.jobs:
        opts = task_options(plan, job, device.type, threads)
        try:
            done = extract_one(opts, nets, device)
        except InputError as e:
            progress.failure(job, str(e))
            continue
        progress.video(job, done)


def on_ray(plan, progress, device, workers, address, threads, gpus_per_task):
    """The videos as Ray tasks (sweeps/trials.py): at most `workers` at once (None: as many
    as the resources allow), each with `threads` CPUs (0: the machine's cores shared among
    the workers; 1 on a cluster) and gpus_per_task GPUs (default with --device cuda: min(1,
    GPUs / workers), so that the workers share the GPUs)."""
    cores = os.cpu_count() or 1
    cpus = threads or (max(1, cores // workers) if workers and not address else 1)
    if gpus_per_task is None:
        gpus_per_task = SHARE if device == "cuda" else 0.0
    by_name = {job.name: job for job in plan.jobs}
    trials = [Trial(job.name, task_options(plan, job, device, cpus), {}, VIDEO_TRIAL)
              for job in plan.jobs]

    def finished(result):
        job = by_name[result["name"]]
        shutil.rmtree(os.path.join(plan.out, WORK, job.name), ignore_errors=True)
        if result["status"] == "ok" and isinstance(result["metrics"], dict):
            progress.video(job, {**result["metrics"], "node": result["node"]})
        else:
            message = result["error"] or "the task gave no result"
            progress.failure(job, message if message.startswith(job.path)
                             else f"{job.path}: {message}")

    if trials:
        run_trials(trials, video_task, cpus=cpus, gpus=gpus_per_task, workers=workers,
                   address=address, on_done=finished)
