"""The one reader of annotation files, shared by training (dataset.py), run.py's evaluation
and `python evaluate.py`. Torch-free.

Sources (each read into one `Annotations`):
    gt.json                 ActivityNet style {"database": {video: {"subset", "duration"?,
                            "annotations": [{"segment": [start, end], "label"}]}}}
    *-Annotations/          the W-TALC arrays (videoname, subset, classlist, segments, labels,
                            labels_all, duration .npy), Python-2 pickles for the object ones
    official THUMOS14 folder  <Class>_<subset>.txt ("video start end"), detclasslist.txt
    Ambiguous_<subset>.txt  THUMOS14 "video start end" lines, beside any of the above

One set of rules for all of them:
* a video name is data (`check_video_name`): no path separator, no '.'/'..', no whitespace
  or control character, not empty, valid UTF-8;
* a segment is two finite numbers; one that ends before it starts is swapped, and the
  reader says how many and names the first (`ordered_segment`, the only place this is
  decided; `swapped_warnings`);
* a label is a non-empty string; a label missing from the class list is an error.
Every problem is an `InputError` with one line naming the file (and video). Pickled arrays
are loaded by core.safe_load.load_npy (a restricted unpickler: no file runs code).
"""
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError, one_line
from core.names import as_text, check_label, check_video_name
from core.safe_load import load_npy, read_rows, read_text


# ---------------------------------------------------------------------------
# Segments: the one rule
# ---------------------------------------------------------------------------

def _is_list(x):
    """A list, tuple or 1-D+ array (not a string, a dict or a 0-d array)."""
    if isinstance(x, np.ndarray):
        return x.ndim > 0
    return isinstance(x, (list, tuple))


def _number(x, where, video):
    """A finite float from a number or a numeric string."""
    try:
        if isinstance(x, (bytes, np.bytes_)):
            x = bytes(x).decode("ascii")
        if isinstance(x, (bool, np.bool_)) or x is None:
            raise ValueError
        value = float(x)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise InputError(f"{where}: video {video}: segment time {one_line(repr(x), 40)} is "
                         f"not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: video {video}: segment time {value} is not finite")
    return value


def ordered_segment(segment, where, video):
    """(start, end, swapped) of an annotated segment [start, end]: two finite numbers; one
    that ends before it starts is swapped (the caller counts them in one warning). The only
    place this rule is decided, for training and evaluation alike."""
    if not _is_list(segment) or len(segment) != 2:
        raise InputError(f"{where}: video {video}: segment {one_line(repr(segment), 60)} is not "
                         f"[start, end]")
    s, e = (_number(x, where, video) for x in segment)
    return (e, s, True) if e < s else (s, e, False)


def swap_note(video, segment, at=""):
    """One swapped segment as a warning names it: (video, 'start > end' as annotated, where in
    the source or '')."""
    s, e = (float(x) for x in segment)
    return video, f"{s!r} > {e!r}", at


def _swapped_line(where, what, swapped):
    video, times, at = swapped[0]
    return (f"{where}: {len(swapped)} {what} segments had start > end and were swapped, e.g. "
            f"video {video}{f' ({at})' if at else ''}: {times}")


def swapped_warnings(where, swapped, ambiguous_path=None, ambiguous=()):
    """The warnings of a reader that swapped segments (none when it swapped none).
    swapped, ambiguous: [swap_note] of the ground-truth and ambiguous segments, file order."""
    out = [_swapped_line(where, "ground-truth", swapped)] if swapped else []
    return out + ([_swapped_line(ambiguous_path, "ambiguous", ambiguous)] if ambiguous else [])


# ---------------------------------------------------------------------------
# The annotations of a source
# ---------------------------------------------------------------------------

@dataclass
class VideoAnnotation:
    subset: str                # as the source names it ('validation', 'test', ...)
    labels: list               # class names of the video label set, sorted
    segments: list             # [(class name, start_s, end_s)] as annotated, start <= end
    duration: float = None     # seconds, None when the source has none


@dataclass
class Annotations:
    source: str                # the file or folder read
    classes: list              # class names, index order
    videos: dict               # name -> VideoAnnotation, file order
    ambiguous: list = field(default_factory=list)   # [(video, start_s, end_s)] of the test subset
    warnings: list = field(default_factory=list)    # repairs made while reading, one line each
    class_ids: dict = None     # official class ids when the source has them (detclasslist)

    def subset(self, name):
        """Names of the videos of one subset, in file order."""
        return [v for v, a in self.videos.items() if a.subset == name]


def read_ambiguous(path):
    """THUMOS14 'Ambiguous' segments ([(video, start, end)], [swap_note] of those swapped);
    ([], []) when the file is absent."""
    if not os.path.isfile(path):
        return [], []
    return segment_rows(path, "")


def segment_rows(path, named):
    """The lines 'video start end' of one file, checked: [(video, start, end)] with start <=
    end, and the swap notes of the reversed ones (named: the file's name in a note, or "")."""
    rows, swapped = [], []
    for n, (video, *segment) in read_rows(path, 3, "video start end"):
        where = f"{path}: line {n}"
        video = check_video_name(video, where)
        s, e, flipped = ordered_segment(segment, where, video)
        if flipped:
            swapped.append(swap_note(video, (e, s), f"{named} line {n}".lstrip()))
        rows.append((video, s, e))
    return rows, swapped


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def read_json_object(path):
    """A JSON object (duplicate keys refused: a ground truth or results file); InputError
    otherwise (core.safe_load.read_json reads our own files, any JSON value)."""
    text = read_text(path)                # its own InputError (an InputError is a ValueError)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as e:
        raise InputError(f"{path}: malformed JSON ({one_line(e)})") from None
    except RecursionError:
        raise InputError(f"{path}: malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: malformed JSON: the top level is not an object")
    return data


def _duration(x, where, video):
    if x is None:
        return None
    try:
        if isinstance(x, (bool, str)):
            raise TypeError
        value = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{where}: video {video}: duration {one_line(repr(x), 40)} is not a "
                         f"number") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{where}: video {video}: duration {value} is not a positive number")
    return value


def read_gt_json(path):
    """An ActivityNet-style gt.json. Classes: the sorted labels of the whole file."""
    database = read_json_object(path).get("database")
    if not isinstance(database, dict):
        raise InputError(f"{path}: no 'database' object")
    videos, swapped = {}, []
    for key, info in database.items():
        video = check_video_name(key, path)
        if not isinstance(info, dict):
            raise InputError(f"{path}: video {video}: entry is not an object")
        subset = info.get("subset")
        if not isinstance(subset, str):
            raise InputError(f"{path}: video {video}: 'subset' missing or not a string")
        raw = info.get("annotations", [])
        if not isinstance(raw, list):
            raise InputError(f"{path}: video {video}: 'annotations' is not a list")
        segments = []
        for a in raw:
            if not isinstance(a, dict) or "segment" not in a or "label" not in a:
                raise InputError(f"{path}: video {video}: an annotation lacks 'segment' or "
                                 f"'label'")
            s, e, flipped = ordered_segment(a["segment"], path, video)
            if flipped:
                swapped.append(swap_note(video, (e, s)))
            segments.append((check_label(a["label"], path, video), s, e))
        videos[video] = VideoAnnotation(subset, sorted({c for c, _, _ in segments}), segments,
                                        _duration(info.get("duration"), path, video))
    classes = sorted({c for a in videos.values() for c in a.labels})
    amb_path = os.path.join(os.path.dirname(os.path.abspath(path)), "Ambiguous_test.txt")
    ambiguous, amb_swapped = read_ambiguous(amb_path)
    return Annotations(str(path), classes, videos, ambiguous,
                       swapped_warnings(path, swapped, amb_path, amb_swapped))


WTALC_ARRAYS = ("videoname", "subset", "classlist", "segments", "labels", "labels_all",
                "duration")
OPTIONAL = ("labels_all", "duration")     # default: the segments' labels; no duration


def _vector(array, path, n=None):
    """A 1-D array (of N entries when n is given); InputError otherwise."""
    if array.ndim != 1:
        raise InputError(f"{path}: an array of shape {array.shape}, expected one entry a "
                         f"video (N,)")
    if n is not None and len(array) != n:
        raise InputError(f"{path} has {len(array)} entries but videoname.npy has {n}; the "
                         f"annotation arrays must be index-aligned")
    return array


def _sequence(x, where, video, what):
    if not _is_list(x):
        raise InputError(f"{where}: video {video}: {what} is {one_line(repr(x), 40)}, expected a "
                         f"list")
    return list(x)


def read_wtalc(folder):
    """The W-TALC annotation arrays of a bundle (`*-Annotations` folder)."""
    path = {n: os.path.join(folder, n + ".npy") for n in WTALC_ARRAYS}
    names = _vector(load_npy(path["videoname"]), path["videoname"])
    n = len(names)
    a = {k: load_npy(path[k]) for k in WTALC_ARRAYS
         if k != "videoname" and (k not in OPTIONAL or os.path.isfile(path[k]))}
    for k in ("subset", "segments", "labels", "labels_all"):
        if k in a:
            _vector(a[k], path[k], n)
    durations = a.get("duration", np.full(n, np.nan))
    if durations.dtype.kind not in "fiu":
        raise InputError(f"{path['duration']}: durations of type {durations.dtype} are not "
                         f"numbers")
    if durations.shape not in ((n,), (n, 1)):
        if durations.ndim in (1, 2) and len(durations) != n:
            raise InputError(f"{path['duration']} has {len(durations)} entries but "
                             f"videoname.npy has {n}; the annotation arrays must be index-aligned")
        raise InputError(f"{path['duration']}: shape {durations.shape}, expected one duration "
                         f"a video, ({n},) or ({n}, 1)")
    classes = [check_label(c, path["classlist"], "-")
               for c in _vector(a["classlist"], path["classlist"])]
    if len(set(classes)) != len(classes):
        raise InputError(f"{path['classlist']}: a class is listed twice")
    known = set(classes)
    videos, swapped = {}, []
    for i, raw_name in enumerate(names):
        video = check_video_name(raw_name, path["videoname"])
        if video in videos:
            raise InputError(f"{path['videoname']}: video {video} is listed twice")
        subset = as_text(a["subset"][i], f"{path['subset']}: video {video}", "subset")
        segs = _sequence(a["segments"][i], path["segments"], video, "its segment list")
        labs = [check_label(c, path["labels"], video)
                for c in _sequence(a["labels"][i], path["labels"], video, "its label list")]
        tags = labs if "labels_all" not in a else [
            check_label(c, path["labels_all"], video)
            for c in _sequence(a["labels_all"][i], path["labels_all"], video, "its label set")]
        times = [ordered_segment(seg, path["segments"], video) for seg in segs]
        swapped += [swap_note(video, (e, s)) for s, e, flipped in times if flipped]
        if len(segs) != len(labs):
            raise InputError(f"{path['labels']}: video {video} has {len(segs)} segments but "
                             f"{len(labs)} segment labels")
        for where, found in ((path["labels"], labs), (path["labels_all"], tags)):
            for c in found:
                if c not in known:
                    raise InputError(f"{where}: video {video}: label {c!r} is not in "
                                     f"classlist.npy")
        segments = [(c, s, e) for c, (s, e, _) in zip(labs, times)]
        seconds = float(durations.reshape(n)[i])
        videos[video] = VideoAnnotation(subset, sorted(set(tags)), segments,
                                        None if "duration" not in a
                                        else _duration(seconds, path["duration"], video))
    amb_path = os.path.join(folder, "Ambiguous_test.txt")
    ambiguous, amb_swapped = read_ambiguous(amb_path)
    return Annotations(str(folder), classes, videos, ambiguous,
                       swapped_warnings(folder, swapped, amb_path, amb_swapped))


def read_official(folder, subset):
    """The official THUMOS14 annotation folder: <Class>_<suffix>.txt ('video start end' a
    line) per class, detclasslist.txt ('id Class') when present, Ambiguous_<suffix>.txt.
    subset 'train'/'validation' reads the *_val.txt files. Videos: those with a segment or an
    ambiguous segment, sorted; all of the subset `subset`."""
    suffix = {"train": "val", "training": "val", "validation": "val"}.get(subset, subset)
    files = {}                                   # lower-case class name -> files
    for name in sorted(os.listdir(folder)):
        if name.endswith(f"_{suffix}.txt"):
            files.setdefault(name[: -len(f"_{suffix}.txt")].lower(), []).append(name)
    listing = os.path.join(folder, "detclasslist.txt")
    if os.path.isfile(listing):
        rows = read_rows(listing, 2, "class_id ClassName")
        classes = [check_label(f[1], f"{listing}: line {n}", "-") for n, f in rows]
        ids = []
        for n, f in rows:
            if not f[0].isdigit():
                raise InputError(f"{listing}: line {n}: class id {f[0]!r} is not a number")
            ids.append(int(f[0]))
        for values, what in ((classes, "class name"), (ids, "class id")):
            if len(set(values)) != len(values):
                raise InputError(f"{listing}: duplicate {what} "
                                 f"{next(v for v in values if values.count(v) > 1)}")
        class_ids = dict(zip(classes, ids))
    else:
        classes = sorted(f[0][: -len(f"_{suffix}.txt")] for k, f in files.items()
                         if k != "ambiguous")
        class_ids = None
    if not classes:
        inside = sorted(n for n in os.listdir(folder) if n.endswith("-Annotations") or
                        n == "gt.json")
        hint = (f"; the annotations are probably {os.path.join(folder, inside[0])}"
                if inside else "")
        raise InputError(f"{folder}: no ground-truth files *_{suffix}.txt (expected a gt.json, a "
                         f"W-TALC *-Annotations folder or the official THUMOS14 folder){hint}")
    segments_of, swapped = {}, []
    for cls in classes:
        found = files.get(cls.lower(), [])
        if len(found) > 1:
            raise InputError(f"{folder}: duplicate ground-truth files for class {cls}: "
                             f"{', '.join(found)}")
        if not found:
            raise InputError(f"{folder}: class {cls} has no ground-truth file {cls}_{suffix}.txt")
        rows, notes = segment_rows(os.path.join(folder, found[0]), found[0])
        swapped += notes
        for video, s, e in rows:
            segments_of.setdefault(video, []).append((cls, s, e))
    amb_path = os.path.join(folder, f"Ambiguous_{suffix}.txt")
    ambiguous, amb_swapped = read_ambiguous(amb_path)
    names = sorted(set(segments_of) | {v for v, _, _ in ambiguous})
    videos = {v: VideoAnnotation(subset, sorted({c for c, _, _ in segments_of.get(v, [])}),
                                 segments_of.get(v, [])) for v in names}
    return Annotations(str(folder), classes, videos, ambiguous,
                       swapped_warnings(folder, swapped, amb_path, amb_swapped), class_ids)


def read_annotations(path, subset="test"):
    """The annotations of any source: a gt.json, a W-TALC *-Annotations folder (it holds
    videoname.npy), or an official THUMOS14 folder (its `subset` files)."""
    path = str(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "videoname.npy")):
            return read_wtalc(path)
        return read_official(path, subset)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    return read_gt_json(path)
