"""detect.py: a finished run localises again, byte for byte its own results on its own data
(EM-MIL, attention MIL, --amp, held-out videos, --seeds); overrides, splits, videos."""
import json
import os

import pytest

import detect
import run
from core.cli import cli
from test_layouts import tiny_videos, write_folders

DRY = ["--dry-run", "--quiet", "--no-report", "--no-tensorboard"]
SAME = ("results.json", "results.txt", "metrics.json")


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished dry runs: EM-MIL with held-out videos, attention MIL, --amp, two seeds."""
    base = tmp_path_factory.mktemp("runs")
    variants = {"emmil": ["--val-fraction", "0.25"], "untrimmednet": ["--method", "untrimmednet"],
                "amp": ["--amp"], "seeds": ["--seeds", "1", "2"]}
    for name, extra in variants.items():
        assert cli(run.main, [*DRY, "--output-dir", str(base / name), *extra]) == 0
    return base


@pytest.mark.parametrize("name", ["emmil", "untrimmednet", "amp"])
def test_detect_gives_the_runs_own_bytes(runs, tmp_path, name):
    out = tmp_path / "out"
    assert cli(detect.main, [str(runs / name), "--output-dir", str(out), "--quiet",
                             "--no-report"]) == 0
    for f in SAME:
        assert read(out / f) == read(runs / name / f), f
    if name == "emmil":             # the held-out videos' mAP is in it too
        assert "val_mAP" in json.loads(read(out / "metrics.json"))
    saved = json.loads(read(out / "opts.json"))["detect"]
    assert saved["source_run"] == str(runs / name) and saved["overrides"] == {}
    assert len(saved["weights_sha256"]["em_mil.pt"]) == 64


def test_a_seeds_folder_gives_each_seed_and_the_same_summary(runs, tmp_path):
    out = tmp_path / "out"
    assert cli(detect.main, [str(runs / "seeds"), "--output-dir", str(out), "--quiet",
                             "--no-report"]) == 0
    for seed in (1, 2):
        for f in SAME:
            assert read(out / f"seed_{seed}" / f) == read(runs / "seeds" / f"seed_{seed}" / f)
    assert read(out / "summary.json") == read(runs / "seeds" / "summary.json")


def test_overrides_change_the_detections_and_are_recorded(runs, tmp_path):
    out = tmp_path / "out"
    assert cli(detect.main, [str(runs / "emmil"), "--output-dir", str(out), "--quiet",
                             "--no-report", "--loc-threshold", "0.2", "--nms", "hard",
                             "--tiou", "0.3", "0.5"]) == 0
    assert read(out / "results.json") != read(runs / "emmil" / "results.json")
    metrics = json.loads(read(out / "metrics.json"))
    assert list(metrics["mAP"]) == ["0.3", "0.5"] and list(metrics["average_mAP"]) == ["0.3:0.5"]
    saved = json.loads(read(out / "opts.json"))
    assert saved["detect"]["overrides"] == {"loc_threshold": [0.2], "nms": "hard",
                                            "tiou": [0.3, 0.5]}
    assert saved["loc_threshold"] == [0.2] and saved["lam"] == 0.8


def test_train_split_and_chosen_videos(runs, tmp_path):
    results = json.loads(read(runs / "emmil" / "results.json"))["results"]
    name = sorted(results)[0]
    out = tmp_path / "one"
    assert cli(detect.main, [str(runs / "emmil"), "--output-dir", str(out), "--quiet",
                             "--no-report", "--videos", name]) == 0
    assert set(json.loads(read(out / "results.json"))["results"]) <= {name}
    out = tmp_path / "train"
    assert cli(detect.main, [str(runs / "emmil"), "--output-dir", str(out), "--quiet",
                             "--no-report", "--split", "train"]) == 0
    found = json.loads(read(out / "results.json"))["results"]
    assert found and all(v.startswith("video_validation") for v in found)
    assert "val_mAP" not in json.loads(read(out / "metrics.json"))   # only with its test split


def test_overwrite_replaces_only_what_a_run_writes(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli(detect.main, [str(runs / "amp"), "--output-dir", str(out), "--quiet",
                             "--no-report"]) == 2
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert cli(detect.main, [str(runs / "amp"), "--output-dir", str(out), "--quiet",
                             "--no-report", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").exists()


def test_other_data_in_another_layout_and_no_ground_truth(runs, tmp_path, capsys):
    """The run localises videos of another folder (the folders layout, the same classes and
    feature width); a video without any ground-truth segment gives no metrics.json."""
    root = tmp_path / "data"
    write_folders(str(root), tiny_videos())
    out = tmp_path / "out"
    assert cli(detect.main, [str(runs / "emmil"), "--output-dir", str(out), "--no-report",
                             "--layout", "folders", "--data-root", str(root),
                             "--videos", "video_test_2"]) == 0
    assert "no ground truth for these videos: no metrics.json" in capsys.readouterr().out
    assert (out / "results.json").exists() and not (out / "metrics.json").exists()
    out = tmp_path / "out2"
    assert cli(detect.main, [str(runs / "emmil"), "--output-dir", str(out), "--no-report",
                             "--quiet", "--layout", "folders", "--data-root", str(root)]) == 0
    metrics = json.loads(read(out / "metrics.json"))
    assert "val_mAP" not in metrics and list(metrics["mAP"])[0] == "0.1"


# ----------------------------------------------------------------------------- sweeps

def test_a_detection_only_sweep_ranks_by_held_out_videos(runs, tmp_path, capsys):
    import pandas as pd
    import sweep
    out = tmp_path / "sweep"
    assert cli(sweep.main, ["--from-run", str(runs / "emmil"), "--grid",
                            "loc_threshold=0.05,0.2", "lam=0.8,0.5", "--output-dir",
                            str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ranked by val" in printed and "networks:" in printed
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["status"]) == {"ok"}
    own = json.loads(read(runs / "emmil" / "metrics.json"))
    row = results[(results["loc_threshold"] == 0.05) & (results["lam"] == 0.8)].iloc[0]
    assert row["val_mAP"] == own["val_mAP"]               # the run's own post-processing
    assert row["average_mAP@0.1:0.5"] == own["average_mAP"]["0.1:0.5"]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["rank"]) == [1, 2, 3, 4]
    assert list(summary["val_mAP_mean"]) == sorted(summary["val_mAP_mean"], reverse=True)
    manifest = json.loads(read(out / "sweep.json"))
    assert manifest["format"] == "emmil-detection-sweep" and manifest["seeds"] == [1]


def test_a_detection_only_sweep_of_a_run_without_held_out_videos_is_not_ranked(runs, tmp_path,
                                                                                capsys):
    import sweep
    out = tmp_path / "sweep"
    assert cli(sweep.main, ["--from-run", str(runs / "seeds"), "--grid", "nms=none,hard",
                            "--output-dir", str(out)]) == 0
    assert "not ranked" in capsys.readouterr().out
    assert "seeds" in json.loads(read(out / "sweep.json")) \
        and json.loads(read(out / "sweep.json"))["seeds"] == [1, 2]


@pytest.mark.parametrize("argv, says", [
    (["--grid", "lr=0.1,0.2"], "--grid lr=0.1,0.2: lr cannot be swept (a training or data"),
    (["--grid", "nms=hard", "--gamma", "0.2"], "--gamma: not a detection or evaluation option"),
    (["--grid", "nms=hard", "--seeds", "1", "2"], "--seeds: --from-run takes them from the run"),
    (["--grid", "lam=0.5,2"], "--grid: --lam 2.0: must be in [0, 1]"),
])
def test_a_detection_only_sweep_refuses(runs, tmp_path, capsys, argv, says):
    import sweep
    out = tmp_path / "sweep"
    assert cli(sweep.main, ["--from-run", str(runs / "emmil"), *argv, "--output-dir",
                            str(out)]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
