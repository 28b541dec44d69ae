"""The GPU's side of a run (bench/gpu_check.sh runs these on a lent GPU; skipped without one):
the classifier trainer, --amp, --deterministic, --step padded, the test pass, and a run trained
on the GPU then detected and resumed on the CPU.

EMMIL_TEST_DEVICE=cpu runs the same tests with the CPU in the GPU's place (a check of the
tests themselves, not of CUDA)."""
import argparse
import json
import os

import numpy as np
import pytest
import torch

import detect
import run
from core.cli import cli
from dataset import Video
from training.batches import SnippetDataset
from em_trainer import ClassifierTrainer
from model import UntrimmedNetClassifier
from pipeline.data import load_data
from pipeline.finished_run import load_networks
from pipeline.localise import network_outputs
from pipeline.saved_opts import read_saved
from training.schedule import Phase

DEVICE = os.environ.get("EMMIL_TEST_DEVICE", "cuda")
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

ARGS = ["--dry-run", "--quiet", "--no-report", "--no-tensorboard"]
# How far the GPU's arithmetic may move a run from the CPU's (float32, TF32 off for products):
# the networks' outputs on the same weights, and a dry run's losses (EM amplifies rounding).
OUTPUTS_ATOL, LOSS_RTOL = 1e-4, 1e-2


def _dry_run(folder, *extra):
    assert cli(run.main, [*ARGS, "--output-dir", str(folder), "--device", DEVICE, *extra]) == 0
    return json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dry run trained on DEVICE, a checkpoint kept after every epoch."""
    folder = tmp_path_factory.mktemp("gpu") / "run"
    _dry_run(folder, "--save-every", "1")
    return folder


@pytest.mark.parametrize("batch_size", [1, 3])
def test_classifier_trainer_follows_the_cpu(batch_size):
    g = torch.Generator().manual_seed(3)
    videos = [Video(f"v{i}", "train", torch.randn(T, 2 * 32, generator=g),
                    torch.eye(4)[i % 4] * (i != 2), T * 0.64)          # v2: no label
              for i, T in enumerate([9, 30, 4, 17, 12])]
    data = SnippetDataset(videos, 0.64)
    torch.manual_seed(0)
    cpu = UntrimmedNetClassifier(4, feature_dim=32)
    gpu = UntrimmedNetClassifier(4, feature_dim=32)
    gpu.load_state_dict(cpu.state_dict())
    trainers = [ClassifierTrainer(m.to(d), data, 1e-3, batch_size, d, seed=1)
                for m, d in ((cpu, "cpu"), (gpu, DEVICE))]
    for epoch in range(1, 4):
        a, b = (t.train_epoch(Phase(epoch, "C", 0, 1.0)) for t in trainers)
        assert a["finite"] and b["finite"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), epoch
    for (name, x), y in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(x.numpy(), y.cpu().numpy(), atol=1e-4, err_msg=name)


def test_trained_here_detected_and_resumed_on_the_cpu(trained, tmp_path):
    """The test pass on both devices from the same weights: outputs within OUTPUTS_ATOL;
    detect.py --device cpu; --resume --device cpu from epoch 3 ends near the GPU's run."""
    opts = argparse.Namespace(**read_saved(str(trained), ""))
    _, data = load_data(opts, lambda *a: None)
    videos = data.split("test")
    K = len(data.classes)
    outs = []
    for device in ("cpu", DEVICE):
        model, classifier = load_networks(str(trained), opts, K, torch.device(device))
        outs.append(network_outputs(model, classifier, videos, torch.device(device)))
    for a, b in zip(*outs):
        for key in ("a", "c", "q", "p", "video_score"):
            np.testing.assert_allclose(a[key], b[key], atol=OUTPUTS_ATOL, err_msg=key)
    out = tmp_path / "detected"
    assert cli(detect.main, [str(trained), "--output-dir", str(out), "--device", "cpu",
                             "--quiet", "--no-report"]) == 0
    here = json.loads((out / "metrics.json").read_text())["mAP"]
    there = json.loads((trained / "metrics.json").read_text())["mAP"]
    assert max(abs(here[t] - there[t]) for t in here) <= 0.05        # a dry run's few videos
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("opts.json", "history.json"):
        (moved / name).write_bytes((trained / name).read_bytes())
    (moved / "checkpoint_last.pt").write_bytes((trained / "checkpoint_0003.pt").read_bytes())
    assert cli(run.main, ["--resume", str(moved), "--device", "cpu", "--quiet"]) == 0
    ours = json.loads((moved / "history.json").read_text())
    theirs = json.loads((trained / "history.json").read_text())
    for a, b in zip(ours, theirs):
        assert a["loss"] == pytest.approx(b["loss"], rel=LOSS_RTOL), a["position"]
    state = torch.load(trained / "checkpoint_last.pt", weights_only=True)
    assert state["machine"]["device"] == torch.device(DEVICE).type
    assert all(t.device.type == "cpu" for t in state["model"].values())


def test_amp_padded_and_deterministic_runs(trained, tmp_path):
    theirs = json.loads((trained / "history.json").read_text())
    for extra in (["--amp"], ["--step", "padded"]):
        ours = _dry_run(tmp_path / extra[-1], *extra)
        assert [h["phase"] for h in ours] == [h["phase"] for h in theirs]
        rel = 1e-4 if extra == ["--step", "padded"] else 5e-2      # bfloat16 products
        for a, b in zip(ours, theirs):
            assert a["loss"] == pytest.approx(b["loss"], rel=rel), (extra, a["position"])
    once, again = (tmp_path / "det1", tmp_path / "det2")
    for folder in (once, again):
        _dry_run(folder, "--deterministic")
    for name in ("em_mil.pt", "classifier.pt", "results.json"):
        assert (once / name).read_bytes() == (again / name).read_bytes(), name


def test_a_nan_on_the_device_stops_the_run_in_one_line(tmp_path, capsys):
    assert cli(run.main, [*ARGS, "--output-dir", str(tmp_path / "nan"), "--device", DEVICE,
                          "--lr", "1e30"]) == 2
    assert "diverged" in capsys.readouterr().err
    torch.zeros(1, device=DEVICE).add_(1).item()          # the device's context still works
