"""The output folder of an extraction: what it holds (features, split files, the record),
whether a rerun continues it, and which videos it has finished."""
import os

import numpy as np

from extraction import record as rec
from extraction.i3d import FEATURE_DIM
from extraction.inputs import SPLITS
from core.errors import InputError
from core.files import atomic_write_text
from core.safe_load import read_json
from sweeps.trials import TrialFiles

WORK = ".work"                    # DIR/.work/<video>/: a Ray task's folder while it runs
# a video as a task of sweeps/trials.py: done when its record is in its folder
VIDEO_TRIAL = TrialFiles(done="video.json", inputs=("source", "out", "weights"))
EARLIER_DONE = "metrics.json"     # VIDEO_TRIAL.done as earlier versions named it
LOCK = "extraction.lock"


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
        if [p for p in our_files(out) if os.path.basename(p) != LOCK]:
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


def source_of(path):
    """What the record keeps of a video's file: its path, size (bytes) and modification
    time (seconds since the epoch)."""
    st = os.stat(path)
    return {"source": path, "source_size": st.st_size, "source_mtime": round(st.st_mtime, 3)}


def features_problem(out, split, name, streams, snippets):
    """Why the feature files of a finished video are not what the record says (missing, or
    not float32 (snippets, 1024)), as a phrase; None when they are."""
    if type(snippets) is not int:
        return "no snippet count"
    for stream, path in feature_paths(out, split, name, streams).items():
        where = os.path.relpath(path, out)
        if not os.path.isfile(path):
            return f"{where} is missing"
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f)
                complete = os.path.getsize(path) == f.tell() + 4 * snippets * FEATURE_DIM
        except (OSError, ValueError):
            return f"{where} is not a .npy file"
        if shape != (snippets, FEATURE_DIM) or dtype != np.float32 or not complete:
            return f"{where} is not float32 ({snippets}, {FEATURE_DIM}), as recorded"
    return None


def _earlier(earlier, job, out, streams):
    """(problem, warning, redo) of a job whose name the record holds (in videos or
    left_out): another file under that name, or another split, is a problem; the same file
    modified since is a warning; a finished video whose feature files are missing or
    malformed is done again. Fills the source's size and time a record of an earlier
    version lacks."""
    now = source_of(job.path)
    size = earlier.get("source_size", now["source_size"])
    if earlier["source"] != job.path or size != now["source_size"]:
        other = ("" if earlier["source"] != job.path else
                 f" ({size} bytes then, {now['source_size']} now)")
        return (f"{job.path}: the name {job.name} is taken in {out} by "
                f"{earlier['source']}{other}; rename the file"), None, False
    if earlier.get("split", job.split) != job.split:
        return (f"{job.path}: {job.name} is already extracted in the {earlier['split']} "
                f"split of {out}"), None, False
    warning = None
    if earlier.get("source_mtime", now["source_mtime"]) != now["source_mtime"]:
        warning = (f"{job.path}: modified since its extraction in {out}; its features are "
                   f"of the file as it was then (another --out, or --overwrite, to redo it)")
    earlier.update({k: earlier.get(k, v) for k, v in now.items()})
    if "snippets" in earlier:                                  # finished, not left out
        missing = features_problem(out, job.split, job.name, streams, earlier["snippets"])
        if missing:
            return None, f"{job.path}: {missing}; extracted again", True
    return None, warning, False


def sort_jobs(plan_record, jobs, out, streams):
    """(to do, done before, problems, finished by an earlier command's task but not
    recorded, warnings): see _earlier for a name the record holds."""
    todo, done, problems, adopt, warnings = [], [], [], [], []
    for job in jobs:
        earlier = plan_record["videos"].get(job.name) or plan_record["left_out"].get(job.name)
        if earlier is not None:
            problem, warning, redo = _earlier(earlier, job, out, streams)
            problems += [problem] if problem else []
            warnings += [warning] if warning else []
            if redo:
                todo.append(job)
            elif not problem:
                done.append(job.name)
            continue
        task = (read_json(os.path.join(out, WORK, job.name, VIDEO_TRIAL.done), or_none=True)
                or read_json(os.path.join(out, WORK, job.name, EARLIER_DONE), or_none=True))
        if (isinstance(task, dict) and task.get("source") == job.path and task.get("split")
                == job.split and not features_problem(out, job.split, job.name, streams,
                                                      task.get("snippets"))):
            adopt.append((job, task))
            continue
        todo.append(job)
    return todo, done, problems, adopt, warnings


def write_splits(out, record):
    """DIR/split_<split>.txt: the finished videos of each split, sorted."""
    for split in SPLITS:
        names = sorted(n for n, v in record["videos"].items() if v["split"] == split)
        path = os.path.join(out, f"split_{split}.txt")
        if names:
            atomic_write_text(path, "\n".join(names) + "\n")
        elif os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)                 # its only video is being done again
