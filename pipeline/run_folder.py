"""The run folder written: the checks before the first write, the removal of an earlier
run's files (--overwrite), the training history, and the checkpoint that lets --resume
continue where a run stopped. The names are pipeline/run_files.py's."""
import os
import random
import re
import tempfile

import numpy as np
import torch

from analysis.report import REPORT_FILES
from core.errors import InputError, one_line
from core.files import atomic_write_json, atomic_torch_save
from core.safe_load import load_torch_plain
from pipeline.run_files import RUN_FILES, RUN_FOLDERS, RunFolder
from utils import device_record

TENSORBOARD_FILES = re.compile(r"events\.out\.tfevents\..*")


def check_output_dir(path, overwrite, resumable=True):
    """The output folder can be created and written, and is empty unless --overwrite.
    Probes with a temporary file or folder, removed at once: nothing is left behind.
    resumable: the refusal of a non-empty folder mentions --resume."""
    try:
        _check_output_dir(path, overwrite, resumable)
    except OSError as e:                                  # e.g. a folder that cannot be listed
        raise InputError(f"{path}: --output-dir cannot be used ({e.strerror})") from None


def _check_output_dir(path, overwrite, resumable):
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputError(f"{path}: --output-dir exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        resume = f"continue it with --resume {path}, " if resumable else ""
        raise InputError(f"{path}: output folder is not empty; choose another --output-dir, "
                         f"{resume}or pass --overwrite")
    for name in os.listdir(path) if os.path.isdir(path) else []:
        if RUN_FILES.fullmatch(name) and os.path.isdir(os.path.join(path, name)) \
                and not os.path.islink(os.path.join(path, name)):
            raise InputError(f"{os.path.join(path, name)}: a folder where the run writes a file")
    ancestor = os.path.abspath(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"{path}: --output-dir cannot be created: {ancestor} is not a folder")
    try:
        if ancestor == os.path.abspath(path):
            fd, probe = tempfile.mkstemp(dir=path, prefix=".tmp-probe")
            os.close(fd)
            os.remove(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".tmp-probe"))
    except OSError as e:
        raise InputError(f"{path}: --output-dir is not writable ({e.strerror})") from None


def clear_earlier_run(folder):
    """Remove what an earlier run wrote into `folder` (RUN_FILES, RUN_FOLDERS), never
    following a link: a link of one of these names is removed itself."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isdir(path):
            if RUN_FILES.fullmatch(name) or RUN_FOLDERS.fullmatch(name):
                os.remove(path)
        elif RUN_FOLDERS.fullmatch(name):
            if name in (RunFolder.TENSORBOARD, RunFolder.REPORT):
                own = TENSORBOARD_FILES if name == RunFolder.TENSORBOARD else REPORT_FILES
                for inside in os.listdir(path):
                    if own.fullmatch(inside) and not os.path.isdir(os.path.join(path, inside)):
                        os.remove(os.path.join(path, inside))
            else:
                clear_earlier_run(path)
            if not os.listdir(path):
                os.rmdir(path)


def check_resume_folder(folder):
    """Before --resume writes: the folder is writable and its log and TensorBoard folder
    are not links (they are appended to, so they cannot be replaced)."""
    for name in (RunFolder.LOG, RunFolder.TENSORBOARD):
        if os.path.islink(os.path.join(folder, name)):
            raise InputError(f"{os.path.join(folder, name)}: is a symbolic link; --resume "
                             f"never writes through one")
    check_output_dir(folder, overwrite=True)


# the training history (history.json: the report's training curves) -------------

def history_entry(position, phase, stats, seconds):
    """One trained epoch as history.json records it."""
    return {"position": position, "phase": phase.name, "epoch": phase.epoch,
            "loss": stats["loss"], "positive": stats.get("positive"), "lr": stats.get("lr"),
            "seconds": round(seconds, 3)}


def write_history(folder, entries):
    atomic_write_json(RunFolder(folder).history, entries)


# checkpoints ------------------------------------------------------------------

def rng_state():
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      *np_state[2:]]}


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def save_checkpoint(opts, position, model, classifier, em, video_trainer):
    """Everything needed to continue after `position` completed epochs (classifier epochs
    first, then EM epochs). Written to a temporary file and renamed."""
    state = {"position": position, "model": model.state_dict(),
             "classifier": classifier.state_dict(), "em_trainer": em.state_dict() if em else None,
             "cls_trainer": video_trainer.state_dict(), "rng": rng_state(), "opts": vars(opts),
             "machine": device_record(next(model.parameters()).device)}
    last = RunFolder(opts.output_dir).last
    if opts.save_every and position % opts.save_every == 0:
        # the numbered copy first, then `last` as a hard link to it: a kill in between
        # leaves `last` one epoch behind, and that epoch is redone (identically) on resume
        kept = os.path.join(opts.output_dir, f"checkpoint_{position:04d}.pt")
        atomic_torch_save(state, kept)
        tmp = last + ".link"
        if os.path.lexists(tmp):
            os.remove(tmp)
        try:
            os.link(kept, tmp)
            os.replace(tmp, last)
        except OSError:                      # a file system without hard links
            atomic_torch_save(state, last)
    else:
        atomic_torch_save(state, last)


def load_checkpoint(folder):
    """The last checkpoint of `folder` as a dict (tensors and plain values only)."""
    path = RunFolder(folder).last
    if not os.path.isfile(path):
        raise InputError(f"{path}: no checkpoint to resume from")
    state = load_torch_plain(path, "refused: not a checkpoint of this project",
                             "corrupt or truncated checkpoint")
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a checkpoint of this project (a {type(state).__name__})")
    missing = {"position", "model", "classifier", "cls_trainer", "rng"} - set(state)
    if missing:
        raise InputError(f"{path}: not a checkpoint of this project (missing {sorted(missing)})")
    return state


def check_optimizer(opt):
    """Adam's loaded state fits its parameters (load_state_dict checks only the counts)."""
    for group in opt.param_groups:
        for key in ("lr", "eps", "weight_decay"):
            value = group.get(key)
            if torch.is_tensor(value) and value.numel() == 1:   # capturable Adam (--step padded)
                value = value.item()
            if not (isinstance(value, (int, float)) and np.isfinite(value)):
                raise ValueError(f"param group {key} is {group.get(key)!r}")
        betas = group.get("betas")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"param group betas is {betas!r}")
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if not torch.is_tensor(value):
                    raise ValueError(f"state {key} is a {type(value).__name__}")
                if key == "step" and value.numel() != 1:
                    raise ValueError("state step is not one number")
                if key != "step" and value.shape != p.shape:
                    raise ValueError(f"state {key} of shape {tuple(value.shape)} for a "
                                     f"parameter of shape {tuple(p.shape)}")


def restore(checkpoint, path, total, model, classifier, video_trainer, em):
    """Load a checkpoint into the run's models, trainers and random streams; its position.
    Whatever does not fit this run is an InputError naming the part."""
    position = checkpoint["position"]
    if type(position) is not int or not 0 <= position <= total:
        raise InputError(f"{path}: position {str(position)[:40]!r} is not an epoch count "
                         f"in 0..{total}")

    def trainer(t):
        def load(state):
            t.load_state_dict(state)
            for opt in (t.opt.values() if isinstance(t.opt, dict) else [t.opt]):
                check_optimizer(opt)
        return load

    parts = [("model", model.load_state_dict), ("classifier", classifier.load_state_dict),
             ("cls_trainer", trainer(video_trainer))]
    if em is not None:
        parts.append(("em_trainer", trainer(em)))
    parts.append(("rng", set_rng_state))
    for key, load in parts:
        try:
            load(checkpoint.get(key))
        except Exception as e:
            raise InputError(f"{path}: its {key} does not fit this run "
                             f"({type(e).__name__}: {one_line(e)})") from None
    return position
