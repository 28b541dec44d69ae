"""The paper-reproduction scripts and --seeds, end to end on tiny generated bundles."""
import json
import os
import subprocess

import numpy as np

from test_dataset import write_tiny_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--cls-epochs", "1", "--schedule", "M1:1,E:1,M2:1", "--no-tensorboard", "--no-report"]


def script(name, *args):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", name), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_reproduce_thumos14_runs_five_seeds(tmp_path):
    data = write_tiny_bundle(tmp_path / "data")
    out = tmp_path / "out"
    r = script("reproduce_thumos14.sh", str(data), str(out), *FAST)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [1, 2, 3, 4, 5]
    per_seed = [json.loads((out / f"seed_{s}" / "metrics.json").read_text()) for s in range(1, 6)]
    values = [m["mAP"]["0.5"] for m in per_seed]
    assert summary["metrics"]["mAP@0.5"]["values"] == values
    np.testing.assert_allclose(summary["metrics"]["mAP@0.5"]["mean"], np.mean(values))
    np.testing.assert_allclose(summary["metrics"]["mAP@0.5"]["std"], np.std(values, ddof=1))
    assert "paper" in r.stdout and "59.1" in r.stdout and "37.7" in r.stdout
    assert "±" in (out / "summary.txt").read_text()


def test_reproduce_activitynet12_on_a_tiny_bundle(tmp_path):
    data = write_tiny_bundle(tmp_path / "data")
    # rename it into an ActivityNet1.2 bundle: names, 'training' / 'validation' subsets
    src_f = data / "Thumos14reduced-I3D-JOINTFeatures.npy"
    src_a = data / "Thumos14reduced-Annotations"
    os.rename(src_f, data / "ActivityNet1.2-I3D-JOINTFeatures.npy")
    os.rename(src_a, data / "ActivityNet1.2-Annotations")
    np.save(data / "ActivityNet1.2-Annotations" / "subset.npy",
            np.array([b"training", b"training", b"validation", b"validation"]))
    out = tmp_path / "out"
    # THUMOS14 class names in an ActivityNet1.2 bundle: not the preset's class list
    r = script("reproduce_activitynet12.sh", str(data), str(out), *FAST, "--classes",
               "annotations")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "seed_1" / "metrics.json").read_text())
    assert m["tiou"][0] == 0.5 and list(m["average_mAP"]) == ["0.5:0.95"]
    assert "37.4" in r.stdout and "20.3" in r.stdout
    assert not (out / "seed_1" / "results.txt").exists()   # THUMOS format only for THUMOS14


def test_script_without_data_root_fails_cleanly():
    r = script("reproduce_thumos14.sh")
    assert r.returncode == 2 and "usage" in r.stderr
