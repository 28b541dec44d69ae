"""The data model (Video, VideoSet), the checks every layout shares (`assemble`), the one
entry point `load_dataset`.

    data = load_dataset(root, bundle, train_subset, test_subset, layout="auto", ...)

Where the pieces live: features.py (one video's features: Entry, file reading, feature
checks, RAM or disk), layouts.py (the wtalc, folders and emmil readers, detect_layout),
hdf5_format.py (our single-file format, reader and writer), all in readers/; the `summary`
and `convert` commands at the end of this file (`python dataset.py summary|convert ...`).

Every layout goes through the same checks (`assemble`): each stream checked in its own file
(shapes and widths, a number type, NaN/Inf, beyond float32: errors; one empty stream beside a
non-empty one: an error), .npy/.pt files holding anything but a plain array/tensor refused
(never unpickled), RGB/flow of different lengths (cut to the shorter, warned), videos whose
features are empty or all zero (dropped, one warning counting them), segments outside the
video (clipped, one warning counting them), videos with an empty label set (kept, one
warning). Errors are `core.errors.InputError` with one line naming the file (and video) and
the problem.

Memory: the W-TALC bundle is one pickled array, read whole and kept without copies. The
other layouts stream by default: features are checked once, then read from disk on every
access (`memory="stream"`); `memory="float32"` or `"float16"` keeps them in RAM instead.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from readers.features import STREAM_DIM, keep_features, named, read_entry
from readers.hdf5_format import HDF5_SCHEMA, close_hdf5, hdf5_entries, hdf5_info, write_hdf5
from readers.layouts import (adopt_classes, detect_layout, emmil_entries, folders_entries,
                             wtalc_entries, wtalc_features, wtalc_paths)
from core.cli import OneLineParser, cli
from core.errors import InputError, warn
from core.safe_load import read_text

LAYOUTS = ("wtalc", "folders", "emmil", "hdf5")
MEMORY = ("auto", "float32", "float16", "stream")
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
# The data model
# ---------------------------------------------------------------------------

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
    layout: str                # one of LAYOUTS
    snippet_seconds: float     # seconds covered by one feature vector
    ambiguous: list = field(default_factory=list)  # [(video, start_s, end_s)] (THUMOS14 test)
    warnings: list = field(default_factory=list)   # what loading warned about, in order
    dropped: list = field(default_factory=list)    # [(name, split, segments as annotated)] of
                                                   # the videos dropped for empty features
    annotated: bool = True     # False: features without annotations (no label, no segment)
    features_file: str = None  # the W-TALC bundle's file read (I3D or UNT)

    def split(self, name):
        return [v for v in self.videos if v.split == name]


# ---------------------------------------------------------------------------
# Checks shared by every layout
# ---------------------------------------------------------------------------

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


def read_class_list(path):
    """Class names from a text file, one a line, index order (blank lines skipped)."""
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: no class listed")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{path}: classes listed twice: {named(twice)}")
    return names


def assemble(entries, classes, source, *, layout, snippet_seconds, memory="float32",
             max_videos=None, drop_empty=True, ambiguous=(), log=warn, annotated=True):
    """Run the shared checks over a reader's entries and build the VideoSet.

    max_videos: keep only the first n train and n test videos (for --dry-run).
    drop_empty: drop videos with empty or all-zero features (one warning); False raises.
    annotated: each split must keep a video, and videos without labels are warned about
    (False, features without annotations: at least one video in all, no such warning).
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
    if unlabeled and annotated:
        log(f"{len(unlabeled)} videos have an empty label set (EM training skips them): "
            f"{named(unlabeled)}")
    mismatch = snippet_rate_mismatch(lengths, snippet_seconds)
    if mismatch:
        log(mismatch)
    for split in ("train", "test"):
        if kept[split] == 0 and (annotated or not videos):
            raise InputError(f"{source}: no video of the {split} split is left")
    names = [v.name for v in videos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{source}: videos listed twice: {named(twice)}")
    return VideoSet(list(classes), videos, source, layout, snippet_seconds, list(ambiguous),
                    dropped=dropped)


def dropped_warning(dropped):
    """The one warning about videos dropped for empty features [(name, split, segments)]."""
    text = (f"{len(dropped)} videos with empty or all-zero features were dropped: "
            f"{named([name for name, _, _ in dropped])}")
    tests = [segments for _, split, segments in dropped if split == "test"]
    if tests:
        text += (f"; the {sum(map(len, tests))} segments of the {len(tests)} test videos among "
                 f"them stay in the evaluation ground truth and count as misses")
    return text


# ---------------------------------------------------------------------------
# Any layout
# ---------------------------------------------------------------------------

def layout_and_memory(root, layout, memory):
    """(layout, memory) with 'auto' resolved and checked: the W-TALC bundle is one pickled
    array, held in RAM; the other layouts stream by default."""
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
    return layout, memory


def load_dataset(root, bundle, train_subset, test_subset, layout="auto", annotations=None,
                 max_videos=None, *, snippet_seconds=None, layout_seconds=None, memory="auto",
                 classes=None, log=warn, unannotated=False, features=None):
    """Load features and annotations from any layout (layouts.py describes them).

    bundle, train_subset, test_subset: the W-TALC bundle and its subsets (other layouts
    name their splits themselves). snippet_seconds: seconds per feature vector (None: the
    layout's own: the HDF5 file's, else layout_seconds[layout], e.g.
    opts.layout_snippet_seconds(): I3D's 0.64 s, the released clips' 1.25 s for emmil);
    it sets the duration of videos that have none. classes: the class list the
    labels are indexed by (names in index order; None: the annotations' own list).
    memory: 'auto' (W-TALC in RAM, others streamed), 'float32', 'float16' (RAM, half the
    size; training/batches.py's SnippetDataset still hands out float32) or 'stream'.
    Warnings go to `log` once each and are kept in VideoSet.warnings. unannotated: features without annotations (a
    folders root without gt.json, an HDF5 file without classes: extract.py's output) are
    read, as videos without labels or segments, with one split or both (VideoSet.annotated
    False); otherwise they are refused. features: --features, which picks the W-TALC file
    (I3D or UNT; None: the one present), named by VideoSet.features_file.
    """
    layout, memory = layout_and_memory(root, layout, memory)
    said = []

    def note(message):
        if message not in said:
            said.append(message)
            log(message)

    try:
        found, entries, source, ambiguous, rate = read_layout(
            layout, root, bundle, train_subset, test_subset, annotations,
            snippet_seconds, layout_seconds, note, classes, unannotated, features)
        annotated, found = found is not None, found or []
        if not annotated and not unannotated:
            raise InputError(f"{source}: no class list: features without annotations (e.g. "
                             f"extract.py's); training and evaluation need annotations")
        if classes is not None and list(found) != list(classes):
            entries = adopt_classes(entries, found, classes, source)
        data = assemble(entries, classes if classes is not None else found, source,
                        layout=layout, snippet_seconds=rate, memory=memory,
                        max_videos=max_videos, drop_empty=True, ambiguous=ambiguous, log=note,
                        annotated=annotated)
        data.annotated = annotated
    except BaseException:
        if layout == "hdf5":
            close_hdf5(root)                    # nothing will stream from it
        raise
    if layout == "hdf5" and memory != "stream":
        close_hdf5(root)                        # all in RAM: the file is not needed any more
    data.warnings = said
    if layout == "wtalc":
        data.features_file = wtalc_paths(root, bundle, wtalc_features(root, bundle, features))[0]
    return data


def read_layout(layout, root, bundle, train_subset, test_subset, annotations, snippet_seconds,
                layout_seconds, log, classes=None, unannotated=False, features=None):
    """(classes, entries, source, ambiguous, snippet_seconds) of a root in any layout;
    classes None: features without annotations (an HDF5 file without classes, a folders
    root without gt.json when `unannotated`). features: see load_dataset."""
    if layout == "hdf5":
        found, entries, source, ambiguous, stored = hdf5_entries(root, log)
        found = found or None
        if snippet_seconds is not None and not np.isclose(stored, float(snippet_seconds)):
            raise InputError(f"{root}: features are {stored:g} s per snippet (file attribute "
                             f"snippet_seconds) but {float(snippet_seconds):g} s was asked for")
        return found, entries, source, ambiguous, stored
    if layout == "wtalc":
        kind = wtalc_features(root, bundle, features)          # i3d or unt: which file
        rate = layout_rate({"unt": "wtalc-unt"}.get(kind, layout), snippet_seconds,
                           layout_seconds)
        return (*wtalc_entries(root, bundle, train_subset, test_subset, log, kind), rate)
    rate = layout_rate(layout, snippet_seconds, layout_seconds)
    if layout == "folders":
        return (*folders_entries(root, log, unannotated), rate)
    return (*emmil_entries(root, annotations, classes, log), rate)


def layout_rate(layout, snippet_seconds, layout_seconds):
    """Seconds per snippet of a folder layout: the one asked for, else the layout's own
    (layout_seconds, {layout: seconds}, handed in by the options layer)."""
    if snippet_seconds is not None:
        return float(snippet_seconds)
    if not layout_seconds or layout not in layout_seconds:
        raise ValueError(f"load_dataset: no snippet length for the {layout} layout: pass "
                         f"snippet_seconds or layout_seconds (opts.layout_snippet_seconds())")
    return layout_seconds[layout]


# ------------------------------------------------------------------- the command
# python dataset.py summary --data-root DIR [--layout L] [--dataset D] [--annotations A]
# python dataset.py convert --data-root DIR --to hdf5 OUT.h5 [--fp16]
# A command line, so it reads the presets of the options layer (opts.py) and hands their
# values to load_dataset. Only the command imports opts.py (when it runs): the data layer
# above never does.

def options_layer():
    import opts
    return opts


def summarize(data, dataset):
    """The layout-independent description of a loaded VideoSet (plus its layout)."""
    splits = {}
    for split in ("train", "test"):
        videos = data.split(split)
        splits[split] = {"videos": len(videos),
                         "snippets": int(sum(v.num_snippets for v in videos)),
                         "segments": int(sum(len(v.segments) for v in videos))}
    return {"layout": data.layout, "dataset": dataset, "annotated": data.annotated,
            "classes": list(data.classes),
            "snippets_per_second": 1.0 / data.snippet_seconds, "feature_dim": STREAM_DIM,
            "splits": splits, "warnings": list(data.warnings),
            **({"features_file": data.features_file} if data.layout == "wtalc" else {})}


def build_command_parser():
    o = options_layer()
    p = OneLineParser(prog="dataset.py", description="Describe or convert feature data.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("summary", "print what a data root holds, as JSON"),
                       ("convert", "write the data of any layout as one HDF5 file")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--data-root", required=True, help="folder (or HDF5 file) of the data")
        s.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS,
                       help="feature layout (default: detected)")
        s.add_argument("--dataset", default=None, choices=sorted(o.PRESETS),
                       help="preset: W-TALC bundle and subsets (default: the HDF5 file's, "
                            "else thumos14)")
        s.add_argument("--annotations", default=None,
                       help="ground truth of the emmil layout: gt.json or *-Annotations folder")
        s.add_argument("--features", default=None, choices=sorted(o.FEATURE_PRESETS),
                       help="feature rate preset and W-TALC file (default: the HDF5 file's, "
                            "else the W-TALC file present (I3D or UNT), else i3d)")
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
    o = options_layer()
    layout = detect_layout(args.data_root) if args.layout == "auto" else args.layout
    dataset = args.dataset
    if dataset is None and layout == "hdf5":
        try:
            stored = hdf5_info(args.data_root)["dataset"]
        except InputError:
            close_hdf5(args.data_root)
            raise
        dataset = stored if stored in o.PRESETS else None
    dataset = dataset or "thumos14"
    preset = o.PRESETS[dataset]
    rate = o.snippet_seconds(*o.FEATURE_PRESETS[args.features]) if args.features else None
    # a preset named on the command line brings its canonical class list
    classes = read_class_list(preset["classes"]) if args.dataset else None
    data = load_dataset(args.data_root, preset["bundle"], preset["train_subset"],
                        preset["test_subset"], layout, args.annotations, snippet_seconds=rate,
                        layout_seconds=o.layout_snippet_seconds(), classes=classes,
                        log=lambda message: None, unannotated=True, features=args.features)
    return data, dataset


def main(argv=None):
    args = build_command_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(cli(main))
