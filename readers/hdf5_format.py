"""Our own feature file: one self-describing HDF5 file (schema in HDF5_SCHEMA), its reader
(`hdf5_entries`, the same Entry interface as layouts.py) and its writer (`write_hdf5`, used
by `python dataset.py convert`)."""
import functools
import os

import h5py
import numpy as np
from tqdm import tqdm

from readers.features import STREAM_DIM, Entry, join_streams, video_streams
from core.errors import InputError, first_line
from core.files import write_atomically
from core.names import as_text, check_video_name

HDF5_SCHEMA = """\
HDF5 schema (format "emmil-features", version 1). Self-describing: no side files.

/                         file attributes
    format               str      "emmil-features" (required: other files are refused)
    version              int      1 (required, an integer)
    classes              (K,) str class names, index order (K = 0: features without
                                  annotations, e.g. from extract.py)
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


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

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
    if not isinstance(x, (bytes, str)):
        raise InputError(f"{where}: attribute {key!r} is not a string")
    return as_text(x, where, f"attribute {key!r}")


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
        strings = d[()]
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"{where}/{key}: cannot read ({first_line(e)})") from None
    return [as_text(x, f"{where}/{key}") for x in strings]


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
    if not (isinstance(classes, np.ndarray) and classes.ndim == 1
            and all(isinstance(c, (str, bytes)) for c in classes)):
        raise InputError(f"{path}: attribute 'classes' is not a 1-d array of strings")
    classes = [as_text(c, path, "attribute 'classes'") for c in classes]
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
    if labels.size and not (np.isfinite(labels).all() and labels.min() >= 0
                            and labels.max() <= 1):
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


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def write_hdf5(path, classes, videos, snippet_seconds, *, fp16=False, dataset="", source="",
               ambiguous=(), notes=(), total=None, progress=True):
    """Write videos (an iterable of Video) as one HDF5 file (HDF5_SCHEMA), atomically:
    a temporary file in the same folder, renamed to `path` only when complete."""
    dtype = np.float16 if fp16 else np.float32
    text = h5py.string_dtype()

    def write(tmp):
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
                write_video(group, v, snippet_seconds, dtype)

    write_atomically(path, write)


def write_video(group, v, snippet_seconds, dtype):
    """One Video as the group /videos/<name> (HDF5_SCHEMA); features stored as dtype."""
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
