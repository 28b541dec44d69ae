"""The one merge of saved and given options (opts.merge_options) and the one rule for the
averages of a tIoU list (evaluation/tious.py), on hand-worked cases."""
import importlib
import json
import os

import pytest

import evaluate
from core.cli import cli
from core.errors import InputError
from evaluation.tious import (ANET_AVERAGES, ANET_TIOUS, THUMOS_AVERAGES, THUMOS_TIOUS,
                             tiou_averages)
from opts import EXECUTION, merge_options, parse_opts


@pytest.mark.parametrize("tious, averages", [
    (THUMOS_TIOUS, THUMOS_AVERAGES),                                    # the preset: all three
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], {"0.1:0.5": (0.1, 0.5)}),          # 0.1:0.5 fully there
    ([0.1, 0.3, 0.5], {"0.1:0.5 (3 tIoUs)": (0.1, 0.5)}),               # 0.2, 0.4 missing
    ([0.3, 0.5], {"0.3:0.5": (0.3, 0.5)}),                              # no name of the preset
    ([0.5], {"0.5:0.5": (0.5, 0.5)}),
    ([0.3, 0.5, 0.1, 0.2, 0.4], {"0.1:0.5": (0.1, 0.5)}),              # any order
])
def test_thumos_averages_of_a_list(tious, averages):
    assert tiou_averages(tious, THUMOS_TIOUS, THUMOS_AVERAGES) == averages


def test_activitynet_averages_of_a_list():
    assert tiou_averages(ANET_TIOUS, ANET_TIOUS, ANET_AVERAGES) == ANET_AVERAGES
    assert tiou_averages([0.5, 0.95], ANET_TIOUS, ANET_AVERAGES) == {
        "0.5:0.95 (2 tIoUs)": (0.5, 0.95)}
    # THUMOS's list on 3-class ground truth (ActivityNet's defaults): one average, its ends
    assert tiou_averages(THUMOS_TIOUS, ANET_TIOUS, ANET_AVERAGES) == {"0.1:0.9": (0.1, 0.9)}


def test_run_and_evaluate_give_the_same_averages(tmp_path, capsys):
    """run.py --tiou and evaluate.py --tiou with the same list: the same averages."""
    tious = ["0.1", "0.3", "0.5"]
    opts = parse_opts(["--tiou", *tious, "--output-dir", str(tmp_path / "run")])
    pred = tmp_path / "empty.json"
    pred.write_text('{"results": {}}')
    out = tmp_path / "m.json"
    gt = "data/thumos14/official_annotation"          # 20 classes: THUMOS's defaults
    assert cli(evaluate.main, [str(pred), "--gt", gt, "--tiou", *tious, "--json", str(out)]) == 0
    capsys.readouterr()
    reported = json.loads(out.read_text())["average_mAP"]
    assert list(reported) == list(opts.averages) == ["0.1:0.5 (3 tIoUs)"]


@pytest.fixture
def saved(tmp_path):
    """A run's opts.json as read back (lists, not tuples)."""
    opts = parse_opts(["--output-dir", str(tmp_path / "run"), "--lam", "0.7"])
    return json.loads(json.dumps(vars(opts)))


def test_resume_changes_only_the_execution_group(saved):
    folder = saved["output_dir"]
    opts = merge_options(saved, {"resume": folder, "device": "cpu", "threads": 2, "quiet": True},
                         "resume", then=dict(output_dir=folder, resume=folder))
    assert (opts.device, opts.threads, opts.quiet, opts.resume) == ("cpu", 2, True, folder)
    assert opts.lam == 0.7 and opts.averages == saved["averages"]
    assert {"device", "threads", "workers"} <= EXECUTION
    same = merge_options(saved, {"resume": folder, "lam": 0.7}, "resume",
                         then=dict(output_dir=folder, resume=folder))
    assert same.lam == 0.7
    with pytest.raises(InputError, match=r"^--resume .*: --lam 0.8 contradicts the saved "
                                         r"option 0.7$"):
        merge_options(saved, {"resume": folder, "lam": 0.8}, "resume",
                      then=dict(output_dir=folder, resume=folder))


def test_detect_changes_data_and_post_processing(saved, tmp_path):
    then = dict(output_dir=str(tmp_path / "out"), device="cpu")
    opts = merge_options(saved, {"tiou": [0.1, 0.3, 0.5], "nms": "hard"}, "detect", then)
    assert opts.averages == {"0.1:0.5 (3 tIoUs)": (0.1, 0.5)} and opts.nms == "hard"
    assert (opts.seeds, opts.resume, opts.tensorboard) == (None, None, False)
    other = merge_options(saved, {"dataset": "activitynet12"}, "detect", then)
    assert other.tiou == list(ANET_TIOUS) and other.averages == ANET_AVERAGES
    assert other.bundle == "ActivityNet1.2" and other.classes.endswith("activitynet12/classes.txt")
    with pytest.raises(InputError, match="^--lam 1.5: must be in"):
        merge_options(saved, {"lam": 1.5}, "detect", then)


def test_a_detection_only_sweep_keeps_the_data(saved):
    then = dict(output_dir=saved["output_dir"], quiet=True)
    assert merge_options(saved, {"lam": 0.5}, "from_run", then).lam == 0.5
    with pytest.raises(InputError, match="--dataset activitynet12 contradicts"):
        merge_options(saved, {"dataset": "activitynet12"}, "from_run", then)


# ----------------------------------------------------------------------------- RULES

@pytest.mark.parametrize("command, argv, says", [
    ("evaluate", ["p.json", "--gt", "g", "--tiou", "0.5", "1.5"], "--tiou 1.5: must be in [0, 1]"),
    ("evaluate", ["p.json", "--gt", "g", "--tiou", "0.5", "0.5"], "--tiou 0.5 0.5: 0.5 given twice"),
    ("analyze", ["RUN", "--alpha", "0"], "--alpha 0.0: must be in (0, 1]"),
    ("analyze", ["RUN", "--dpi", "0"], "--dpi 0: must be >= 1"),
    ("extract", ["v.mp4", "--out", "OUT", "--gpus-per-task", "-1"],
     "--gpus-per-task -1.0: must be >= 0"),
    ("extract", ["v.mp4", "--out", "OUT", "--threads", "-2"], "--threads -2: must be >= 0"),
    ("sweep", ["--output-dir", "OUT", "--max-retries", "-1"], "--max-retries -1: must be >= 0"),
    ("sweep", ["--output-dir", "OUT", "--seeds", "3", "3"], "--seeds 3 3: 3 given twice"),
    ("detect", ["RUN", "--output-dir", "OUT", "--threads", "-1"], "--threads -1: must be >= 0"),
    ("detect", ["RUN", "--output-dir", "OUT", "--lam", "2"], "--lam 2.0: must be in [0, 1]"),
])
def test_every_command_checks_its_options_by_the_same_rules(command, argv, says, tmp_path,
                                                             capsys, monkeypatch):
    """option_checks.check_rules in each command: one line, exit 2, before anything is read."""
    monkeypatch.chdir(tmp_path)                       # nothing of these names exists here
    main = importlib.import_module(command).main
    assert cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {says}\n"
    assert os.listdir(tmp_path) == []
