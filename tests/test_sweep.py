"""sweep.py and trials.py: a 2 x 2-seed sweep on a local 2-worker Ray, run again, another
grid refused, a trial's worker killed mid-run, bad grids refused up front; run.py --seeds
--workers through the same executor."""
from core.cli import cli
from core.safe_load import read_json
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import sweep
from sweeps import sweep_tables
from sweeps import trials
from opts import build_parser, parse_opts
from run import trial_work
from opts import EXECUTION
from analysis.seeds import flatten_metrics
from sweeps.sweep_grid import parse_grid, points, trial_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = ["--synthetic-videos", "16", "--synthetic-max-seconds", "60", "--no-tensorboard",
        "--no-report"]
TINY = [*DATA, "--cls-epochs", "3", "--schedule", "M1:2,E:2,M2:2,alt:3", "--val-fraction", "0.25"]
GRID = ["--grid", "gamma=0.1,0.2", "--seeds", "1", "2", "--workers", "2", *TINY]
NAMES = [f"gamma={g}_seed={s}" for g in ("0.1", "0.2") for s in (1, 2)]


def cmd(script, *args):
    return [sys.executable, os.path.join(ROOT, script), *args]


def run(script, *args):
    return subprocess.run(cmd(script, *args), capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def metrics_of(folder, name):
    with open(os.path.join(folder, "trials", name, "metrics.json")) as f:
        return json.load(f)


def sweep_cli(argv, capsys):
    try:
        rc = cli(sweep.main, argv)
    except SystemExit as e:                       # argparse's own errors: one line, exit 2
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ref"
    r = run("sweep.py", *GRID, "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_sweep_writes_trials_results_and_summary(reference):
    out, stdout = reference
    assert sorted(os.listdir(out / "trials")) == NAMES            # no .pid file left
    for name in NAMES:
        for f in ("opts.json", "log.txt", "metrics.json", "results.json", "em_mil.pt"):
            assert (out / "trials" / name / f).is_file(), (name, f)
        assert f"{name}: val " in stdout
    results = pd.read_csv(out / "results.csv")
    assert list(results["trial"]) == NAMES and set(results["status"]) == {"ok"}
    assert list(results["gamma"]) == [0.1, 0.1, 0.2, 0.2] and list(results["seed"]) == [1, 2, 1, 2]
    for _, row in results.iterrows():
        flat = flatten_metrics(metrics_of(out, row["trial"]))
        assert "val_mAP" in flat
        assert {k: row[k] for k in flat} == flat                  # exactly, every metric
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["gamma"]) == [0.1, 0.2] and list(summary["seeds"]) == [2, 2]
    for _, point in summary.iterrows():
        values = [flatten_metrics(metrics_of(out, f"gamma={point['gamma']:g}_seed={s}"))
                  for s in (1, 2)]
        for name in values[0]:
            v = np.array([x[name] for x in values])
            assert point[f"{name}_mean"] == pytest.approx(v.mean(), abs=1e-15)
            assert point[f"{name}_std"] == pytest.approx(v.std(ddof=1), abs=1e-15)
    assert list(summary["rank"]) == [1, 2]                       # ranked by val_mAP, best first
    assert summary["val_mAP_mean"].iloc[0] >= summary["val_mAP_mean"].iloc[1]
    assert "ranked by val" in stdout and "never used to rank" in stdout
    assert (out / "summary.txt").read_text().startswith("ranked by val")


def test_the_same_command_again_runs_nothing_new(reference, capsys):
    out, _ = reference
    before = {n: os.stat(out / "trials" / n / "metrics.json").st_mtime_ns for n in NAMES}
    results = (out / "results.csv").read_text()
    assert cli(sweep.main, [*GRID, "--output-dir", str(out)]) == 0     # in-process: Ray never starts
    stdout = capsys.readouterr().out
    assert "4 trials in" in stdout and "4 finished before" in stdout
    assert stdout.count(": finished before") == 4
    assert before == {n: os.stat(out / "trials" / n / "metrics.json").st_mtime_ns for n in NAMES}
    assert (out / "results.csv").read_text() == results          # wall times and hosts kept


def test_another_grid_into_the_same_folder_is_refused(reference, capsys):
    out, _ = reference
    listing = sorted(os.listdir(out))
    manifest = (out / "sweep.json").read_text()
    for change in (["--grid", "gamma=0.1,0.3"], ["--seeds", "1", "3"], ["--seeds", "2"],
                   ["--seeds", "1", "2", "3", "--lr", "1e-3"], ["--lr", "1e-3"]):
        rc, err = sweep_cli([*GRID, *change, "--output-dir", str(out)], capsys)
        assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "holds another sweep" in err, change
    assert sorted(os.listdir(out)) == listing and (out / "sweep.json").read_text() == manifest


def test_a_killed_worker_is_retried_and_resumes_to_identical_metrics(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd("sweep.py", *GRID, "--output-dir", str(out)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        for name in NAMES:
            folder = out / "trials" / name
            pid = read_json(str(folder) + ".pid", or_none=True)
            if pid and (folder / "checkpoint_last.pt").exists() \
                    and not (folder / "metrics.json").exists():
                os.kill(pid["pid"], signal.SIGKILL)             # the Ray worker running it
                victim = name
                break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=600)
    assert victim is not None, "no trial was caught mid-run"
    assert proc.returncode == 0, stderr
    for name in NAMES:
        assert metrics_of(out, name) == metrics_of(ref, name), name
    results = pd.read_csv(out / "results.csv").set_index("trial")
    assert results.loc[victim, "attempts"] == 2 and results.loc[victim, "resumed"]
    assert "resumed from checkpoint_last.pt" in (out / "trials" / victim / "log.txt").read_text()
    assert f"{victim}: val " in stdout and "attempt 2, resumed" in stdout


@pytest.mark.parametrize("grid, says", [
    (["--grid", "gama=0.1,0.2"], "'gama' is not an option of run.py"),
    (["--grid", "gamma=0.1,abc"], "'abc' is not a valid --gamma"),
    (["--grid", "gamma=0.1,5"], "--gamma 5.0: must be in [-1, 1]"),
    (["--grid", "method=emmil,attention"], "'attention' is not one of"),
    (["--grid", "schedule=M1:1+X:2"], "--schedule: cannot read 'X:2'"),
    (["--grid", "seed=1,2"], "seed cannot be swept"),
    (["--grid", "output-dir=a,b"], "output-dir cannot be swept"),
    (["--grid", "gamma=0.1,0.1"], "given twice"),
    (["--grid", "gamma"], "expected KEY=V1,V2"),
    (["--grid", "gamma=0.1", "--gamma", "0.2"], "both in --grid and as a fixed option"),
    (["--grid", "gamma=0.1", "--gamma", "abc"], "argument --gamma: invalid float value"),
    (["--grid", "gamma=0.1", "--seed", "3"], "--seed: sweep.py --seeds gives the seeds"),
    (["--grid", "amp=yes"], "its values are true, false"),
    (["--device", "cuda"], "--device cuda needs --gpus-per-trial > 0"),
    (["--workers", "0"], "--workers 0: must be >= 1"),
])
def test_bad_grid_is_one_line_exit_2_before_anything(grid, says, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = sweep_cli([*grid, "--output-dir", str(out), *DATA], capsys)
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert says in err, err
    assert not out.exists()


def test_bad_grid_from_the_command_line(tmp_path):
    r = run("sweep.py", "--grid", "gamma=0.1,x", "--output-dir", str(tmp_path / "o"), *DATA)
    assert r.returncode == 2 and r.stderr.startswith("error: --grid gamma=0.1,x")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_grid_syntax():
    axes = parse_grid(["schedule=M1:1,M1:1+E:1", "loc-threshold=0.05,0.05+0.1",
                       "--amp=false,true", "tensorboard=false", "method=untrimmednet"],
                      build_parser(), {})
    assert [a.dest for a in axes] == ["schedule", "loc_threshold", "amp", "tensorboard", "method"]
    assert [v.tokens for v in axes[0].values] == [("--schedule", "M1:1"),
                                                  ("--schedule", "M1:1,E:1")]
    assert [v.typed for v in axes[1].values] == [[0.05], [0.05, 0.1]]
    assert [v.tokens for v in axes[2].values] == [(), ("--amp",)]
    assert axes[3].values[0].tokens == ("--no-tensorboard",)
    grid = points(axes)
    assert len(grid) == 8
    assert trial_name(axes, grid[-1], 3) == (
        "schedule=M1:1+E:1_loc_threshold=0.05+0.1_amp=true_tensorboard=false_"
        "method=untrimmednet_seed=3")
    paths = parse_grid(["data_root=/a b/c"], build_parser(), {})
    assert trial_name(paths, points(paths)[0], 1) == "data_root=-a-b-c_seed=1"


def test_a_trial_the_data_refuse_fails_alone_with_its_line(tmp_path):
    """No Ray: the task body itself. --feature-dim 7 passes the option checks but not the
    data's; the trial's result carries the one-line error and is not retried."""
    opts = parse_opts([*TINY, "--feature-dim", "7", "--output-dir", str(tmp_path / "t")])
    trial, = trials.trials_of([vars(opts)], EXECUTION, sweep.SWEEP_TRIAL)
    r = trials.run_trial(trial_work, trial)
    assert r["status"] == "failed" and "--feature-dim 7" in r["error"]
    assert "\n" not in r["error"] and not os.path.exists(trials.pid_file(trial))
    axis, = parse_grid(["feature_dim=7"], build_parser(), {})
    rows = sweep_tables.results_frame([axis], [(points([axis])[0], 1, r)])
    summary = sweep_tables.ranked(sweep_tables.summarise_points(rows, ["feature_dim"],
                                                                ["val_mAP"]))
    table = sweep_tables.format_table(summary, [axis], [("val_mAP", "val")], 0.25, 1)
    assert "feature_dim=7" in table and "1 failed: --feature-dim 7" in table


def test_overwrite_clears_only_the_sweeps_files(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    (out / "notes.txt").write_text("mine")
    (out / "trials" / NAMES[0] / "mine.txt").write_text("mine")
    sweep_tables.clear_sweep(str(out), "trials", ("sweep.json", "results.csv", "summary.csv",
                                                  "summary.txt"), (sweep.NODE_FILE,))
    assert sorted(os.listdir(out)) == ["notes.txt", "sweep.lock", "trials"]
    assert os.listdir(out / "trials") == [NAMES[0]]
    assert os.listdir(out / "trials" / NAMES[0]) == ["mine.txt"]


def test_run_seeds_with_workers_goes_through_the_same_executor(reference, tmp_path):
    """run.py --seeds 1 2 --workers 2 on Ray: each seed equals the sweep's trial of the same
    options (one executor, one result)."""
    ref, _ = reference
    out = tmp_path / "seeds"
    r = run("run.py", *TINY, "--gamma", "0.1", "--seeds", "1", "2", "--workers", "2",
            "--output-dir", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    for seed in (1, 2):
        with open(out / f"seed_{seed}" / "metrics.json") as f:
            assert json.load(f) == metrics_of(ref, f"gamma=0.1_seed={seed}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [1, 2] and "val_mAP" in summary["metrics"]
    assert sorted(os.listdir(out)) == ["seed_1", "seed_2", "summary.json", "summary.txt"]


def test_a_second_command_into_a_running_sweep_is_refused(reference, tmp_path, capsys):
    import fcntl
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    with open(out / "sweep.lock", "a") as held:              # as a running sweep holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, err = sweep_cli([*GRID, "--output-dir", str(out)], capsys)
    assert rc == 2 and "another sweep command is running" in err
    rc, err = sweep_cli([*GRID, "--output-dir", str(out)], capsys)   # the copy is finished
    assert rc == 0, err


# ----------------------------------------------------------------------------
# the data checked once on the driver; more seeds added to a finished sweep
# ----------------------------------------------------------------------------

def test_a_wrong_data_root_is_refused_once_before_ray(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = sweep_cli([*GRID, "--dataset", "thumos14", "--data-root",
                         str(tmp_path / "nowhere"), "--output-dir", str(out)], capsys)
    assert rc == 2 and err.startswith("error: trial gamma=0.1_seed=1: ")
    assert len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'nowhere'}" in err and "annotation folder not found" in err
    assert not out.exists()


def test_data_that_refuse_the_options_are_refused_before_ray(tmp_path, capsys):
    """--feature-dim passes the option checks; the data (the embedded default) refuse it on
    the driver, before the folder is made."""
    out = tmp_path / "out"
    rc, err = sweep_cli([*GRID, "--feature-dim", "7", "--output-dir", str(out)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "error: trial gamma=0.1_seed=1: --feature-dim 7: the features have 1024" in err
    assert not out.exists()


def test_extended_seeds():
    saved = {"format": "emmil-sweep", "version": 1, "grid": [["gamma", [0.1, 0.2]]],
             "seeds": [1, 2], "val_fraction": 0.25, "options": {"cls_epochs": 3}}
    more = lambda **kw: {**saved, **kw}                                  # noqa: E731
    assert sweep.extended_seeds(saved, saved) == [1, 2]
    assert sweep.extended_seeds(saved, more(seeds=[1, 2, 3])) == [1, 2, 3]
    assert sweep.extended_seeds(saved, more(seeds=[5, 2, 1, 4])) == [1, 2, 5, 4]
    assert sweep.extended_seeds(saved, more(seeds=[2, 1])) == [1, 2]
    for other in (more(seeds=[1]), more(seeds=[1, 3]), more(seeds=[3]),
                  more(seeds=[1, 2, 3], val_fraction=0.2),
                  more(seeds=[1, 2, 3], grid=[["gamma", [0.1]]]),
                  more(seeds=[1, 2, 3], options={"cls_epochs": 4})):
        assert sweep.extended_seeds(saved, other) is None, other
    assert sweep.extended_seeds(None, saved) is None
    assert sweep.extended_seeds({"seeds": "1 2"}, saved) is None
    # an earlier version kept --device in the manifest: an execution option, not compared
    earlier = {**saved, "options": {"cls_epochs": 3, "device": "cpu"}}
    assert sweep.extended_seeds(earlier, more(seeds=[1, 2, 3])) == [1, 2, 3]


def test_more_seeds_add_their_trials_and_keep_the_finished_ones(reference, tmp_path, capsys):
    """--seeds 3 1 2 over the 2-seed sweep: seed 3's trials run, the four finished ones are
    not touched, the manifest and the tables have all three seeds (in the folder's order)."""
    out = tmp_path / "more"
    shutil.copytree(reference[0], out)
    before = {n: os.stat(out / "trials" / n / "metrics.json").st_mtime_ns for n in NAMES}
    old = pd.read_csv(out / "results.csv").set_index("trial")
    more = ["--grid", "gamma=0.1,0.2", "--seeds", "3", "1", "2", "--workers", "2", *TINY]
    r = run("sweep.py", *more, "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    assert "6 trials in" in r.stdout and "4 finished before; seeds added: 3" in r.stdout
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [1, 2, 3]
    assert before == {n: os.stat(out / "trials" / n / "metrics.json").st_mtime_ns for n in NAMES}
    new = [f"gamma={g}_seed=3" for g in ("0.1", "0.2")]
    results = pd.read_csv(out / "results.csv").set_index("trial")
    assert sorted(results.index) == sorted(NAMES + new) and set(results["status"]) == {"ok"}
    for name in NAMES:                                  # the earlier command's row, kept
        assert results.loc[name, "seconds"] == old.loc[name, "seconds"]
        assert results.loc[name, "average_mAP@0.1:0.5"] == old.loc[name, "average_mAP@0.1:0.5"]
    for name in new:
        flat = flatten_metrics(metrics_of(out, name))
        assert results.loc[name, "val_mAP"] == flat["val_mAP"]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["seeds"]) == [3, 3]
    rc, err = sweep_cli([*GRID, "--output-dir", str(out)], capsys)   # 2 seeds: refused now
    assert rc == 2 and "holds another sweep" in err and "seeds [1, 2, 3]" in err


def test_a_trial_finished_by_an_earlier_version_stays_finished(tmp_path):
    """An opts.json written before an option existed (here without 'step') stands for the
    value that option's runs had then (saved_opts.ADDED): the trial is done, not rerun; a
    saved value that differs from the trial's is still another run."""
    opts = parse_opts([*TINY, "--output-dir", str(tmp_path / "t")])
    trial, = trials.trials_of([vars(opts)], EXECUTION, sweep.SWEEP_TRIAL)
    os.makedirs(trial.opts["output_dir"])
    older = {k: v for k, v in trial.same.items() if k != "step"}
    with open(os.path.join(trial.opts["output_dir"], "opts.json"), "w") as f:
        json.dump(older, f)
    with open(os.path.join(trial.opts["output_dir"], "metrics.json"), "w") as f:
        json.dump({"mAP": {}}, f)
    assert trial.same["step"] == "unpadded" and trials.trial_state(trial) == "done"
    with open(os.path.join(trial.opts["output_dir"], "opts.json"), "w") as f:
        json.dump({**older, "step": "padded"}, f)
    assert trials.trial_state(trial) == "new"
