"""Checkpoints: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--synthetic-videos", "16", "--synthetic-max-seconds", "60", "--cls-epochs", "3",
        "--schedule", "M1:2,E:2,M2:2,alt:3", "--quiet", "--save-every", "4",
        "--no-report", "--no-tensorboard"]


def cmd(*args):
    return [sys.executable, os.path.join(ROOT, "run.py"), *args]


def run(*args):
    return subprocess.run(cmd(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)


def same_weights(a, b):
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run(*ARGS, "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_sigkill_then_resume_is_bit_identical(reference, tmp_path, delay):
    out = tmp_path / "run"
    proc = subprocess.Popen(cmd(*ARGS, "--output-dir", str(out)), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint_last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it was killed"
    r = run("--resume", str(out))
    assert r.returncode == 0, r.stderr
    assert "resumed from checkpoint_last.pt" in (out / "log.txt").read_text()
    for name in ("em_mil.pt", "classifier.pt"):
        assert same_weights(out / name, reference / name), name
    assert (json.loads((out / "metrics.json").read_text())
            == json.loads((reference / "metrics.json").read_text()))
    assert (out / "checkpoint_0004.pt").exists() and (out / "checkpoint_0008.pt").exists()


def test_same_seed_same_metrics(reference, tmp_path):
    r = run(*ARGS, "--output-dir", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert (json.loads((tmp_path / "again" / "metrics.json").read_text())
            == json.loads((reference / "metrics.json").read_text()))


def test_resume_bad_inputs(reference, tmp_path):
    r = run("--resume", str(tmp_path))
    assert r.returncode == 2 and "opts.json: not found" in r.stderr
    r = run("--resume", str(reference), "--dataset", "thumos14")
    assert r.returncode == 2 and "contradicts" in r.stderr
    # a truncated checkpoint: copy the run, cut its checkpoint in half
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("opts.json", "checkpoint_last.pt"):
        (broken / name).write_bytes((reference / name).read_bytes())
    data = (broken / "checkpoint_last.pt").read_bytes()
    (broken / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])
    before = sorted(os.listdir(broken))
    r = run("--resume", str(broken))
    assert r.returncode == 2 and "corrupt or truncated checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(broken)) == before
