"""run.py evaluates against the annotation files themselves: metrics.json equals the
standalone `python evaluate.py results.json --gt <annotations>`, also when a test video is
dropped for empty features (its segments count as misses) and when segments reach past the
end of their video (kept as annotated, not clipped)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from evaluation import eval_inputs as EI
import evaluate as E
from readers.layouts import wtalc_paths
from test_layouts import write_wtalc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def easy_videos(drop_test_video):
    """6 train and 3 test videos of 12.8 s (20 snippets); actions are a strong pattern in
    their snippets, so that even a one-epoch model finds some. test_2's segment reaches past
    its end; test_3 has all-zero features when `drop_test_video`."""
    rng = np.random.default_rng(0)
    pattern = {c: rng.random(2048).astype(np.float32) * 3 for c in ("Diving", "HighJump")}

    def video(name, split, segments, zero=False):
        feats = rng.random((20, 2048)).astype(np.float32) * 0.2
        for c, s, e in segments:
            feats[int(s / 0.64):int(min(e, 12.8) / 0.64)] += pattern[c]
        if zero:
            feats[:] = 0
        return dict(name=name, split=split, feats=feats, segments=segments, duration=12.8,
                    labels=sorted({c for c, _, _ in segments}))

    videos = [video(f"video_validation_{i}", "train", [(c, 2.0 + i, 7.0 + i)])
              for i, c in enumerate(["Diving", "HighJump"] * 3)]
    videos += [video("video_test_1", "test", [("Diving", 2.0, 9.0)]),
               video("video_test_2", "test", [("HighJump", 1.0, 14.0)]),
               video("video_test_3", "test", [("Diving", 1.0, 4.0), ("HighJump", 6.0, 9.0)],
                     zero=drop_test_video)]
    return videos


def run_and_evaluate(tmp_path, drop):
    root = write_wtalc(tmp_path / "data", easy_videos(drop))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "run.py", "--dataset", "thumos14", "--data-root", root,
                        "--output-dir", str(out), "--cls-epochs", "10",
                        "--schedule", "M1:4,E:2,M2:4", "--no-tensorboard", "--no-report",
                        "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ann = wtalc_paths(root, "Thumos14reduced")[1]
    e = subprocess.run([sys.executable, "evaluate.py", str(out / "results.json"), "--gt", ann,
                        "--json", str(tmp_path / "standalone.json"),   # 3 classes: say
                        "--tiou", *[f"0.{i}" for i in range(1, 10)]],    # THUMOS's tIoUs
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert e.returncode == 0, e.stderr
    ours = json.loads((out / "metrics.json").read_text())
    standalone = json.loads((tmp_path / "standalone.json").read_text())
    return r, ours, standalone, out


@pytest.mark.parametrize("drop", [False, True])
def test_metrics_equal_the_standalone_evaluation(tmp_path, drop):
    r, ours, standalone, out = run_and_evaluate(tmp_path, drop)
    assert ours["mAP"] == standalone["mAP"]                             # exactly
    assert standalone["average_mAP"]                                    # 0.1:0.9
    for k, v in standalone["average_mAP"].items():
        assert ours["average_mAP"][k] == v
    assert ours["mAP"]["0.1"] > 0                                       # something to compare
    # what the run was evaluated against: every annotated test video, segments unclipped
    ann = wtalc_paths(str(tmp_path / "data"), "Thumos14reduced")[1]
    gt = EI.load_ground_truth(ann)
    assert gt.videos == ["video_test_1", "video_test_2", "video_test_3"]
    assert gt.segments["end"].max() == 14.0
    pred = EI.load_predictions(out / "results.json", gt)
    result = E.evaluate_detection(pred, gt, [0.1, 0.5])["mAP"]
    assert [ours["mAP"]["0.1"], ours["mAP"]["0.5"]] == result.tolist()
    log = (out / "log.txt").read_text()
    if drop:       # half of each class's segments are in the dropped video: recall <= 0.5
        assert "video_test_3" not in set(pred["video"])
        assert max(ours["mAP"].values()) <= 0.5
        assert ("1 videos with empty or all-zero features were dropped: video_test_3; the 2 "
                "segments of the 1 test videos among them stay in the evaluation ground truth "
                "and count as misses") in r.stderr + log


def test_hdf5_is_its_own_annotation_source(tmp_path):
    """HDF5 cannot be read by evaluate.py: its test videos are the ground truth, a dropped
    one (all-zero features) included with its segments."""
    from dataset import load_dataset
    from pipeline.localise import evaluation_ground_truth
    from test_layouts import write_hdf5_by_hand
    videos = easy_videos(drop_test_video=True)
    for v in videos:
        v["segments"] = [(c, s, min(e, 12.8)) for c, s, e in v["segments"]]
    path = write_hdf5_by_hand(str(tmp_path / "tiny.h5"), videos)
    said = []
    data = load_dataset(path, "Thumos14reduced", "validation", "test", log=said.append)
    assert [v.name for v in data.split("test")] == ["video_test_1", "video_test_2"]
    gt = evaluation_ground_truth(data, "test")
    assert gt.videos == ["video_test_1", "video_test_2", "video_test_3"]
    assert gt.segments.values.tolist() == [["video_test_1", "Diving", 2.0, 9.0],
                                           ["video_test_2", "HighJump", 1.0, 12.8],
                                           ["video_test_3", "Diving", 1.0, 4.0],
                                           ["video_test_3", "HighJump", 6.0, 9.0]]
    assert "count as misses" in said[0]


def test_ground_truth_is_checked_before_anything_is_written(tmp_path):
    """folders layout: the splits come from split_*.txt, the evaluation from gt.json's test
    subset; a gt.json without one is refused before training, and nothing is written."""
    from test_layouts import tiny_videos, write_folders
    root = write_folders(str(tmp_path / "folders"), tiny_videos())
    with open(os.path.join(root, "gt.json")) as f:
        gt = json.load(f)
    for entry in gt["database"].values():
        entry["subset"] = "part_a"
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump(gt, f)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "run.py", "--dataset", "thumos14", "--data-root", root,
                        "--output-dir", str(out), "--dry-run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if not line.startswith("warning: ")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr          # after the data's warnings
    assert "gt.json: no subset 'test'" in errors[0]
    assert not out.exists()
