"""A finished run read back, to localise with it again (detect.py, sweep.py --from-run): its
saved options (opts.merge_options lays the overrides over them), its seeds' folders, its
final weights, loaded without running code (weights_only) and checked against the networks
they must fill, and the ground truth of the videos chosen."""
import os


from model import EMMIL, UntrimmedNetClassifier
from pipeline.data import split_validation
from pipeline.localise import only_videos, test_ground_truth, videos_ground_truth
from pipeline.run_files import RunFolder
from pipeline.saved_opts import read_saved
from core.errors import InputError
from core.files import file_sha256
from core.safe_load import load_tensor_dict

def read_saved_opts(folder):
    """The run's opts.json, checked as --resume checks it (a dict)."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder; RUN_DIR must be the output folder of run.py")
    return read_saved(folder, "RUN_DIR must be the output folder of run.py")


def run_folders(folder):
    """[(seed, folder, saved options)] of a run, or of each seed of a --seeds folder."""
    seeds = RunFolder(folder).seeds()
    if not seeds:
        saved = read_saved_opts(folder)
        return [(saved["seed"], folder, saved)]
    return [(seed, sub, read_saved_opts(sub)) for seed in seeds
            for sub in [RunFolder(folder).seed(seed).path]]


def check_finished(folder):
    """The run has its final weights (an unfinished one has only checkpoints)."""
    run = RunFolder(folder)
    missing = [w for w in run.WEIGHTS if not os.path.isfile(run.file(w))]
    if missing:
        unfinished = os.path.isfile(run.last)
        raise InputError(f"{os.path.join(folder, missing[0])}: not found: "
                         + ("the run is unfinished (it has only checkpoints); finish it with "
                            f"python run.py --resume {folder}" if unfinished
                            else "RUN_DIR holds no final weights"))


def read_weights(path):
    """A state dict of tensors from `path`, loaded with weights_only (no code runs)."""
    return load_tensor_dict(path, "refused: not weights this project wrote",
                            "corrupt or truncated weights")


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
    fill(model, RunFolder(folder).model)
    fill(classifier, RunFolder(folder).classifier)
    return model.to(device).eval(), classifier.to(device).eval()


def weights_sha256(folder):
    return {w: file_sha256(RunFolder(folder).file(w)) for w in RunFolder.WEIGHTS}


# ----------------------------------------------------------------------------- videos

def chosen_ground_truth(opts, data, split, videos):
    """The evaluation ground truth of the chosen videos (None when none has any segment, or
    the data has no annotations). The test split's is read from the annotation source, as
    run.py reads it."""
    if not data.annotated:
        return None
    names = [v.name for v in videos]
    if split == "test":
        gt = test_ground_truth(data, opts)
        if len(names) < len(data.split("test")):            # --videos
            gt = only_videos(gt, names)
    else:
        gt = videos_ground_truth(videos, data.classes, data.ambiguous)
    return gt if len(gt.segments) else None


def held_out(opts, data, split, names, data_given):
    """The run's held-out training videos and their ground truth, when it had some and
    localises its own test split."""
    if not opts.val_fraction or data_given or split != "test" or names:
        return None, None
    _, val_videos = split_validation(data.split("train"), opts.val_fraction, opts.seed)
    return val_videos, videos_ground_truth(val_videos, data.classes, data.ambiguous)
