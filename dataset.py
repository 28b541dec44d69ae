"""Feature and annotation loading, in four layouts, and the `summary` / `convert` commands.

    python dataset.py summary --data-root DIR [--layout L] [--dataset D] [--annotations A]
    python dataset.py convert --data-root DIR --to hdf5 OUT.h5 [--fp16]

Layouts (`load_dataset(..., layout="auto")` tells them apart by their files):

wtalc    the W-TALC bundle (THUMOS14 and ActivityNet1.2):
         DATA_ROOT/<bundle>-I3D-JOINTFeatures.npy      object array, one (T_i, 2048) array per
                                                       video (RGB 1024 then flow 1024)
         DATA_ROOT/<bundle>-Annotations/videoname.npy  (N,)  bytes or str
                                        subset.npy     (N,)  e.g. 'validation' (train) / 'test'
                                        classlist.npy  (K,)
                                        segments.npy   (N,)  per video a list of [start, end] s
                                        labels.npy     (N,)  per video one class name per segment
                                        labels_all.npy (N,)  per video its label set
                                        duration.npy   (N,) or (N, 1) seconds
                                        Ambiguous_test.txt (THUMOS14 only)
         The object arrays were pickled by Python 2: safe_io.load_npy reads them with a
         restricted unpickler (numpy arrays and plain values only); strings may be bytes.
folders  the BaS-Net / UM / CoLA layout:
         DATA_ROOT/gt.json           {"database": {video: {"subset", "annotations":
                                      [{"segment": [start, end] (numbers or strings), "label"}],
                                      "duration" (optional)}}}
         DATA_ROOT/split_train.txt, split_test.txt    one video name a line
         DATA_ROOT/features/{train,test}/{rgb,flow}/<video>.npy   (T, 1024) each
                   or features/{train,test}/<video>.npy           (T, 2048) RGB then flow
         DATA_ROOT/Ambiguous_test.txt (optional)
         Classes are the sorted labels of gt.json; a video's duration is gt.json's, else
         T * snippet_seconds.
emmil    the released EM-MIL layout: DATA_ROOT/{train,test}/X_RGB/<i>.pt, X_flow/<i>.pt
         (float tensors (T, 1024)), Y_flow/<i>.pt (multi-hot (K,)), Name_flow/<i>.pt (a str),
         i = 0..N-1; segments, durations and classes come from `annotations` (a gt.json or a
         W-TALC *-Annotations folder; default DATA_ROOT/gt.json).
hdf5     our own single self-describing file; DATA_ROOT is the file (schema in its section).

Every layout goes through the same checks (`assemble`): each stream checked in its own file
(shapes and widths, a number type, NaN/Inf, beyond float32: errors; one empty stream beside a
non-empty one: an error), .npy/.pt files holding anything but a plain array/tensor refused
(never unpickled), RGB/flow of different lengths (cut to the shorter, warned), videos whose
features are empty or all zero (dropped, one warning counting them), segments outside the
video (clipped, one warning counting them), videos with an empty label set (kept, one
warning). Errors are
`utils.InputError` with one line naming the file (and video) and the problem.

Memory: the W-TALC bundle is one pickled array, read whole and kept without copies. The
other layouts stream by default: features are checked once, then read from disk on every
access (`memory="stream"`); `memory="float32"` or `"float16"` keeps them in RAM instead.
"""
import argparse
import functools
import json
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass, field

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

import annotation_reader
from safe_io import check_video_name, first_line, load_npy, read_text
from opts import FEATURE_PRESETS, LAYOUT_FEATURES, PRESETS, snippet_seconds as preset_snippet_seconds
from utils import InputError, warn

STREAM_DIM = 1024
LAYOUTS = ("wtalc", "folders", "emmil", "hdf5")
MEMORY = ("auto", "float32", "float16", "stream")
DEFAULT_SNIPPET_SECONDS = preset_snippet_seconds(*FEATURE_PRESETS["i3d"])
LISTED = 5          # names listed in a counting warning
RATE_TOLERANCE = 0.2  # warn when features x snippet length and annotated durations differ more


def snippets_to_seconds(index, snippet_seconds, duration=None):
    """The one conversion from snippet index (or boundary) to seconds.

    Snippet t covers [t * snippet_seconds, (t + 1) * snippet_seconds); a run of
    snippets [s, e) therefore spans [s, e] * snippet_seconds. Clamped to [0, duration]
    (duration: a number, or an array matching index).
    """
    seconds = np.asarray(index, dtype=np.float64) * snippet_seconds
    upper = np.inf if duration is None else np.asarray(duration, dtype=np.float64)
    return np.clip(seconds, 0.0, upper)


# ---------------------------------------------------------------------------
# Videos and their features
# ---------------------------------------------------------------------------

class LazyFeatures:
    """A video's features left on disk, read again on every access.

    `reread()` returns (rgb, flow) arrays of at least `length` snippets (any float dtype);
    it must be picklable (a functools.partial of a module function).
    """

    def __init__(self, reread, length):
        self.reread = reread
        self.shape = (length, 2 * STREAM_DIM)

    def read(self):
        """(rgb, flow) float32 tensors (T, 1024)."""
        rgb, flow = self.reread()
        T = self.shape[0]
        return _float32_tensor(rgb[:T]), _float32_tensor(flow[:T])


def _float32_tensor(x):
    if not torch.is_tensor(x):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.float()                        # no copy when already float32; fast from float16


def video_streams(features):
    """(rgb, flow) float32 tensors (T, 1024) of a video's features, in RAM or on disk."""
    if isinstance(features, LazyFeatures):
        return features.read()
    # .float() is a no-op (a view) on float32 and a float32 copy of a float16 cache
    return features[:, :STREAM_DIM].float(), features[:, STREAM_DIM:].float()


def stream_pair(features):
    """(2, T, 1024) float32: RGB and flow of a video stacked, stream first. A view without
    a copy when the features are float32 in RAM (row stride 2 * 1024)."""
    if isinstance(features, LazyFeatures):
        return torch.stack(features.read())
    x = features.float()
    return x.reshape(x.shape[0], 2, x.shape[1] // 2).transpose(0, 1)


@dataclass
class Video:
    name: str
    split: str                 # 'train' or 'test'
    features: object           # (T, 2 * STREAM_DIM) tensor, RGB then flow (float32, or
                               # float16 when cached so), or LazyFeatures; see video_streams
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
    source: str                # where the annotations were read from
    ambiguous: list = field(default_factory=list)  # [(video, start_s, end_s)] (THUMOS14 test)
    layout: str = "wtalc"
    snippet_seconds: float = DEFAULT_SNIPPET_SECONDS
    warnings: list = field(default_factory=list)   # what loading warned about, in order
    dropped: list = field(default_factory=list)    # [(name, split, segments as annotated)] of
                                                   # the videos dropped for empty features

    def split(self, name):
        return [v for v in self.videos if v.split == name]


# ---------------------------------------------------------------------------
# Checks shared by every layout
# ---------------------------------------------------------------------------

@dataclass
class Entry:
    """One video as a layout reader found it, before the shared checks."""
    name: str
    split: str                 # 'train' or 'test'
    where: str                 # the feature file named in errors about this video
    read: object               # read(warn) -> (T, 2048) array, RGB then flow, streams aligned
    labels: list               # class indices of the video label set
    segments: list             # [(class_index, start_s, end_s)] as annotated
    duration: float = None     # seconds; None: T * snippet_seconds
    reread: object = None      # for streaming: picklable () -> (rgb, flow); None: cannot
    streams: tuple = None      # (RGB file, flow file) named in errors about one stream;
                               # None: `where` holds both


FLOAT32_MAX = float(np.finfo(np.float32).max)


def numeric_array(x, path, name, what, kinds="fiu"):
    """A tensor or array holding numbers (float or integer) as a numpy array, or InputError
    naming the file: anything else a file can hold (str, dict, list, object, bool, complex,
    sparse or quantized tensors) is refused."""
    if torch.is_tensor(x):
        if x.layout != torch.strided or x.is_quantized:
            raise InputError(f"{path}: video {name}: {what} is a {x.layout} "
                             f"{'quantized ' if x.is_quantized else ''}tensor, expected a "
                             f"dense float tensor")
        x = x.detach()
        if x.numel() and x.untyped_storage().nbytes() < x.numel() * x.element_size():
            raise InputError(f"{path}: video {name}: {what}: a tensor of shape "
                             f"{tuple(x.shape)} over a smaller storage (an expanded view); "
                             f"expected a plain tensor")
        if x.dtype.is_floating_point and x.dtype not in (torch.float16, torch.float32,
                                                          torch.float64):
            x = x.float()                   # bfloat16, float8: numpy has no such type
        try:
            x = x.numpy()
        except (TypeError, RuntimeError) as e:
            raise InputError(f"{path}: video {name}: {what}: tensor of type {x.dtype} cannot "
                             f"be read ({first_line(e)})") from None
    elif not isinstance(x, np.ndarray):
        raise InputError(f"{path}: video {name}: {what}: expected an array of numbers, found "
                         f"{type(x).__name__}")
    if x.dtype.kind not in kinds:
        raise InputError(f"{path}: video {name}: {what} of type {x.dtype} are not numbers")
    return x


def check_values(x, path, name, what):
    """NaN/Inf, and float64 values float32 cannot hold, are errors naming the file."""
    if x.dtype.kind != "f":
        return
    if not np.isfinite(x).all():
        raise InputError(f"{path}: video {name}: {what} contain NaN or Inf")
    if x.dtype.itemsize > 4 and x.size and np.abs(x).max() > FLOAT32_MAX:
        raise InputError(f"{path}: video {name}: {what} exceed the float32 range")


def check_features(feat, path, name, allow_empty=False):
    """Validate one video's joint features (T, 2048); returns them as an array."""
    feat = numeric_array(feat, path, name, "features")
    if feat.ndim != 2 or feat.shape[1] != 2 * STREAM_DIM:
        raise InputError(f"{path}: video {name}: features have shape {feat.shape}, "
                         f"expected (T, {2 * STREAM_DIM}) = RGB {STREAM_DIM} then flow {STREAM_DIM}")
    if feat.shape[0] == 0 and not allow_empty:
        raise InputError(f"{path}: video {name}: no snippets (empty feature array)")
    check_values(feat, path, name, "features")
    return feat


def check_stream(x, path, name, stream):
    """One stream (T, 1024) as a numpy array of finite numbers, or InputError naming the
    file: each stream is checked on its own, before joining, so that the message names the
    file at fault."""
    x = numeric_array(x, path, name, f"{stream} features")
    if x.ndim != 2 or x.shape[1] != STREAM_DIM:
        raise InputError(f"{path}: video {name}: {stream} features have shape {x.shape}, "
                         f"expected (T, {STREAM_DIM})")
    try:
        check_values(x, path, name, f"{stream} features")
    except MemoryError:
        raise InputError(f"{path}: video {name}: {stream} features of shape {x.shape} are "
                         f"too large to check") from None
    return x


def align_streams(rgb, flow, name, log=warn):
    """Cut RGB and flow to the shorter length (as the released code does), with a warning."""
    if rgb.shape[0] != flow.shape[0]:
        cut = min(rgb.shape[0], flow.shape[0])
        log(f"video {name}: RGB has {rgb.shape[0]} snippets and flow {flow.shape[0]}; "
            f"both cut to {cut}")
        rgb, flow = rgb[:cut], flow[:cut]
    return rgb, flow


def join_streams(rgb, flow, rgb_path, flow_path, name, log):
    """Checked, aligned (T, 2048) array of two streams (T, 1024). One empty stream beside a
    non-empty one is an error naming the empty file (both empty: an empty video, dropped)."""
    rgb = check_stream(rgb, rgb_path, name, "RGB")
    flow = check_stream(flow, flow_path, name, "flow")
    for x, other, path, stream in ((rgb, flow, rgb_path, "RGB"), (flow, rgb, flow_path, "flow")):
        if x.shape[0] == 0 and other.shape[0] > 0:
            raise InputError(f"{path}: video {name}: {stream} features are empty but the other "
                             f"stream has {other.shape[0]} snippets")
    rgb, flow = align_streams(rgb, flow, name, log)
    return np.concatenate([rgb, flow], axis=1)


def class_indices(labels, index, where, name, what):
    """Class names -> indices; InputError for a name not in the class list."""
    out = []
    for c in labels:
        if c not in index:
            raise InputError(f"{where}: video {name}: label {c!r} is not in {what}")
        out.append(index[c])
    return out


def keep_features(feat, memory, entry):
    """What a Video holds: a tensor in RAM (no copy for float32 input) or LazyFeatures."""
    if memory == "stream":
        return LazyFeatures(entry.reread, feat.shape[0])
    if memory == "float16":
        t = torch.from_numpy(np.ascontiguousarray(feat)).to(torch.float16)
        finite = torch.isfinite(t).all(0)                           # (2048,)
        if not finite.all():
            stream = 1 if finite[:STREAM_DIM].all() else 0
            where = entry.streams[stream] if entry.streams else entry.where
            raise InputError(f"{where}: video {entry.name}: {('RGB', 'flow')[stream]} features "
                             f"exceed the float16 range; keep them as float32 (--memory "
                             f"float32)")
        return t
    # from_numpy shares memory when the array is already float32 and contiguous
    return torch.from_numpy(np.ascontiguousarray(feat, dtype=np.float32))


def clip_segments(segments, duration, where, name):
    """Segments clipped to [0, duration]; returns (segments, how many were clipped)."""
    out, clipped = [], 0
    for c, s, e in segments:
        if not (np.isfinite(s) and np.isfinite(e)):
            raise InputError(f"{where}: video {name}: segment [{s}, {e}] is not finite")
        if e < s:
            raise InputError(f"{where}: video {name}: segment [{s}, {e}] ends before it starts")
        if s < 0 or e > duration:
            clipped += 1
            # a segment wholly after the end becomes empty at the end (still a ground truth
            # instance, as in the official evaluation, but one nothing can match)
            s, e = min(max(s, 0.0), duration), min(max(e, 0.0), duration)
        out.append((c, float(s), float(e)))
    return out, clipped


def snippet_rate_mismatch(lengths, snippet_seconds, tolerance=RATE_TOLERANCE):
    """A warning when the features' length x snippet_seconds and the annotated durations
    disagree by more than `tolerance` (median over videos of their ratio); else None.
    lengths: [(snippets, annotated duration in seconds)]."""
    pairs = np.array([(t, d) for t, d in lengths if np.isfinite(d) and d > 0], dtype=np.float64)
    if len(pairs) == 0:
        return None
    ratio = float(np.median(pairs[:, 0] * snippet_seconds / pairs[:, 1]))
    if abs(ratio - 1.0) <= tolerance:
        return None
    return (f"the features last {ratio:.2f} x the annotated durations (median over "
            f"{len(pairs)} videos: {np.median(pairs[:, 0]):g} snippets x {snippet_seconds:g} s = "
            f"{np.median(pairs[:, 0]) * snippet_seconds:.1f} s against {np.median(pairs[:, 1]):.1f}"
            f" s annotated); detection times will be off by that factor: set the snippet length"
            f" with --features, --feature-fps or --frames-per-snippet")


def adopt_classes(entries, found, canonical, source):
    """Entries re-indexed from the class list `found` onto `canonical` (by name).

    A label or segment class not in `canonical` is an InputError naming `source`."""
    position = {c: i for i, c in enumerate(canonical)}
    missing = [c for c in found if c not in position]
    if missing:
        raise InputError(f"{source}: classes not in the class list ({len(canonical)} classes): "
                         f"{_named([repr(c) for c in missing])}; pass --classes FILE, or "
                         f"--classes annotations for the annotations' own labels")
    to = [position[c] for c in found]
    for e in entries:
        e.labels = sorted(to[c] for c in e.labels)
        e.segments = [(to[c], s, t) for c, s, t in e.segments]
        yield e


def read_class_list(path):
    """Class names from a text file, one a line, index order (blank lines skipped)."""
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: no class listed")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{path}: classes listed twice: {_named(twice)}")
    return names


def _named(names):
    shown = ", ".join(names[:LISTED])
    return shown + (f", ... ({len(names) - LISTED} more)" if len(names) > LISTED else "")


def read_entry(entry, log, allow_empty):
    """An entry's checked features; a file too large to allocate (numpy raises MemoryError
    or ValueError) or that fails to read in any other way is an error naming the file."""
    try:
        return check_features(entry.read(log), entry.where, entry.name, allow_empty=allow_empty)
    except InputError:
        raise
    except (MemoryError, ValueError, OSError, TypeError, KeyError, RuntimeError) as e:
        raise InputError(f"{entry.where}: video {entry.name}: cannot read the features "
                         f"({type(e).__name__}: {first_line(e)})") from None


def assemble(entries, classes, source, *, layout, snippet_seconds, memory="float32",
             max_videos=None, drop_empty=True, ambiguous=(), log=warn):
    """Run the shared checks over a reader's entries and build the VideoSet.

    max_videos: keep only the first n train and n test videos (for --dry-run).
    drop_empty: drop videos with empty or all-zero features (one warning); False raises.
    """
    kept = {"train": 0, "test": 0}
    videos, dropped, unlabeled, clipped = [], [], [], 0
    lengths = []                # (snippets, annotated duration) of videos that have one
    for e in entries:
        if max_videos is not None and kept[e.split] >= max_videos:
            continue
        feat = read_entry(e, log, drop_empty)
        if drop_empty and (feat.shape[0] == 0 or not feat.any()):
            dropped.append((e.name, e.split, list(e.segments)))
            continue
        if e.duration is not None:
            lengths.append((feat.shape[0], e.duration))
        duration = float(e.duration) if e.duration is not None else feat.shape[0] * snippet_seconds
        if not (np.isfinite(duration) and duration > 0):
            raise InputError(f"{source}: video {e.name}: duration {duration} is not a positive number")
        segments, n = clip_segments(e.segments, duration, source, e.name)
        clipped += n
        labels = torch.zeros(len(classes))
        labels[list(e.labels)] = 1.0
        if not e.labels:
            unlabeled.append(e.name)
        videos.append(Video(e.name, e.split, keep_features(feat, memory, e), labels, duration,
                            segments))
        kept[e.split] += 1
        del feat
    if dropped:
        log(dropped_warning(dropped))
    if clipped:
        log(f"{clipped} segments reach outside their video and were clipped to [0, duration]")
    if unlabeled:
        log(f"{len(unlabeled)} videos have an empty label set (EM training skips them): "
            f"{_named(unlabeled)}")
    mismatch = snippet_rate_mismatch(lengths, snippet_seconds)
    if mismatch:
        log(mismatch)
    for split in ("train", "test"):
        if kept[split] == 0:
            raise InputError(f"{source}: no video of the {split} split is left")
    names = [v.name for v in videos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{source}: videos listed twice: {_named(twice)}")
    return VideoSet(list(classes), videos, source, list(ambiguous), layout, snippet_seconds,
                    dropped=dropped)


def dropped_warning(dropped):
    """The one warning about videos dropped for empty features [(name, split, segments)]."""
    text = (f"{len(dropped)} videos with empty or all-zero features were dropped: "
            f"{_named([name for name, _, _ in dropped])}")
    tests = [segments for _, split, segments in dropped if split == "test"]
    if tests:
        text += (f"; the {sum(map(len, tests))} segments of the {len(tests)} test videos among "
                 f"them stay in the evaluation ground truth and count as misses")
    return text


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------

def _as_str(x):
    if isinstance(x, (bytes, np.bytes_)):
        return x.decode("utf-8")
    return str(x)


def load_array(path):
    """np.load of a plain (non-pickled) array; InputError when missing, pickled (an object
    array: loading it could run code), truncated or too large to allocate."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"{path}: cannot read: a pickled object array, not a plain array "
                             f"of numbers (pickles are never loaded)") from None
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None
    except Exception as e:  # numpy raises many kinds for a damaged file
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(x, np.ndarray):           # an .npz archive under an .npy name
        x.close()
        raise InputError(f"{path}: cannot read: not a single .npy array")
    return x


def load_pt(path):
    """torch.load with weights_only=True (tensors, str and plain containers only);
    InputError when missing, unreadable or holding anything else (torch's refusal is
    replaced by one line)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path}: cannot read: not a plain tensor/str file") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None


# ---------------------------------------------------------------------------
# Ground truth: W-TALC annotation arrays or an ActivityNet-style gt.json
# ---------------------------------------------------------------------------

def read_annotations(path, log=warn):
    """Ground truth from a gt.json or a W-TALC *-Annotations folder, read by the one
    annotation reader (annotation_reader.py) and turned into class indices.

    Returns (classes, {video: (label indices, [(class_index, s, e)], duration|None)}, ambiguous).
    """
    ann = annotation_reader.read_annotations(path)
    for message in ann.warnings:
        log(message)
    return ann.classes, index_table(ann), ann.ambiguous


def index_table(ann):
    """{video: (sorted label indices, [(class_index, s, e)] as annotated, duration|None)}."""
    index = {c: i for i, c in enumerate(ann.classes)}
    return {v: (sorted(index[c] for c in a.labels), [(index[c], s, e) for c, s, e in a.segments],
                a.duration) for v, a in ann.videos.items()}


# ---------------------------------------------------------------------------
# Layout wtalc
# ---------------------------------------------------------------------------

def wtalc_paths(root, bundle):
    """(features file, annotations folder) of a W-TALC bundle."""
    return (os.path.join(root, f"{bundle}-I3D-JOINTFeatures.npy"),
            os.path.join(root, f"{bundle}-Annotations"))


def _pop_features(feats, i, log=None):
    """Video i's joint features; the object array lets go of them, so that only the
    Video keeps them (no second copy, and float16 caching really halves memory)."""
    feat = feats[i]
    if feats.dtype == object:
        feats[i] = None
    return feat


def wtalc_entries(root, bundle, train_subset, test_subset, log=warn):
    """(classes, entries, source, ambiguous) of a W-TALC bundle."""
    feat_path, ann_dir = wtalc_paths(root, bundle)
    if not os.path.isdir(ann_dir):
        others = sorted(f for f in os.listdir(root) if f.endswith("-Annotations")) \
            if os.path.isdir(root) else []
        hint = f"; found {', '.join(others)}: is --dataset right?" if others else ""
        raise InputError(f"{ann_dir}: annotation folder not found (expected the W-TALC layout "
                         f"{bundle}-Annotations/ beside {os.path.basename(feat_path)}{hint})")
    ann = annotation_reader.read_wtalc(ann_dir)
    for message in ann.warnings:
        log(message)
    split_of = {train_subset: "train", test_subset: "test"}
    subsets = {a.subset for a in ann.videos.values()}
    for subset in (train_subset, test_subset):
        if subset not in subsets:
            raise InputError(f"{ann_dir}/subset.npy: no video of the subset {subset!r} "
                             f"(present: {sorted(subsets)})")
    feats = load_npy(feat_path)
    if not isinstance(feats, np.ndarray) or feats.ndim != 1:
        raise InputError(f"{feat_path}: expected a 1-d array of one feature array per video, "
                         f"found {getattr(feats, 'shape', type(feats).__name__)}")
    if len(feats) != len(ann.videos):
        raise InputError(f"{feat_path}: {len(feats)} feature arrays but {len(ann.videos)} "
                         f"videos in {ann_dir}")
    table = index_table(ann)

    def entries():
        for i, name in enumerate(ann.videos):
            split = split_of.get(ann.videos[name].subset)
            if split is None:
                _pop_features(feats, i)             # not used: let it go
                continue
            labels, segments, duration = table[name]
            yield Entry(name, split, feat_path, functools.partial(_pop_features, feats, i),
                        labels, segments, duration)

    return ann.classes, entries(), ann_dir, ann.ambiguous


def load_wtalc(root, bundle, train_subset, test_subset, max_videos=None, *, drop_empty=False,
               memory="float32", log=warn):
    """Load a W-TALC bundle; returns a VideoSet with the train and test videos.

    max_videos: keep only the first n train and n test videos (for --dry-run).
    drop_empty: False (here) raises for an empty video; load_dataset drops them with a warning.
    memory: 'float32' or 'float16' (the bundle cannot be streamed).
    """
    classes, entries, source, ambiguous = wtalc_entries(root, bundle, train_subset, test_subset,
                                                        log)
    return assemble(entries, classes, source, layout="wtalc",
                    snippet_seconds=DEFAULT_SNIPPET_SECONDS, memory=memory,
                    max_videos=max_videos, drop_empty=drop_empty, ambiguous=ambiguous, log=log)


# ---------------------------------------------------------------------------
# Layout folders (BaS-Net, UM, CoLA)
# ---------------------------------------------------------------------------

def _read_npy_streams(paths):
    """(rgb, flow) of a video from its two .npy files, or from one (T, 2048) file."""
    if len(paths) == 2:
        return load_array(paths[0]), load_array(paths[1])
    joint = load_array(paths[0])
    return joint[:, :STREAM_DIM], joint[:, STREAM_DIM:]


def _read_folder_video(paths, name, log):
    if len(paths) == 2:
        return join_streams(load_array(paths[0]), load_array(paths[1]), paths[0], paths[1],
                            name, log)
    joint = numeric_array(load_array(paths[0]), paths[0], name, "features")
    if joint.ndim != 2 or joint.shape[1] != 2 * STREAM_DIM:
        raise InputError(f"{paths[0]}: video {name}: features have shape {joint.shape}, expected "
                         f"(T, {STREAM_DIM}) in rgb/ and flow/, or (T, {2 * STREAM_DIM}) here")
    return joint


def folder_feature_paths(root, split, name):
    """The feature files of one video: (rgb, flow) or (joint,)."""
    base = os.path.join(root, "features", split)
    if os.path.isdir(os.path.join(base, "rgb")) or os.path.isdir(os.path.join(base, "flow")):
        return (os.path.join(base, "rgb", name + ".npy"), os.path.join(base, "flow", name + ".npy"))
    return (os.path.join(base, name + ".npy"),)


def folders_entries(root, log=warn):
    """(classes, entries, source, ambiguous) of the BaS-Net folders layout."""
    gt = os.path.join(root, "gt.json")
    classes, table, ambiguous = read_annotations(gt, log)
    entries = []
    for split in ("train", "test"):
        list_path = os.path.join(root, f"split_{split}.txt")
        names = annotation_reader.read_video_list(list_path)
        if not names:
            raise InputError(f"{list_path}: no video listed")
        if not os.path.isdir(os.path.join(root, "features", split)):
            raise InputError(f"{os.path.join(root, 'features', split)}: folder not found "
                             f"(expected {split}/rgb/<video>.npy and {split}/flow/<video>.npy, "
                             f"or {split}/<video>.npy)")
        for name in names:
            if name not in table:
                raise InputError(f"{list_path}: video {name} is not in {gt}")
            paths = folder_feature_paths(root, split, name)
            for p in paths:
                if not os.path.isfile(p):
                    raise InputError(f"{p}: file not found (video {name} of {list_path})")
            labels, segments, duration = table[name]
            entries.append(Entry(name, split, paths[0],
                                 functools.partial(_read_folder_video, paths, name),
                                 labels, segments, duration,
                                 functools.partial(_read_npy_streams, paths),
                                 paths if len(paths) == 2 else None))
    return classes, entries, gt, ambiguous


# ---------------------------------------------------------------------------
# Layout emmil (the released EM-MIL .pt files)
# ---------------------------------------------------------------------------

EMMIL_DIRS = ("X_RGB", "X_flow", "Y_flow", "Name_flow")


def _read_pt_streams(rgb_path, flow_path):
    return load_pt(rgb_path), load_pt(flow_path)


def _read_pt_video(rgb_path, flow_path, name, log):
    return join_streams(load_pt(rgb_path), load_pt(flow_path), rgb_path, flow_path, name, log)


def list_folder(folder):
    """os.listdir, or InputError naming the folder (permissions, not a folder)."""
    try:
        return os.listdir(folder)
    except OSError as e:
        raise InputError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def emmil_files(root, split):
    """{dir: [path of video i]} of one split; every dir must hold exactly 0.pt .. N-1.pt,
    N the number of files in X_RGB (a missing or an extra file is an error)."""
    folder = os.path.join(root, split, "X_RGB")
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: folder not found (the emmil layout has "
                         f"{{train,test}}/{{{','.join(EMMIL_DIRS)}}}/<i>.pt)")
    n = len(list_folder(folder))
    if n == 0:
        raise InputError(f"{folder}: no video")
    expected = {f"{i}.pt" for i in range(n)}
    files = {}
    for d in EMMIL_DIRS:
        where = os.path.join(root, split, d)
        found = set(list_folder(where)) if os.path.isdir(where) else set()
        extra = sorted(found - expected, key=lambda f: (len(f), f))
        if extra:
            raise InputError(f"{os.path.join(where, extra[0])}: unexpected file; videos are "
                             f"numbered 0.pt .. {n - 1}.pt in every folder (as in X_RGB)")
        files[d] = [os.path.join(where, f"{i}.pt") for i in range(n)]
        for p in files[d]:
            if not os.path.isfile(p):
                raise InputError(f"{p}: file not found (every video needs "
                                 f"{', '.join(EMMIL_DIRS)})")
    return files


def emmil_name(x, path):
    """The video name a Name_flow file holds (a str; torch's weights_only load refuses bytes)."""
    if not isinstance(x, str):
        raise InputError(f"{path}: expected the video name (a str), found {type(x).__name__}")
    return x


def emmil_label_indices(y, path, name, num_classes):
    """Multi-hot tensor (K,) -> class indices."""
    y = numeric_array(y, path, name, "label vector", kinds="fiub").astype(np.float64)
    if y.ndim == 2 and y.shape[0] == 1:
        y = y[0]
    if y.shape != (num_classes,):
        raise InputError(f"{path}: video {name}: label vector of shape {y.shape}, expected "
                         f"({num_classes},) for the {num_classes} classes of the annotations")
    if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        raise InputError(f"{path}: video {name}: label vector is not multi-hot (values in [0, 1])")
    return np.flatnonzero(y > 0.5).tolist()


def emmil_entries(root, annotations, classes=None, log=warn):
    """(classes, entries, source, ambiguous) of the released EM-MIL layout.

    classes: the class list the Y_flow label vectors index (None: the annotations' own)."""
    if annotations is None:
        annotations = os.path.join(root, "gt.json")
        if not os.path.isfile(annotations):
            raise InputError(f"{root}: the emmil layout needs --annotations (a gt.json or a "
                             f"W-TALC *-Annotations folder)")
    if not os.path.exists(annotations):
        raise InputError(f"{annotations}: annotations not found")
    found, table, ambiguous = read_annotations(annotations, log)
    if classes is None:
        classes = found
    elif list(found) != list(classes):
        adopted = adopt_classes([Entry(v, "", "", None, list(labels), list(segments))
                                 for v, (labels, segments, _) in table.items()],
                                found, classes, annotations)
        table = {e.name: (e.labels, e.segments, table[e.name][2]) for e in adopted}
    entries = []
    for split in ("train", "test"):
        files = emmil_files(root, split)
        for rgb, flow, y, name_path in zip(*(files[d] for d in EMMIL_DIRS)):
            name = check_video_name(emmil_name(load_pt(name_path), name_path), name_path)
            if name not in table:
                raise InputError(f"{name_path}: video {name} is not in {annotations}")
            labels = emmil_label_indices(load_pt(y), y, name, len(classes))
            _, segments, duration = table[name]
            entries.append(Entry(name, split, rgb,
                                 functools.partial(_read_pt_video, rgb, flow, name),
                                 labels, segments, duration,
                                 functools.partial(_read_pt_streams, rgb, flow), (rgb, flow)))
    return classes, entries, annotations, ambiguous


# ---------------------------------------------------------------------------
# Layout hdf5: our own single file
# ---------------------------------------------------------------------------

HDF5_SCHEMA = """\
HDF5 schema (format "emmil-features", version 1). Self-describing: no side files.

/                         file attributes
    format               str      "emmil-features" (required: other files are refused)
    version              int      1 (required, an integer)
    classes              (K,) str class names, index order
    snippet_seconds      float    seconds covered by one feature vector (0.64 for I3D at 25 fps)
    dataset              str      preset it was written for (thumos14, activitynet12, ...)
    source               str      where it was converted from (informative)
/notes                    (W,) str  warnings raised when the source was read (clipped segments,
                                    dropped videos, ...); issued again on every load
/ambiguous/video          (A,) str  THUMOS14 'Ambiguous' segments: video name
/ambiguous/segment        (A, 2) float64  start, end in seconds
/videos/<name>/           one group per video, in file order (track_order)
    attributes
        subset           str      "train" or "test"
        duration         float    seconds
        labels           (K,) float32  multi-hot video label
        segments         (S, 3) float64 rows [class_index, start_s, end_s]
        snippet_seconds  float    equal to the file's
    rgb                  (T, 1024) float32 or float16 dataset
    flow                 (T, 1024) float32 or float16 dataset (same T)
Every dataset is stored in the file itself: soft, external and virtual links are refused.
"""

HDF5_FORMAT = "emmil-features"


_H5_OPEN = {}   # (path, inode, mtime, pid) -> open h5py.File; one reader per file and process


def open_hdf5(path):
    """A read-only handle on path, opened once per process (and again if the file changed)."""
    try:
        st = os.stat(path)
    except OSError:
        raise InputError(f"{path}: file not found") from None
    key = (os.path.abspath(path), st.st_ino, st.st_mtime_ns, os.getpid())
    if key not in _H5_OPEN:
        close_hdf5(path)                        # an older version of the file
        try:
            _H5_OPEN[key] = h5py.File(path, "r")
        except Exception as e:              # OSError mostly; h5py raises others on odd files
            raise InputError(f"{path}: cannot read as HDF5 ({first_line(e)})") from None
    return _H5_OPEN[key]


def close_hdf5(path=None):
    """Close the cached handles of path (all when None), e.g. before writing to the file."""
    for key in [k for k in _H5_OPEN if path is None or k[0] == os.path.abspath(path)]:
        _H5_OPEN.pop(key).close()


def _h5_dataset(path, name, stream):
    """/videos/<name>/<stream> read whole; InputError naming it when it cannot be."""
    where = f"{path}:/videos/{name}/{stream}"
    try:
        return open_hdf5(path)["videos"][name][stream][()]
    except (OSError, MemoryError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise InputError(f"{where}: video {name}: cannot read ({type(e).__name__}: "
                         f"{first_line(e)})") from None


def _read_h5_streams(path, name):
    return _h5_dataset(path, name, "rgb"), _h5_dataset(path, name, "flow")


def _read_h5_video(path, name, log):
    return join_streams(_h5_dataset(path, name, "rgb"), _h5_dataset(path, name, "flow"),
                        f"{path}:/videos/{name}/rgb", f"{path}:/videos/{name}/flow", name, log)


def _h5_attr(obj, key, where):
    if key not in obj.attrs:
        raise InputError(f"{where}: attribute {key!r} missing ({HDF5_FORMAT} files are written "
                         f"by: python dataset.py convert)")
    try:
        return obj.attrs[key]
    except (OSError, TypeError, ValueError, KeyError) as e:   # a type h5py cannot read
        raise InputError(f"{where}: attribute {key!r} cannot be read ({first_line(e)})") from None


def _h5_text(obj, key, where):
    """A str attribute (h5py gives str, or bytes for fixed-length strings)."""
    x = _h5_attr(obj, key, where)
    if isinstance(x, bytes):
        try:
            return x.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: attribute {key!r} is not UTF-8 text") from None
    if not isinstance(x, str):
        raise InputError(f"{where}: attribute {key!r} is not a string")
    return x


def _h5_numbers(obj, key, where, ndim, kinds="fiu"):
    """A numeric attribute of ndim dimensions (0: a scalar) as a numpy array."""
    x = _h5_attr(obj, key, where)
    x = np.asarray(x) if isinstance(x, (int, float, np.generic, np.ndarray)) else None
    if x is None or x.dtype.kind not in kinds or x.ndim != ndim:
        what = "an integer" if kinds == "iu" else "a number"
        what = what if ndim == 0 else f"a {ndim}-d array of numbers"
        raise InputError(f"{where}: attribute {key!r} is not {what}")
    return x


def _h5_number(obj, key, where, positive=False):
    x = float(_h5_numbers(obj, key, where, 0))
    if not np.isfinite(x) or (positive and x <= 0):
        raise InputError(f"{where}: attribute {key!r} is {x}, expected a "
                         f"{'positive ' if positive else ''}finite number")
    return x


def _h5_strings(f, key, where):
    """A 1-d dataset of strings (key under f) as a list of str."""
    d = _h5_node(f, key, where, h5py.Dataset)
    if d.ndim != 1 or d.dtype.kind not in "OS" or h5py.check_string_dtype(d.dtype) is None:
        raise InputError(f"{where}/{key}: expected a 1-d dataset of strings")
    try:
        return [_as_str(x) for x in d[()]]
    except (UnicodeDecodeError, OSError, ValueError, TypeError) as e:
        raise InputError(f"{where}/{key}: cannot read ({first_line(e)})") from None


def _h5_node(group, key, where, kind):
    """group[key], a group or dataset stored in this file (no soft, external or virtual
    links: the file must not read other files)."""
    link = group.get(key, getlink=True)
    if link is None:
        what = "group" if kind is h5py.Group else "dataset"
        raise InputError(f"{where}: {what} {key!r} missing")
    if not isinstance(link, h5py.HardLink):
        raise InputError(f"{where}/{key}: a {type(link).__name__}; only data stored in the "
                         f"file itself is read")
    node = group[key]
    if not isinstance(node, kind):
        raise InputError(f"{where}/{key}: a {type(node).__name__.lower()}, expected a "
                         f"{kind.__name__.lower()}")
    if kind is h5py.Dataset and node.is_virtual:
        raise InputError(f"{where}/{key}: a virtual dataset; only data stored in the file "
                         f"itself is read")
    return node


def hdf5_info(path):
    """File-level facts of an HDF5 feature file: dict(classes, snippet_seconds, dataset).
    A file whose format is not ours, or of another version, is refused."""
    f = open_hdf5(path)
    fmt = _h5_text(f, "format", path)
    if fmt != HDF5_FORMAT:
        raise InputError(f"{path}: format {fmt[:40]!r} is not {HDF5_FORMAT!r} (write one with: "
                         f"python dataset.py convert)")
    version = _h5_numbers(f, "version", path, 0, kinds="iu")
    if int(version) != 1:
        raise InputError(f"{path}: {HDF5_FORMAT} version {int(version)} is not known to this "
                         f"reader (version 1)")
    classes = _h5_attr(f, "classes", path)
    if not (isinstance(classes, np.ndarray) and classes.ndim == 1 and len(classes)
            and all(isinstance(c, (str, bytes)) for c in classes)):
        raise InputError(f"{path}: attribute 'classes' is not a non-empty 1-d array of strings")
    try:
        classes = [_as_str(c) for c in classes]
    except UnicodeDecodeError:
        raise InputError(f"{path}: attribute 'classes' is not UTF-8 text") from None
    dataset = _h5_text(f, "dataset", path) if "dataset" in f.attrs else ""
    return {"classes": classes, "dataset": dataset,
            "snippet_seconds": _h5_number(f, "snippet_seconds", path, positive=True)}


def _h5_features(g, stream, where):
    """Check a video's stream dataset without reading it: (T, 1024) of numbers."""
    d = _h5_node(g, stream, where, h5py.Dataset)
    if d.ndim != 2 or d.shape[1] != STREAM_DIM or d.dtype.kind not in "fiu":
        raise InputError(f"{where}/{stream}: dataset of shape {d.shape} and type {d.dtype}, "
                         f"expected (T, {STREAM_DIM}) numbers")


def _h5_video(g, where, classes, rate):
    """(subset, label indices, segments, duration) of one /videos/<name> group."""
    subset = _h5_text(g, "subset", where)
    if subset not in ("train", "test"):
        raise InputError(f"{where}: subset {subset[:40]!r}, expected 'train' or 'test'")
    for d in ("rgb", "flow"):
        _h5_features(g, d, where)
    if not np.isclose(_h5_number(g, "snippet_seconds", where), rate):
        raise InputError(f"{where}: snippet_seconds differs from the file's ({rate})")
    labels = _h5_numbers(g, "labels", where, 1, kinds="fiub").astype(np.float64)
    if labels.shape != (len(classes),):
        raise InputError(f"{where}: labels of shape {labels.shape}, expected ({len(classes)},)")
    if not (np.isfinite(labels).all() and labels.min() >= 0 and labels.max() <= 1):
        raise InputError(f"{where}: labels are not multi-hot (values in [0, 1])")
    segments = _h5_numbers(g, "segments", where, 2).astype(np.float64)
    if segments.shape[1:] != (3,):
        raise InputError(f"{where}: segments of shape {segments.shape}, expected (S, 3) rows "
                         f"[class_index, start_s, end_s]")
    for c, s, e in segments:
        if not (np.isfinite(c) and c == int(c) and 0 <= c < len(classes)):
            raise InputError(f"{where}: segment class index {c:g} is not one of the "
                             f"{len(classes)} classes")
    return (subset, np.flatnonzero(labels > 0.5).tolist(),
            [(int(c), float(s), float(e)) for c, s, e in segments],
            _h5_number(g, "duration", where, positive=True))


def _h5_ambiguous(f, path):
    if "ambiguous" not in f:
        return []
    _h5_node(f, "ambiguous", path, h5py.Group)
    names = _h5_strings(f, "ambiguous/video", path)
    segs = _h5_node(f, "ambiguous/segment", path, h5py.Dataset)
    if segs.shape != (len(names), 2) or segs.dtype.kind not in "fiu":
        raise InputError(f"{path}/ambiguous/segment: shape {segs.shape} and type {segs.dtype}, "
                         f"expected ({len(names)}, 2) numbers")
    return [(check_video_name(n, f"{path}:/ambiguous/video"), float(s), float(e))
            for n, (s, e) in zip(names, segs[()])]


def hdf5_entries(path, log):
    """(classes, entries, source, ambiguous, snippet_seconds) of an HDF5 feature file."""
    try:
        return _hdf5_entries(path, log)
    except InputError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        # what h5py raises on a damaged file, beyond the checks above
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None


def _hdf5_entries(path, log):
    f = open_hdf5(path)
    info = hdf5_info(path)
    classes, rate = info["classes"], info["snippet_seconds"]
    videos = _h5_node(f, "videos", path, h5py.Group)
    for note in _h5_strings(f, "notes", path) if "notes" in f else []:
        log(note)
    ambiguous = _h5_ambiguous(f, path)
    entries = []
    for name in videos:
        name = check_video_name(name, f"{path}:/videos")
        where = f"{path}:/videos/{name}"
        g = _h5_node(videos, name, f"{path}:/videos", h5py.Group)
        subset, labels, segments, duration = _h5_video(g, where, classes, rate)
        entries.append(Entry(name, subset, where, functools.partial(_read_h5_video, path, name),
                             labels, segments, duration,
                             functools.partial(_read_h5_streams, path, name),
                             (f"{where}/rgb", f"{where}/flow")))
    return classes, entries, path, ambiguous, rate


def write_hdf5(path, classes, videos, snippet_seconds, *, fp16=False, dataset="", source="",
               ambiguous=(), notes=(), total=None, progress=True):
    """Write videos (an iterable of Video) as one HDF5 file (schema above), atomically:
    a temporary file in the same folder, renamed to `path` only when complete."""
    dtype = np.float16 if fp16 else np.float32
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".h5")
        os.close(fd)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    text = h5py.string_dtype()
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"format": HDF5_FORMAT, "version": 1, "snippet_seconds": snippet_seconds,
                            "dataset": dataset, "source": source})
            f.attrs["classes"] = np.array(list(classes), dtype=text)
            f.create_dataset("notes", data=np.array(list(notes), dtype=text))
            a = f.create_group("ambiguous")
            a.create_dataset("video", data=np.array([x[0] for x in ambiguous], dtype=text))
            a.create_dataset("segment", data=np.array([x[1:] for x in ambiguous],
                                                      dtype=np.float64).reshape(-1, 2))
            group = f.create_group("videos", track_order=True)
            for v in tqdm(videos, total=total, desc="hdf5", unit="video", disable=not progress):
                if "/" in v.name or v.name in (".", ""):
                    raise InputError(f"video {v.name!r}: name cannot be an HDF5 group name")
                g = group.create_group(v.name)
                g.attrs.update({"subset": v.split, "duration": float(v.duration),
                                "snippet_seconds": snippet_seconds})
                g.attrs["labels"] = v.labels.numpy().astype(np.float32)
                g.attrs["segments"] = np.array(v.segments, dtype=np.float64).reshape(-1, 3)
                for stream, x in zip(("rgb", "flow"), video_streams(v.features)):
                    with np.errstate(over="ignore"):
                        x = x.numpy().astype(dtype)             # (T, 1024)
                    if not np.isfinite(x).all():
                        raise InputError(f"video {v.name}: {stream} features exceed the "
                                         f"float16 range; convert without --fp16")
                    g.create_dataset(stream, data=x)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)           # mkstemp made it private
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):              # disk full, permissions, ...
            raise InputError(f"{path}: cannot write ({e})") from None
        raise


# ---------------------------------------------------------------------------
# Any layout
# ---------------------------------------------------------------------------

def detect_layout(root):
    """The layout of root by its files; 'wtalc' when nothing else is recognised."""
    if os.path.isfile(root):
        return "hdf5"
    if not os.path.isdir(root):
        return "wtalc"
    names = list_folder(root)
    if any(n.endswith("-Annotations") or n.endswith("-I3D-JOINTFeatures.npy") for n in names):
        return "wtalc"
    if any(os.path.isdir(os.path.join(root, s, "X_RGB")) for s in ("train", "test")):
        return "emmil"
    if {"gt.json", "split_train.txt", "features"} & set(names):
        return "folders"
    return "wtalc"


def load_dataset(root, bundle, train_subset, test_subset, layout="auto", annotations=None,
                 max_videos=None, *, snippet_seconds=None, memory="auto", classes=None, log=warn):
    """Load features and annotations from any layout (see the module docstring).

    bundle, train_subset, test_subset: the W-TALC bundle and its subsets (other layouts
    name their splits themselves). snippet_seconds: seconds per feature vector (None: the
    layout's own: the HDF5 file's, the released clips' 1.25 s for emmil, else I3D's
    0.64 s); it sets the duration of videos that have none. classes: the class list the
    labels are indexed by (names in index order; None: the annotations' own list).
    memory: 'auto' (W-TALC in RAM, others streamed), 'float32', 'float16' (RAM, half the
    size; SnippetDataset still hands out float32) or 'stream'. Warnings go to `log` once
    each and are kept in VideoSet.warnings.
    """
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise InputError(f"--layout {layout}: unknown (choose from auto, {', '.join(LAYOUTS)})")
    if memory not in MEMORY:
        raise InputError(f"memory={memory!r}: choose from {', '.join(MEMORY)}")
    if memory == "auto":
        memory = "float32" if layout == "wtalc" else "stream"
    if layout == "wtalc" and memory == "stream":
        raise InputError(f"{root}: the W-TALC bundle is one pickled array and cannot be "
                         f"streamed; convert it to HDF5 (python dataset.py convert)")
    said = []

    def note(message):
        if message not in said:
            said.append(message)
            log(message)

    try:
        found, entries, source, ambiguous, rate = read_layout(
            layout, root, bundle, train_subset, test_subset, annotations, snippet_seconds, note,
            classes)
        if classes is not None and list(found) != list(classes):
            entries = adopt_classes(entries, found, classes, source)
        data = assemble(entries, classes if classes is not None else found, source,
                        layout=layout, snippet_seconds=rate, memory=memory,
                        max_videos=max_videos, drop_empty=True, ambiguous=ambiguous, log=note)
    except BaseException:
        if layout == "hdf5":
            close_hdf5(root)                    # nothing will stream from it
        raise
    if layout == "hdf5" and memory != "stream":
        close_hdf5(root)                        # all in RAM: the file is not needed any more
    data.warnings = said
    return data


def layout_snippet_seconds(layout):
    """Seconds per snippet of a layout's features when nothing says otherwise (HDF5 files
    store theirs)."""
    return preset_snippet_seconds(*FEATURE_PRESETS[LAYOUT_FEATURES[layout]])


def read_layout(layout, root, bundle, train_subset, test_subset, annotations, snippet_seconds,
                log, classes=None):
    """(classes, entries, source, ambiguous, snippet_seconds) of a root in any layout."""
    if layout == "hdf5":
        found, entries, source, ambiguous, stored = hdf5_entries(root, log)
        if snippet_seconds is not None and not np.isclose(stored, float(snippet_seconds)):
            raise InputError(f"{root}: features are {stored:g} s per snippet (file attribute "
                             f"snippet_seconds) but {float(snippet_seconds):g} s was asked for")
        return found, entries, source, ambiguous, stored
    rate = layout_snippet_seconds(layout) if snippet_seconds is None else float(snippet_seconds)
    if layout == "wtalc":
        return (*wtalc_entries(root, bundle, train_subset, test_subset, log), rate)
    if layout == "folders":
        return (*folders_entries(root, log), rate)
    return (*emmil_entries(root, annotations, classes, log), rate)


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
        rgb, flow = video_streams(v.features)       # float32, read from disk when streamed
        return {
            "rgb": rgb,                             # (T, 1024)
            "flow": flow,                           # (T, 1024)
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


# ---------------------------------------------------------------------------
# Command line: summary and convert
# ---------------------------------------------------------------------------

def summarize(data, dataset):
    """The layout-independent description of a loaded VideoSet (plus its layout)."""
    splits = {}
    for split in ("train", "test"):
        videos = data.split(split)
        splits[split] = {"videos": len(videos),
                         "snippets": int(sum(v.num_snippets for v in videos)),
                         "segments": int(sum(len(v.segments) for v in videos))}
    return {"layout": data.layout, "dataset": dataset, "classes": list(data.classes),
            "snippets_per_second": 1.0 / data.snippet_seconds, "feature_dim": STREAM_DIM,
            "splits": splits, "warnings": list(data.warnings)}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser():
    p = _OneLineParser(prog="dataset.py", description="Describe or convert feature data.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("summary", "print what a data root holds, as JSON"),
                       ("convert", "write the data of any layout as one HDF5 file")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--data-root", required=True, help="folder (or HDF5 file) of the data")
        s.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS,
                       help="feature layout (default: detected)")
        s.add_argument("--dataset", default=None, choices=sorted(PRESETS),
                       help="preset: W-TALC bundle and subsets (default: the HDF5 file's, "
                            "else thumos14)")
        s.add_argument("--annotations", default=None,
                       help="ground truth of the emmil layout: gt.json or *-Annotations folder")
        s.add_argument("--features", default=None, choices=sorted(FEATURE_PRESETS),
                       help="feature rate preset (default: the HDF5 file's, else i3d)")
    convert = sub.choices["convert"]
    convert.epilog = HDF5_SCHEMA
    convert.formatter_class = argparse.RawDescriptionHelpFormatter
    convert.add_argument("--to", nargs=2, required=True, metavar=("FORMAT", "OUT"),
                         help="output format (hdf5) and file")
    convert.add_argument("--fp16", action="store_true", help="store features as float16")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def load_from_args(args):
    """(VideoSet, dataset name) for the data options of a command."""
    layout = detect_layout(args.data_root) if args.layout == "auto" else args.layout
    dataset = args.dataset
    if dataset is None and layout == "hdf5":
        try:
            stored = hdf5_info(args.data_root)["dataset"]
        except InputError:
            close_hdf5(args.data_root)
            raise
        dataset = stored if stored in PRESETS else None
    dataset = dataset or "thumos14"
    preset = PRESETS[dataset]
    rate = preset_snippet_seconds(*FEATURE_PRESETS[args.features]) if args.features else None
    # a preset named on the command line brings its canonical class list
    classes = read_class_list(preset["classes"]) if args.dataset else None
    data = load_dataset(args.data_root, preset["bundle"], preset["train_subset"],
                        preset["test_subset"], layout, args.annotations, snippet_seconds=rate,
                        classes=classes, log=lambda message: None)
    return data, dataset


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        fmt, out = args.to
        if fmt != "hdf5":
            raise InputError(f"--to {fmt}: unknown format (only hdf5)")
        if os.path.exists(out) and not args.overwrite:
            raise InputError(f"{out}: exists; choose another name or pass --overwrite")
    data, dataset = load_from_args(args)
    if args.command == "summary":
        print(json.dumps(summarize(data, dataset), indent=2))
        return 0
    for message in data.warnings:
        warn(message)
    write_hdf5(out, data.classes, data.videos, data.snippet_seconds, fp16=args.fp16,
               dataset=dataset, source=os.path.abspath(data.source), ambiguous=data.ambiguous,
               notes=data.warnings, total=len(data.videos))
    print(f"{out}: {len(data.videos)} videos, {len(data.classes)} classes "
          f"({'float16' if args.fp16 else 'float32'})")
    return 0


def cli(argv=None):
    try:
        return main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
