"""No input runs code: crafted pickles in every array of a W-TALC bundle are refused by the
three commands (run.py, evaluate.py, dataset.py) with one line and exit code 2, and names read
from data files never become paths outside the data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from readers import annotation_reader
from core.errors import InputError
from core.names import check_video_name
from core.safe_load import load_npy
from readers.layouts import wtalc_paths
from test_dataset import REAL_ANN, _save_py2_style, write_tiny_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANET_ANN = os.path.join(ROOT, "data", "activitynet12", "ActivityNet1.2-Annotations")
BUNDLE = "Thumos14reduced"
ARRAYS = ["videoname", "subset", "classlist", "segments", "labels", "labels_all", "duration"]


class OpensAFile:
    """Unpickling this creates (truncates) `marker`: what a hostile bundle would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_crafted(path, payload, n=4):
    """An object .npy of n entries, the second one `payload`, pickled as the bundle is."""
    values = [[b"x"]] * n
    values[1] = payload
    if os.path.exists(path):
        os.remove(path)
    _save_py2_style(path, values)


def crafted_bundle(tmp_path, target, payload):
    """A tiny W-TALC bundle whose `target` array (a name of ARRAYS, or 'features') is crafted."""
    root = str(tmp_path / "data")
    write_tiny_bundle(root)
    feat_path, ann = wtalc_paths(root, BUNDLE)
    write_crafted(feat_path if target == "features" else os.path.join(ann, target + ".npy"),
                  payload)
    return root, ann


def command(*args):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def in_process(script, args, capsys):
    """(exit code, stderr) of a command's main run in this process, through its cli frame."""
    import importlib
    from core.cli import cli
    capsys.readouterr()
    main = importlib.import_module(script[:-len(".py")]).main
    try:
        code = cli(main, list(args))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("target", ARRAYS + ["features"])
def test_crafted_pickle_runs_nothing_in_any_command(tmp_path, target, capsys):
    """Each command in this process (a process of its own costs seconds of imports); the
    'labels' bundle also through the real commands, as separate processes."""
    marker = tmp_path / "pwned"
    root, ann = crafted_bundle(tmp_path, target, OpensAFile(str(marker)))
    preds = tmp_path / "results.json"
    preds.write_text(json.dumps({"results": {"video_test_1": [
        {"label": "Shotput", "segment": [1.0, 2.0], "score": 0.9}]}}))
    bad = wtalc_paths(root, BUNDLE)[0] if target == "features" else \
        os.path.join(ann, target + ".npy")
    runs = {"run.py": ("--dataset", "thumos14", "--data-root", root,
                       "--output-dir", str(tmp_path / "out"), "--no-tensorboard"),
            "dataset.py": ("summary", "--data-root", root)}
    if target != "features":            # evaluate.py reads only the annotation arrays
        runs["evaluate.py"] = (str(preds), "--gt", ann)
    if target == "labels":
        started = {name: command(name, *args) for name, args in runs.items()}
        results = {}
        for name, p in started.items():
            err = p.communicate(timeout=120)[1]
            results[name] = (p.returncode, err)
    else:
        results = {name: in_process(name, args, capsys) for name, args in runs.items()}
    for name, (code, err) in results.items():
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert bad in lines[0] and "refused to load" in lines[0], (name, err)
        assert "io.open" in lines[0] or "builtins.open" in lines[0], (name, err)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_crafted_pickle_of_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "videoname.npy")
    write_crafted(path, RunsACommand(marker))
    with pytest.raises(InputError) as e:
        load_npy(path)
    assert "refused to load: it asks to build posix.system" in str(e.value)
    assert str(e.value).startswith(path) and not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("__builtin__", "getattr"),
                                          ("numpy", "load"), ("pickle", "loads"),
                                          ("numpy.testing", "runstring")])
def test_every_other_global_is_refused(tmp_path, module, name):
    # a hand-written protocol-2 pickle: GLOBAL module name, then STOP
    path = tmp_path / "x.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"shape": (1,), "fortran_order": False,
                                                 "descr": "|O"})
        f.write(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b".")
    with pytest.raises(InputError, match=f"asks to build {module}.{name} "):
        load_npy(str(path))


def test_codecs_encode_only_as_pickle_writes_bytes(tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as f:          # _codecs.encode('x', 'hex') is not a bytes literal
        np.lib.format.write_array_header_1_0(f, {"shape": (1,), "fortran_order": False,
                                                 "descr": "|O"})
        f.write(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x03\x00\x00\x00hex\x86R.")
    with pytest.raises(InputError, match="cannot read"):
        load_npy(str(path))


@pytest.mark.parametrize("folder, first, n_segments, seconds, durations, label_type", [
    (REAL_ANN, [b"video_validation_0000051", b"validation", [[67.5, 75.9], [85.9, 90.6],
     [139.3, 148.2]], [b"Billiards"] * 3, [b"Billiards"]], 6365, 2213560.7, 87754.3509132, bytes),
    (ANET_ANN, [b"video_4", b"training", [[5.46484, 86.71838]], [b"Dodgeball"], ["Dodgeball"]],
     10733, 1330107.2708, 831846.03, str)])
def test_real_files_load(folder, first, n_segments, seconds, durations, label_type):
    """The restricted loader rebuilds the real Python-2 files: their values, bytes kept."""
    a = {n: load_npy(os.path.join(folder, n + ".npy"))
         for n in ("videoname", "subset", "segments", "labels", "labels_all", "duration")}
    assert [a[n][0] for n in ("videoname", "subset", "segments", "labels", "labels_all")] == first
    assert sum(len(s) for s in a["segments"]) == n_segments
    assert sum(x for segs in a["segments"] for seg in segs for x in seg) == pytest.approx(seconds)
    assert a["duration"].dtype == np.float64 and a["duration"].sum() == pytest.approx(durations)
    assert {type(x) for labels in a["labels_all"] for x in labels} == {label_type}


def test_numpy_pickles_and_plain_arrays_load(tmp_path):
    a = np.empty(3, dtype=object)
    a[0], a[1], a[2] = np.ones((2, 4), np.float32), [b"x", "y", 1.5, (2, None)], np.float64(3)
    np.save(tmp_path / "new.npy", a, allow_pickle=True)              # numpy 2, protocol 3
    _save_py2_style(str(tmp_path / "old.npy"), list(a))               # protocol 2
    _save_py2_style(str(tmp_path / "empty.npy"), [np.zeros((0, 4), np.float32)])  # b''
    for name in ("new.npy", "old.npy"):
        b = load_npy(str(tmp_path / name))
        np.testing.assert_array_equal(b[0], a[0])
        assert b[1] == a[1] and b[2] == 3.0
    assert load_npy(str(tmp_path / "empty.npy"))[0].shape == (0, 4)
    np.save(tmp_path / "plain.npy", np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(load_npy(str(tmp_path / "plain.npy")),
                                  np.arange(6.0).reshape(2, 3))


def test_damaged_npy_files_are_one_line(tmp_path):
    cases = {"text.npy": b"not a numpy file",
             "truncated.npy": open(os.path.join(REAL_ANN, "segments.npy"), "rb").read()[:5000],
             "v3.npy": b"\x93NUMPY\x03\x00" + b"\x00" * 20}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as e:
            load_npy(str(tmp_path / name))
        assert str(e.value).startswith(str(tmp_path / name)) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------
# Names are data
# ---------------------------------------------------------------------------

BAD_NAMES = ["../../outside/x", "/etc/passwd", "a/b", "a\\b", "..", ".", "", "two words",
             "line\nbreak", "tab\tname", "bell\x07", "nbsp\u00a0name", b"\xff\xfe"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_video_names_are_refused(name):
    with pytest.raises(InputError) as e:
        check_video_name(name, "somefile.npy")
    msg = str(e.value)
    assert msg.startswith("somefile.npy: ") and "\n" not in msg


def test_real_names_pass():
    assert check_video_name(b"video_test_0000004", "f") == "video_test_0000004"
    for folder in (REAL_ANN, ANET_ANN):
        assert len(annotation_reader.read_wtalc(folder).videos) in (412, 7202)


def test_a_name_escaping_the_data_root_reads_nothing_outside(tmp_path):
    """folders layout: a split file naming ../../outside/x is refused before any read."""
    from test_layouts import tiny_videos, write_folders
    root = write_folders(str(tmp_path / "folders"), tiny_videos())
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "x.npy", np.ones((3, 2048), np.float32))
    gt = json.loads(open(os.path.join(root, "gt.json")).read())
    gt["database"]["../../outside/x"] = gt["database"]["video_test_1"]
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump(gt, f)
    r = subprocess.run([sys.executable, "dataset.py", "summary", "--data-root", root],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "gt.json" in r.stderr and "'../../outside/x'" in r.stderr


def test_names_in_every_source_are_checked(tmp_path):
    from evaluation import eval_inputs as EI
    from readers import hdf5_format
    from readers import layouts
    from test_layouts import tiny_videos, write_all
    paths = write_all(tmp_path, tiny_videos())
    # W-TALC videoname.npy
    ann = wtalc_paths(paths["wtalc"], BUNDLE)[1]
    names = np.load(os.path.join(ann, "videoname.npy"))
    names[3] = b"video test 1"
    np.save(os.path.join(ann, "videoname.npy"), names)
    for read in (lambda: annotation_reader.read_wtalc(ann), lambda: EI.load_ground_truth(ann)):
        with pytest.raises(InputError, match=r"videoname.npy: video 'video test 1': the name "
                                             r"contains whitespace"):
            read()
    # folders split file
    root = paths["folders"]
    with open(os.path.join(root, "split_test.txt"), "a") as f:
        f.write("../x\n")
    with pytest.raises(InputError, match=r"split_test.txt: line 3: video '../x'"):
        layouts.folders_entries(root)
    # emmil Name_flow
    root = paths["emmil"]
    import torch
    torch.save("/abs/name", os.path.join(root, "test", "Name_flow", "0.pt"))
    with pytest.raises(InputError, match=r"Name_flow/0.pt: video '/abs/name'"):
        layouts.emmil_entries(root, None)
    # HDF5 group names
    import h5py
    with h5py.File(paths["hdf5"], "a") as f:
        f.move("videos/video_test_1", "videos/bad name")
    with pytest.raises(InputError, match=r"tiny.h5:/videos: video 'bad name'"):
        hdf5_format.hdf5_entries(paths["hdf5"], lambda m: None)
    # Ambiguous file, predictions (json keys and txt lines)
    (tmp_path / "Ambiguous_test.txt").write_text("vid\x01eo 1.0 2.0\n")
    with pytest.raises(InputError, match="Ambiguous_test.txt: line 1: video"):
        annotation_reader.read_ambiguous(str(tmp_path / "Ambiguous_test.txt"))
    gt = EI.load_ground_truth(os.path.join(ROOT, "data", "thumos14", "official_annotation"))
    (tmp_path / "p.json").write_text(json.dumps({"results": {"../v": []}}))
    with pytest.raises(InputError, match=r"p.json: video '../v'"):
        EI.load_predictions(tmp_path / "p.json", gt)
    (tmp_path / "p.txt").write_text("/v 1 2 7 0.5\n")
    with pytest.raises(InputError, match=r"p.txt: video '/v'"):
        EI.load_predictions(tmp_path / "p.txt", gt)


def test_result_writers_cannot_emit_a_malformed_line(tmp_path):
    import pandas as pd
    from detection import write_results_json, write_results_txt
    ok = pd.DataFrame({"video": ["video_test_1"], "label": ["Diving"], "start": [1.0],
                       "end": [2.0], "score": [0.5]})
    write_results_txt(str(tmp_path / "ok.txt"), ok, {"Diving": 26})
    assert (tmp_path / "ok.txt").read_text() == "video_test_1 1.00 2.00 26 0.500000\n"
    bad = {"name": ok.assign(video=["v 1\nv2 0 9 26 1.0"]), "nan": ok.assign(score=[np.nan])}
    for what, frame in bad.items():
        for write in (lambda p: write_results_txt(p, frame, {"Diving": 26}),
                      lambda p: write_results_json(p, frame)):
            path = str(tmp_path / f"{what}.out")
            with pytest.raises(InputError) as e:
                write(path)
            assert "\n" not in str(e.value) and not os.path.exists(path)
