"""The one annotation reader: malformed annotation files give the same one-line refusal
(exit 2, the file and the video named) in `dataset.py summary` (training's reader) and in
`evaluate.py --gt` (the evaluator's), and both apply the same segment rule."""
from core.cli import cli
import json
import os

import numpy as np
import pytest

from readers import annotation_reader
import dataset as ds
from readers import layouts
from opts import layout_snippet_seconds
from evaluation import eval_inputs as EI
import evaluate as E
from test_dataset import _save_py2_style, write_tiny_bundle
from test_layouts import tiny_videos, write_folders

BUNDLE = "Thumos14reduced"


def both_commands(capsys, root, gt):
    """(exit code, stderr) of `dataset.py summary --data-root root` and of
    `evaluate.py PRED --gt gt`, run in-process through their command-line entry points."""
    out = []
    for call in (lambda: cli(ds.main, ["summary", "--data-root", root]),
                 lambda: cli(E.main, [os.path.join(root, "no-predictions.json"), "--gt", gt])):
        code = call()
        out.append((code, capsys.readouterr().err))
    return out


def assert_refused(results, file, text):
    for code, err in results:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert file in lines[0] and text in lines[0], err
        assert "Traceback" not in err


def ann_dir(root):
    return layouts.wtalc_paths(root, BUNDLE)[1]


def py2(values):
    return lambda path: _save_py2_style(path, values)


SEGMENTS = [[[0.5, 1.2]], [[0.0, 0.9], [1.0, 9.0]], [[1.0, 2.0]], [[0.1, 0.5]]]
WTALC_CASES = {
    "one number": ("segments", py2([[[0.5]]] + SEGMENTS[1:]),
                   "video video_validation_1: segment [0.5] is not [start, end]"),
    "three numbers": ("segments", py2([[[0.5, 1.2, 3.0]]] + SEGMENTS[1:]),
                      "video video_validation_1: segment [0.5, 1.2, 3.0] is not [start, end]"),
    "flat": ("segments", py2([[0.5, 1.2]] + SEGMENTS[1:]),
             "video video_validation_1: segment 0.5 is not [start, end]"),
    "not a number": ("segments", py2([[[b"a", 1.2]]] + SEGMENTS[1:]),
                     "video video_validation_1: segment time 'a' is not a number"),
    "nan": ("segments", py2([[[float("nan"), 1.2]]] + SEGMENTS[1:]),
            "video video_validation_1: segment time nan is not finite"),
    "segment list is a number": ("segments", py2([1.5] + SEGMENTS[1:]),
                                 "video video_validation_1: its segment list is 1.5"),
    "0-d videoname": ("videoname", lambda p: np.save(p, np.array(b"video_validation_1")),
                      "an array of shape (), expected one entry a video (N,)"),
    "non-UTF-8 name": ("videoname", lambda p: np.save(p, np.array(
        [b"video_validation_1", b"video_\xff", b"video_test_1", b"video_test_2"])),
        "video name b'video_\\xff' is not UTF-8"),
    "name with a space": ("videoname", lambda p: np.save(p, np.array(
        [b"video validation_1", b"v2", b"video_test_1", b"video_test_2"])),
        "video 'video validation_1': the name contains whitespace"),
    "non-UTF-8 label": ("labels", py2([[b"Div\xffing"], [b"HighJump", b"Shotput"], [b"Shotput"],
                                       [b"Diving"]]), "label b'Div\\xffing' is not UTF-8"),
    "label not in classlist": ("labels", py2([[b"Bowling"], [b"HighJump", b"Shotput"],
                                              [b"Shotput"], [b"Diving"]]),
                               "video video_validation_1: label 'Bowling' is not in classlist"),
    "label is a number": ("labels", py2([[3], [b"HighJump", b"Shotput"], [b"Shotput"],
                                         [b"Diving"]]),
                          "video video_validation_1: label 3 is not a class name"),
    "segments and labels differ": ("labels", py2([[], [b"HighJump", b"Shotput"], [b"Shotput"],
                                                  [b"Diving"]]),
                                   "video video_validation_1 has 1 segments but 0 segment labels"),
    "duration (N, 2)": ("duration", lambda p: np.save(p, np.ones((4, 2))),
                        "shape (4, 2), expected one duration a video, (4,) or (4, 1)"),
    "duration strings": ("duration", lambda p: np.save(p, np.array([b"1"] * 4)),
                         "durations of type |S1 are not numbers"),
    "duration negative": ("duration", lambda p: np.save(p, -np.ones(4)),
                          "video video_validation_1: duration -1.0 is not a positive number"),
    "classlist twice": ("classlist", lambda p: np.save(p, np.array([b"Diving", b"Diving"])),
                        "a class is listed twice"),
    "lengths differ": ("subset", lambda p: np.save(p, np.array([b"test"] * 3)),
                       "subset.npy has 3 entries but videoname.npy has 4"),
}


@pytest.mark.parametrize("case", sorted(WTALC_CASES))
def test_malformed_wtalc_arrays(tmp_path, capsys, case):
    array, write, text = WTALC_CASES[case]
    root = write_tiny_bundle(str(tmp_path / "data"))
    path = os.path.join(ann_dir(root), array + ".npy")
    os.remove(path)
    write(path)
    assert_refused(both_commands(capsys, root, ann_dir(root)), path, text)


def write_gt(root, change):
    with open(os.path.join(root, "gt.json")) as f:
        gt = json.load(f)
    change(gt["database"])
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump(gt, f)


def first_annotation(db):
    return db["video_test_1"]["annotations"][0]


GT_CASES = {
    "label null": (lambda db: first_annotation(db).update(label=None),
                   "video video_test_1: label None is not a class name"),
    "label a number": (lambda db: first_annotation(db).update(label=7),
                       "video video_test_1: label 7 is not a class name"),
    "one number": (lambda db: first_annotation(db).update(segment=[1.0]),
                   "video video_test_1: segment [1.0] is not [start, end]"),
    "three numbers": (lambda db: first_annotation(db).update(segment=[1.0, 2.0, 3.0]),
                      "video video_test_1: segment [1.0, 2.0, 3.0] is not [start, end]"),
    "segment a string": (lambda db: first_annotation(db).update(segment="1.0 2.0"),
                         "video video_test_1: segment '1.0 2.0' is not [start, end]"),
    "no subset": (lambda db: db["video_test_1"].pop("subset"),
                  "video video_test_1: 'subset' missing or not a string"),
    "annotations not a list": (lambda db: db["video_test_1"].update(annotations={}),
                               "video video_test_1: 'annotations' is not a list"),
    "duration text": (lambda db: db["video_test_1"].update(duration="long"),
                      "video video_test_1: duration 'long' is not a number"),
    "name with a path": (lambda db: db.update({"../x": db.pop("video_test_2")}),
                         "video '../x': the name contains a path separator"),
    "entry not an object": (lambda db: db.update(video_test_2=[]),
                            "video video_test_2: entry is not an object"),
}


@pytest.mark.parametrize("case", sorted(GT_CASES))
def test_malformed_gt_json(tmp_path, capsys, case):
    change, text = GT_CASES[case]
    root = write_folders(str(tmp_path / "folders"), tiny_videos())
    write_gt(root, change)
    gt = os.path.join(root, "gt.json")
    assert_refused(both_commands(capsys, root, gt), gt, text)


def test_text_files_that_are_not_utf8(tmp_path, capsys):
    root = write_folders(str(tmp_path / "folders"), tiny_videos())
    split = os.path.join(root, "split_test.txt")
    with open(split, "ab") as f:
        f.write(b"video_\xff\n")
    assert cli(ds.main, ["summary", "--data-root", root]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{split}: not UTF-8 text (byte 32)" in err
    os.remove(split)
    open(split, "w").write("video_test_1\nvideo_test_2\n")
    amb = os.path.join(root, "Ambiguous_test.txt")
    with open(amb, "wb") as f:
        f.write(b"video_test_1 1.0 2\xff\n")
    assert_refused(both_commands(capsys, root, os.path.join(root, "gt.json")), amb,
                   "not UTF-8 text")
    open(amb, "w").write("video_test_1 1.0\n")
    assert_refused(both_commands(capsys, root, os.path.join(root, "gt.json")), amb,
                   "line 1: expected 3 fields (video start end), got 2")


def test_one_segment_rule_for_training_and_evaluation(tmp_path, capsys):
    """A segment that ends before it starts is swapped, with one warning that counts them and
    names the first (video and times as annotated), by both readers."""
    root = write_tiny_bundle(str(tmp_path / "data"))
    _save_py2_style(os.path.join(ann_dir(root), "segments.npy"),
                    [[[1.2, 0.5]], [[0.0, 0.9], [1.0, 9.0]], [[2.0, 1.0]], [[0.1, 0.5]]])
    said = []
    data = ds.load_dataset(root, BUNDLE, "validation", "test", log=said.append,
                             layout_seconds=layout_snippet_seconds())
    assert said[0] == (f"{ann_dir(root)}: 2 ground-truth segments had start > end and were "
                       f"swapped, e.g. video {data.videos[0].name}: 1.2 > 0.5")
    assert data.videos[0].segments == [(0, 0.5, 1.2)]
    with pytest.warns(EI.InputWarning, match=r"2 ground-truth segments had start > end and were "
                                             r"swapped, e\.g\. video \S+: 1\.2 > 0\.5$"):
        gt = EI.load_ground_truth(ann_dir(root))
    assert gt.segments.values.tolist()[0] == ["video_test_1", "Shotput", 1.0, 2.0]
    assert [v.segments for v in data.split("test")][0] == [(2, 1.0, 2.0)]


def test_the_readers_agree_on_the_real_files():
    """layouts.py's table and evaluate.py's GroundTruth come from the same Annotations."""
    real = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "thumos14")
    for source in ("Thumos14reduced-Annotations", "gt_basnet_210.json"):
        path = os.path.join(real, source)
        classes, table, ambiguous = layouts.read_indexed_annotations(path)
        gt = EI.load_ground_truth(path, "test")
        ours = [(v, classes[c], s, e) for v in gt.videos for c, s, e in table[v][1]]
        assert ours == [tuple(r) for r in gt.segments.values.tolist()]
        assert len(ours) == {"Thumos14reduced-Annotations": 3358,
                             "gt_basnet_210.json": 3311}[source]
    official = annotation_reader.read_annotations(os.path.join(real, "official_annotation"))
    assert len(official.videos) == 213 and official.class_ids["BaseballPitch"] == 7
