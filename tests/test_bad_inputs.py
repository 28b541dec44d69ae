"""Malformed inputs, one table: each row builds tiny valid data (the writers of test_layouts),
breaks one thing, runs the real commands and asserts exit code 2, exactly one error line on
stderr naming the file (and video) at fault, no traceback, no crafted pickle ever unpickled,
and for run.py a pre-filled output folder left byte for byte unchanged.

To add a case, add a row to CASES: (id, build, commands, expected substrings).
  build(tmp) writes the inputs under the pytest tmp folder and returns a dict:
      root  the --data-root of `run` and `summary`
      args  extra arguments for them (options, --annotations, ...), optional
      pred, gt  the prediction file and --gt of `evaluate`
  commands: a tuple of "run" (python run.py --dataset thumos14 --data-root ROOT
      --output-dir OUT --overwrite --dry-run ...), "summary" (python dataset.py summary
      --data-root ROOT ...) and "evaluate" (python evaluate.py PRED --gt GT).
  expected: substrings the error line must contain (the file, the video, the problem).

The second half (below the banner): bad options, output folders, --resume inputs, links in
the output folder and --overwrite over an earlier run.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import dataset
import detect
import evaluate
import run
from model import EMMIL
from pipeline import outputs, run_folder
from pipeline.run_files import RunFolder
from readers.layouts import wtalc_paths
from core.cli import cli
from test_layouts import (gt_json, tiny_videos, write_emmil, write_folders, write_hdf5_by_hand,
                          write_wtalc)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "UNPICKLED"        # a crafted pickle that runs would create this file in tmp


class Crafted:
    """Unpickling it opens (creates) the marker file: code run by a loaded file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------
# Putting a bad value in place
# ---------------------------------------------------------------------------

def put(path, value):
    """Replace the file at path: bytes as they are, a callable does it itself, otherwise
    torch.save for .pt and np.save (pickles allowed) for .npy."""
    if callable(value):
        value(path)
    elif isinstance(value, bytes):
        with open(path, "wb") as f:
            f.write(value)
    elif path.endswith(".pt"):
        torch.save(value, path)
    else:
        np.save(path, value, allow_pickle=True)


def truncated(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def huge_npy_header(path):
    """A valid .npy header announcing 4 PiB of float32, and almost no data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 40, 1024)})
        f.write(b"\0" * 64)


def npz(path):
    with open(path, "wb") as f:
        np.savez(f, x=np.ones((4, 1024), np.float32))


def crafted_pickle_npy(path):
    arr = np.empty(1, dtype=object)
    arr[0] = Crafted(os.path.join(os.path.dirname(path), MARKER))
    np.save(path, arr, allow_pickle=True)


def crafted_pickle_pt(path):
    torch.save(Crafted(os.path.join(os.path.dirname(path), MARKER)), path)


def feats(T=4, width=1024, dtype=np.float32, at=None, value=None):
    x = np.ones((T, width), dtype)
    if at is not None:
        x[at] = value
    return x


# ---------------------------------------------------------------------------
# Builders: one valid layout, one thing broken
# ---------------------------------------------------------------------------

def folders(stream, value, name="video_test_1", split="test"):
    """The folders layout with rgb/ or flow/ <name>.npy replaced ('' : the joint layout)."""
    def build(tmp):
        root = write_folders(str(tmp / "folders"), tiny_videos(), joint=stream == "")
        put(os.path.join(root, "features", split, stream, name + ".npy"), value)
        return {"root": root}
    return build


def emmil(folder, value, index=0, split="test"):
    """The emmil layout with <split>/<folder>/<index>.pt replaced (video_test_1 is test 0)."""
    def build(tmp):
        root = write_emmil(str(tmp / "emmil"), tiny_videos())
        os.makedirs(os.path.join(root, split, folder), exist_ok=True)
        put(os.path.join(root, split, folder, f"{index}.pt"), value)
        return {"root": root}
    return build


def hdf5(change):
    """The HDF5 file, changed by change(h5py.File) (opened for appending)."""
    def build(tmp):
        path = write_hdf5_by_hand(str(tmp / "tiny.h5"), tiny_videos())
        with h5py.File(path, "a") as f:
            change(f)
        return {"root": path}
    return build


def video_attr(key, value, video="video_test_1"):
    return lambda f: f[f"videos/{video}"].attrs.__setitem__(key, value)


def replace_dataset(stream, video="video_test_1", **kw):
    def change(f):
        g = f[f"videos/{video}"]
        del g[stream]
        g.create_dataset(stream, **kw)
    return change


def replace_link(stream, link, video="video_test_1"):
    def change(f):
        g = f[f"videos/{video}"]
        del g[stream]
        g[stream] = link
    return change


def rgb_is_a_group(f):
    g = f["videos/video_test_1"]
    del g["rgb"]
    g.create_group("rgb").create_dataset("x", data=feats())


def external_rgb(f):
    other = os.path.join(os.path.dirname(f.filename), "other.h5")
    with h5py.File(other, "w") as o:
        o.create_dataset("x", data=feats())
    replace_link("rgb", h5py.ExternalLink(other, "/x"))(f)


def video_is_a_dataset(f):
    del f["videos/video_test_2"]
    f["videos"].create_dataset("video_test_2", data=feats())


def videos_is_a_dataset(f):
    del f["videos"]
    f.create_dataset("videos", data=np.ones(3))


def not_hdf5(tmp):
    (tmp / "x.h5").write_text("hello")
    return {"root": str(tmp / "x.h5"), "args": ["--layout", "hdf5"]}


def ambiguous(names, segments):
    def change(f):
        g = f.create_group("ambiguous")
        g.create_dataset("video", data=names, dtype=h5py.string_dtype()
                         if names.dtype == object else names.dtype)
        if segments is not None:
            g.create_dataset("segment", data=segments)
    return change


def with_args(build, args):
    def built(tmp):
        return {**build(tmp), "args": args}
    return built


def folders_with_args(stream, value, args):
    return with_args(folders(stream, value), args)


def emmil_with_args(folder, value, args):
    return with_args(emmil(folder, value), args)


def wtalc(index, value):
    """The W-TALC bundle with video `index`'s features replaced (video_test_1 is 3)."""
    def build(tmp):
        videos = tiny_videos()
        videos[index]["feats"] = value
        return {"root": write_wtalc(tmp / "wtalc", videos)}
    return build


def wtalc_bundle(value):
    """The W-TALC bundle with its whole features file replaced."""
    def build(tmp):
        root = write_wtalc(tmp / "wtalc", tiny_videos())
        put(wtalc_paths(root, "Thumos14reduced")[0], value)
        return {"root": root}
    return build


def no_training_label(layout):
    """A bundle in which no training video has a label (the test videos keep theirs)."""
    def build(tmp):
        videos = tiny_videos()
        for v in videos:
            if v["split"] == "train":
                v["labels"], v["segments"] = [], []
        if layout == "wtalc":
            return {"root": write_wtalc(tmp / "wtalc", videos)}
        return {"root": write_folders(str(tmp / "folders"), videos)}
    return build


def predictions(content, suffix=".json"):
    """evaluate.py: a valid gt.json and a prediction file holding `content` (an object is
    written as JSON, str as UTF-8 text, bytes as they are)."""
    def build(tmp):
        gt = tmp / "gt.json"
        gt.write_text(json.dumps(gt_json(tiny_videos())))
        pred = tmp / f"results{suffix}"
        if isinstance(content, bytes):
            pred.write_bytes(content)
        elif isinstance(content, str):
            pred.write_text(content)
        else:
            pred.write_text(json.dumps(content))
        return {"pred": str(pred), "gt": str(gt)}
    return build


def pred_folder(tmp):
    inputs = predictions({})(tmp)
    os.remove(inputs["pred"])
    os.mkdir(inputs["pred"])
    return inputs


GOOD = {"label": "Shotput", "segment": [1.0, 2.0], "score": 0.9}


def results(bad, video="video_test_1"):
    """ActivityNet results with one good prediction and then `bad` in video's list."""
    return {"results": {"video_test_2": [GOOD], video: [GOOD, bad]}}


def nested(depth):
    return "[" * depth + "]" * depth


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

FEATURES = ("run", "summary")
EVALUATE = ("evaluate",)
nan_at = dict(at=(1, 2), value=np.nan)

CASES = [
    # --- folders layout: features/{train,test}/{rgb,flow}/<video>.npy
    ("folders-nan-in-flow", folders("flow", feats(**nan_at)), FEATURES,
     ["flow/video_test_1.npy", "video video_test_1", "NaN"]),
    ("folders-inf-in-rgb", folders("rgb", feats(at=(0, 0), value=np.inf)), FEATURES,
     ["rgb/video_test_1.npy", "video video_test_1", "NaN or Inf"]),
    ("folders-wrong-width", folders("rgb", feats(width=1000)), FEATURES,
     ["rgb/video_test_1.npy", "video video_test_1", "(4, 1000)"]),
    ("folders-1d", folders("flow", np.ones(4096, np.float32)), FEATURES,
     ["flow/video_test_1.npy", "video video_test_1", "shape (4096,)"]),
    ("folders-3d", folders("rgb", np.ones((4, 2, 1024), np.float32)), FEATURES,
     ["rgb/video_test_1.npy", "(4, 2, 1024)"]),
    ("folders-empty-flow", folders("flow", feats(T=0)), FEATURES,
     ["flow/video_test_1.npy", "video video_test_1", "flow features are empty"]),
    ("folders-strings", folders("rgb", np.full((4, 1024), "a")), FEATURES,
     ["rgb/video_test_1.npy", "video video_test_1", "not numbers"]),
    ("folders-complex", folders("flow", feats(dtype=np.complex64)), FEATURES,
     ["flow/video_test_1.npy", "complex64", "not numbers"]),
    ("folders-bool", folders("rgb", feats(dtype=bool)), FEATURES,
     ["rgb/video_test_1.npy", "bool", "not numbers"]),
    ("folders-float64-beyond-float32", folders("flow", feats(dtype=np.float64, at=(2, 2),
                                                             value=1e300)), FEATURES,
     ["flow/video_test_1.npy", "video video_test_1", "float32 range"]),
    ("folders-pickled-npy", folders("rgb", np.array([np.ones(3), "x"], dtype=object)), FEATURES,
     ["rgb/video_test_1.npy", "pickled"]),
    ("folders-crafted-pickle", folders("flow", crafted_pickle_npy), FEATURES,
     ["flow/video_test_1.npy", "pickled"]),
    ("folders-truncated", folders("flow", truncated), FEATURES,
     ["flow/video_test_1.npy", "cannot read"]),
    ("folders-not-npy", folders("rgb", b"hello, not an array\n"), FEATURES,
     ["rgb/video_test_1.npy", "cannot read"]),
    ("folders-npz-as-npy", folders("rgb", npz), FEATURES,
     ["rgb/video_test_1.npy", "not a single .npy array"]),
    ("folders-too-large", folders("rgb", huge_npy_header), FEATURES,
     ["rgb/video_test_1.npy", "cannot read"]),
    ("folders-train-video", folders("rgb", feats(**nan_at), name="video_validation_1",
                                    split="train"), FEATURES,
     ["train/rgb/video_validation_1.npy", "video video_validation_1", "NaN"]),
    ("folders-float16-overflow-in-flow", folders_with_args(
        "flow", feats(at=(1, 1), value=7e4), ["--memory", "float16"]), FEATURES[:1],
     ["flow/video_test_1.npy", "video video_test_1", "flow features exceed the float16 range"]),
    ("folders-joint-3d", folders("", np.ones((4, 2, 1024), np.float32)), FEATURES,
     ["test/video_test_1.npy", "video video_test_1", "(4, 2, 1024)"]),
    ("folders-joint-pickled", folders("", np.array([1, "a"], dtype=object)), FEATURES,
     ["test/video_test_1.npy", "pickled"]),
    ("folders-joint-strings", folders("", np.full((4, 2048), "a")), FEATURES,
     ["test/video_test_1.npy", "not numbers"]),

    # --- emmil layout: {train,test}/{X_RGB,X_flow,Y_flow,Name_flow}/<i>.pt
    ("emmil-nan-in-flow", emmil("X_flow", torch.from_numpy(feats(**nan_at))), FEATURES,
     ["test/X_flow/0.pt", "video video_test_1", "NaN"]),
    ("emmil-extra-Y_flow", emmil("Y_flow", torch.ones(3), index=9), FEATURES,
     ["test/Y_flow/9.pt", "unexpected file"]),
    ("emmil-extra-Name_flow", emmil("Name_flow", "video_test_9", index=2), FEATURES,
     ["test/Name_flow/2.pt", "unexpected file"]),
    ("emmil-numpy-in-pt", emmil("X_RGB", feats()), FEATURES,
     ["test/X_RGB/0.pt", "cannot read: not a plain tensor/str file"]),
    ("emmil-crafted-pickle", emmil("X_flow", crafted_pickle_pt), FEATURES,
     ["test/X_flow/0.pt", "cannot read: not a plain tensor/str file"]),
    ("emmil-custom-class-label", emmil("Y_flow", crafted_pickle_pt, split="train"), FEATURES,
     ["train/Y_flow/0.pt", "not a plain tensor/str file"]),
    ("emmil-str-features", emmil("X_RGB", "video_test_1"), FEATURES,
     ["test/X_RGB/0.pt", "video video_test_1", "found str"]),
    ("emmil-dict-features", emmil("X_flow", {"x": torch.ones(4, 1024)}), FEATURES,
     ["test/X_flow/0.pt", "video video_test_1", "found dict"]),
    ("emmil-truncated", emmil("X_RGB", truncated, index=1), FEATURES,
     ["test/X_RGB/1.pt", "cannot read"]),
    ("emmil-bool-features", emmil("X_RGB", torch.ones(4, 1024, dtype=torch.bool)), FEATURES,
     ["test/X_RGB/0.pt", "not numbers"]),
    ("emmil-complex-features", emmil("X_flow", torch.ones(4, 1024, dtype=torch.complex64)),
     FEATURES, ["test/X_flow/0.pt", "not numbers"]),
    ("emmil-sparse-features", emmil("X_RGB", torch.ones(4, 1024).to_sparse()), FEATURES,
     ["test/X_RGB/0.pt", "sparse"]),
    ("emmil-1d-flow", emmil("X_flow", torch.ones(1024)), FEATURES,
     ["test/X_flow/0.pt", "video video_test_1", "(1024,)"]),
    ("emmil-wrong-width", emmil("X_RGB", torch.ones(4, 2048)), FEATURES,
     ["test/X_RGB/0.pt", "video video_test_1", "(4, 2048)"]),
    ("emmil-empty-rgb", emmil("X_RGB", torch.ones(0, 1024)), FEATURES,
     ["test/X_RGB/0.pt", "video video_test_1", "RGB features are empty"]),
    ("emmil-str-label", emmil("Y_flow", "Shotput"), FEATURES,
     ["test/Y_flow/0.pt", "video video_test_1", "found str"]),
    ("emmil-list-label", emmil("Y_flow", [0.0, 0.0, 1.0]), FEATURES,
     ["test/Y_flow/0.pt", "found list"]),
    ("emmil-name-bytes", emmil("Name_flow", b"video_\xff\xfe"), FEATURES,
     ["test/Name_flow/0.pt", "not a plain tensor/str file"]),
    ("emmil-expanded-view", emmil("X_flow", torch.ones(1, 1024).expand(10 ** 9, 1024)), FEATURES,
     ["test/X_flow/0.pt", "video video_test_1", "expanded view"]),
    ("emmil-float16-overflow-in-flow", emmil_with_args(
        "X_flow", torch.full((4, 1024), 1e6), ["--memory", "float16"]), FEATURES[:1],
     ["test/X_flow/0.pt", "video video_test_1", "flow features exceed the float16 range"]),
    ("emmil-name-a-tensor", emmil("Name_flow", torch.ones(3)), FEATURES,
     ["test/Name_flow/0.pt", "found Tensor"]),

    # --- hdf5: one self-describing file
    ("hdf5-version-text", hdf5(lambda f: f.attrs.__setitem__("version", "one")), FEATURES,
     ["tiny.h5", "'version' is not an integer"]),
    ("hdf5-version-float", hdf5(lambda f: f.attrs.__setitem__("version", 1.5)), FEATURES,
     ["tiny.h5", "'version' is not an integer"]),
    ("hdf5-version-2", hdf5(lambda f: f.attrs.__setitem__("version", 2)), FEATURES,
     ["tiny.h5", "version 2 is not known"]),
    ("hdf5-format-not-ours", hdf5(lambda f: f.attrs.__setitem__("format", "other-features")),
     FEATURES, ["tiny.h5", "'other-features' is not 'emmil-features'"]),
    ("hdf5-format-missing", hdf5(lambda f: f.attrs.__delitem__("format")), FEATURES,
     ["tiny.h5", "attribute 'format' missing"]),
    ("hdf5-classes-a-number", hdf5(lambda f: f.attrs.__setitem__("classes", 3)), FEATURES,
     ["tiny.h5", "'classes' is not"]),
    ("hdf5-rate-text", hdf5(lambda f: f.attrs.__setitem__("snippet_seconds", "fast")), FEATURES,
     ["tiny.h5", "'snippet_seconds' is not a number"]),
    ("hdf5-rgb-a-group", hdf5(rgb_is_a_group), FEATURES,
     ["tiny.h5:/videos/video_test_1/rgb", "a group, expected a dataset"]),
    ("hdf5-rgb-external-link", hdf5(external_rgb), FEATURES,
     ["tiny.h5:/videos/video_test_1/rgb", "ExternalLink"]),
    ("hdf5-flow-dangling-soft-link", hdf5(replace_link("flow", h5py.SoftLink("/nowhere"))),
     FEATURES, ["tiny.h5:/videos/video_test_1/flow", "SoftLink"]),
    ("hdf5-duration-text", hdf5(video_attr("duration", "long")), FEATURES,
     ["tiny.h5:/videos/video_test_1", "'duration' is not a number"]),
    ("hdf5-duration-nan", hdf5(video_attr("duration", np.nan)), FEATURES,
     ["tiny.h5:/videos/video_test_1", "'duration' is nan"]),
    ("hdf5-labels-text", hdf5(video_attr("labels", np.array(["a", "b", "c"], dtype=h5py.string_dtype()))),
     FEATURES, ["tiny.h5:/videos/video_test_1", "'labels' is not a 1-d array of numbers"]),
    ("hdf5-labels-not-multi-hot", hdf5(video_attr("labels", np.array([0.0, 3.0, 0.0]))), FEATURES,
     ["tiny.h5:/videos/video_test_1", "not multi-hot"]),
    ("hdf5-segments-flat", hdf5(video_attr("segments", np.array([2.0, 1.0, 2.0]))), FEATURES,
     ["tiny.h5:/videos/video_test_1", "'segments' is not a 2-d array"]),
    ("hdf5-segments-two-columns", hdf5(video_attr("segments", np.array([[1.0, 2.0]]))), FEATURES,
     ["tiny.h5:/videos/video_test_1", "segments of shape (1, 2)"]),
    ("hdf5-segment-class-nan", hdf5(video_attr("segments", np.array([[np.nan, 1.0, 2.0]]))),
     FEATURES, ["tiny.h5:/videos/video_test_1", "class index nan"]),
    ("hdf5-subset-a-number", hdf5(video_attr("subset", 3)), FEATURES,
     ["tiny.h5:/videos/video_test_1", "'subset' is not a string"]),
    ("hdf5-too-large", hdf5(replace_dataset("rgb", shape=(2 ** 40, 1024), dtype="f4",
                                             chunks=(1, 1024))), FEATURES,
     ["tiny.h5:/videos/video_test_1/rgb", "video video_test_1", "cannot read"]),
    ("hdf5-nan-in-flow", hdf5(replace_dataset("flow", data=feats(**nan_at))), FEATURES,
     ["tiny.h5:/videos/video_test_1/flow", "video video_test_1", "NaN"]),
    ("hdf5-float64-beyond-float32", hdf5(replace_dataset(
        "rgb", data=feats(dtype=np.float64, at=(0, 0), value=-1e300))), FEATURES,
     ["tiny.h5:/videos/video_test_1/rgb", "float32 range"]),
    ("hdf5-strings", hdf5(replace_dataset("rgb", data=np.full((4, 1024), "a", dtype="S1"))),
     FEATURES, ["tiny.h5:/videos/video_test_1/rgb", "expected (T, 1024) numbers"]),
    ("hdf5-1d", hdf5(replace_dataset("flow", data=np.ones(1024, np.float32))), FEATURES,
     ["tiny.h5:/videos/video_test_1/flow", "shape (1024,)"]),
    ("hdf5-video-a-dataset", hdf5(video_is_a_dataset), FEATURES,
     ["tiny.h5:/videos/video_test_2", "a dataset, expected a group"]),
    ("hdf5-videos-a-dataset", hdf5(videos_is_a_dataset), FEATURES,
     ["tiny.h5/videos", "a dataset, expected a group"]),
    ("hdf5-notes-numbers", hdf5(lambda f: f.create_dataset("notes", data=np.ones(2))), FEATURES,
     ["tiny.h5/notes", "strings"]),
    ("hdf5-version-empty", hdf5(lambda f: f.attrs.__setitem__("version", h5py.Empty("i4"))),
     FEATURES, ["tiny.h5", "'version' is not an integer"]),
    ("hdf5-rate-negative", hdf5(lambda f: f.attrs.__setitem__("snippet_seconds", -0.64)),
     FEATURES, ["tiny.h5", "'snippet_seconds' is -0.64, expected a positive finite number"]),
    ("hdf5-ambiguous-names-numbers", hdf5(ambiguous(np.ones(1), np.ones((1, 2)))), FEATURES,
     ["tiny.h5/ambiguous/video", "strings"]),
    ("hdf5-ambiguous-segment-shape", hdf5(ambiguous(np.array(["video_test_1"], dtype=object),
                                                    np.ones(3))), FEATURES,
     ["tiny.h5/ambiguous/segment", "expected (1, 2) numbers"]),
    ("hdf5-ambiguous-segment-missing", hdf5(ambiguous(np.array(["v"], dtype=object), None)),
     FEATURES, ["tiny.h5", "dataset 'ambiguous/segment' missing"]),
    ("hdf5-not-hdf5", not_hdf5, FEATURES, ["x.h5", "cannot read as HDF5"]),

    # --- wtalc: the JOINTFeatures bundle (its pickle itself is annotation reading's concern)
    ("wtalc-nan", wtalc(3, feats(width=2048, **nan_at)), FEATURES,
     ["JOINTFeatures.npy", "video video_test_1", "NaN"]),
    ("wtalc-wrong-width", wtalc(3, feats(width=1024)), FEATURES,
     ["JOINTFeatures.npy", "video video_test_1", "(4, 1024)"]),
    ("wtalc-1d", wtalc(3, np.ones(2048, np.float32)), FEATURES,
     ["JOINTFeatures.npy", "video video_test_1", "(2048,)"]),
    ("wtalc-str-element", wtalc(0, "features"), FEATURES,
     ["JOINTFeatures.npy", "video video_validation_1", "found str"]),
    ("wtalc-object-element", wtalc(3, np.ones((4, 2048)).astype(object)), FEATURES,
     ["JOINTFeatures.npy", "video video_test_1", "not numbers"]),
    ("wtalc-float64-beyond-float32", wtalc(3, feats(width=2048, dtype=np.float64, at=(0, 0),
                                                    value=1e39)), FEATURES,
     ["JOINTFeatures.npy", "video video_test_1", "float32 range"]),
    ("wtalc-bundle-2d", wtalc_bundle(np.ones((5, 2048), np.float32)), FEATURES,
     ["JOINTFeatures.npy", "expected a 1-d array"]),

    # --- evaluate.py prediction files
    ("pred-results-a-list", predictions({"results": [GOOD]}), EVALUATE,
     ["results.json", "no 'results' object"]),
    ("pred-top-level-list", predictions([GOOD]), EVALUATE,
     ["results.json", "top level is not an object"]),
    ("pred-video-not-a-list", predictions({"results": {"video_test_1": GOOD}}), EVALUATE,
     ["results.json", "video video_test_1", "expected a list"]),
    ("pred-entry-a-list", predictions(results([1.0, 2.0, "Shotput", 0.9])), EVALUATE,
     ["results.json", "video video_test_1", "expected an object"]),
    ("pred-segment-one-number", predictions(results({**GOOD, "segment": [1.0]})), EVALUATE,
     ["results.json", "video video_test_1", "segment [1.0] is not [start, end]"]),
    ("pred-segment-three-numbers", predictions(results({**GOOD, "segment": [1, 2, 3]})),
     EVALUATE, ["results.json", "video video_test_1", "segment [1, 2, 3]"]),
    ("pred-segment-strings", predictions(results({**GOOD, "segment": ["1", "2"]})), EVALUATE,
     ["results.json", "video video_test_1", "is not [start, end]"]),
    ("pred-score-a-string", predictions(results({**GOOD, "score": "0.9"})), EVALUATE,
     ["results.json", "video video_test_1", "score \"0.9\" is not a number"]),
    ("pred-score-missing", predictions(results({"label": "Shotput", "segment": [1, 2]})),
     EVALUATE, ["results.json", "video video_test_1", "missing field 'score'"]),
    ("pred-label-null", predictions(results({**GOOD, "label": None})), EVALUATE,
     ["results.json", "video video_test_1", "label null"]),
    ("pred-label-bool", predictions(results({**GOOD, "label": True})), EVALUATE,
     ["results.json", "video video_test_1", "label true"]),
    ("pred-label-fraction", predictions(results({**GOOD, "label": 1.5})), EVALUATE,
     ["results.json", "video video_test_1", "label 1.5"]),
    ("pred-label-unknown-id", predictions(results({**GOOD, "label": 77})), EVALUATE,
     ["results.json", "class id 77"]),
    ("pred-segment-huge-integer", predictions(
        '{"results": {"video_test_1": [{"label": "Shotput", "segment": [1, 1' + "0" * 400 +
        '], "score": 0.5}]}}'), EVALUATE, ["results.json", "video video_test_1", "int too large"]),
    ("pred-score-nan", predictions('{"results": {"video_test_1": [{"label": "Shotput", '
                                   '"segment": [1, 2], "score": NaN}]}}'), EVALUATE,
     ["results.json", "NaN/Inf", "video_test_1"]),
    ("pred-too-deep", predictions(nested(100000)), EVALUATE,
     ["results.json", "nested too deeply"]),
    ("pred-not-json", predictions("{results: 1"), EVALUATE, ["results.json", "malformed JSON"]),
    ("pred-not-utf8", predictions(b'{"results": {"v\xff": []}}'), EVALUATE,
     ["results.json", "not UTF-8"]),
    ("pred-txt-field-count", predictions("video_test_1 1.0 2.0 79 0.9\nvideo_test_1 1.0 2.0 79\n",
                                         suffix=".txt"), EVALUATE,
     ["results.txt", "line 2", "expected 5 fields"]),
    ("pred-txt-not-a-number", predictions("video_test_1 1.0 soon 79 0.9\n", suffix=".txt"),
     EVALUATE, ["results.txt", "end is not a number", "'soon'"]),
    ("pred-txt-score-text", predictions("video_test_1 1.0 2.0 79 high\n", suffix=".txt"),
     EVALUATE, ["results.txt", "score is not a number"]),
    ("pred-txt-not-utf8", predictions(b"video_test_1 1.0 2.0 79 0.9 \xff\n", suffix=".txt"),
     EVALUATE, ["results.txt", "not UTF-8"]),
    ("pred-a-folder", pred_folder, EVALUATE, ["results.json", "cannot read"]),
    ("pred-with-bom", predictions(b'\xef\xbb\xbf{"results": {}}'), EVALUATE,
     ["results.json", "malformed JSON"]),
    ("pred-missing", lambda tmp: {**predictions([])(tmp), "pred": str(tmp / "none.json")},
     EVALUATE, ["none.json", "file not found"]),
    # --- the data as a whole
    ("folders-no-training-label", no_training_label("folders"), ("run",),
     ["gt.json", "none of the 2 training videos (subset validation) has a label"]),
    ("wtalc-no-training-label", no_training_label("wtalc"), ("run",),
     ["Thumos14reduced-Annotations", "none of the 2 training videos", "nothing to train on"]),
]


# ---------------------------------------------------------------------------
# Running the commands
# ---------------------------------------------------------------------------

def command_argv(command, inputs, out):
    if command == "run":
        # the tiny data's label vectors index its own 3 classes, not the preset's 20
        return ["--dataset", "thumos14", "--data-root", inputs["root"], "--output-dir", out,
                "--overwrite", "--dry-run", "--threads", "1", "--quiet",
                "--classes", "annotations", *inputs.get("args", [])]
    if command == "summary":
        return ["summary", "--data-root", inputs["root"], *inputs.get("args", [])]
    return [inputs["pred"], "--gt", inputs["gt"], *inputs.get("args", [])]


ENTRY = {"run": lambda argv: cli(run.main, argv), "summary": lambda argv: cli(dataset.main, argv), "evaluate": lambda argv: cli(evaluate.main, argv)}
SCRIPT = {"run": "run.py", "summary": "dataset.py", "evaluate": "evaluate.py"}


def prefilled(folder):
    """An output folder holding an earlier run's files; returns its snapshot."""
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        f.write('{"earlier": "run"}\n')
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write("the earlier run\n")
    return snapshot(folder)


ERROR_LINE = re.compile(r"^error\b")      # "error: ...", one format for every command


def error_lines(err):
    """The error lines of stderr (warnings and their like aside)."""
    return [line for line in err.splitlines() if ERROR_LINE.match(line)]


def check_refusal(code, err, expected, where):
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not os.path.exists(os.path.join(where, MARKER))


PARAMS = [pytest.param(build, command, expected, id=f"{name}[{command}]")
          for name, build, commands, expected in CASES for command in commands]


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("build, command, expected", PARAMS)
def test_refused_in_one_line(tmp_path, capsys, build, command, expected):
    inputs = build(tmp_path)
    out = str(tmp_path / "out")
    before = prefilled(out)
    capsys.readouterr()
    code = ENTRY[command](command_argv(command, inputs, out))
    check_refusal(code, capsys.readouterr().err, expected, str(tmp_path))
    for root, _, files in os.walk(tmp_path):      # no crafted pickle ran anywhere
        assert MARKER not in files
    assert snapshot(out) == before


@pytest.mark.parametrize("name", ["folders-nan-in-flow", "emmil-numpy-in-pt", "hdf5-rgb-a-group",
                                  "pred-segment-three-numbers"])
def test_the_real_commands_refuse_in_one_line(tmp_path, name):
    """A few rows through the scripts themselves (exit code, stderr as the user sees it)."""
    _, build, commands, expected = next(c for c in CASES if c[0] == name)
    inputs, out = build(tmp_path), str(tmp_path / "out")
    before = prefilled(out)
    command = commands[0]
    r = subprocess.run([sys.executable, os.path.join(ROOT, SCRIPT[command]),
                        *command_argv(command, inputs, out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    check_refusal(r.returncode, r.stderr, expected, str(tmp_path))
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert snapshot(out) == before


def test_no_label_left_after_holding_out_is_refused(tmp_path, capsys):
    """Only video_validation_2 has a label (of the 2 training videos kept); --val-fraction 0.5
    holds it out for seed 3 (the first of numpy's default_rng(3).permutation(2)), not for
    seed 2: refused as the option that leaves nothing to train on."""
    videos = tiny_videos()
    videos[0]["labels"], videos[0]["segments"] = [], []
    inputs = {"root": write_wtalc(tmp_path / "wtalc", videos)}
    out = str(tmp_path / "out")
    before = prefilled(out)
    argv = command_argv("run", inputs, out)
    assert cli(run.main, [*argv, "--val-fraction", "0.5", "--seeds", "2", "3"]) == 2
    check_refusal(2, capsys.readouterr().err, ["--val-fraction 0.5: with seed 3 the 1 training "
                                               "videos left after holding out have no label"],
                  str(tmp_path))
    assert snapshot(out) == before


SWAPPED = {"video_validation_2": [("HighJump", 0.9, 0.0), ("Shotput", 1.0, 9.0)],
           "video_test_1": [("Shotput", 2.0, 1.0), ("Shotput", 2.5, 2.2)]}


def swapped_bundle(tmp, layout):
    """The tiny data with three ground-truth segments annotated end first (the first in
    file order: video_validation_2, 0.9 > 0.0)."""
    videos = tiny_videos()
    for v in videos:
        v["segments"] = SWAPPED.get(v["name"], v["segments"])
    if layout == "wtalc":
        root = write_wtalc(tmp / "wtalc", videos)
        return root, wtalc_paths(root, "Thumos14reduced")[1]
    root = write_folders(str(tmp / "folders"), videos)
    return root, os.path.join(root, "gt.json")


@pytest.mark.parametrize("layout", ["folders", "wtalc"])
def test_swapped_segments_are_counted_and_the_first_named(tmp_path, capsys, layout):
    """Training's reader (run.py) and evaluate.py's say the same: the source, how many, and
    the first one (its video and its times as annotated)."""
    root, source = swapped_bundle(tmp_path, layout)
    said = (f"{source}: 3 ground-truth segments had start > end and were swapped, e.g. video "
            f"video_validation_2: 0.9 > 0.0")
    out = str(tmp_path / "out")
    assert cli(run.main, command_argv("run", {"root": root}, out)) == 0
    err = capsys.readouterr().err
    assert f"warning: {said}" in err.splitlines(), err
    assert os.path.isfile(os.path.join(out, "metrics.json"))           # the run went through
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results({**GOOD, "segment": [2.2, 2.5]})))
    assert cli(evaluate.main, [str(pred), "--gt", source, "--tiou", "0.9"]) == 0
    out, err = capsys.readouterr()
    assert f"evaluate.py: warning: {said}" in err.splitlines()
    # video_test_1's two predictions are its two segments as swapped: both found at tIoU 0.9
    assert re.search(r"^0\.9 +100\.00$", out, re.M), out


def test_swapped_segments_of_the_official_folder_name_file_and_line(tmp_path, capsys):
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "Shotput_test.txt").write_text("video_test_1 1.0 2.0\nvideo_test_1 12.3 10.1\n"
                                             "video_test_2 5 4\n")
    (folder / "Ambiguous_test.txt").write_text("video_test_1 7.5 7.0\n")
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results(GOOD)))
    assert cli(evaluate.main, [str(pred), "--gt", str(folder)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"evaluate.py: warning: {folder}: 2 ground-truth segments had start > end "
                   f"and were swapped, e.g. video video_test_1 (Shotput_test.txt line 2): "
                   f"12.3 > 10.1",
                   f"evaluate.py: warning: {folder / 'Ambiguous_test.txt'}: 1 ambiguous "
                   f"segments had start > end and were swapped, e.g. video video_test_1 "
                   f"(line 1): 7.5 > 7.0"], err


@pytest.mark.parametrize("layout", ["folders", "emmil", "hdf5", "wtalc"])
def test_the_unbroken_data_is_accepted(tmp_path, capsys, layout):
    """The builders' starting point is valid: each row fails for the one thing it breaks."""
    root = {"folders": lambda: write_folders(str(tmp_path / "f"), tiny_videos()),
            "emmil": lambda: write_emmil(str(tmp_path / "e"), tiny_videos()),
            "hdf5": lambda: write_hdf5_by_hand(str(tmp_path / "t.h5"), tiny_videos()),
            "wtalc": lambda: write_wtalc(tmp_path / "w", tiny_videos())}[layout]()
    assert cli(dataset.main, ["summary", "--data-root", root]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["videos"] == 2


def test_good_predictions_are_accepted(tmp_path, capsys):
    inputs = predictions(results({**GOOD, "label": 79, "segment": [2, 3]}))(tmp_path)
    assert cli(evaluate.main, [inputs["pred"], "--gt", inputs["gt"]]) == 0
    assert "3 predictions" in capsys.readouterr().out


# ===========================================================================
# Bad options, output folders and --resume inputs: each refused with exit code 2 and one
# line on stderr naming the option or file, before anything in the output folder changes.
# And: no output is written through a symbolic link; --overwrite never leaves two runs
# mixed. run.cli runs in-process on the embedded synthetic default cut by --dry-run.
# ===========================================================================

DRY = ["--dry-run", "--quiet"]


def snapshot(folder):
    """{relative path: bytes, or 'link -> target'} of everything under `folder`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = "link -> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = "folder"
    return out


def refused(capsys, args):
    """Run the command line; assert exit 2 and one 'error: ...' line; return that line."""
    try:
        code = cli(run.main, list(args))
    except SystemExit as e:               # argparse's own checks
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """The output folder of a complete earlier run (checkpoint included)."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert cli(run.main, [*DRY, "--output-dir", str(out), "--seed", "3"]) == 0
    return out


@pytest.fixture
def folder(earlier, tmp_path):
    """A private copy of the earlier run, with a file of the user's beside it."""
    out = tmp_path / "out"
    shutil.copytree(earlier, out, symlinks=True)
    (out / "notes.txt").write_text("mine")
    return out


# ----------------------------------------------------------------------------
# options: checked before anything is written (--overwrite over an earlier run)
# ----------------------------------------------------------------------------

BAD_OPTIONS = [
    (["--tiou", "1.5"], "--tiou 1.5: must be in [0, 1]"),
    (["--tiou", "0.3", "nan"], "--tiou nan"),
    (["--tiou", "0.5", "0.5"], "--tiou 0.5 0.5: 0.5 given twice"),
    (["--cls-epochs", "-1"], "--cls-epochs -1: must be >= 0"),
    (["--feature-fps", "0"], "--feature-fps 0.0: must be > 0"),
    (["--feature-fps", "-25"], "--feature-fps -25.0"),
    (["--feature-fps", "inf"], "--feature-fps inf"),
    (["--frames-per-snippet", "0"], "--frames-per-snippet 0: must be >= 1"),
    (["--soft-sigma", "0"], "--soft-sigma 0.0: must be > 0"),
    (["--gamma", "nan"], "--gamma nan"),
    (["--lam", "2"], "--lam 2.0: must be in [0, 1]"),
    (["--loc-threshold", "0.05", "nan"], "--loc-threshold nan"),
    (["--cls-threshold", "-0.1"], "--cls-threshold -0.1"),
    (["--lr", "-1"], "--lr -1.0: must be > 0"),
    (["--cls-lr", "0"], "--cls-lr 0.0: must be > 0"),
    (["--stage2-lr-mult", "inf"], "--stage2-lr-mult inf"),
    (["--nms-iou", "1.5"], "--nms-iou 1.5"),
    (["--oic-margin", "-1"], "--oic-margin -1.0"),
    (["--hidden-dim", "0"], "--hidden-dim 0: must be >= 1"),
    (["--hidden-dim", str(10 ** 15)], "the networks cannot be built"),
    (["--feature-dim", "0"], "--feature-dim 0: must be >= 1"),
    (["--feature-dim", "512"], "--feature-dim 512: the features have 1024 per stream"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--seed", "-1"], "--seed -1: must be in [0, 4294967295]"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["--threads", "-1"], "--threads -1: must be >= 0"),
    (["--save-every", "-1"], "--save-every -1: must be >= 0"),
    (["--eval-every", "-1"], "--eval-every -1: must be >= 0"),
    (["--eval-every", "2"], "--eval-every needs --val-fraction > 0"),
    (["--val-fraction", "1"], "--val-fraction 1.0: must be in [0, 1)"),
    (["--val-fraction", "0.9"], "--val-fraction 0.9: holds out 4 of the 4 training videos"),
    (["--val-fraction", "0.05"], "--val-fraction 0.05: holds out none of the 4"),
    (["--schedule", "M1:10,X:3"], "--schedule: cannot read 'X:3'"),
    (["--schedule", "M1:0"], "--schedule: no epochs"),
    (["--seeds", "1", "1"], "--seeds 1 1: 1 given twice"),
    (["--seeds", "1", "-2"], "--seeds -2"),
    (["--synthetic-videos", "-1"], "--synthetic-videos -1"),
    (["--synthetic-videos", "1"], "--synthetic-videos 1 --synthetic-max-seconds 150: keeps no"),
    (["--synthetic-max-seconds", "1"], "--synthetic-max-seconds 1: keeps no validation video"),
    (["--synthetic-max-seconds", "nan"], "--synthetic-max-seconds nan"),
    (["--data-root", ""], "--data-root: must not be empty"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_refused_before_any_write(capsys, folder, args, message):
    before = snapshot(folder)
    line = refused(capsys, [*DRY, "--output-dir", str(folder), "--overwrite", *args])
    assert message in line
    assert snapshot(folder) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_device_cuda_without_one(capsys, folder):
    before = snapshot(folder)
    assert "--device cuda" in refused(capsys, [*DRY, "--output-dir", str(folder),
                                               "--overwrite", "--device", "cuda"])
    assert snapshot(folder) == before


# ----------------------------------------------------------------------------
# the output folder
# ----------------------------------------------------------------------------

def test_output_dir_under_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, [*DRY, "--output-dir", str(tmp_path / "file" / "out")])
    assert "--output-dir cannot be created" in line and str(tmp_path / "file") in line
    assert (tmp_path / "file").read_text() == "x" and os.listdir(tmp_path) == ["file"]


def test_output_dir_is_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, [*DRY, "--output-dir", str(tmp_path / "file"), "--overwrite"])
    assert "--output-dir exists and is not a folder" in line
    assert (tmp_path / "file").read_text() == "x"


def test_output_dir_not_empty_without_overwrite(capsys, folder):
    before = snapshot(folder)
    assert "not empty" in refused(capsys, [*DRY, "--output-dir", str(folder)])
    assert snapshot(folder) == before


def test_a_folder_where_an_output_file_goes(capsys, folder):
    (folder / "metrics.json").unlink()
    (folder / "metrics.json").mkdir()
    before = snapshot(folder)
    line = refused(capsys, [*DRY, "--output-dir", str(folder), "--overwrite"])
    assert "metrics.json: a folder where the run writes a file" in line
    assert snapshot(folder) == before
    assert "metrics.json: a folder" in refused(capsys, ["--resume", str(folder)])
    assert snapshot(folder) == before


def test_output_dir_empty_string(capsys, tmp_path):
    assert "--output-dir: must not be empty" in refused(capsys, [*DRY, "--output-dir", ""])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_output_dir_not_writable(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = refused(capsys, [*DRY, "--output-dir", str(locked / "out")])
        assert "not writable" in line and os.listdir(locked) == []
    finally:
        locked.chmod(0o755)


def test_a_failed_check_never_creates_the_output_dir(capsys, tmp_path):
    refused(capsys, [*DRY, "--output-dir", str(tmp_path / "a" / "b"), "--feature-dim", "512"])
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# --resume: the saved options and the checkpoint are not trusted
# ----------------------------------------------------------------------------

def edit_opts(folder, change):
    path = folder / "opts.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(change(saved)))


def edit_checkpoint(folder, change):
    path = folder / RunFolder.LAST
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def resume_refused(capsys, folder, *extra):
    before = snapshot(folder)
    line = refused(capsys, ["--resume", str(folder), *extra])
    assert snapshot(folder) == before                       # nothing appended to log.txt
    return line


@pytest.mark.parametrize("change,message", [
    (lambda s: [s], "opts.json: not a JSON object but list"),
    (lambda s: {k: v for k, v in s.items() if k != "lam"}, "opts.json: lacks the option lam"),
    (lambda s: {**s, "seed": "3"}, 'opts.json: seed is "3", not int'),
    (lambda s: {**s, "quiet": 1}, "opts.json: quiet is 1, not bool"),
    (lambda s: {**s, "tiou": [1.5]}, "opts.json: saved --tiou 1.5: must be in [0, 1]"),
    (lambda s: {**s, "layout": "x"}, 'opts.json: layout is "x", not one of'),
    (lambda s: {**s, "averages": {"a": 1}}, "opts.json: averages['a'] is 1"),
    (lambda s: {**s, "schedule": "Z:1"}, "--schedule: cannot read 'Z:1'"),
], ids=["list", "missing", "str-seed", "int-flag", "tiou", "choice", "averages", "schedule"])
def test_resume_bad_saved_options(capsys, folder, change, message):
    edit_opts(folder, change)
    assert message in resume_refused(capsys, folder)


def test_resume_opts_not_json(capsys, folder):
    (folder / "opts.json").write_text("{not json")
    assert "opts.json: unreadable saved options" in resume_refused(capsys, folder)


def test_resume_bad_given_option(capsys, folder):
    assert "--threads -1: must be >= 0" in resume_refused(capsys, folder, "--threads", "-1")


def _wrong_shape(state):
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3)


def _wrong_adam_state(state):
    opt = state["cls_trainer"]["opt"]
    first = next(iter(opt["state"]))
    opt["state"][first]["exp_avg"] = torch.zeros(2, 2)


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update(position="3"), "position '3' is not an epoch count"),
    (lambda s: s.update(position=-1), "position '-1' is not an epoch count"),
    (lambda s: s.update(position=10 ** 6), "is not an epoch count in 0.."),
    (_wrong_shape, "its model does not fit this run"),
    (lambda s: s["classifier"].clear(), "its classifier does not fit this run"),
    (_wrong_adam_state, "its cls_trainer does not fit this run"),
    (lambda s: s.update(em_trainer=None), "its em_trainer does not fit this run"),
    (lambda s: s["rng"].update(torch=torch.zeros(3)), "its rng does not fit this run"),
    (lambda s: s["rng"].update(python=[1, 2]), "its rng does not fit this run"),
    (lambda s: s.pop("model"), "not a checkpoint of this project (missing ['model'])"),
], ids=["str-position", "negative", "beyond", "shape", "empty", "adam", "no-em", "torch-rng",
        "python-rng", "no-model"])
def test_resume_bad_checkpoint_contents(capsys, folder, change, message):
    edit_checkpoint(folder, change)
    line = resume_refused(capsys, folder)
    assert RunFolder.LAST in line and message in line


def test_resume_checkpoint_that_torch_refuses(capsys, folder):
    torch.save({"position": argparse.Namespace(x=1)}, folder / RunFolder.LAST)
    line = resume_refused(capsys, folder)
    assert "refused" in line and "argparse.Namespace" in line


def test_resume_checkpoint_not_a_dict(capsys, folder):
    torch.save([1, 2], folder / RunFolder.LAST)
    assert "not a checkpoint of this project (a list)" in resume_refused(capsys, folder)


def test_resume_refuses_a_symlinked_log(capsys, folder, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (folder / "log.txt").unlink()
    (folder / "log.txt").symlink_to(outside)
    assert "log.txt: is a symbolic link" in resume_refused(capsys, folder)
    assert outside.read_text() == "not yours"


# ----------------------------------------------------------------------------
# links are replaced, never followed; --overwrite never mixes two runs
# ----------------------------------------------------------------------------

def test_overwrite_replaces_links_and_leaves_their_targets(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    names = ["log.txt", "opts.json", "metrics.json", "results.json", "em_mil.pt",
             RunFolder.LAST, "tensorboard"]
    for name in names:
        target = outside / name
        if name == "tensorboard":
            target.mkdir()
            (target / "events.out.tfevents.1").write_text("theirs")
        else:
            target.write_text("theirs")
        path = folder / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        path.symlink_to(target)
    before = snapshot(outside)
    assert cli(run.main, [*DRY, "--output-dir", str(folder), "--overwrite", "--no-tensorboard"]) == 0
    assert snapshot(outside) == before
    for name in names[:-1]:
        assert not (folder / name).is_symlink() and (folder / name).is_file(), name
    assert not os.path.lexists(folder / "tensorboard")      # the link removed, none written
    assert json.loads((folder / "metrics.json").read_text())["protocol"] == "activitynet"


def test_overwrite_tensorboard_link_replaced_by_a_real_folder(folder, tmp_path):
    outside = tmp_path / "tb"
    outside.mkdir()
    shutil.rmtree(folder / "tensorboard")
    (folder / "tensorboard").symlink_to(outside)
    assert cli(run.main, [*DRY, "--output-dir", str(folder), "--overwrite"]) == 0
    assert os.listdir(outside) == []
    assert not (folder / "tensorboard").is_symlink() and os.listdir(folder / "tensorboard")


def test_overwrite_then_a_late_failure_leaves_one_run(folder, monkeypatch):
    """The evaluation breaks after training: what is left is the new run's files only (and
    the user's own file), never the earlier run's metrics.json beside them."""
    old_events = set(os.listdir(folder / "tensorboard"))

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")
    monkeypatch.setattr(outputs, "evaluate_run", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run.main([*DRY, "--output-dir", str(folder), "--overwrite", "--seed", "7"])
    left = set(os.listdir(folder))
    assert "metrics.json" not in left
    assert left == {"notes.txt", "opts.json", "log.txt", RunFolder.LAST, "classifier.pt", "em_mil.pt",
                    "results.json", "results.txt", "tensorboard", "history.json"}
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / "opts.json").read_text())["seed"] == 7
    assert torch.load(folder / RunFolder.LAST, weights_only=True)["opts"]["seed"] == 7
    assert "--seed 3" not in (folder / "log.txt").read_text()
    assert not old_events & set(os.listdir(folder / "tensorboard"))


def test_clear_earlier_run_keeps_unknown_files(tmp_path):
    for name in ("opts.json", "checkpoint_0004.pt", ".tmp-x.pt", "summary.txt", "mine.csv"):
        (tmp_path / name).write_text("x")
    (tmp_path / "seed_1").mkdir()
    (tmp_path / "seed_1" / "metrics.json").write_text("x")
    (tmp_path / "seed_2").mkdir()
    (tmp_path / "seed_2" / "log.txt").write_text("x")
    (tmp_path / "seed_2" / "keep.md").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "log.txt").write_text("x")
    run_folder.clear_earlier_run(str(tmp_path))
    assert snapshot(tmp_path) == {"mine.csv": b"x", "seed_2": "folder",
                                  os.path.join("seed_2", "keep.md"): b"x", "other": "folder",
                                  os.path.join("other", "log.txt"): b"x"}


def test_summary_of_seeds_replaces_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.txt").symlink_to(outside)
    assert cli(run.main, [*DRY, "--output-dir", str(out), "--overwrite", "--seeds", "1", "2",
                    "--no-tensorboard", "--schedule", "M1:1"]) == 0
    assert outside.read_text() == "theirs"
    assert not (out / "summary.txt").is_symlink() and "mAP@0.5" in (out / "summary.txt").read_text()
    assert sorted(os.listdir(out)) == ["report", "seed_1", "seed_2", "summary.json",
                                       "summary.txt"]


def test_every_writer_replaces_a_link(tmp_path):
    """The writers themselves, without --overwrite's clean-up: a link is replaced (or, for
    a log continued on --resume, refused), its target never written."""
    from core.errors import InputError
    from core.files import atomic_write_text
    from utils import Logger
    from core.files import atomic_torch_save
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    for name, write in [("a.txt", lambda p: atomic_write_text(p, "ours")),
                        ("b.pt", lambda p: atomic_torch_save({"x": 1}, p)),
                        ("log.txt", lambda p: (Logger(quiet=True).open(p), None)[1])]:
        path = tmp_path / name
        path.symlink_to(outside)
        write(str(path))
        assert not path.is_symlink() and path.is_file(), name
    assert outside.read_text() == "theirs"
    (tmp_path / "log2.txt").symlink_to(outside)
    with pytest.raises(InputError, match="log2.txt: is a symbolic link"):
        Logger(quiet=True).open(str(tmp_path / "log2.txt"), append=True)
    assert outside.read_text() == "theirs"
    os.link(outside, tmp_path / "log3.txt")                        # a hard link
    log = Logger(quiet=True)
    log.open(str(tmp_path / "log3.txt"))
    log("ours")
    log.close()
    assert outside.read_text() == "theirs" and (tmp_path / "log3.txt").read_text() == "ours\n"
    os.link(outside, tmp_path / "log4.txt")
    with pytest.raises(InputError, match="log4.txt: has other hard links"):
        Logger(quiet=True).open(str(tmp_path / "log4.txt"), append=True)
    assert outside.read_text() == "theirs"


def test_logger_keeps_lines_said_before_the_file_opens(tmp_path):
    from utils import Logger
    log = Logger(quiet=True)
    log("early")
    log.open(str(tmp_path / "log.txt"))
    log("late")
    log.close()
    assert (tmp_path / "log.txt").read_text() == "early\nlate\n"


def test_resume_refuses_a_symlinked_tensorboard_folder(capsys, folder, tmp_path):
    outside = tmp_path / "tb"
    outside.mkdir()
    shutil.rmtree(folder / "tensorboard")
    (folder / "tensorboard").symlink_to(outside)
    assert "tensorboard: is a symbolic link" in resume_refused(capsys, folder)
    assert os.listdir(outside) == []


def test_the_command_line_itself_says_one_line(folder):
    """As the issue tried it: --tiou 1.5 over an earlier run, a real `python run.py`."""
    import subprocess
    import sys
    before = snapshot(folder)
    r = subprocess.run([sys.executable, run.__file__, *DRY, "--output-dir",
                        str(folder), "--overwrite", "--tiou", "1.5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: --tiou 1.5: must be in [0, 1]"]
    assert snapshot(folder) == before


# ----------------------------------------------------------------------------
# detect.py: a run folder, its options and weights, the data, the videos, the options
# given; each refused in one line, exit 2, nothing written into --output-dir
# ----------------------------------------------------------------------------

def detect_refused(capsys, run_dir, out, *extra):
    code = cli(detect.main, [str(run_dir), "--output-dir", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists()
    return lines[0]


def edited_run(folder, opts_change=None, weights=None):
    """The copy `folder` of a finished run with its opts.json or em_mil.pt replaced."""
    if opts_change:
        path = folder / "opts.json"
        saved = json.loads(path.read_text())
        opts_change(saved)
        path.write_text(json.dumps(saved))
    if weights is not None:
        torch.save(weights, folder / "em_mil.pt")
    return folder


def test_detect_refuses_a_folder_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    line = detect_refused(capsys, tmp_path / "empty", tmp_path / "out")
    assert "empty/opts.json: not found; RUN_DIR must be the output folder of run.py" in line


def test_detect_refuses_an_unfinished_run(capsys, folder, tmp_path):
    os.remove(folder / "em_mil.pt")
    line = detect_refused(capsys, folder, tmp_path / "det")
    assert "em_mil.pt: not found: the run is unfinished" in line and "--resume" in line


def test_detect_refuses_options_of_another_version(capsys, folder, tmp_path):
    edited_run(folder, lambda saved: saved.pop("lam"))
    assert "opts.json: lacks the option lam" in detect_refused(capsys, folder, tmp_path / "det")


def test_detect_refuses_weights_of_another_shape(capsys, folder, tmp_path):
    edited_run(folder, weights=EMMIL(20, 1024, 64).state_dict())
    line = detect_refused(capsys, folder, tmp_path / "det")
    assert "em_mil.pt: key_rgb.0.weight has shape (64, 1024, 3), the network (256, 1024, 3)" \
        in line


def test_detect_refuses_weights_holding_a_non_tensor(capsys, folder, tmp_path):
    state = EMMIL(20, 1024, 256).state_dict()
    state["key_rgb.0.bias"] = 3
    edited_run(folder, weights=state)
    assert "em_mil.pt: 'key_rgb.0.bias' holds a int, not a tensor" in \
        detect_refused(capsys, folder, tmp_path / "det")


def test_detect_refuses_weights_that_run_code(capsys, folder, tmp_path):
    edited_run(folder, weights={"key_rgb.0.bias": argparse.Namespace(x=1)})
    assert "em_mil.pt: refused: not weights this project wrote" in \
        detect_refused(capsys, folder, tmp_path / "det")


def test_detect_refuses_data_of_another_width_or_class_list(capsys, earlier, tmp_path):
    videos = tiny_videos()
    for v in videos:
        v["feats"] = v["feats"][:, :1536]                       # flow 512 wide, not 1024
    write_folders(str(tmp_path / "narrow"), videos)
    line = detect_refused(capsys, earlier, tmp_path / "det", "--layout", "folders",
                          "--data-root", str(tmp_path / "narrow"))
    assert "narrow/features/train/flow/video_validation_1.npy: video video_validation_1: " \
           "flow features have shape (5, 512), expected (T, 1024)" in line
    write_folders(str(tmp_path / "wide"), tiny_videos())
    (tmp_path / "three.txt").write_text("Diving\nHighJump\nShotput\n")
    line = detect_refused(capsys, earlier, tmp_path / "det", "--layout", "folders",
                          "--data-root", str(tmp_path / "wide"), "--classes",
                          str(tmp_path / "three.txt"))
    assert "wide: its 3 classes (Diving, HighJump, Shotput, ...) are not the run's 20" in line


def test_detect_refuses_a_video_not_in_the_split(capsys, earlier, tmp_path):
    line = detect_refused(capsys, earlier, tmp_path / "det", "--videos", "video_test_9999999")
    assert "--videos video_test_9999999: not a video of the test split" in line


@pytest.mark.parametrize("option", [["--lr", "0.1"], ["--schedule", "M1:1"], ["--seed", "2"],
                                    ["--val-fraction", "0.2"]])
def test_detect_refuses_a_training_option(capsys, earlier, tmp_path, option):
    line = detect_refused(capsys, earlier, tmp_path / "det", *option)
    assert f"{option[0]}: a training option; detect.py cannot change a trained model" in line


def test_detect_refuses_its_run_folder_as_output(capsys, earlier, tmp_path):
    before = snapshot(earlier)
    code = cli(detect.main, [str(earlier), "--output-dir", str(earlier), "--overwrite"])
    assert code == 2 and "is RUN_DIR" in capsys.readouterr().err
    assert snapshot(earlier) == before
