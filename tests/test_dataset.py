"""The W-TALC loader on bundles written in the exact real format, and its bad-input checks."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from readers.annotation_reader import read_wtalc
from dataset import assemble
from training.batches import SnippetDataset, collate
from readers.features import align_streams
from readers.layouts import wtalc_entries, wtalc_paths
from core.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_ANN = os.path.join(ROOT, "data", "thumos14", "Thumos14reduced-Annotations")


def _save_py2_style(path, values, dtype=object):
    """An object array pickled with protocol 2 holding bytes, as the Python-2 bundle files."""
    arr = np.empty(len(values), dtype=dtype)
    for i, v in enumerate(values):
        arr[i] = v
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        pickle.dump(arr, f, protocol=2)


def write_tiny_bundle(root, lengths=(5, 3, 4, 6), width=2048, feats=None):
    """4 videos: 2 'validation' (train) and 2 'test', 3 classes, bytes everywhere, duration (N,1)."""
    _, ann = wtalc_paths(root, "Thumos14reduced")
    os.makedirs(ann)
    names = [b"video_validation_1", b"video_validation_2", b"video_test_1", b"video_test_2"]
    np.save(os.path.join(ann, "videoname.npy"), np.array(names))
    np.save(os.path.join(ann, "subset.npy"), np.array([b"validation", b"validation", b"test", b"test"]))
    np.save(os.path.join(ann, "classlist.npy"), np.array([b"Diving", b"HighJump", b"Shotput"]))
    _save_py2_style(os.path.join(ann, "segments.npy"),
                    [[[0.5, 1.2]], [[0.0, 0.9], [1.0, 9.0]], [[1.0, 2.0]], [[0.1, 0.5]]])
    _save_py2_style(os.path.join(ann, "labels.npy"),
                    [[b"Diving"], [b"HighJump", b"Shotput"], [b"Shotput"], [b"Diving"]])
    _save_py2_style(os.path.join(ann, "labels_all.npy"),
                    [[b"Diving"], [b"HighJump", b"Shotput"], [b"Shotput"], [b"Diving"]])
    np.save(os.path.join(ann, "duration.npy"), np.array([[3.2], [1.9], [2.56], [3.84]]))
    if feats is None:
        rng = np.random.default_rng(0)
        feats = [rng.random((T, width)).astype(np.float32) for T in lengths]
    _save_py2_style(wtalc_paths(root, "Thumos14reduced")[0], feats)
    return root


def load(root):
    """The bundle's videos through the shared checks, an empty video an error (drop_empty=False;
    load_dataset drops them with a warning)."""
    classes, entries, source, ambiguous = wtalc_entries(str(root), "Thumos14reduced",
                                                        "validation", "test")
    return assemble(entries, classes, source, layout="wtalc", snippet_seconds=0.64,
                    drop_empty=False, ambiguous=ambiguous)


def test_tiny_bundle_loads(tmp_path, capsys):
    data = load(write_tiny_bundle(tmp_path))
    assert data.classes == ["Diving", "HighJump", "Shotput"]
    assert [v.name for v in data.split("train")] == ["video_validation_1", "video_validation_2"]
    assert [v.name for v in data.split("test")] == ["video_test_1", "video_test_2"]
    v = data.split("train")[1]
    assert v.features.shape == (3, 2048) and v.features.dtype == torch.float32
    assert v.labels.tolist() == [0.0, 1.0, 1.0]
    assert v.duration == pytest.approx(1.9)
    # the segment [1.0, 9.0] reaches past the 1.9 s video: clipped, with a warning
    assert v.segments == [(1, 0.0, 0.9), (2, 1.0, 1.9)]
    assert "1 segments reach outside" in capsys.readouterr().err


def test_real_annotation_arrays_with_tiny_features(tmp_path):
    """The shipped annotation files are the real Python-2 pickles: load them unchanged."""
    root = tmp_path / "b"
    _, ann = wtalc_paths(str(root), "Thumos14reduced")
    shutil.copytree(REAL_ANN, ann)
    a = read_wtalc(ann)
    assert len(a.videos) == 412 and a.classes[0] == "BaseballPitch"
    _save_py2_style(wtalc_paths(str(root), "Thumos14reduced")[0],
                    [np.ones((2, 2048), np.float32)] * 412)
    data = load(root)
    assert len(data.split("train")) == 200 and len(data.split("test")) == 212
    assert isinstance(data.videos[0].name, str) and data.videos[0].name.startswith("video_")


def test_dataset_items_and_padding_collate(tmp_path):
    data = load(write_tiny_bundle(tmp_path))
    ds = SnippetDataset(data.videos, 0.64)
    item = ds[0]
    assert item["rgb"].shape == (5, 1024) and item["flow"].shape == (5, 1024)
    assert torch.equal(torch.cat([item["rgb"], item["flow"]], 1), data.videos[0].features)
    b = collate([ds[0], ds[1]])
    assert b["rgb"].shape == (2, 5, 1024) and b["mask"].tolist()[1] == [True] * 3 + [False] * 2
    assert b["rgb"][1, 3:].abs().sum() == 0 and b["lengths"].tolist() == [5, 3]


def _expect_error(root, text):
    with pytest.raises(InputError) as e:
        load(root)
    msg = str(e.value)
    assert text in msg and "\n" not in msg
    return msg


def test_missing_features_file(tmp_path):
    root = write_tiny_bundle(tmp_path)
    os.remove(wtalc_paths(str(root), "Thumos14reduced")[0])
    assert "JOINTFeatures.npy: file not found" in _expect_error(root, "file not found")


def test_unreadable_features_file(tmp_path):
    root = write_tiny_bundle(tmp_path)
    with open(wtalc_paths(str(root), "Thumos14reduced")[0], "wb") as f:
        f.write(b"not a numpy file")
    _expect_error(root, "cannot read")


def test_annotation_arrays_of_different_lengths(tmp_path):
    root = write_tiny_bundle(tmp_path)
    _, ann = wtalc_paths(str(root), "Thumos14reduced")
    np.save(os.path.join(ann, "duration.npy"), np.array([[1.0], [2.0]]))
    _expect_error(root, "duration.npy has 2 entries but videoname.npy has 4")


def test_wrong_width(tmp_path):
    root = write_tiny_bundle(tmp_path, width=1024)
    _expect_error(root, "expected (T, 2048)")


def test_nan_in_features(tmp_path):
    feats = [np.ones((4, 2048), np.float32) for _ in range(4)]
    feats[2][1, 7] = np.nan
    msg = _expect_error(write_tiny_bundle(tmp_path, feats=feats), "NaN or Inf")
    assert "video_test_1" in msg


def test_video_with_no_snippets(tmp_path):
    feats = [np.ones((4, 2048), np.float32) for _ in range(4)]
    feats[1] = np.zeros((0, 2048), np.float32)
    msg = _expect_error(write_tiny_bundle(tmp_path, feats=feats), "no snippets")
    assert "video_validation_2" in msg


def test_label_not_in_class_list(tmp_path):
    root = write_tiny_bundle(tmp_path)
    _, ann = wtalc_paths(str(root), "Thumos14reduced")
    _save_py2_style(os.path.join(ann, "labels_all.npy"),
                    [[b"Diving"], [b"Bowling"], [b"Shotput"], [b"Diving"]])
    _expect_error(root, "'Bowling' is not in classlist.npy")


def test_streams_of_different_length_are_cut_with_a_warning():
    said = []
    rgb, flow = align_streams(torch.ones(7, 3), torch.ones(5, 3), "vidX", log=said.append)
    assert rgb.shape[0] == flow.shape[0] == 5
    assert "vidX" in said[0] and "cut to 5" in said[0]


def _summary(root, *more):
    """(exit code, summary as a dict or None, stderr) of dataset.py summary."""
    import contextlib
    import io
    import json

    import dataset
    from core.cli import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(dataset.main, ["summary", "--data-root", str(root), *more])
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


def test_the_untrimmednet_file_is_read_at_its_own_rate(tmp_path):
    """A bundle holding only <bundle>-UNT-JOINTFeatures.npy (W-TALC's feature_type UNT):
    read at the unt preset's 2.5 snippets a second; beside an I3D file, --features picks one,
    and without it the choice is one line."""
    write_tiny_bundle(tmp_path, lengths=(8, 5, 6, 10))
    i3d = wtalc_paths(str(tmp_path), "Thumos14reduced")[0]
    unt = wtalc_paths(str(tmp_path), "Thumos14reduced", "unt")[0]
    assert unt.endswith("Thumos14reduced-UNT-JOINTFeatures.npy")
    os.rename(i3d, unt)
    code, summary, _ = _summary(tmp_path)
    assert code == 0 and summary["features_file"] == unt
    assert summary["snippets_per_second"] == 2.5 and summary["splits"]["train"]["snippets"] == 13
    write_tiny_bundle(tmp_path / "i3d", lengths=(5, 3, 4, 6))
    shutil.move(wtalc_paths(str(tmp_path / "i3d"), "Thumos14reduced")[0], i3d)
    code, _, err = _summary(tmp_path)
    assert code == 2 and err == (f"error: {tmp_path}: holds Thumos14reduced-I3D-JOINTFeatures"
                                 f".npy and Thumos14reduced-UNT-JOINTFeatures.npy; choose one "
                                 f"with --features i3d or --features unt\n")
    code, summary, _ = _summary(tmp_path, "--features", "i3d")
    assert summary["features_file"] == i3d and summary["splits"]["train"]["snippets"] == 8
    assert summary["snippets_per_second"] == 25 / 16
    code, summary, _ = _summary(tmp_path, "--features", "unt")
    assert summary["features_file"] == unt and summary["splits"]["train"]["snippets"] == 13
