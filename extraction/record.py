"""extraction.json: what an extraction did and how, beside the features it wrote.

    {"format": "emmil-extraction", "version": 1,
     "options":  {"streams", "convention": {fps, chunk, resize, crop, values, flow and its
                  parameters, the feature}, "weights": {stream: {sha256, git_blob, piergiaj}
                  or {random_init_seed}}},      <- an extraction is its options: a rerun must
                                                   have the same ones (else --overwrite)
     "comparable": "approximate" | "no" | "meaningless", "reasons": [...], "note": "...",
     "versions": {python, torch, numpy, av, ffmpeg, opencv},
     "videos":   {name: {split, source, source_size, source_mtime, snippets, frames,
                         seconds, rotation, finished, node (the Ray node, on Ray),
                         machine: {device, name, torch, ...}, tf32, ...}},  <- per video
     "left_out": {name: {source, source_size, source_mtime, reason}}}  <- shorter than a chunk
(an earlier version's record lacks source_size and source_mtime: filled on the next run)
"""
import os
import platform
import time

import av
import cv2
import numpy as np
import torch

from extraction.video_features import CHUNK
from extraction.flow import FLOW_BOUND, flow_params
from extraction.frames import CROP, FPS, SHORT_SIDE
from extraction.i3d import PIERGIAJ_FILES
from core.errors import InputError
from core.files import atomic_write_json
from core.names import check_video_name
from core.safe_load import read_json
from utils import device_record

RECORD = "extraction.json"
TVL1_METHODS = ("tvl1", "tvl1-torch")
FORMAT, VERSION = "emmil-extraction", 1
COMPARABLE_NOTE = (
    "approximate at best: the published THUMOS14 / ActivityNet1.2 features (W-TALC) were made "
    "with other decoders, resizers and TV-L1 code, and flow stored as 8-bit images; features "
    "re-extracted here shift mAP against the published ones and must never be mixed with "
    "them in one run")


def convention(streams, flow_method):
    """The convention the features follow, every number that defines them."""
    out = {"fps": FPS, "resample": "nearest decoded frame by timestamp",
           "chunk_frames": CHUNK, "last_partial_chunk": "dropped",
           "resize": {"short_side": SHORT_SIDE, "interpolation": "bilinear (OpenCV)"},
           "crop": {"size": CROP, "where": "centre"},
           "rgb_values": [-1.0, 1.0],
           "feature": "Inception-I3D Mixed_5c averaged over time and space (1024 per chunk)",
           "snippet_seconds": CHUNK / FPS}
    if "flow" in streams:
        out["flow"] = {"method": flow_method, "params": flow_params(flow_method),
                       "on": "grey frames after the resize, then cut to the crop",
                       "clip_pixels": FLOW_BOUND, "values": [-1.0, 1.0],
                       "last_field_of_a_video": "repeats the one before"}
    return out


def versions():
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "av": av.__version__,
            "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "opencv": cv2.__version__}


def comparability(streams, flow_method, weights):
    """(comparable, reasons): 'meaningless' for random weights, 'approximate' for TV-L1 with
    piergiaj's weights in every stream (the rest of the convention is fixed in the code),
    'no' otherwise, with the reasons. TV-L1 is OpenCV's or tvl1-torch: their fields differ
    by no more than OpenCV's differ from themselves when the input changes by one part in a
    million (bench/tvl1_agreement.py), and the features by a cosine of 1.000000."""
    if any("random_init_seed" in w for w in weights.values()):
        return "meaningless", ["--random-init: random weights (for tests only)"]
    reasons = []
    if "flow" in streams and flow_method not in TVL1_METHODS:
        reasons.append(f"flow by {flow_method}, not TV-L1")
    for stream in streams:
        if weights[stream].get("piergiaj") != PIERGIAJ_FILES[stream]:
            reasons.append(f"the {stream} weights (sha256 {weights[stream]['sha256'][:12]}...) "
                           f"are not piergiaj's {PIERGIAJ_FILES[stream]}")
    return ("no", reasons) if reasons else ("approximate", [])


def new_record(streams, flow_method, weights):
    """The record of an extraction with these options, before any video."""
    comparable, reasons = comparability(streams, flow_method, weights)
    return {"format": FORMAT, "version": VERSION,
            "options": {"streams": list(streams),
                        "convention": convention(streams, flow_method),
                        "weights": weights},
            "comparable": comparable, "reasons": reasons, "note": COMPARABLE_NOTE,
            "versions": versions(), "videos": {}, "left_out": {}}


def read_record(folder):
    """The extraction record in folder (None when there is none); InputError when it is
    not one."""
    path = os.path.join(folder, RECORD)
    if not os.path.lexists(path):
        return None
    record = read_json(path, "extraction record")
    if not (isinstance(record, dict) and record.get("format") == FORMAT
            and record.get("version") == VERSION and isinstance(record.get("options"), dict)
            and isinstance(record.get("videos"), dict)
            and isinstance(record.get("left_out"), dict)):
        raise InputError(f"{path}: not an extraction record of this version of extract.py "
                         f"({FORMAT} {VERSION})")
    for part, needs in (("videos", ("split", "snippets")), ("left_out", ())):
        for name, entry in record[part].items():
            if not _entry_ok(name, entry, needs):
                raise InputError(f"{path}: {part} entry {str(name)[:60]!r} is malformed "
                                 f"({str(entry)[:60]!r}); fix or remove it, or pass "
                                 f"--overwrite to start over")
    return record


def _entry_ok(name, entry, needs):
    """Whether a record's entry for a video is one: a plain name, a dict with a source path
    and the fields `needs`, of the right types."""
    try:
        check_video_name(name, "")
    except InputError:
        return False
    if not (isinstance(entry, dict) and isinstance(entry.get("source"), str)
            and all(k in entry for k in needs)):
        return False
    return ((entry.get("split", "test") in ("train", "test"))
            and type(entry.get("snippets", 0)) is int and entry.get("snippets", 0) >= 0
            and all(type(entry.get(k, 0)) in (int, float)
                    for k in ("source_size", "source_mtime")))


def differences(old, new):
    """The options two records differ in, as short phrases ([] when the same)."""
    said = []
    a, b = old["options"], new["options"]
    if a.get("streams") != b["streams"]:
        said.append(f"streams {','.join(a.get('streams') or [])} against {','.join(b['streams'])}")
    for key in sorted(set(a.get("convention") or {}) | set(b["convention"])):
        if (a.get("convention") or {}).get(key) != b["convention"].get(key):
            said.append(f"{key} differs")
    for stream in b["weights"]:
        if (a.get("weights") or {}).get(stream) != b["weights"][stream]:
            said.append(f"other {stream} weights")
    return said


def finished(record, name, split, source, snippets, frames, **about):
    """Record a video as done (its feature files written); about: more of it (source_size,
    source_mtime, rotation, ...)."""
    record["videos"][name] = {"split": split, "source": source, "snippets": snippets,
                              "frames": frames, "seconds": round(frames / FPS, 4), **about,
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record["left_out"].pop(name, None)


# ----------------------------------------------------------------------------- precision

def uses_tf32(device_type):
    """Whether I3D's convolutions run in TF32 on this device type (CUDA with cuDNN's TF32,
    torch's default there); on the CPU they are float32."""
    return device_type == "cuda" and bool(torch.backends.cudnn.allow_tf32)


def machine_record(device):
    """What extraction.json records of the device that extracted a video."""
    return {"machine": device_record(device), "tf32": uses_tf32(torch.device(device).type)}


def check_precision(record, tf32, out):
    """GPU-TF32 and CPU-float32 features differ beyond rounding noise: an extraction holds
    one kind. InputError naming another --out when the videos recorded (those that say)
    were made the other way."""
    other = [n for n, v in record["videos"].items() if v.get("tf32", tf32) != tf32]
    if other:
        made = "float32 (CPU)" if tf32 else "TF32 convolutions (GPU)"
        now = "TF32 (GPU)" if tf32 else "float32 (CPU)"
        raise InputError(f"{os.path.join(out, RECORD)}: its videos ({other[0]}, ...) were "
                         f"extracted in {made}, these would be in {now}: never mixed in one "
                         f"extraction; choose another --out, or the same --device")


def left_out(record, name, source, reason, **about):
    record["left_out"][name] = {"source": source, **about, "reason": reason}


def write_record(folder, record):
    atomic_write_json(os.path.join(folder, RECORD), record)
