"""Runs that travel (issue 24): a run whose records say it was trained on CUDA is resumed,
detected, analysed and swept here, on the CPU, with no flag; a diverging run stops in one
line; the padded step (--step padded) trains a whole run."""
import json
import os
import shutil

import pytest
import torch

import analyze
import detect
import run
import sweep
from core.cli import cli
from core.files import atomic_torch_save, to_cpu
from core.safe_load import load_torch_plain
from em_trainer import adam
from extraction import record as rec
from pipeline.run_folder import check_optimizer
from opts import EXECUTION
from sweeps.trials import trials_of

ON_CPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's side")
ARGS = ["--dry-run", "--quiet", "--no-report", "--no-tensorboard", "--save-every", "1"]
# what a GPU run of this version writes (utils.device_record on an H100)
GPU = {"device": "cuda", "torch": "2.13.0+cu128", "name": "NVIDIA H100 80GB HBM3",
       "cuda": "12.8", "tf32_matmul": False, "tf32_conv": True}


def as_gpu_run(folder, position):
    """Make `folder` what a GPU run killed after `position` epochs leaves: opts.json and the
    checkpoint say cuda (the tensors are CPU tensors: every torch file is saved so)."""
    opts = json.loads((folder / "opts.json").read_text())
    (folder / "opts.json").write_text(json.dumps({**opts, "device": "cuda", "machine": GPU}))
    state = load_torch_plain(folder / f"checkpoint_{position:04d}.pt", "", "")
    state.update(machine=GPU, opts={**state["opts"], "device": "cuda"})
    atomic_torch_save(state, folder / "checkpoint_last.pt")
    for name in ("em_mil.pt", "classifier.pt", "metrics.json", "results.json", "results.txt"):
        (folder / name).unlink()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(an uninterrupted CPU run, the same run cut after 3 epochs and recorded as CUDA)."""
    base = tmp_path_factory.mktemp("moving")
    assert cli(run.main, [*ARGS, "--output-dir", str(base / "whole")]) == 0
    moved = base / "moved"
    shutil.copytree(base / "whole", moved)
    as_gpu_run(moved, 3)
    return base / "whole", moved


@ON_CPU
def test_resumed_detected_swept_and_analysed_on_the_cpu(runs, tmp_path, capsys):
    whole, moved = runs
    assert cli(run.main, ["--resume", str(moved), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "made on cuda and the run continues on cpu" in err and len(err.splitlines()) == 1
    # the checkpoint really was a CPU one: the continuation is the uninterrupted run
    assert (json.loads((moved / "metrics.json").read_text())
            == json.loads((whole / "metrics.json").read_text()))
    saved = torch.load(moved / "checkpoint_last.pt", weights_only=True)
    assert saved["machine"]["device"] == "cpu" and saved["machine"]["cpu_capability"]
    assert json.loads((moved / "opts.json").read_text())["device"] == "cuda"   # as saved
    # detect, with no flag: the CPU, said in one line
    out = tmp_path / "detected"
    assert cli(detect.main, [str(moved), "--output-dir", str(out), "--quiet",
                             "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "saved with --device cuda" in err and "runs on the CPU" in err
    assert (json.loads((out / "metrics.json").read_text())["mAP"]
            == json.loads((whole / "metrics.json").read_text())["mAP"])
    assert json.loads((out / "opts.json").read_text())["machine"]["device"] == "cpu"
    # a detection-only sweep over it
    assert cli(sweep.main, ["--from-run", str(moved), "--grid", "loc_threshold=0.05,0.1",
                            "--output-dir", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "summary.csv").is_file()
    # analyze.py, curves included
    assert cli(analyze.main, [str(moved), "--timelines", "0", "--dpi", "20"]) == 0
    assert (moved / "report" / "index.html").is_file()


@ON_CPU
def test_explicit_device_cuda_is_still_refused_here(runs, tmp_path, capsys):
    _, moved = runs
    report = moved / "report"
    before = sorted(os.listdir(report)) if report.is_dir() else None
    assert cli(analyze.main, [str(moved), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda: no CUDA device is available"
    assert (sorted(os.listdir(report)) if report.is_dir() else None) == before   # untouched
    assert cli(detect.main, [str(moved), "--output-dir", str(tmp_path / "d"),
                             "--device", "cuda"]) == 2
    assert not (tmp_path / "d").exists()


def test_device_is_not_part_of_a_trial():
    opts = {"output_dir": "/tmp/a", "lr": 1e-4, "seed": 1}
    on_gpu, on_cpu = trials_of([{**opts, "device": "cuda"}, {**opts, "device": "cpu"}],
                               EXECUTION, None)
    assert on_gpu.same == on_cpu.same == {"lr": 1e-4, "seed": 1}


def test_torch_files_hold_cpu_tensors_and_keep_module_versions():
    state = torch.nn.BatchNorm1d(3).state_dict()
    moved = to_cpu({"model": state, "steps": [torch.ones(2)], "position": 3})
    assert moved["position"] == 3 and torch.equal(moved["steps"][0], torch.ones(2))
    assert moved["model"]._metadata == state._metadata       # load_state_dict reads them
    torch.nn.BatchNorm1d(3).load_state_dict(moved["model"])


def test_extraction_refuses_to_mix_tf32_and_float32(tmp_path):
    record = {"videos": {"a": {"tf32": False}, "old": {}}}           # "old": says nothing
    rec.check_precision(record, False, str(tmp_path))
    with pytest.raises(Exception) as e:
        rec.check_precision(record, True, str(tmp_path))
    assert "a, ..." in str(e.value) and "another --out" in str(e.value)
    made = rec.machine_record("cpu")
    assert made["tf32"] is False and made["machine"]["device"] == "cpu"
    assert made["machine"]["blas"] and made["machine"]["cpu_capability"]


@pytest.mark.parametrize("extra", [[], ["--batch-size", "2"]])
def test_a_diverging_run_stops_in_one_line_and_keeps_its_last_checkpoint(tmp_path, capsys,
                                                                          extra):
    out = tmp_path / "run"
    argv = [*ARGS, "--output-dir", str(out), "--lr", "1e30", *extra]
    assert cli(run.main, argv) == 2
    err = capsys.readouterr().err
    assert err == ("error: epoch 2 (M1 1) diverged: a NaN or Inf in the loss or the weights; "
                   "the checkpoint of epoch 1 is kept; try a lower --lr\n")
    history = json.loads((out / "history.json").read_text())          # valid JSON: no NaN
    assert [h["phase"] for h in history] == ["C"]
    assert torch.load(out / "checkpoint_last.pt", weights_only=True)["position"] == 1
    assert not (out / "metrics.json").exists() and not (out / "em_mil.pt").exists()


def test_padded_step_trains_a_whole_run(runs, tmp_path):
    """--step padded: the unpadded run's losses and weights to float32 rounding; its
    checkpoint's capturable Adam (a tensor learning rate) passes --resume's checks."""
    whole, _ = runs
    out = tmp_path / "padded"
    assert cli(run.main, [*ARGS, "--output-dir", str(out), "--step", "padded"]) == 0
    ours = json.loads((out / "history.json").read_text())
    theirs = json.loads((whole / "history.json").read_text())
    assert [h["phase"] for h in ours] == [h["phase"] for h in theirs]
    for a, b in zip(ours, theirs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["positive"] == b["positive"]
    padded, plain = (torch.load(f / "em_mil.pt", weights_only=True) for f in (out, whole))
    for name in plain:
        torch.testing.assert_close(padded[name], plain[name], rtol=1e-4, atol=1e-6)
    assert json.loads((out / "opts.json").read_text())["step"] == "padded"
    state = torch.load(out / "checkpoint_last.pt", weights_only=True)["em_trainer"]["opt_M"]
    assert torch.is_tensor(state["param_groups"][0]["lr"])
    opt = adam([torch.nn.Parameter(torch.ones(3))], 1e-4, capturable=True)
    check_optimizer(opt)                                  # refused a tensor before
