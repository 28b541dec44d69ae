"""The output folder of an extraction: what it holds (features, split files, the record),
whether a rerun continues it, and which videos it has finished."""
import os

from extraction import record as rec
from extraction.inputs import SPLITS
from core.errors import InputError
from core.files import atomic_write_text
from core.safe_load import read_json
from sweeps.trials import METRICS

WORK = ".work"                    # DIR/.work/<video>/: a Ray task's folder while it runs
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
        task = read_json(os.path.join(out, WORK, job.name, METRICS), or_none=True)
        paths = feature_paths(out, job.split, job.name, streams).values()
        if (isinstance(task, dict) and task.get("source") == job.path and task.get("split")
                == job.split and all(os.path.isfile(p) for p in paths)):
            adopt.append((job, task))
            continue
        todo.append(job)
    return todo, done, problems, adopt


def write_splits(out, record):
    """DIR/split_<split>.txt: the finished videos of each split, sorted."""
    for split in SPLITS:
        names = sorted(n for n, v in record["videos"].items() if v["split"] == split)
        if names:
            atomic_write_text(os.path.join(out, f"split_{split}.txt"), "\n".join(names) + "\n")
