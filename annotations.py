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
  reader says how many (`ordered_segment`, the only place this is decided);
* a label is a non-empty string; a label missing from the class list is an error.
Every problem is an `InputError` with one line naming the file (and video).

Pickled .npy files are loaded by `load_npy`, which parses the header itself and unpickles
object arrays with `ArrayUnpickler`: it can build numpy arrays, dtypes and scalars (plus
str, bytes, numbers, lists, tuples, which need no global) and refuses anything else.
"""
import json
import math
import os
import pickle
import unicodedata
from dataclasses import dataclass, field

import numpy as np


class InputError(ValueError):
    """Bad user input (a file, an option): reported as one line, exit code 2."""


def one_line(text, limit=200):
    """text on one line (whitespace runs collapsed), cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------
# .npy files: pickled object arrays through a restricted unpickler
# ---------------------------------------------------------------------------

def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as Python 3 pickles bytes for protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _empty_bytes(*args):
    """`bytes()` as Python 3 pickles b'' for protocol 2 (nothing else)."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


_MULTIARRAY = np._core.multiarray
ALLOWED_GLOBALS = {
    # what the real W-TALC files (Python 2) and numpy 1.x / 2.x pickles of arrays ask for
    ("numpy.core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy.core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy._core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,      # bytes in a Python 3 protocol-2 pickle
    ("__builtin__", "bytes"): _empty_bytes,     # b'' in a Python 3 protocol-2 pickle
    ("builtins", "bytes"): _empty_bytes,
}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.what = f"{module}.{name}"


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays of plain values and nothing else (the C unpickler, so as fast
    as np.load; only the lookup of globals is ours)."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _read_header(f, path):
    """(shape, fortran_order, dtype) of an open .npy file, positioned after the header."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise InputError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported "
                     f"(1.0 or 2.0)")


def load_npy(path):
    """A .npy file as an array. Plain dtypes are read without pickle; object arrays (the
    W-TALC bundle) with `ArrayUnpickler` (Python-2 strings kept as bytes). InputError when
    the file is missing, damaged, or asks to build anything but arrays of plain values."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _read_header(f, path)
            if not dtype.hasobject:
                f.seek(0)
                return np.lib.format.read_array(f, allow_pickle=False)
            array = ArrayUnpickler(f, encoding="bytes", fix_imports=True).load()
    except InputError:
        raise
    except RefusedGlobal as e:
        raise InputError(f"{path}: refused to load: it asks to build {e.what} (only numpy "
                         f"arrays, dtypes, str, bytes, numbers, lists and tuples are allowed)"
                         ) from None
    except MemoryError:
        raise InputError(f"{path}: cannot read (too large to allocate)") from None
    except Exception as e:          # numpy and pickle raise many kinds for a damaged file
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {one_line(e)})") from None
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise InputError(f"{path}: cannot read (the pickle does not hold the {tuple(shape)} "
                         f"array its header announces)")
    return array


# ---------------------------------------------------------------------------
# Names and strings
# ---------------------------------------------------------------------------

def as_text(x, where, what="a string"):
    """A str from a str or UTF-8 bytes (numpy's too); InputError otherwise."""
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: {what} {one_line(repr(bytes(x)), 60)} is not UTF-8"
                             ) from None
    if isinstance(x, (str, np.str_)):
        return str(x)
    raise InputError(f"{where}: expected {what}, found {type(x).__name__}")


def _name_problem(name):
    if name == "":
        return "empty"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name in (".", ".."):
        return "is a relative folder name"
    for c in name:
        if c.isspace():
            return "contains whitespace"
        if unicodedata.category(c).startswith("C"):
            return "contains a control character"
    return None


def check_video_name(name, where):
    """The video name as a str, if it is a plain name (it becomes part of file paths and of
    output lines); InputError naming `where` and the video otherwise."""
    name = as_text(name, where, "video name")
    problem = _name_problem(name)
    if problem:
        raise InputError(f"{where}: video {one_line(repr(name), 80)}: the name {problem}; a "
                         f"video name must be a plain file name without whitespace")
    return name


def check_label(label, where, video):
    """A class label: a non-empty string (bytes decoded)."""
    if label is None or isinstance(label, (bool, int, float, list, dict)):
        raise InputError(f"{where}: video {video}: label {label!r} is not a class name")
    label = as_text(label, f"{where}: video {video}", "label")
    if not label.strip():
        raise InputError(f"{where}: video {video}: empty label")
    return label


def read_text(path):
    """A UTF-8 text file; InputError when missing, unreadable or not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_rows(path, n_fields, what):
    """[(line number, fields)] of the non-blank lines, each exactly `n_fields` fields."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise InputError(f"{path}: line {number}: expected {n_fields} fields ({what}), got "
                             f"{len(fields)}: {one_line(repr(line.strip()), 80)}")
        rows.append((number, fields))
    return rows


def read_video_list(path):
    """The video names of a split file, one a line (blank lines skipped), each checked."""
    return [check_video_name(fields[0], f"{path}: line {n}")
            for n, fields in read_rows(path, 1, "one video name")]


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


def swapped_warnings(where, segments, ambiguous_path=None, ambiguous=0):
    """The warnings of a reader that swapped segments (none when it swapped none)."""
    out = [f"{where}: {segments} ground-truth segments had start > end; start and end swapped"]
    out += [f"{ambiguous_path}: {ambiguous} ambiguous segments had start > end; start and end "
            f"swapped"]
    return [w for w, n in zip(out, (segments, ambiguous)) if n]


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
    """THUMOS14 'Ambiguous' segments ([(video, start, end)], how many were swapped);
    ([], 0) when the file is absent."""
    if not os.path.isfile(path):
        return [], 0
    out, swapped = [], 0
    for n, (video, *segment) in read_rows(path, 3, "video start end"):
        where = f"{path}: line {n}"
        video = check_video_name(video, where)
        s, e, flipped = ordered_segment(segment, where, video)
        swapped += flipped
        out.append((video, s, e))
    return out, swapped


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def read_json(path):
    """A JSON object (duplicate keys refused); InputError otherwise."""
    try:
        data = json.loads(read_text(path), object_pairs_hook=_no_duplicate_keys)
    except ValueError as e:
        raise InputError(f"{path}: malformed JSON ({one_line(e)})") from None
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
    database = read_json(path).get("database")
    if not isinstance(database, dict):
        raise InputError(f"{path}: no 'database' object")
    videos, swapped = {}, 0
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
            swapped += flipped
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
    videos, swapped = {}, 0
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
        swapped += sum(flipped for _, _, flipped in times)
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
        raise InputError(f"{folder}: no ground-truth files *_{suffix}.txt")
    segments_of, swapped = {}, 0
    for cls in classes:
        found = files.get(cls.lower(), [])
        if len(found) > 1:
            raise InputError(f"{folder}: duplicate ground-truth files for class {cls}: "
                             f"{', '.join(found)}")
        if not found:
            raise InputError(f"{folder}: class {cls} has no ground-truth file {cls}_{suffix}.txt")
        file = os.path.join(folder, found[0])
        for n, (video, *segment) in read_rows(file, 3, "video start end"):
            where = f"{file}: line {n}"
            video = check_video_name(video, where)
            s, e, flipped = ordered_segment(segment, where, video)
            swapped += flipped
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
