"""The data of a run: read (the embedded default generated on first use), checked against
the options before anything is written, and the training videos split into trained and
held-out ones."""
from typing import NamedTuple

import numpy as np

from dataset import load_dataset, read_class_list
from opts import layout_snippet_seconds
from readers import synthetic
from core.errors import InputError

DRY_RUN_VIDEOS = 4


class LoadedData(NamedTuple):
    """What load_data read: the folder (or file) it was read from, and the videos."""
    root: str
    data: object                # dataset.VideoSet


def load_data(opts, log, unannotated=False):
    """LoadedData(root, VideoSet) of the run's data options. unannotated: features without
    annotations are read too (detect.py; see dataset.load_dataset)."""
    root = opts.data_root
    if opts.generate_synthetic:
        root = synthetic.ensure(root, opts.synthetic_videos, opts.synthetic_max_seconds, log=log)
    max_videos = DRY_RUN_VIDEOS if opts.dry_run else None
    classes = None if opts.classes == "annotations" else read_class_list(opts.classes)
    data = load_dataset(root, opts.bundle, opts.train_subset, opts.test_subset, opts.layout,
                        opts.annotations, max_videos, snippet_seconds=opts.snippet_seconds,
                        layout_seconds=layout_snippet_seconds(), memory=opts.memory,
                        classes=classes, unannotated=unannotated,
                        features=getattr(opts, "features", None))
    return LoadedData(root, data)


def held_out_count(n_videos, fraction):
    return int(round(fraction * n_videos))


def split_validation(videos, fraction, seed):
    """(train, held-out) lists: a seeded random `fraction` of the training videos held out."""
    n_val = held_out_count(len(videos), fraction)
    order = np.random.default_rng(seed).permutation(len(videos))
    held = set(order[:n_val].tolist())
    return ([v for i, v in enumerate(videos) if i not in held],
            [v for i, v in enumerate(videos) if i in held])


def check_feature_width(opts, data):
    """The features' width per stream is the run's --feature-dim."""
    width = {v.features.shape[1] // 2 for v in data.videos}
    if width and width != {opts.feature_dim}:
        raise InputError(f"--feature-dim {opts.feature_dim}: the features have "
                         f"{' or '.join(map(str, sorted(width)))} per stream")


def labelled(videos):
    """The videos that have at least one label (the others teach the networks nothing)."""
    return [v for v in videos if float(v.labels.sum()) > 0]


def check_labels(opts, data, train):
    """Some video trained on has a label, for every seed's held-out split: weak supervision
    with no label at all trains nothing (every step is skipped)."""
    if not labelled(train):
        raise InputError(f"{data.source}: none of the {len(train)} training videos (subset "
                         f"{opts.train_subset}) has a label; there is nothing to train on")
    for seed in getattr(opts, "seeds", None) or [opts.seed]:
        trained, _ = split_validation(train, opts.val_fraction, seed)
        if not labelled(trained):
            raise InputError(f"--val-fraction {opts.val_fraction}: with seed {seed} the "
                             f"{len(trained)} training videos left after holding out have no "
                             f"label ({data.source}); there is nothing to train on")


def check_data(opts, data):
    """The options that depend on the data, checked before anything is written."""
    train = data.split("train")
    check_feature_width(opts, data)
    n_val = held_out_count(len(train), opts.val_fraction)
    if n_val >= len(train):
        raise InputError(f"--val-fraction {opts.val_fraction}: holds out {n_val} of the "
                         f"{len(train)} training videos, leaving none to train on")
    if opts.val_fraction and not n_val:
        raise InputError(f"--val-fraction {opts.val_fraction}: holds out none of the "
                         f"{len(train)} training videos")
    check_labels(opts, data, train)
