"""detect.py's speed: a finished run localised again, against the test pass inside run.py,
and a detection-only grid with the networks' pass reused, against running them per point.

    python bench/bench_detect.py [--run RUN_DIR] [--scale full|small|tiny] [--points 20]

Part 1, a finished run (default: a --dry-run trained here in a temporary folder; pass the
default run's folder for the README's figure): the wall time of detect.py's main, in this
process, split into reading the run and its data, and what run.py also does after training
(pipeline/outputs.localise_and_evaluate: the networks' pass, detection, evaluation, the
files); that last part timed again alone on the same networks is the test pass of run.py.

Part 2, THUMOS-scale in memory (full: 212 test videos, median 280 snippets, long tail;
random networks: speed does not depend on the weights): the networks' pass once, one grid
point's detection and evaluation, and a grid of --points points with the pass reused
(sweep.py --from-run) against the same grid with the networks run again for each point.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
import detect  # noqa: E402
import run  # noqa: E402
from bench_train import K, SCALES, make_videos  # noqa: E402
from training.batches import SnippetDataset  # noqa: E402
from model import EMMIL, UntrimmedNetClassifier  # noqa: E402
from opts import build_parser  # noqa: E402
from pipeline.finished_run import load_networks, read_saved_opts  # noqa: E402
from pipeline.data import load_data  # noqa: E402
from pipeline.localise import (detect_from, evaluate_run, videos_ground_truth,  # noqa: E402
                               network_outputs)
from pipeline.outputs import Localisation, localise_and_evaluate  # noqa: E402
from core.cli import cli  # noqa: E402
from utils import Logger  # noqa: E402


def seconds(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def part_run(run_dir):
    """detect.py on a finished run, against the test pass run.py makes after training."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [run_dir, "--output-dir", os.path.join(tmp, "detect"), "--quiet", "--no-report"]
        t_detect, code = seconds(lambda: cli(detect.main, argv))
        assert code == 0, "detect.py failed"
        saved = read_saved_opts(run_dir)
        opts = argparse.Namespace(**{**saved, "report": False, "quiet": True})
        t_data, (_, data) = seconds(lambda: load_data(opts, Logger(quiet=True)))
        model, classifier = load_networks(run_dir, opts, len(data.classes),
                                          torch.device("cpu"))
        test = SnippetDataset(data.split("test"), data.snippet_seconds)
        gt = detect.chosen_ground_truth(opts, data, "test", test.videos)
        loc = Localisation(model, classifier, torch.device("cpu"), data, test, gt)
        t_pass, _ = seconds(lambda: localise_and_evaluate(tmp, opts, loc, Logger(quiet=True)))
    print(f"run {run_dir}: {len(test)} test videos, "
          f"{sum(v.num_snippets for v in test.videos)} snippets")
    print(f"detect.py (in this process)     {t_detect:8.2f} s")
    print(f"  of which reading the data     {t_data:8.2f} s")
    print(f"run.py's test pass, same nets   {t_pass:8.2f} s")
    print(f"detect.py / test pass           {t_detect / t_pass:8.2f}x")


def part_grid(scale, n_points):
    """The networks once and a grid of detection points, at THUMOS scale, in memory."""
    rng = np.random.default_rng(0)
    _, n_test, median = SCALES[scale]
    videos = make_videos(n_test, rng, "test", median)
    for v in videos:                   # one ground-truth segment per labelled class
        for c in np.flatnonzero(v.labels.numpy()):
            s = rng.uniform(0, 0.7 * v.duration)
            v.segments.append((int(c), s, s + rng.uniform(2, 0.3 * v.duration)))
    classes = [f"class_{k}" for k in range(K)]
    gt = videos_ground_truth(videos, classes)
    torch.manual_seed(0)
    model, classifier = EMMIL(K).eval(), UntrimmedNetClassifier(K).eval()
    opts = build_parser().parse_args([])
    opts.tiou, opts.averages = [0.1, 0.2, 0.3, 0.4, 0.5], {"0.1:0.5": (0.1, 0.5)}
    t_pass, outputs = seconds(lambda: network_outputs(model, classifier, videos, "cpu"))
    thresholds = np.linspace(0.0, 0.3, n_points)

    def point(t):
        o = argparse.Namespace(**{**vars(opts), "loc_threshold": [float(t)]})
        dets, scores = detect_from(outputs, videos, classes, o, 0.64)
        return evaluate_run(dets, scores, videos, gt, o)

    t_points, _ = seconds(lambda: [point(t) for t in thresholds])
    per_point = t_points / n_points
    print(f"THUMOS-scale test split ({scale}): {len(videos)} videos, "
          f"{sum(v.num_snippets for v in videos)} snippets, random networks")
    print(f"networks' pass, once            {t_pass:8.2f} s")
    print(f"detection + evaluation a point  {per_point:8.3f} s")
    reused, again = t_pass + t_points, n_points * (t_pass + per_point)
    print(f"grid of {n_points} points, pass reused {reused:8.2f} s")
    print(f"grid of {n_points} points, pass again  {again:8.2f} s")
    print(f"speed-up of reusing the pass    {again / reused:8.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a finished run (default: a dry run made here)")
    ap.add_argument("--scale", choices=list(SCALES), default="full")
    ap.add_argument("--points", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if a.run is None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "dry")
            assert cli(run.main, ["--dry-run", "--quiet", "--no-report", "--no-tensorboard",
                                  "--output-dir", folder]) == 0
            part_run(folder)
    else:
        part_run(a.run)
    part_grid(a.scale, a.points)


if __name__ == "__main__":
    main()
