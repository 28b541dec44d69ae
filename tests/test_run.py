"""run.py end to end (--dry-run) and its handling of bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np

from test_dataset import write_tiny_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UCF_IDS = {7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68, 79, 85, 92, 93, 97}


def run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = run("--dry-run", "--output-dir", str(out), "--no-report")
    assert r.returncode == 0, r.stderr
    for name in ("opts.json", "log.txt", "metrics.json", "results.json", "results.txt",
                 "classifier.pt", "em_mil.pt"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"protocol", "tiou", "mAP", "average_mAP", "cmAP"}
    assert m["protocol"] == "activitynet"
    assert list(m["mAP"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    assert list(m["average_mAP"]) == ["0.1:0.5", "0.1:0.7", "0.1:0.9"]
    assert all(0.0 <= v <= 1.0 for v in list(m["mAP"].values()) + [m["cmAP"]])
    np.testing.assert_allclose(m["average_mAP"]["0.1:0.5"],
                               np.mean([m["mAP"][k] for k in ["0.1", "0.2", "0.3", "0.4", "0.5"]]))
    res = json.loads((out / "results.json").read_text())
    assert set(res) == {"version", "external_data", "results"}
    dets = [d for v in res["results"].values() for d in v]
    assert dets and all(d["segment"][0] < d["segment"][1] for d in dets)
    assert len({d["score"] for d in dets}) > 1                 # real confidences
    rows = [line.split() for line in (out / "results.txt").read_text().splitlines()]
    assert len(rows) == len(dets) and {int(r[3]) for r in rows} <= UCF_IDS
    opts = json.loads((out / "opts.json").read_text())
    assert opts["seed"] == 1 and opts["dataset"] == "synthetic" and opts["lam"] == 0.8
    assert "tIoU" in r.stdout and "cmAP" in r.stdout
    # a dry run is evaluated against the 4 test videos it read, named with their source
    assert re.search(r"evaluation ground truth: \S+Thumos14reduced-Annotations \(4 test videos\)",
                     r.stdout), r.stdout


def test_non_empty_output_dir_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("earlier results")
    r = run("--dry-run", "--output-dir", str(tmp_path))
    assert r.returncode == 2
    assert "not empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_overwrite_starts_a_new_log(tmp_path):
    out = str(tmp_path / "out")
    quick = ["--no-report", "--no-tensorboard"]
    assert run("--dry-run", "--output-dir", out, *quick).returncode == 0
    r = run("--dry-run", "--output-dir", out, "--overwrite", *quick)
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(out, "log.txt")).read().count("wall time") == 1


def test_bad_features_exit_2_and_nothing_written(tmp_path):
    data = write_tiny_bundle(tmp_path / "data", width=1000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "opts.json").write_text("earlier")
    r = run("--dataset", "thumos14", "--data-root", str(data), "--output-dir", str(out),
            "--overwrite", "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: ") and "Traceback" not in r.stderr
    assert "JOINTFeatures.npy" in r.stderr and "expected (T, 2048)" in r.stderr
    assert os.listdir(out) == ["opts.json"] and (out / "opts.json").read_text() == "earlier"


def test_missing_data_root(tmp_path):
    r = run("--dataset", "thumos14", "--data-root", str(tmp_path / "nope"),
            "--output-dir", str(tmp_path / "out"))
    assert r.returncode == 2 and "annotation folder not found" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_schedule(tmp_path):
    r = run("--schedule", "M1:10,X:3", "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and "--schedule" in r.stderr


def test_help_lists_every_option_with_its_default():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--dataset", "--data-root", "--output-dir", "--seed", "--device", "--schedule",
                 "--cls-epochs", "--dry-run", "--gamma", "--lam", "--eval-protocol"):
        assert flag in r.stdout
    assert "M1:10,E:10,M2:10,alt:35" in r.stdout and "(default: 0.15)" in r.stdout


def test_thumos14_preset_on_the_real_annotation_arrays(tmp_path):
    """The real W-TALC THUMOS14 annotation files (Python-2 pickles) with tiny features."""
    import shutil
    from test_dataset import REAL_ANN, _save_py2_style
    from readers.layouts import wtalc_paths
    feat_path, ann = wtalc_paths(str(tmp_path / "data"), "Thumos14reduced")
    shutil.copytree(REAL_ANN, ann)
    rng = np.random.default_rng(0)
    _save_py2_style(feat_path, [rng.random((6, 2048)).astype(np.float32) for _ in range(412)])
    out = tmp_path / "out"
    r = run("--dataset", "thumos14", "--data-root", str(tmp_path / "data"), "--dry-run",
            "--output-dir", str(out), "--no-tensorboard", "--no-report", "--eval-protocol",
            "thumos14")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "thumos14" and len(m["mAP"]) == 9
    rows = [line.split() for line in (out / "results.txt").read_text().splitlines()]
    assert rows and all(r[0].startswith("video_test_") for r in rows)
    assert {int(r[3]) for r in rows} <= UCF_IDS


def test_dry_run_checks_and_shortens_the_given_schedule(tmp_path):
    from training.schedule import dry_run_schedule
    assert dry_run_schedule("M1:10,E:10,M2:10,alt:35") == "M1:1,E:1,M2:1,alt:2"
    r = run("--dry-run", "--schedule", "M3:10", "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and "--schedule" in r.stderr


def test_synthetic_preset_never_generates_into_a_given_data_root(tmp_path):
    r = run("--data-root", str(tmp_path / "nope"), "--dry-run", "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and not (tmp_path / "nope").exists()
