"""Bad options, output folders and --resume inputs: each refused with exit code 2 and one
line on stderr naming the option or file, before anything in the output folder changes.
And: no output is written through a symbolic link; --overwrite never leaves two runs mixed.

Runs run.cli in-process (no new interpreter per case) on the embedded synthetic default
cut by --dry-run."""
import argparse
import json
import os
import shutil

import pytest
import torch

import run

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
        code = run.cli(list(args))
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
    assert run.cli([*DRY, "--output-dir", str(out), "--seed", "3"]) == 0
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
    path = folder / run.LAST
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
    assert run.LAST in line and message in line


def test_resume_checkpoint_that_torch_refuses(capsys, folder):
    torch.save({"position": argparse.Namespace(x=1)}, folder / run.LAST)
    line = resume_refused(capsys, folder)
    assert "refused" in line and "argparse.Namespace" in line


def test_resume_checkpoint_not_a_dict(capsys, folder):
    torch.save([1, 2], folder / run.LAST)
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
             run.LAST, "tensorboard"]
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
    assert run.cli([*DRY, "--output-dir", str(folder), "--overwrite", "--no-tensorboard"]) == 0
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
    assert run.cli([*DRY, "--output-dir", str(folder), "--overwrite"]) == 0
    assert os.listdir(outside) == []
    assert not (folder / "tensorboard").is_symlink() and os.listdir(folder / "tensorboard")


def test_overwrite_then_a_late_failure_leaves_one_run(folder, monkeypatch):
    """The evaluation breaks after training: what is left is the new run's files only (and
    the user's own file), never the earlier run's metrics.json beside them."""
    old_events = set(os.listdir(folder / "tensorboard"))

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")
    monkeypatch.setattr(run, "evaluate_run", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run.main([*DRY, "--output-dir", str(folder), "--overwrite", "--seed", "7"])
    left = set(os.listdir(folder))
    assert "metrics.json" not in left
    assert left == {"notes.txt", "opts.json", "log.txt", run.LAST, "classifier.pt", "em_mil.pt",
                    "results.json", "results.txt", "tensorboard"}
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / "opts.json").read_text())["seed"] == 7
    assert torch.load(folder / run.LAST, weights_only=True)["opts"]["seed"] == 7
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
    run.clear_earlier_run(str(tmp_path))
    assert snapshot(tmp_path) == {"mine.csv": b"x", "seed_2": "folder",
                                  os.path.join("seed_2", "keep.md"): b"x", "other": "folder",
                                  os.path.join("other", "log.txt"): b"x"}


def test_summary_of_seeds_replaces_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.txt").symlink_to(outside)
    assert run.cli([*DRY, "--output-dir", str(out), "--overwrite", "--seeds", "1", "2",
                    "--no-tensorboard", "--schedule", "M1:1"]) == 0
    assert outside.read_text() == "theirs"
    assert not (out / "summary.txt").is_symlink() and "mAP@0.5" in (out / "summary.txt").read_text()
    assert sorted(os.listdir(out)) == ["seed_1", "seed_2", "summary.json", "summary.txt"]


def test_every_writer_replaces_a_link(tmp_path):
    """The writers themselves, without --overwrite's clean-up: a link is replaced (or, for
    a log continued on --resume, refused), its target never written."""
    from utils import InputError, Logger, atomic_torch_save, atomic_write_text
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
