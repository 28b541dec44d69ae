"""The embedded default dataset: THUMOS14-shaped synthetic features in the W-TALC layout.

Built on the real THUMOS14 annotations shipped in data/thumos14/ (video names, subsets,
durations, segments, labels): only the features are synthetic. Deterministic for a seed.

What makes it a localisation problem rather than a toy:
- inside an action segment, the class signal varies in strength from snippet to
  snippet, so a classifier can be right on a few strong snippets and miss the rest;
- every video carries a weak class-specific "scene" signal over its whole length
  (context, as in real sports videos), so background is not class-free;
- generic background patterns and noise are shared by all classes;
- features are non-negative like post-ReLU I3D features, 1024-d RGB then 1024-d flow.

The same bytes on every machine (tests/test_synthetic.py holds their sha256): the features
are sums of weighted patterns made with one float32 multiply and one add at a time, in a
fixed order, never with a BLAS product (matmul/dot), whose summation order and fused
multiply-adds depend on the BLAS build, its CPU kernel and its thread count.
"""
import os
import shutil
import tempfile

import numpy as np

from readers.features import STREAM_DIM
from readers.layouts import wtalc_paths
from core.errors import InputError
from core.files import PROJECT_DIR
from core.names import as_text
from core.safe_load import load_npy

SOURCE_ANNOTATIONS = os.path.join(PROJECT_DIR, "data", "thumos14", "Thumos14reduced-Annotations")
BUNDLE = "Thumos14reduced"
ARRAYS = ["videoname", "subset", "classlist", "segments", "labels", "labels_all", "duration",
          "original_fps", "extracted_fps"]


GENERATOR = 2       # 2: no BLAS product (the same bytes everywhere); 1 (folders without a
                    # suffix): matmuls, whose bytes depended on the machine


def dataset_tag(n_videos, max_seconds):
    """The folder of one setting, e.g. 120v-150s-g2: a new generator never reuses the folder
    an earlier one wrote."""
    size = "full" if n_videos == 0 else f"{n_videos}v-{max_seconds:g}s"
    return f"{size}-g{GENERATOR}"


def select_videos(durations, subsets, labels_all, n_videos, max_seconds, seed):
    """Indices of the videos to keep: all (n_videos == 0), or n_videos // 2 per split drawn
    with a fixed seed among the labelled videos no longer than max_seconds."""
    if n_videos == 0:
        return np.arange(len(durations))
    rng = np.random.default_rng(seed)
    chosen = []
    for split in (b"validation", b"test"):
        pool = [i for i in range(len(durations)) if subsets[i] == split
                and durations[i] <= max_seconds and len(labels_all[i]) > 0]
        take = min(n_videos // 2, len(pool))
        if take == 0:                      # an empty split: refused before anything is written
            raise InputError(f"--synthetic-videos {n_videos} --synthetic-max-seconds "
                             f"{max_seconds:g}: keeps no {split.decode()} video ({len(pool)} "
                             f"are that short; at least 2 videos are needed, one per split)")
        chosen += sorted(rng.choice(pool, size=take, replace=False).tolist())
    return np.array(chosen)


def _prototypes(rng, n, active=96, low=0.5, high=1.5):
    """n sparse non-negative patterns (n, 2 * STREAM_DIM)."""
    protos = np.zeros((n, 2 * STREAM_DIM), dtype=np.float32)
    for k in range(n):
        dims = rng.choice(2 * STREAM_DIM, size=active, replace=False)
        protos[k, dims] = rng.uniform(low, high, size=active)
    return protos


def weighted_sum(weights, patterns):
    """weights (T, N) @ patterns (N, D) -> (T, D) float32, without a BLAS product: for each
    pattern in order, one exactly rounded float32 multiply and add, so the result is the
    same bit for bit on every machine. Patterns whose weights are all zero add exactly 0
    (the weights and patterns are non-negative) and are skipped."""
    weights, patterns = weights.astype(np.float32), patterns.astype(np.float32)
    out = np.zeros((weights.shape[0], patterns.shape[1]), dtype=np.float32)
    for n in np.flatnonzero((weights != 0).any(axis=0)):
        out += weights[:, n:n + 1] * patterns[n]                      # (T, 1) * (D,)
    return out


def video_features(rng, n_snippets, segments, labels, video_classes, protos, snippet_seconds):
    """Features (T, 2048) float32 of one video.

    segments: [(start_s, end_s)]; labels: class index per segment; video_classes: its label set.
    """
    action, scene, background = protos["action"], protos["scene"], protos["background"]
    T = n_snippets
    centre = (np.arange(T) + 0.5) * snippet_seconds                       # (T,)
    signal = np.zeros((T, action.shape[0]), dtype=np.float32)             # (T, K) strengths
    for (s, e), c in zip(segments, labels):
        inside = (centre >= s) & (centre <= e)
        # strength varies along the action: a few strong snippets, many weak ones
        signal[inside, c] = np.maximum(signal[inside, c],
                                       rng.uniform(0.25, 1.0, size=int(inside.sum())) ** 2 * 1.6)
    scene_level = np.zeros(scene.shape[0], dtype=np.float32)
    scene_level[video_classes] = 0.35
    mix = rng.dirichlet(np.ones(background.shape[0]) * 0.5, size=T).astype(np.float32)  # (T, B)
    feats = (weighted_sum(signal, action) + weighted_sum(scene_level[None], scene)
             + np.float32(1.2) * weighted_sum(mix, background))                 # (T, 2048)
    feats += rng.normal(0.0, 0.35, size=feats.shape).astype(np.float32)
    return np.maximum(feats, 0.0, out=feats)


def generate(out_dir, n_videos, max_seconds, seed=0, snippet_seconds=0.64,
             source=SOURCE_ANNOTATIONS, log=print):
    """Write a synthetic W-TALC bundle into out_dir (atomically: a temporary folder renamed)."""
    raw = {n: load_npy(os.path.join(source, n + ".npy")) for n in ARRAYS}
    durations = raw["duration"].reshape(-1).astype(float)
    keep = select_videos(durations, raw["subset"], raw["labels_all"], n_videos, max_seconds, seed)
    classes = [as_text(c, source, "class name") for c in raw["classlist"]]
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(seed)
    protos = {"action": _prototypes(rng, len(classes)),
              "scene": _prototypes(rng, len(classes), active=64),
              "background": _prototypes(rng, 12, active=128)}
    feats = np.empty(len(keep), dtype=object)
    for j, i in enumerate(keep):
        T = max(1, int(np.ceil(durations[i] / snippet_seconds)))
        labels = [index[as_text(c, source, "label")] for c in raw["labels"][i]]
        video_classes = sorted({index[as_text(c, source, "label")] for c in raw["labels_all"][i]})
        segs = [(float(s), float(e)) for s, e in raw["segments"][i]]
        feats[j] = video_features(np.random.default_rng([seed, int(i)]), T, segs, labels,
                                  video_classes, protos, snippet_seconds)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-synthetic-")
    try:
        feat_path, ann_dir = wtalc_paths(tmp, BUNDLE)
        os.makedirs(ann_dir)
        np.save(feat_path, feats, allow_pickle=True)
        for n in ARRAYS:
            np.save(os.path.join(ann_dir, n + ".npy"),
                    raw[n] if n == "classlist" else raw[n][keep], allow_pickle=True)
        shutil.copy(os.path.join(source, "Ambiguous_test.txt"), ann_dir)
        with open(os.path.join(tmp, "README.txt"), "w") as f:
            f.write(f"Synthetic features (seed {seed}) on the real THUMOS14 annotations of "
                    f"{len(keep)} videos; made by synthetic.py. Safe to delete.\n")
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_snip = sum(f.shape[0] for f in feats)
    log(f"synthetic data: {len(keep)} videos, {n_snip} snippets written to {out_dir}")


def ensure(root, n_videos, max_seconds, seed=0, log=print):
    """The folder of the synthetic bundle for these settings, generated on first use."""
    out_dir = os.path.join(root, dataset_tag(n_videos, max_seconds))
    if not os.path.isdir(out_dir):
        log(f"generating the synthetic dataset in {out_dir} (first use only)")
        generate(out_dir, n_videos, max_seconds, seed=seed, log=log)
    return out_dir
