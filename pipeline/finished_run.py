"""A finished run read back, to localise with it again (detect.py, sweep.py --from-run): its
saved options, its seeds' folders, and its final weights, loaded without running code
(weights_only) and checked against the networks they must fill."""
import argparse
import hashlib
import os
import pickle
import re

import torch

from model import EMMIL, UntrimmedNetClassifier
from pipeline.run_folder import LAST
from pipeline.saved_opts import saved_problem
from readers.safe_io import InputError, first_line, read_json

WEIGHTS = ("em_mil.pt", "classifier.pt")


def read_saved_opts(folder):
    """The run's opts.json, checked as --resume checks it (a dict)."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder; RUN_DIR must be the output folder of run.py")
    path = os.path.join(folder, "opts.json")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found; RUN_DIR must be the output folder of run.py")
    saved = read_json(path, "saved options")
    problem = saved_problem(saved)
    if problem:
        raise InputError(f"{path}: {problem} (not an opts.json of this version of run.py)")
    return saved


def seed_folders(folder):
    """The seeds of a --seeds folder (run.py writes no opts.json beside seed_<s>/), in the
    order of its summary.json (else by number); [] for any other folder."""
    if not os.path.isdir(folder) or os.path.exists(os.path.join(folder, "opts.json")):
        return []
    seeds = sorted(int(m.group(1)) for name in os.listdir(folder)
                   for m in [re.fullmatch(r"seed_(\d+)", name)]
                   if m and os.path.isdir(os.path.join(folder, name)))
    summary = read_json(os.path.join(folder, "summary.json"), or_none=True)
    listed = summary.get("seeds") if isinstance(summary, dict) else None
    if isinstance(listed, list) and sorted(listed) == seeds:
        return listed
    return seeds


def run_folders(folder):
    """[(seed, folder, saved options)] of a run, or of each seed of a --seeds folder."""
    seeds = seed_folders(folder)
    if not seeds:
        saved = read_saved_opts(folder)
        return [(saved["seed"], folder, saved)]
    return [(seed, sub, read_saved_opts(sub)) for seed in seeds
            for sub in [os.path.join(folder, f"seed_{seed}")]]


def check_finished(folder):
    """The run has its final weights (an unfinished one has only checkpoints)."""
    missing = [w for w in WEIGHTS if not os.path.isfile(os.path.join(folder, w))]
    if missing:
        unfinished = os.path.isfile(os.path.join(folder, LAST))
        raise InputError(f"{os.path.join(folder, missing[0])}: not found: "
                         + ("the run is unfinished (it has only checkpoints); finish it with "
                            f"python run.py --resume {folder}" if unfinished
                            else "RUN_DIR holds no final weights"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights(path):
    """A state dict of tensors from `path`, loaded with weights_only (no code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(f"{path}: refused: not weights this project wrote "
                         f"({first_line(e, 120)})") from None
    except Exception as e:
        raise InputError(f"{path}: corrupt or truncated weights ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict but a {type(state).__name__}")
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise InputError(f"{path}: {str(key)[:60]!r} holds a {type(value).__name__}, "
                             f"not a tensor")
    return state


def fill(network, path):
    """Load the weights at `path` into `network`; every name and shape must match."""
    state = read_weights(path)
    want = network.state_dict()
    for name in [*want, *(n for n in state if n not in want)]:       # the network's order
        if name not in state:
            raise InputError(f"{path}: lacks {name}")
        if name not in want:
            raise InputError(f"{path}: holds {str(name)[:60]!r}, which the network has not")
        if tuple(state[name].shape) != tuple(want[name].shape):
            raise InputError(f"{path}: {name} has shape {tuple(state[name].shape)}, the "
                             f"network {tuple(want[name].shape)}")
    network.load_state_dict(state)


def load_networks(folder, opts, num_classes, device):
    """(EMMIL, video classifier) with the run's final weights, on `device`, in eval mode."""
    model = EMMIL(num_classes, opts.feature_dim, opts.hidden_dim)
    classifier = UntrimmedNetClassifier(num_classes, opts.feature_dim)
    fill(model, os.path.join(folder, "em_mil.pt"))
    fill(classifier, os.path.join(folder, "classifier.pt"))
    return model.to(device).eval(), classifier.to(device).eval()


def weights_sha256(folder):
    return {w: sha256(os.path.join(folder, w)) for w in WEIGHTS}


def as_opts(saved):
    return argparse.Namespace(**saved)
