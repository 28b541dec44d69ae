"""One video's features: how a reader hands them over (`Entry`), how they are read from
.npy/.pt files, checked (shapes and widths, a number type, NaN/Inf, beyond float32: errors
naming the file) and held, in RAM or on disk (`LazyFeatures`). Every layout's reader
(layouts.py, hdf5_format.py) goes through these functions; dataset.py assembles the result.
"""
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import InputError, first_line, warn
from core.safe_load import load_torch_plain

STREAMS = ("rgb", "flow")   # a feature vector: the RGB stream's, then the flow stream's
STREAM_DIM = 1024
LISTED = 5          # names listed in a counting warning


def named(names):
    """The first LISTED names, comma-separated, and how many more."""
    shown = ", ".join(names[:LISTED])
    return shown + (f", ... ({len(names) - LISTED} more)" if len(names) > LISTED else "")


# ---------------------------------------------------------------------------
# Features in RAM or on disk
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


# ---------------------------------------------------------------------------
# What a layout reader hands over, and the checks of its features
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


# ---------------------------------------------------------------------------
# Reading .pt files (never unpickled)
# ---------------------------------------------------------------------------

def load_pt(path):
    """A feature .pt file (tensors, str and plain containers only; no code runs)."""
    return load_torch_plain(path, "cannot read: not a plain tensor/str file", "cannot read")
