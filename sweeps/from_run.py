"""Detection-only sweeps (`python sweep.py --from-run RUN_DIR --grid ... --output-dir DIR`): a
grid of post-processing options (detection and evaluation groups) over a finished run, or
each seed of a --seeds folder, with no training. The networks run once per video and seed;
each grid point is then detection and evaluation only.

Ranked by the mAP on the run's held-out training videos when it was trained with
--val-fraction; otherwise not ranked. The test columns are shown, never used to choose.
DIR gets sweep.json, results.csv (one row per point and seed), summary.csv and summary.txt.
"""
import argparse
import os
import socket
import time

from option_checks import check_options
from opts import (POST_PROCESSING, add_detection_options, add_evaluation_options,
                  build_parser, merge_options)
from pipeline.data import load_data
from pipeline.finished_run import (check_finished, chosen_ground_truth, held_out,
                                   load_networks, run_folders)
from pipeline.localise import detect_from, evaluate_run, held_out_score, network_outputs
from pipeline.run_folder import check_output_dir
from core.errors import InputError, warn
from core.files import atomic_write_json
from sweeps.sweep_grid import parse_grid, points, trial_name
from sweeps.sweep_tables import write_tables
from utils import Logger, device_here

FILES = ("sweep.json", "results.csv", "summary.csv", "summary.txt")


def refused_in_grid():
    """{dest: why} of every run.py option a detection-only grid cannot hold."""
    return {a.dest: "a training or data option; --from-run sweeps post-processing only"
            for a in build_parser()._actions if a.dest not in POST_PROCESSING}


def fixed_post_processing(rest, run_dir):
    """The detection and evaluation options given beside the grid ({dest: value}), and
    --device (where the networks run: None when not given); any other option is refused."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_detection_options(p)
    add_evaluation_options(p)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    for action in p._actions:
        action.default = argparse.SUPPRESS
    given, unknown = p.parse_known_args(rest)
    if unknown:
        flag = unknown[0].split("=")[0]
        known = {s for a in build_parser()._actions for s in a.option_strings}
        if flag in known:
            raise InputError(f"{flag}: not a detection or evaluation option; --from-run uses "
                             f"{run_dir}'s trained networks as they are")
        raise InputError(f"unrecognized arguments: {' '.join(unknown)}")
    given = vars(given)
    return given, given.pop("device", None)


class Seed:
    """One seed's run read back, its networks passed once over its test and held-out
    videos; `point` evaluates a grid point from those outputs."""

    def __init__(self, seed, run_dir, saved, fixed, device=None):
        """device: --device (None: the run's when this machine has it, else the CPU)."""
        check_finished(run_dir)
        self.seed, self.run_dir = seed, run_dir
        self.device = device_here(device, saved["device"], warn, run_dir)
        self.opts = merge_options(saved, fixed, "from_run", then=dict(
            output_dir=run_dir, quiet=True, device=self.device.type))
        _, self.data = load_data(self.opts, Logger(quiet=True))
        self.test = self.data.split("test")
        self.gt = chosen_ground_truth(self.opts, self.data, "test", self.test)
        self.val, self.val_gt = held_out(self.opts, self.data, "test", None, False)
        self.model, self.classifier = load_networks(run_dir, self.opts, len(self.data.classes),
                                                    self.device)

    def pass_networks(self):
        def outputs(videos):
            return network_outputs(self.model, self.classifier, videos, self.device,
                                   method=self.opts.method, amp=self.opts.amp)
        self.test_out = outputs(self.test)
        self.val_out = outputs(self.val) if self.val else None

    def point(self, values):
        """metrics.json's dict of one grid point ({dest: value}), val_mAP included."""
        opts = argparse.Namespace(**{**vars(self.opts), **values})
        dets, scores = detect_from(self.test_out, self.test, self.data.classes, opts,
                                   self.data.snippet_seconds, self.data.ambiguous)
        metrics = evaluate_run(dets, scores, self.test, self.gt, opts)
        if self.val:
            dets, _ = detect_from(self.val_out, self.val, self.data.classes, opts,
                                  self.data.snippet_seconds, self.data.ambiguous)
            metrics["val_mAP"] = held_out_score(dets, self.val_gt, opts.tiou)
        return metrics


def check_points(seeds, axes):
    """Every grid point's options pass run.py's checks (before anything is written)."""
    for point in points(axes):
        values = {a.dest: v.typed for a, v in zip(axes, point)}
        try:
            check_options(argparse.Namespace(**{**vars(seeds[0].opts), **values}))
        except InputError as e:
            raise InputError(f"--grid: {e}") from None


def clear(folder):
    for name in FILES:
        path = os.path.join(folder, name)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)


def sweep_from_run(run_dir, grid, rest, folder, overwrite):
    """The whole detection-only sweep; returns the exit code."""
    axes = parse_grid(grid, build_parser(), refused_in_grid())
    fixed, device = fixed_post_processing(rest, run_dir)
    check_output_dir(folder, overwrite, resumable=False)
    seeds = [Seed(seed, sub, saved, fixed, device) for seed, sub, saved in run_folders(run_dir)]
    check_points(seeds, axes)
    # everything is checked: the first writes
    os.makedirs(folder, exist_ok=True)
    if overwrite:
        clear(folder)
    val_fraction = seeds[0].opts.val_fraction
    atomic_write_json(os.path.join(folder, "sweep.json"), {
        "format": "emmil-detection-sweep", "version": 1, "from_run": os.path.abspath(run_dir),
        "grid": [[a.dest, [v.typed for v in a.values]] for a in axes],
        "seeds": [s.seed for s in seeds], "options": fixed, "val_fraction": val_fraction})
    print(f"detection-only sweep: {len(points(axes))} grid points x {len(seeds)} seeds of "
          f"{run_dir}", flush=True)
    host, rows = socket.gethostname(), []
    t0 = time.time()
    for s in seeds:
        s.pass_networks()
    t_pass = time.time() - t0
    for point in points(axes):
        values = {a.dest: v.typed for a, v in zip(axes, point)}
        for s in seeds:
            t1 = time.time()
            metrics = s.point(values)
            rows.append((point, s.seed, {
                "name": trial_name(axes, point, s.seed), "status": "ok", "metrics": metrics,
                "error": None, "seconds": time.time() - t1, "host": host, "attempts": 1,
                "resumed": False, "node": None}))
    write_tables(folder, axes, rows, seeds[0].opts.averages, val_fraction, len(seeds))
    print(f"networks: {t_pass:.1f} s once; {len(rows)} detections and evaluations: "
          f"{time.time() - t0 - t_pass:.1f} s")
    return 0
