"""Feature and annotation loading.

The W-TALC bundle layout (THUMOS14 and ActivityNet1.2):

    DATA_ROOT/<bundle>-I3D-JOINTFeatures.npy      object array, one (T_i, 2048) array per video
                                                  (RGB 1024 then flow 1024)
    DATA_ROOT/<bundle>-Annotations/videoname.npy  (N,)  bytes or str
                                   subset.npy     (N,)  e.g. 'validation' (train) / 'test'
                                   classlist.npy  (K,)
                                   segments.npy   (N,)  per video a list of [start, end] seconds
                                   labels.npy     (N,)  per video a list of class names (one per segment)
                                   labels_all.npy (N,)  per video its label set
                                   duration.npy   (N,) or (N, 1) seconds
                                   Ambiguous_test.txt (THUMOS14 only)

The object arrays were pickled by Python 2: they load with ``allow_pickle=True,
encoding='bytes'`` and their strings may be bytes.
"""
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from utils import InputError, warn

STREAM_DIM = 1024


def snippets_to_seconds(index, snippet_seconds, duration=None):
    """The one conversion from snippet index (or boundary) to seconds.

    Snippet t covers [t * snippet_seconds, (t + 1) * snippet_seconds); a run of
    snippets [s, e) therefore spans [s, e] * snippet_seconds. Clamped to [0, duration].
    """
    seconds = np.asarray(index, dtype=np.float64) * snippet_seconds
    upper = np.inf if duration is None else float(duration)
    return np.clip(seconds, 0.0, upper)


@dataclass
class Video:
    name: str
    split: str                 # 'train' or 'test'
    features: torch.Tensor     # (T, 2 * STREAM_DIM) float32: RGB then flow
    labels: torch.Tensor       # (K,) float32 multi-hot video label
    duration: float            # seconds
    segments: list = field(default_factory=list)  # [(class_index, start_s, end_s)]

    @property
    def num_snippets(self):
        return self.features.shape[0]


@dataclass
class VideoSet:
    classes: list              # class names, index order
    videos: list               # [Video]
    annotations_dir: str       # where the ground truth was read from

    def split(self, name):
        return [v for v in self.videos if v.split == name]


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------

def _as_str(x):
    if isinstance(x, (bytes, np.bytes_)):
        return x.decode("utf-8")
    return str(x)


def load_npy(path):
    """np.load for the bundle's arrays (Python-2 pickles allowed); InputError when unreadable."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=True, encoding="bytes")
    except Exception as e:  # numpy raises many kinds for a damaged file
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_wtalc_annotations(folder):
    """The annotation arrays of a W-TALC bundle as plain Python lists (strings decoded).

    Returns dict with names, subsets, classes, segments [[(s, e)]], labels [[str]],
    labels_all [[str]], durations [float].
    """
    names = ["videoname", "subset", "classlist", "segments", "labels", "labels_all", "duration"]
    a = {n: load_npy(os.path.join(folder, n + ".npy")) for n in names}
    n_videos = len(a["videoname"])
    for n in ["subset", "segments", "labels", "labels_all", "duration"]:
        if len(a[n]) != n_videos:
            raise InputError(f"{folder}: {n}.npy has {len(a[n])} entries but videoname.npy has "
                             f"{n_videos}; the annotation arrays must be index-aligned")
    out = {
        "names": [_as_str(v) for v in a["videoname"]],
        "subsets": [_as_str(v) for v in a["subset"]],
        "classes": [_as_str(c) for c in a["classlist"]],
        "segments": [[(float(s[0]), float(s[1])) for s in segs] for segs in a["segments"]],
        "labels": [[_as_str(x) for x in labs] for labs in a["labels"]],
        "labels_all": [[_as_str(x) for x in labs] for labs in a["labels_all"]],
        "durations": [float(np.asarray(d).reshape(-1)[0]) for d in a["duration"]],
    }
    for i, (segs, labs) in enumerate(zip(out["segments"], out["labels"])):
        if len(segs) != len(labs):
            raise InputError(f"{folder}: video {out['names'][i]} has {len(segs)} segments "
                             f"but {len(labs)} segment labels")
    return out


def wtalc_paths(root, bundle):
    """(features file, annotations folder) of a W-TALC bundle."""
    return (os.path.join(root, f"{bundle}-I3D-JOINTFeatures.npy"),
            os.path.join(root, f"{bundle}-Annotations"))


def check_features(feat, path, name):
    """Validate one video's joint feature array; returns it as a float32 tensor (T, 2048)."""
    feat = np.asarray(feat)
    if feat.ndim != 2 or feat.shape[1] != 2 * STREAM_DIM:
        raise InputError(f"{path}: video {name}: features have shape {feat.shape}, "
                         f"expected (T, {2 * STREAM_DIM}) = RGB {STREAM_DIM} then flow {STREAM_DIM}")
    if feat.shape[0] == 0:
        raise InputError(f"{path}: video {name}: no snippets (empty feature array)")
    if not np.isfinite(feat).all():
        raise InputError(f"{path}: video {name}: features contain NaN or Inf")
    # from_numpy shares memory when the array is already float32 and contiguous
    return torch.from_numpy(np.ascontiguousarray(feat, dtype=np.float32))


def align_streams(rgb, flow, name, log=warn):
    """Cut RGB and flow to the shorter length (as the released code does), with a warning."""
    if rgb.shape[0] != flow.shape[0]:
        cut = min(rgb.shape[0], flow.shape[0])
        log(f"video {name}: RGB has {rgb.shape[0]} snippets and flow {flow.shape[0]}; "
            f"both cut to {cut}")
        rgb, flow = rgb[:cut], flow[:cut]
    return rgb, flow


def load_wtalc(root, bundle, train_subset, test_subset, max_videos=None):
    """Load a W-TALC bundle; returns a VideoSet with the train and test videos.

    max_videos: keep only the first n train and n test videos (for --dry-run).
    """
    feat_path, ann_dir = wtalc_paths(root, bundle)
    if not os.path.isdir(ann_dir):
        raise InputError(f"{ann_dir}: annotation folder not found (expected the W-TALC layout "
                         f"{bundle}-Annotations/ beside {os.path.basename(feat_path)})")
    ann = read_wtalc_annotations(ann_dir)
    feats = load_npy(feat_path)
    if len(feats) != len(ann["names"]):
        raise InputError(f"{feat_path}: {len(feats)} feature arrays but {len(ann['names'])} "
                         f"videos in {ann_dir}")
    classes = ann["classes"]
    index = {c: i for i, c in enumerate(classes)}
    split_of = {train_subset: "train", test_subset: "test"}
    kept = {"train": 0, "test": 0}
    videos, clipped = [], 0
    for i, name in enumerate(ann["names"]):
        split = split_of.get(ann["subsets"][i])
        if split is None or (max_videos is not None and kept[split] >= max_videos):
            continue
        features = check_features(feats[i], feat_path, name)
        labels = torch.zeros(len(classes))
        for c in ann["labels_all"][i]:
            if c not in index:
                raise InputError(f"{ann_dir}/labels_all.npy: video {name}: label {c!r} "
                                 f"is not in classlist.npy")
            labels[index[c]] = 1.0
        duration = ann["durations"][i]
        segments = []
        for (s, e), c in zip(ann["segments"][i], ann["labels"][i]):
            if c not in index:
                raise InputError(f"{ann_dir}/labels.npy: video {name}: label {c!r} "
                                 f"is not in classlist.npy")
            if s < 0 or e > duration:
                clipped += 1
                s, e = max(s, 0.0), min(e, duration)
            segments.append((index[c], s, e))
        videos.append(Video(name, split, features, labels, duration, segments))
        kept[split] += 1
    if clipped:
        warn(f"{ann_dir}: {clipped} segments reach outside their video and were clipped "
             f"to [0, duration]")
    for split in ("train", "test"):
        if kept[split] == 0:
            raise InputError(f"{ann_dir}/subset.npy: no video of the {split} subset "
                             f"({train_subset if split == 'train' else test_subset!r})")
    return VideoSet(classes, videos, ann_dir)


# ---------------------------------------------------------------------------
# torch Dataset and padding collate
# ---------------------------------------------------------------------------

class SnippetDataset(Dataset):
    """One item per video, as a dict whose entries say their shape."""

    def __init__(self, videos, snippet_seconds):
        self.videos = list(videos)
        self.snippet_seconds = snippet_seconds

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        v = self.videos[i]
        return {
            "rgb": v.features[:, :STREAM_DIM],      # (T, 1024)
            "flow": v.features[:, STREAM_DIM:],     # (T, 1024)
            "labels": v.labels,                     # (K,)
            "name": v.name,
            "index": i,
            "duration": v.duration,                 # seconds
            "snippet_seconds": self.snippet_seconds,
        }


def collate(items):
    """Pad a list of items to the longest video.

    Returns rgb, flow (B, T, 1024) zero-padded; mask (B, T) bool, True on real
    snippets; labels (B, K); lengths (B,); names, indices, durations as lists.
    """
    lengths = torch.tensor([it["rgb"].shape[0] for it in items])
    B, T = len(items), int(lengths.max())
    rgb = items[0]["rgb"].new_zeros(B, T, items[0]["rgb"].shape[1])
    flow = items[0]["flow"].new_zeros(B, T, items[0]["flow"].shape[1])
    for b, it in enumerate(items):
        rgb[b, :lengths[b]] = it["rgb"]
        flow[b, :lengths[b]] = it["flow"]
    mask = torch.arange(T)[None, :] < lengths[:, None]            # (B, T)
    return {
        "rgb": rgb, "flow": flow, "mask": mask, "lengths": lengths,
        "labels": torch.stack([it["labels"] for it in items]),     # (B, K)
        "names": [it["name"] for it in items],
        "indices": [it["index"] for it in items],
        "durations": [it["duration"] for it in items],
    }
