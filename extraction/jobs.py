"""An extraction: the videos, each an independent task, and the folder they go to.

    DIR/features/<split>/{rgb,flow}/<video>.npy    float32 (T, 1024) per video and stream
    DIR/split_<split>.txt                           the finished videos of the split
    DIR/extraction.json                             the options, comparability, what is done

`plan` checks everything before the first write (the videos' names and splits, what the
container of each says, the weights, the folder); `run` does the videos one after another in
this process, or as Ray tasks through the trial executor of sweeps/trials.py (`--workers N`
on this machine, `--address auto` on a cluster: then DIR must be on a filesystem every node
sees). Each feature file is written atomically; only this process writes extraction.json and
the split files, after each video, so a rerun skips what is finished. A video that cannot be
read fails alone (one line naming it); one shorter than a chunk is left out with a warning.
"""
import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from extraction import record as rec
from extraction.features import video_features
from extraction.frames import VIDEO_EXTENSIONS, probe
from extraction.i3d import FEATURE_DIM, load_i3d, random_i3d, weights_identity
from readers.features import LazyFeatures
from readers.hdf5_format import write_hdf5
from core.errors import InputError, first_line, one_line
from core.files import atomic_write_json, atomic_write_text, hold_lock, write_atomically
from core.names import check_video_name
from core.safe_load import read_json, read_rows
from sweeps.trials import SHARE, Trial, TrialFiles, run_trials
from utils import resolve_device

SPLITS = ("train", "test")
WORK = ".work"                    # DIR/.work/<video>/: a Ray task's folder while it runs
VIDEO_TRIAL = TrialFiles(done="video.json", inputs=("source", "out", "weights"))
EARLIER_DONE = "metrics.json"     # VIDEO_TRIAL.done (the video's record) in earlier versions
LOCK = "extraction.lock"
GPU_BATCH, CPU_BATCH = 8, 1       # chunks per forward pass
RANDOM_SEEDS = {"rgb": 0, "flow": 1}


@dataclass
class Job:
    name: str
    path: str          # absolute
    split: str


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


# ----------------------------------------------------------------------------- inputs

def find_videos(inputs):
    """Video files from files and folders (a folder: its files with a video extension,
    sorted; not recursive). A path that does not exist is an InputError."""
    paths = []
    for given in inputs:
        if os.path.isdir(given):
            names = sorted(n for n in os.listdir(given) if n.lower().endswith(VIDEO_EXTENSIONS)
                           and os.path.isfile(os.path.join(given, n)))
            if not names:
                raise InputError(f"{given}: no video file in the folder (extensions "
                                 f"{', '.join(VIDEO_EXTENSIONS)})")
            paths += [os.path.join(given, n) for n in names]
        elif os.path.isfile(given):
            paths.append(given)
        else:
            raise InputError(f"{given}: file or folder not found")
    return [os.path.abspath(p) for p in paths]


def video_name(path):
    """A video's name: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def read_split_list(path):
    """{video: split} of a file of lines 'video split'."""
    splits = {}
    for number, (name, split) in read_rows(path, 2, "video split"):
        name = check_video_name(name, f"{path}: line {number}")
        if split not in SPLITS:
            raise InputError(f"{path}: line {number}: split {split!r}, expected "
                             f"{' or '.join(SPLITS)}")
        if splits.get(name, split) != split:
            raise InputError(f"{path}: line {number}: video {name} is listed in two splits")
        splits[name] = split
    return splits


def jobs_of(paths, split, split_list):
    """([Job], [problem line]): one job per video, named after its file; a bad name, or a
    name two files share, is a problem of those files (left out). A video the split list
    does not name is an InputError."""
    splits = read_split_list(split_list) if split_list else None
    names, problems = {}, []
    for path in paths:
        try:
            names.setdefault(check_video_name(video_name(path), path), []).append(path)
        except InputError as e:
            problems.append(str(e))
    jobs = []
    for name, where in names.items():
        if len(where) > 1:
            problems += [f"{p}: two videos have the name {name} ({', '.join(where)}); rename "
                         f"one" for p in where]
            continue
        if splits is not None and name not in splits:
            raise InputError(f"{split_list}: video {name} ({where[0]}) is not listed")
        jobs.append(Job(name, where[0], splits[name] if splits is not None else split))
    return jobs, problems


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


# ----------------------------------------------------------------------------- the folder

def our_files(out):
    """What an extraction writes in its folder (--overwrite removes these, nothing else)."""
    names = ["features", rec.RECORD, WORK, LOCK] + [f"split_{s}.txt" for s in SPLITS]
    return [os.path.join(out, n) for n in names if os.path.lexists(os.path.join(out, n))]


def check_folder(out, fresh, overwrite):
    """(the record to continue, whether to clear the folder first): the folder is new,
    holds no features, or holds this same extraction; --overwrite allows another."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: not a folder (--out)")
    if os.path.islink(out):
        raise InputError(f"{out}: is a symbolic link; extract.py never writes through one")
    if not os.path.isdir(out):
        return fresh, False
    if overwrite:
        return fresh, bool(our_files(out))
    old = rec.read_record(out)
    if old is None:
        if our_files(out):
            raise InputError(f"{out}: holds features or split files but no {rec.RECORD}; "
                             f"choose another --out, or pass --overwrite to replace them")
        return fresh, False
    said = rec.differences(old, fresh)
    if said:
        raise InputError(f"{os.path.join(out, rec.RECORD)}: another extraction ("
                         f"{'; '.join(said)}); choose another --out, or pass --overwrite to "
                         f"start over")
    if old.get("versions") != fresh["versions"]:
        old.setdefault("later_versions", [])
        if fresh["versions"] not in old["later_versions"]:
            old["later_versions"].append(fresh["versions"])
    return old, False


def feature_paths(out, split, name, streams):
    return {s: os.path.join(out, "features", split, s, name + ".npy") for s in streams}


def sort_jobs(plan_record, jobs, out, streams):
    """(to do, done before, problems, finished by an earlier command's task but not
    recorded): a video's name already taken by another file, or by another split, is a
    problem of that video."""
    todo, done, problems, adopt = [], [], [], []
    for job in jobs:
        earlier = plan_record["videos"].get(job.name) or plan_record["left_out"].get(job.name)
        if earlier is not None:
            if os.path.basename(earlier["source"]) != os.path.basename(job.path):
                problems.append(f"{job.path}: the name {job.name} is taken in {out} by "
                                f"{earlier['source']}; rename the file")
            elif earlier.get("split", job.split) != job.split:
                problems.append(f"{job.path}: {job.name} is already extracted in the "
                                f"{earlier['split']} split of {out}")
            else:
                done.append(job.name)
            continue
        task = (read_json(os.path.join(out, WORK, job.name, VIDEO_TRIAL.done), or_none=True)
                or read_json(os.path.join(out, WORK, job.name, EARLIER_DONE), or_none=True))
        paths = feature_paths(out, job.split, job.name, streams).values()
        if (isinstance(task, dict) and task.get("source") == job.path and task.get("split")
                == job.split and all(os.path.isfile(p) for p in paths)):
            adopt.append((job, task))
            continue
        todo.append(job)
    return todo, done, problems, adopt


def plan(out, inputs, *, split="test", split_list=None, streams=("rgb", "flow"), flow="tvl1",
         weights=None, random_init=False, overwrite=False):
    """Everything checked before the first write: a Plan."""
    out = os.path.abspath(out)
    jobs, problems = jobs_of(find_videos(inputs), split, split_list)
    identities, nets = check_weights(streams, weights or {}, random_init)
    fresh = rec.new_record(streams, flow, identities)
    record, clear = check_folder(out, fresh, overwrite)
    todo, done, taken, adopt = sort_jobs(record, jobs, out, streams)
    readable = []
    for job in todo:                        # what the container says: a video stream
        try:
            probe(job.path)
            readable.append(job)
        except InputError as e:
            problems.append(str(e))
    return Plan(out, tuple(streams), flow, dict(weights or {}) if not random_init else
                {s: None for s in streams}, record, readable, done, problems + taken, nets,
                clear, adopt)


# ----------------------------------------------------------------------------- one video

def write_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)
    write_atomically(path, write)


def extract_one(opts, nets, device):
    """One video: its features written (each file atomically), and what extraction.json
    records of it: dict(source, split, snippets, frames). Zero snippets: nothing written.
    Anything going wrong with the video is an InputError naming it."""
    path = opts["source"]
    try:
        feats, stats = video_features(path, nets, device, flow_method=opts["flow"],
                                      batch=GPU_BATCH if device.type == "cuda" else CPU_BATCH,
                                      threads=opts.get("threads") or 0)
    except InputError:
        raise
    except (cv2.error, RuntimeError, ValueError, MemoryError, OSError) as e:
        raise InputError(f"{path}: extraction failed ({type(e).__name__}: "
                         f"{first_line(e, 160)})") from None
    snippets = stats.chunks
    if snippets:
        for stream, target in feature_paths(opts["out"], opts["split"], opts["name"],
                                            nets).items():
            assert feats[stream].shape == (snippets, FEATURE_DIM)
            write_npy(target, feats[stream])
    return {"source": path, "split": opts["split"], "snippets": snippets,
            "frames": stats.frames, "seconds": {k: round(v, 3) for k, v in
                                                stats.seconds.items()}}


@functools.lru_cache(maxsize=4)
def _networks(streams, weights, random_init, device):
    """{stream: network on device}; weights: ((stream, path), ...). Cached per process: a
    Ray worker that runs many videos loads the weights once."""
    weights = dict(weights)
    nets = {s: (random_i3d(s, RANDOM_SEEDS[s]) if random_init else load_i3d(weights[s], s))
            for s in streams}
    return {s: n.to(device) for s, n in nets.items()}


def video_task(opts, resume=False):
    """One video as a task of sweeps/trials.py (in a Ray worker): the networks loaded once
    per worker process, the video extracted, its record written as the task folder's
    VIDEO_TRIAL.done, which the executor hands back to the command."""
    threads = opts.get("threads") or 0
    if threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    device = resolve_device(opts["device"])
    nets = _networks(tuple(opts["streams"]), tuple(sorted(opts["weights"].items())),
                     opts["random_init"], device)
    done = extract_one(opts, nets, device)
    atomic_write_json(os.path.join(opts["output_dir"], VIDEO_TRIAL.done), done)
    return done


# ----------------------------------------------------------------------------- the run

def write_splits(out, record):
    """DIR/split_<split>.txt: the finished videos of each split, sorted."""
    for split in SPLITS:
        names = sorted(n for n, v in record["videos"].items() if v["split"] == split)
        if names:
            atomic_write_text(os.path.join(out, f"split_{split}.txt"), "\n".join(names) + "\n")


class Progress:
    """Records each finished video in extraction.json and says one line about it."""

    def __init__(self, plan, say, warn):
        self.plan, self.say, self.warn = plan, say, warn
        self.failed, self.finished, self.short = [], [], []

    def video(self, job, done):
        record, out = self.plan.record, self.plan.out
        if done["snippets"] == 0:
            reason = (f"{done['frames']} frames at 25 fps, fewer than one chunk of "
                      f"{rec.CHUNK}: no feature")
            rec.left_out(record, job.name, job.path, reason)
            self.short.append(job.name)
            self.warn(f"warning: {job.path}: {reason}; video left out")
        else:
            rec.finished(record, job.name, job.split, job.path, done["snippets"],
                         done["frames"], node=done.get("node"))
            self.finished.append(job.name)
            took = sum((done.get("seconds") or {}).values())
            self.say(f"{job.name}: {done['snippets']} snippets ({done['frames']} frames at "
                     f"25 fps) in {took:.1f} s")
        rec.write_record(out, record)
        write_splits(out, record)

    def failure(self, job, message):
        self.failed.append(job.name)
        self.warn(f"error: {one_line(message, 400)}")


def task_options(plan, job, device, threads):
    return {"output_dir": os.path.join(plan.out, WORK, job.name), "name": job.name,
            "source": job.path, "split": job.split, "out": plan.out,
            "streams": list(plan.streams), "flow": plan.flow, "device": device,
            "weights": {s: (os.path.abspath(p) if p else None) for s, p in plan.weights.items()},
            "random_init": all(p is None for p in plan.weights.values()), "threads": threads}


def run(plan, *, device="auto", workers=1, address=None, threads=0, gpus_per_task=None,
        say=print, warn=lambda line: print(line, file=sys.stderr)):
    """Do the plan's videos: in this process (workers 1, no address) or as Ray tasks. The
    first write happens here. Returns the Progress (finished, left out, failed)."""
    progress = Progress(plan, say, warn)
    for line in plan.problems:
        progress.failed.append(line)
        warn(f"error: {one_line(line, 400)}")
    if plan.done:
        say(f"{len(plan.done)} videos were finished before: skipped")
    if not (plan.jobs or plan.adopt or plan.clear):
        return progress                                 # nothing to write
    os.makedirs(plan.out, exist_ok=True)
    fd = hold_lock(plan.out, LOCK, "another extract.py is writing in it")
    try:
        if plan.clear:                                  # --overwrite: an earlier extraction
            for path in our_files(plan.out):
                if os.path.basename(path) == LOCK:
                    continue
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) \
                    else os.remove(path)
        for job, done in plan.adopt:
            progress.video(job, done)
        rec.write_record(plan.out, plan.record)
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


# ----------------------------------------------------------------------------- HDF5

def _read_streams(paths):
    return np.load(paths["rgb"], allow_pickle=False), np.load(paths["flow"], allow_pickle=False)


def write_extraction_hdf5(plan, path):
    """The finished videos of the plan's folder as our HDF5 file (readers/hdf5_format.py):
    no classes (the videos have no annotations), each video's duration the time its
    snippets cover (as the folders layout reads it), and a note when the features are not
    comparable (issued again whenever the file is read)."""
    record = plan.record
    videos = []
    for name in sorted(record["videos"], key=lambda n: (SPLITS.index(record["videos"][n]["split"]), n)):
        v = record["videos"][name]
        paths = feature_paths(plan.out, v["split"], name, ("rgb", "flow"))
        videos.append(SimpleNamespace(
            name=name, split=v["split"], duration=v["snippets"] * rec.CHUNK / rec.FPS,
            labels=torch.zeros(0),
            segments=[], features=LazyFeatures(functools.partial(_read_streams, paths),
                                               v["snippets"])))
    notes = [] if record["comparable"] == "approximate" else [
        f"features extracted by extract.py are not comparable with the published ones "
        f"(comparable: {record['comparable']}: {'; '.join(record['reasons'])}); never mix "
        f"them with other features in one run"]
    write_hdf5(path, [], videos, rec.CHUNK / rec.FPS, dataset="", source=plan.out,
               notes=notes, total=len(videos), progress=False)
    return len(videos)
