"""One tiny dataset written in all four feature layouts (in their exact real formats), read back
identically; auto-detection; `summary` and `convert`; the bad-input checks of every layout."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from readers import annotation_reader
import dataset as ds
from dataset import load_dataset
from training.batches import SnippetDataset
from readers.features import video_streams
from readers.features import LazyFeatures
from readers.layouts import detect_layout, wtalc_paths
from opts import layout_snippet_seconds
from test_dataset import _save_py2_style
from core.cli import cli
from core.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATES = layout_snippet_seconds()      # each layout's own seconds per snippet (opts.py)
ANET_ANN = os.path.join(ROOT, "data", "activitynet12", "ActivityNet1.2-Annotations")
CLASSES = ["Diving", "HighJump", "Shotput"]


def tiny_videos():
    """5 videos, 3 classes: one segment reaches past its video, one test video has no label,
    one train video has all-zero features (dropped)."""
    rng = np.random.default_rng(0)
    feats = lambda T: rng.random((T, 2048)).astype(np.float32)  # noqa: E731
    return [
        dict(name="video_validation_1", split="train", feats=feats(5), labels=["Diving"],
             segments=[("Diving", 0.5, 1.2)], duration=3.2),
        dict(name="video_validation_2", split="train", feats=feats(3),
             labels=["HighJump", "Shotput"],
             segments=[("HighJump", 0.0, 0.9), ("Shotput", 1.0, 9.0)], duration=1.9),
        dict(name="video_validation_3", split="train", feats=np.zeros((4, 2048), np.float32),
             labels=["Diving"], segments=[("Diving", 0.1, 0.2)], duration=2.56),
        dict(name="video_test_1", split="test", feats=feats(4), labels=["Shotput"],
             segments=[("Shotput", 1.0, 2.0), ("Shotput", 2.2, 2.5)], duration=2.56),
        dict(name="video_test_2", split="test", feats=feats(6), labels=[], segments=[],
             duration=3.84),
    ]


# ---------------------------------------------------------------------------
# Writers of the four layouts
# ---------------------------------------------------------------------------

def write_wtalc(root, videos):
    _, ann = wtalc_paths(str(root), "Thumos14reduced")
    os.makedirs(ann)
    subset = {"train": b"validation", "test": b"test"}
    np.save(os.path.join(ann, "videoname.npy"), np.array([v["name"].encode() for v in videos]))
    np.save(os.path.join(ann, "subset.npy"), np.array([subset[v["split"]] for v in videos]))
    np.save(os.path.join(ann, "classlist.npy"), np.array([c.encode() for c in CLASSES]))
    _save_py2_style(os.path.join(ann, "segments.npy"),
                    [[[s, e] for _, s, e in v["segments"]] for v in videos])
    _save_py2_style(os.path.join(ann, "labels.npy"),
                    [[c.encode() for c, _, _ in v["segments"]] for v in videos])
    _save_py2_style(os.path.join(ann, "labels_all.npy"),
                    [[c.encode() for c in v["labels"]] for v in videos])
    np.save(os.path.join(ann, "duration.npy"), np.array([[v["duration"]] for v in videos]))
    _save_py2_style(wtalc_paths(str(root), "Thumos14reduced")[0], [v["feats"] for v in videos])
    return str(root)


def gt_json(videos):
    """ActivityNet-style ground truth with string segments, as BaS-Net ships it."""
    return {"database": {v["name"]: {
        "subset": "validation" if v["split"] == "train" else "test",
        "duration": v["duration"],
        "annotations": [{"segment": [str(s), str(e)], "label": c} for c, s, e in v["segments"]]}
        for v in videos}}


def write_folders(root, videos, joint=False):
    os.makedirs(root)
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump(gt_json(videos), f)
    for split in ("train", "test"):
        names = [v["name"] for v in videos if v["split"] == split]
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    for v in videos:
        base = os.path.join(root, "features", v["split"])
        if joint:
            os.makedirs(base, exist_ok=True)
            np.save(os.path.join(base, v["name"] + ".npy"), v["feats"])
            continue
        for stream, part in (("rgb", v["feats"][:, :1024]), ("flow", v["feats"][:, 1024:])):
            os.makedirs(os.path.join(base, stream), exist_ok=True)
            np.save(os.path.join(base, stream, v["name"] + ".npy"), np.ascontiguousarray(part))
    return str(root)


def write_emmil(root, videos, annotations="gt.json"):
    """The released layout; its ground truth as gt.json in the root (or nowhere)."""
    counter = {"train": 0, "test": 0}
    for v in videos:
        i = counter[v["split"]]
        counter[v["split"]] += 1
        y = torch.zeros(len(CLASSES))
        y[[CLASSES.index(c) for c in v["labels"]]] = 1.0
        parts = {"X_RGB": torch.from_numpy(v["feats"][:, :1024].copy()),
                 "X_flow": torch.from_numpy(v["feats"][:, 1024:].copy()),
                 "Y_flow": y, "Name_flow": v["name"]}
        for d, obj in parts.items():
            os.makedirs(os.path.join(root, v["split"], d), exist_ok=True)
            torch.save(obj, os.path.join(root, v["split"], d, f"{i}.pt"))
    if annotations == "gt.json":
        with open(os.path.join(root, "gt.json"), "w") as f:
            json.dump(gt_json(videos), f)
    return str(root)


def write_hdf5_by_hand(path, videos):
    """The documented schema written directly with h5py (not with hdf5_format.write_hdf5)."""
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "emmil-features"
        f.attrs["version"] = 1
        f.attrs["classes"] = np.array(CLASSES, dtype=text)
        f.attrs["snippet_seconds"] = 0.64
        g = f.create_group("videos", track_order=True)
        for v in videos:
            vg = g.create_group(v["name"])
            vg.attrs["subset"] = v["split"]
            vg.attrs["duration"] = v["duration"]
            vg.attrs["snippet_seconds"] = 0.64
            labels = np.zeros(len(CLASSES), np.float32)
            labels[[CLASSES.index(c) for c in v["labels"]]] = 1
            vg.attrs["labels"] = labels
            vg.attrs["segments"] = np.array([(CLASSES.index(c), s, e) for c, s, e in v["segments"]],
                                            dtype=np.float64).reshape(-1, 3)
            vg.create_dataset("rgb", data=v["feats"][:, :1024])
            vg.create_dataset("flow", data=v["feats"][:, 1024:])
    return str(path)


def write_all(tmp_path, videos=None):
    videos = videos or tiny_videos()
    return {"wtalc": write_wtalc(tmp_path / "wtalc", videos),
            "folders": write_folders(str(tmp_path / "folders"), videos),
            "emmil": write_emmil(str(tmp_path / "emmil"), videos),
            "hdf5": write_hdf5_by_hand(str(tmp_path / "tiny.h5"), videos)}


def load(root, **kw):
    return load_dataset(str(root), "Thumos14reduced", "validation", "test", log=lambda m: None,
                        layout_seconds=RATES, **kw)


def content(data):
    """Everything a VideoSet says, features as float32 (T, 2048) arrays."""
    return {"classes": data.classes, "ambiguous": data.ambiguous, "warnings": data.warnings,
            "snippet_seconds": data.snippet_seconds,
            "videos": [(v.name, v.split, v.labels.tolist(), v.duration, v.segments,
                        torch.cat(video_streams(v.features), 1).numpy()) for v in data.videos]}


def assert_same(a, b, exact=True):
    ca, cb = content(a), content(b)
    va, vb = ca.pop("videos"), cb.pop("videos")
    assert ca == cb
    assert [x[:5] for x in va] == [x[:5] for x in vb]
    for x, y in zip(va, vb):
        if exact:
            np.testing.assert_array_equal(x[5], y[5])
        else:
            np.testing.assert_allclose(x[5], y[5], rtol=1e-3, atol=1e-3)


def summary(capsys, *args):
    assert ds.main(["summary", *args]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------
# The same data in four layouts
# ---------------------------------------------------------------------------

def test_four_layouts_load_identically(tmp_path):
    roots = write_all(tmp_path)
    # the emmil layout's own rate is the released clips' 1.25 s: ask for I3D's everywhere
    sets = {layout: load(root, snippet_seconds=0.64) for layout, root in roots.items()}
    ref = sets["wtalc"]
    assert ref.classes == CLASSES
    assert [v.name for v in ref.videos] == ["video_validation_1", "video_validation_2",
                                            "video_test_1", "video_test_2"]
    v = ref.videos[1]
    assert v.labels.tolist() == [0.0, 1.0, 1.0] and v.duration == pytest.approx(1.9)
    assert v.segments == [(1, 0.0, 0.9), (2, 1.0, 1.9)]
    assert ref.warnings == [
        "1 videos with empty or all-zero features were dropped: video_validation_3",
        "1 segments reach outside their video and were clipped to [0, duration]",
        "1 videos have an empty label set (EM training skips them): video_test_2"]
    for layout, data in sets.items():
        assert data.layout == layout
        assert_same(ref, data)
    joint = write_folders(str(tmp_path / "joint"), tiny_videos(), joint=True)
    assert_same(ref, load(joint))


def test_each_layout_has_its_own_snippet_length_and_a_wrong_one_is_warned(tmp_path):
    roots = write_all(tmp_path)
    rates = {layout: load(root).snippet_seconds for layout, root in roots.items()}
    assert rates == {"wtalc": 0.64, "folders": 0.64, "emmil": 1.25, "hdf5": 0.64}
    # the tiny videos' durations are their snippets x 0.64 s: 1.25 s makes them ~1.95x too long
    said = load(roots["emmil"]).warnings
    assert said[-1].startswith("the features last 1.95 x the annotated durations (median over "
                               "4 videos: 4.5 snippets x 1.25 s = 5.6 s against 2.9 s annotated)")
    assert "--features" in said[-1]
    assert not any("annotated durations" in w for w in load(roots["emmil"], snippet_seconds=0.64).warnings)
    said = load(roots["wtalc"], snippet_seconds=0.4).warnings
    assert said[-1].startswith("the features last 0.62 x the annotated durations")


def test_summary_is_the_same_in_every_layout(tmp_path, capsys):
    roots = write_all(tmp_path)
    out = {layout: summary(capsys, "--data-root", root, "--features", "i3d")
           for layout, root in roots.items()}
    for layout, s in out.items():
        assert s.pop("layout") == layout
    assert out["wtalc"].pop("features_file").endswith("-I3D-JOINTFeatures.npy")
    ref = out["wtalc"]
    assert ref["dataset"] == "thumos14" and ref["classes"] == CLASSES
    assert ref["snippets_per_second"] == pytest.approx(1 / 0.64) and ref["feature_dim"] == 1024
    assert ref["splits"] == {"train": {"videos": 2, "snippets": 8, "segments": 3},
                             "test": {"videos": 2, "snippets": 10, "segments": 2}}
    assert len(ref["warnings"]) == 3
    assert all(s == ref for s in out.values())


def test_layouts_are_detected(tmp_path):
    roots = write_all(tmp_path)
    for layout, root in roots.items():
        assert detect_layout(root) == layout
    assert detect_layout(str(tmp_path / "nothing")) == "wtalc"   # whose error explains
    with pytest.raises(InputError, match="annotation folder not found"):
        load(tmp_path / "nothing")


def test_emmil_with_wtalc_annotation_folder(tmp_path):
    videos = tiny_videos()
    ref = load(write_wtalc(tmp_path / "w", videos))
    root = write_emmil(str(tmp_path / "e"), videos, annotations=None)
    _, ann = wtalc_paths(str(tmp_path / "w"), "Thumos14reduced")
    assert_same(ref, load(root, annotations=ann, snippet_seconds=0.64))


def test_memory_modes_hand_out_float32(tmp_path):
    roots = write_all(tmp_path)
    streamed = load(roots["hdf5"])
    assert isinstance(streamed.videos[0].features, LazyFeatures)
    assert streamed.videos[0].num_snippets == 5
    half = load(roots["hdf5"], memory="float16")
    assert half.videos[0].features.dtype == torch.float16
    item = SnippetDataset(half.videos, 0.64)[0]
    assert item["rgb"].dtype == torch.float32 and item["rgb"].shape == (5, 1024)
    assert_same(streamed, half, exact=False)
    in_ram = load(roots["folders"], memory="float32")
    assert in_ram.videos[0].features.dtype == torch.float32
    assert_same(streamed, in_ram)
    with pytest.raises(InputError, match="cannot be streamed"):
        load(roots["wtalc"], memory="stream")


def test_wtalc_features_are_not_copied(tmp_path):
    data = load(write_wtalc(tmp_path, tiny_videos()))
    f = data.videos[0].features
    assert f.dtype == torch.float32 and f.is_contiguous()
    # shares memory with the array numpy unpickled: its base is the pickled bytes buffer
    assert f.numpy().base is not None


# ---------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["wtalc", "folders", "emmil"])
def test_convert_round_trip(tmp_path, capsys, source):
    root = write_all(tmp_path)[source]
    out = str(tmp_path / "out.h5")
    assert ds.main(["convert", "--data-root", root, "--to", "hdf5", out]) == 0
    assert os.listdir(tmp_path).count("out.h5") == 1
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    original, converted = load(root), load(out)
    assert_same(original, converted)           # warnings included (kept as /notes)
    capsys.readouterr()
    a = summary(capsys, "--data-root", root)
    b = summary(capsys, "--data-root", out)
    a.pop("features_file", None)                # the W-TALC bundle's file read
    assert a.pop("layout") == source and b.pop("layout") == "hdf5" and a == b
    with h5py.File(out, "r") as f:
        assert f["videos/video_test_1/rgb"].dtype == np.float32
        assert list(f["videos"]) == [v.name for v in original.videos]


def test_convert_fp16(tmp_path, capsys):
    root = write_all(tmp_path)["folders"]
    full, half = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    assert ds.main(["convert", "--data-root", root, "--to", "hdf5", full]) == 0
    assert ds.main(["convert", "--data-root", root, "--to", "hdf5", half, "--fp16"]) == 0
    with h5py.File(half, "r") as f:
        assert f["videos/video_test_1/flow"].dtype == np.float16
    assert os.path.getsize(half) < os.path.getsize(full)
    assert_same(load(full), load(half), exact=False)
    capsys.readouterr()
    a, b = summary(capsys, "--data-root", full), summary(capsys, "--data-root", half)
    assert a == b


def test_convert_keeps_dataset_and_rate(tmp_path, capsys):
    root = write_all(tmp_path)["folders"]
    out = str(tmp_path / "o.h5")
    assert ds.main(["convert", "--data-root", root, "--dataset", "synthetic", "--features", "unt",
                    "--to", "hdf5", out]) == 0
    capsys.readouterr()
    s = summary(capsys, "--data-root", out)
    assert s["dataset"] == "synthetic" and s["snippets_per_second"] == pytest.approx(2.5)
    # run.py's rate must match the file's
    with pytest.raises(InputError, match="0.4 s per snippet"):
        load(out, snippet_seconds=0.64)


def test_convert_bad_input_writes_nothing(tmp_path, capsys):
    root = write_all(tmp_path)["folders"]
    os.remove(os.path.join(root, "split_test.txt"))
    out = tmp_path / "out" / "x.h5"
    assert cli(ds.main, ["convert", "--data-root", root, "--to", "hdf5", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "split_test.txt: file not found" in err
    assert "\n" not in err and not out.exists()


def test_convert_failing_midway_leaves_no_file(tmp_path, capsys):
    videos = tiny_videos()
    videos[3]["feats"][0, 0] = 1e6                          # beyond float16
    root = write_folders(str(tmp_path / "f"), videos)
    out = tmp_path / "o" / "x.h5"
    out.parent.mkdir()
    assert cli(ds.main, ["convert", "--data-root", root, "--to", "hdf5", str(out), "--fp16"]) == 2
    assert "float16 range" in capsys.readouterr().err
    assert os.listdir(out.parent) == []


def test_convert_refuses_to_overwrite(tmp_path, capsys):
    root = write_all(tmp_path)["folders"]
    out = tmp_path / "o.h5"
    out.write_text("keep")
    assert cli(ds.main, ["convert", "--data-root", root, "--to", "hdf5", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep"
    assert cli(ds.main, ["convert", "--data-root", root, "--to", "hdf5", str(out), "--overwrite"]) == 0
    assert h5py.is_hdf5(str(out))


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "dataset.py"), "summary",
                        "--data-root", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "annotation folder not found" in r.stderr
    with pytest.raises(SystemExit) as e:
        cli(ds.main, ["summary", "--layout", "zip", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert cli(ds.main, ["convert", "--data-root", str(tmp_path), "--to", "csv", "x.csv"]) == 2
    assert "only hdf5" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# ActivityNet1.2: the real annotation arrays with tiny features
# ---------------------------------------------------------------------------

def test_activitynet_bundle(tmp_path):
    root = tmp_path / "anet"
    feat_path, ann = wtalc_paths(str(root), "ActivityNet1.2")
    shutil.copytree(ANET_ANN, ann)
    a = annotation_reader.read_wtalc(ann)
    n = len(a.videos)
    # one shared array: pickle stores it once, so the file stays small
    _save_py2_style(feat_path, [np.ones((2, 2048), np.float32)] * n)
    said = []
    data = load_dataset(str(root), "ActivityNet1.2", "training", "validation", log=said.append,
                        layout_seconds=RATES)
    assert n == 7202 and len(data.classes) == 100
    assert len(data.split("train")) == 4819 and len(data.split("test")) == 2383
    assert data.videos[0].name == "video_4" and data.videos[0].duration == pytest.approx(92.18)
    outside = sum(1 for v in a.videos.values() for _, s, e in v.segments
                  if s < 0 or e > v.duration)
    assert said[0] == (f"{outside} segments reach outside their video and were clipped to "
                       f"[0, duration]")
    # the stand-in features have 2 snippets a video: far shorter than the annotations
    assert len(said) == 2 and said[1].startswith("the features last 0.01 x the annotated")
    assert all(0 <= s <= e <= v.duration for v in data.videos for _, s, e in v.segments)
    assert data.ambiguous == []


# ---------------------------------------------------------------------------
# Bad input, layout by layout
# ---------------------------------------------------------------------------

def expect_error(root, text, **kw):
    with pytest.raises(InputError) as e:
        load(root, **kw)
    msg = str(e.value)
    assert text in msg and "\n" not in msg, msg
    return msg


def test_wtalc_empty_and_zero_videos_dropped_with_one_warning(tmp_path):
    videos = tiny_videos()
    videos[0]["feats"] = np.zeros((0, 2048), np.float32)
    said = []
    data = load_dataset(write_wtalc(tmp_path, videos), "Thumos14reduced", "validation", "test",
                        log=said.append, layout_seconds=RATES)
    assert [v.name for v in data.split("train")] == ["video_validation_2"]
    assert said[0] == ("2 videos with empty or all-zero features were dropped: "
                       "video_validation_1, video_validation_3")


def test_wtalc_nan_is_still_an_error(tmp_path):
    videos = tiny_videos()
    videos[3]["feats"][2, 5] = np.inf
    msg = expect_error(write_wtalc(tmp_path, videos), "NaN or Inf")
    assert "JOINTFeatures.npy" in msg and "video_test_1" in msg


def test_wtalc_missing_subset(tmp_path):
    root = write_wtalc(tmp_path, tiny_videos())
    with pytest.raises(InputError, match="no video of the subset 'training'"):
        load_dataset(root, "Thumos14reduced", "training", "test", layout_seconds=RATES)


def test_wtalc_wrong_bundle_names_the_one_found(tmp_path):
    root = write_wtalc(tmp_path, tiny_videos())
    with pytest.raises(InputError, match="found Thumos14reduced-Annotations"):
        load_dataset(root, "ActivityNet1.2", "training", "validation", layout_seconds=RATES)


def test_all_videos_of_a_split_dropped(tmp_path):
    videos = [v for v in tiny_videos() if v["name"] != "video_validation_1"]
    videos[0]["feats"][:] = 0
    expect_error(write_folders(str(tmp_path / "f"), videos), "no video of the train split is left")


def test_folders_missing_files(tmp_path):
    root = write_all(tmp_path)["folders"]
    os.remove(os.path.join(root, "features", "train", "flow", "video_validation_2.npy"))
    msg = expect_error(root, "file not found")
    assert "flow/video_validation_2.npy" in msg and "split_train.txt" in msg
    os.remove(os.path.join(root, "gt.json"))
    expect_error(root, "gt.json: file not found")


def test_folders_missing_split_list_and_folder(tmp_path):
    root = write_all(tmp_path)["folders"]
    shutil.rmtree(os.path.join(root, "features", "test"))
    expect_error(root, "features/test: folder not found")
    os.remove(os.path.join(root, "split_test.txt"))
    expect_error(root, "split_test.txt: file not found")


def test_folders_video_not_in_gt(tmp_path):
    root = write_all(tmp_path)["folders"]
    with open(os.path.join(root, "split_test.txt"), "a") as f:
        f.write("video_test_9\n")
    msg = expect_error(root, "video video_test_9 is not in")
    assert "split_test.txt" in msg and "gt.json" in msg


def test_folders_bad_gt_json(tmp_path):
    root = write_all(tmp_path)["folders"]
    gt = os.path.join(root, "gt.json")
    with open(gt) as f:
        g = json.load(f)
    g["database"]["video_test_1"]["annotations"][0]["segment"] = ["1.0", "soon"]
    with open(gt, "w") as f:
        json.dump(g, f)
    expect_error(root, "gt.json: video video_test_1: segment time 'soon' is not a number")
    with open(gt, "w") as f:
        f.write("{not json")
    expect_error(root, "gt.json: malformed JSON")


def test_folders_wrong_width_and_nan(tmp_path):
    root = write_all(tmp_path)["folders"]
    path = os.path.join(root, "features", "test", "rgb", "video_test_1.npy")
    np.save(path, np.ones((4, 1000), np.float32))
    msg = expect_error(root, "RGB features have shape (4, 1000), expected (T, 1024)")
    assert "rgb/video_test_1.npy" in msg
    bad = np.ones((4, 1024), np.float32)
    bad[1, 1] = np.nan
    np.save(path, bad)
    assert "video_test_1" in expect_error(root, "NaN or Inf")


def test_folders_joint_wrong_width(tmp_path):
    root = write_folders(str(tmp_path / "j"), tiny_videos(), joint=True)
    np.save(os.path.join(root, "features", "train", "video_validation_1.npy"),
            np.ones((3, 1024), np.float32))
    expect_error(root, "expected (T, 1024) in rgb/ and flow/, or (T, 2048) here")


def test_folders_stream_length_mismatch_is_cut(tmp_path):
    root = write_all(tmp_path)["folders"]
    path = os.path.join(root, "features", "test", "flow", "video_test_2.npy")
    np.save(path, np.load(path)[:4])
    data = load(root)
    v = data.split("test")[1]
    assert v.num_snippets == 4 and video_streams(v.features)[0].shape == (4, 1024)
    assert "video video_test_2: RGB has 6 snippets and flow 4; both cut to 4" in data.warnings


def test_emmil_needs_annotations(tmp_path):
    root = write_emmil(str(tmp_path / "e"), tiny_videos(), annotations=None)
    expect_error(root, "needs --annotations")
    expect_error(root, "annotations not found", annotations=str(tmp_path / "gt.json"))


def test_emmil_missing_files(tmp_path):
    root = write_all(tmp_path)["emmil"]
    os.remove(os.path.join(root, "test", "Name_flow", "1.pt"))
    assert "test/Name_flow/1.pt: file not found" in expect_error(root, "file not found")
    shutil.rmtree(os.path.join(root, "test"))
    expect_error(root, "test/X_RGB: folder not found")


def test_emmil_bad_numbering(tmp_path):
    root = write_all(tmp_path)["emmil"]
    os.rename(os.path.join(root, "train", "X_RGB", "1.pt"), os.path.join(root, "train", "X_RGB", "7.pt"))
    expect_error(root, "7.pt: unexpected file")


def test_emmil_unknown_video_and_bad_labels(tmp_path):
    root = write_all(tmp_path)["emmil"]
    torch.save("video_test_77", os.path.join(root, "test", "Name_flow", "0.pt"))
    expect_error(root, "video video_test_77 is not in")
    torch.save("video_test_1", os.path.join(root, "test", "Name_flow", "0.pt"))
    torch.save(torch.ones(5), os.path.join(root, "test", "Y_flow", "0.pt"))
    msg = expect_error(root, "label vector of shape (5,), expected (3,)")
    assert "Y_flow/0.pt" in msg and "video_test_1" in msg


def test_emmil_label_not_in_class_list(tmp_path):
    videos = tiny_videos()
    write_wtalc(tmp_path / "w", videos)
    root = write_emmil(str(tmp_path / "e"), videos, annotations=None)
    _, ann = wtalc_paths(str(tmp_path / "w"), "Thumos14reduced")
    _save_py2_style(os.path.join(ann, "labels_all.npy"),
                    [[b"Diving"], [b"Bowling"], [b"Diving"], [b"Shotput"], []])
    expect_error(root, "'Bowling' is not in classlist.npy", annotations=ann)


def test_emmil_shapes_inf_and_mismatch(tmp_path):
    root = write_all(tmp_path)["emmil"]
    path = os.path.join(root, "train", "X_flow", "0.pt")
    torch.save(torch.ones(2, 5, 1024), path)
    expect_error(root, "flow features have shape (2, 5, 1024)")
    x = torch.ones(5, 1024)
    x[0, 0] = float("inf")
    torch.save(x, path)
    expect_error(root, "NaN or Inf")
    torch.save(torch.rand(7, 1024), path)                    # longer flow: cut to RGB's 5
    data = load(root)
    assert data.videos[0].num_snippets == 5
    assert any("RGB has 5 snippets and flow 7" in w for w in data.warnings)


def test_hdf5_not_hdf5_and_missing_attributes(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    expect_error(bad, "cannot read as HDF5", layout="hdf5")
    path = write_all(tmp_path)["hdf5"]
    with h5py.File(path, "a") as f:
        del f.attrs["classes"]
    expect_error(path, "attribute 'classes' missing")


def test_hdf5_bad_video_groups(tmp_path):
    path = write_all(tmp_path)["hdf5"]
    cases = [
        (lambda g: g.__delitem__("flow"), "dataset 'flow' missing"),
        (lambda g: g.attrs.__setitem__("subset", "val"), "subset 'val', expected"),
        (lambda g: g.attrs.__setitem__("labels", np.ones(4)), "labels of shape (4,), expected (3,)"),
        (lambda g: g.attrs.__setitem__("segments", np.array([[5.0, 0.1, 0.2]])),
         "segment class index 5 is not one of the 3 classes"),
        (lambda g: g.attrs.__setitem__("segments", np.array([[0.0, 0.9, 0.2]])),
         "ends before it starts"),
        (lambda g: g.attrs.__setitem__("snippet_seconds", 1.25), "snippet_seconds differs"),
    ]
    for i, (change, text) in enumerate(cases):
        copy = str(tmp_path / f"c{i}.h5")
        shutil.copy(path, copy)
        with h5py.File(copy, "a") as f:
            change(f["videos/video_test_1"])
        assert "video_test_1" in expect_error(copy, text)


def test_hdf5_nan_and_mismatch(tmp_path):
    path = write_all(tmp_path)["hdf5"]
    with h5py.File(path, "a") as f:
        f["videos/video_test_2/rgb"][3, 3] = np.nan
    assert "video_test_2" in expect_error(path, "NaN or Inf")
    with h5py.File(path, "a") as f:
        del f["videos/video_test_2/rgb"]
        f["videos/video_test_2"].create_dataset("rgb", data=np.ones((5, 1024), np.float32))
    data = load(path)
    v = data.split("test")[1]
    assert v.num_snippets == 5 and video_streams(v.features)[1].shape == (5, 1024)
    assert "video video_test_2: RGB has 5 snippets and flow 6; both cut to 5" in data.warnings


def test_unknown_layout_and_memory(tmp_path):
    with pytest.raises(InputError, match="--layout zip"):
        load(tmp_path, layout="zip")
    with pytest.raises(InputError, match="memory="):
        load(tmp_path, memory="gpu")


def test_max_videos_keeps_the_first_of_each_split(tmp_path):
    for layout, root in write_all(tmp_path).items():
        data = load(root, max_videos=1)
        assert [v.name for v in data.videos] == ["video_validation_1", "video_test_1"], layout


def test_run_py_dry_run_on_the_folders_layout(tmp_path):
    root = write_all(tmp_path)["folders"]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--dataset", "thumos14",
                        "--data-root", root, "--dry-run", "--threads", "1", "--no-report",
                        "--no-tensorboard", "--output-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_real_thumos_annotations_clip_30_segments(tmp_path):
    root = tmp_path / "t"
    feat_path, ann = wtalc_paths(str(root), "Thumos14reduced")
    shutil.copytree(os.path.join(ROOT, "data", "thumos14", "Thumos14reduced-Annotations"), ann)
    _save_py2_style(feat_path, [np.ones((2, 2048), np.float32)] * 412)
    data = load(root)
    assert data.warnings[0] == ("30 segments reach outside their video and were clipped to "
                                "[0, duration]")
    assert data.warnings[1].startswith("1 videos have an empty label set")
    assert all(0 <= s <= e <= v.duration for v in data.videos for _, s, e in v.segments)


def test_real_basnet_ground_truth_in_the_folders_layout(tmp_path):
    real = os.path.join(ROOT, "data", "thumos14")
    root = tmp_path / "b"
    root.mkdir()
    shutil.copy(os.path.join(real, "gt_basnet_210.json"), root / "gt.json")
    shutil.copy(os.path.join(real, "split_train.txt"), root / "split_train.txt")
    shutil.copy(os.path.join(real, "split_test_210.txt"), root / "split_test.txt")
    for split in ("train", "test"):
        (root / "features" / split).mkdir(parents=True)
        for name in (root / f"split_{split}.txt").read_text().split():
            np.save(root / "features" / split / f"{name}.npy", np.ones((2, 2048), np.float32))
    gt = annotation_reader.read_gt_json(str(root / "gt.json"))
    classes = gt.classes
    assert gt.videos["video_test_0000896"].segments[0] == ("HighJump", 18.6, 24.8)  # strings
    data = load(root)
    wtalc = annotation_reader.read_wtalc(os.path.join(real, "Thumos14reduced-Annotations"))
    assert data.classes == classes == wtalc.classes
    assert len(data.split("train")) == 200 and len(data.split("test")) == 210
    v = next(v for v in data.videos if v.name == "video_test_0000896")
    assert v.duration == pytest.approx(2 * 0.64)              # gt.json has no duration
    assert len(v.segments) == 7


# ---------------------------------------------------------------------------
# The class list: the preset's canonical one, whatever subset an annotation file holds
# ---------------------------------------------------------------------------

THUMOS20 = ds.read_class_list(os.path.join(ROOT, "data", "thumos14", "classes.txt"))


def test_canonical_class_list_is_the_wtalc_classlist():
    wtalc = annotation_reader.read_wtalc(os.path.join(ROOT, "data", "thumos14",
                                                      "Thumos14reduced-Annotations"))
    assert THUMOS20 == wtalc.classes and len(THUMOS20) == 20
    anet = ds.read_class_list(os.path.join(ROOT, "data", "activitynet12", "classes.txt"))
    assert anet == annotation_reader.read_wtalc(ANET_ANN).classes and len(anet) == 100


def test_a_gt_json_with_few_classes_is_indexed_by_the_canonical_list(tmp_path):
    # the released layout's label vectors are 20 wide; the gt.json names only 3 classes
    root = str(tmp_path / "emmil")
    write_emmil(root, tiny_videos())
    for d in ("train", "test"):
        folder = os.path.join(root, d, "Y_flow")
        for f in os.listdir(folder):
            y3 = torch.load(os.path.join(folder, f), weights_only=True)
            y20 = torch.zeros(20)
            y20[[THUMOS20.index(CLASSES[i]) for i in torch.nonzero(y3).flatten().tolist()]] = 1
            torch.save(y20, os.path.join(folder, f))
    with pytest.raises(InputError, match=r"label vector of shape \(20,\), expected \(3,\)"):
        load(root)                                    # the annotations' own 3 classes
    data = load(root, classes=THUMOS20, snippet_seconds=0.64)
    folders = load(write_folders(str(tmp_path / "f"), tiny_videos()), classes=THUMOS20)
    for d in (data, folders):
        assert d.classes == THUMOS20
        v = next(v for v in d.videos if v.name == "video_validation_2")
        assert torch.nonzero(v.labels).flatten().tolist() == [11, 15]   # HighJump, Shotput
        assert v.segments == [(11, 0.0, 0.9), (15, 1.0, 1.9)]


def test_a_label_outside_the_class_list_is_refused(tmp_path):
    videos = tiny_videos()
    videos[0]["labels"] = ["Diving"]
    root = write_folders(str(tmp_path / "f"), videos)
    with pytest.raises(InputError, match=r"gt.json: classes not in the class list \(2 classes\): "
                                         r"'Shotput'"):
        load(root, classes=["Diving", "HighJump"])
