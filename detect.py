"""Localise and evaluate with a finished run, without training (docs/detect.md).

    python detect.py RUN_DIR --output-dir OUT                      # the run's own test split
    python detect.py RUN_DIR --loc-threshold 0.1 --nms hard --output-dir OUT
    python detect.py RUN_DIR --split all --videos NAME ... --output-dir OUT
    python detect.py RUN_DIR --dataset thumos14 --data-root DIR --output-dir OUT
    python detect.py RUN_DIR --video FILE.mp4 --rgb-weights RGB.pt --flow-weights FLOW.pt \
        --output-dir OUT                                          # one video file

RUN_DIR is a run's output folder (or a --seeds folder: one result per seed). Its opts.json
and final weights (em_mil.pt, classifier.pt) are read; the options of the detection and
evaluation groups (and the data options) override the saved ones; a training option is
refused. OUT gets what run.py writes after training: results.json (results.txt for
THUMOS14), metrics.json when the videos have ground truth, opts.json (the source run, its
weights' sha256, the overrides), report/. On the run's own data with no override,
results.json and metrics.json are the run's own, byte for byte. Data without annotations
(features extract.py wrote, no gt.json) is localised with the run's class list, without
metrics.json.

--video FILE extracts the video's I3D features first (extract.py's convention and checks,
into OUT/extraction/, docs/extract.md), localises them, and draws OUT/timeline_<video>.png:
its detections over the curves they come from.
"""
import argparse
import os
import sys
import time

import torch

from dataset import read_class_list
from training.batches import SnippetDataset
from extraction.jobs import plan, run
from extraction.options import STREAMS, add_extraction_options, weights_of
from opts import (DATA, POST_PROCESSING, add_data_options, add_detection_options,
                  add_evaluation_options, build_parser, merge_options)
from option_checks import check_rules
from pipeline.data import load_data
from pipeline.finished_run import (check_finished, chosen_ground_truth, held_out,
                                   load_networks, run_folders, weights_sha256)
from pipeline.outputs import Localisation, localise_and_evaluate, write_seeds_summary, write_timelines
from pipeline.run_files import RunFolder
from pipeline.run_folder import check_output_dir, clear_earlier_run
from pipeline.saved_opts import save_opts
from core.cli import OneLineParser, cli
from core.errors import InputError, warn
from utils import Logger, device_here

SPLITS = ("test", "train", "all")
EXTRACTION = "extraction"           # OUT/extraction/: the features of --video


def build_detect_parser():
    p = OneLineParser(prog="detect.py", allow_abbrev=False,
                      description="Localise and evaluate with a finished run (no training).",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run's output folder (run.py --output-dir), or a --seeds folder")
    g = p.add_argument_group("detect.py")
    g.add_argument("--output-dir", required=True, help="where the results are written")
    g.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty --output-dir (the files a run writes are replaced)")
    g.add_argument("--split", default="test", choices=SPLITS, help="the videos to localise")
    g.add_argument("--videos", nargs="+", default=None, metavar="NAME",
                   help="only these videos (each must be in --split)")
    g.add_argument("--snippet-mismatch", default="error", choices=["error", "ok"],
                   help="ok: accept data whose snippet length differs from the run's (warned)")
    g.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"],
                   help="default: the run's")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    g.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write report/ as run.py does")
    g.add_argument("--quiet", action="store_true", help="no progress bars, no console log")
    v = p.add_argument_group("detect.py --video: detections of a video file")
    v.add_argument("--video", default=None, metavar="FILE",
                   help="extract this video's I3D features (into OUT/extraction/), localise "
                        "them, and draw OUT/timeline_<video>.png")
    add_extraction_options(p, streams=False, device=False)
    for add in (add_data_options, add_detection_options, add_evaluation_options):
        add(p)
    for action in p._actions:                       # the run's options: only those given
        if action.dest in DATA | POST_PROCESSING:
            action.default = argparse.SUPPRESS
    return p


def parse_args(argv):
    """(detect.py's options, {dest: value} of the run options given)."""
    args, rest = build_detect_parser().parse_known_args(argv)
    if rest:
        flag = rest[0].split("=")[0]
        run_flags = {s: a.dest for a in build_parser()._actions for s in a.option_strings}
        if flag in run_flags:
            raise InputError(f"{flag}: a training option; detect.py cannot change a trained "
                             f"model (it uses {args.run_dir}'s)")
        raise InputError(f"unrecognized arguments: {' '.join(rest)}")
    given = {k: v for k, v in vars(args).items() if k in DATA | POST_PROCESSING}
    check_rules(args)
    if not args.video and (args.rgb_weights or args.flow_weights or args.random_init
                           or args.flow != "tvl1"):
        raise InputError("--rgb-weights, --flow-weights, --random-init and --flow go with "
                         "--video")
    return args, given


def check_against_run(opts, data, saved, run_dir, data_given, snippet_ok):
    """The data fits the trained networks: feature width, class list, snippet length."""
    width = {v.features.shape[1] // 2 for v in data.videos}
    if width and width != {saved["feature_dim"]}:
        raise InputError(f"{opts.data_root}: the features have "
                         f"{' or '.join(map(str, sorted(width)))} per stream; the run "
                         f"{run_dir} was trained on {saved['feature_dim']}")
    if not data_given:
        return
    run_opts = argparse.Namespace(**saved)
    if saved["classes"] != "annotations":
        run_classes, run_seconds = read_class_list(saved["classes"]), saved["snippet_seconds"]
    else:
        _, run_data = load_data(run_opts, Logger(quiet=True))
        run_classes, run_seconds = run_data.classes, run_data.snippet_seconds
    if not data.annotated:                  # features without annotations: the run's classes
        take_classes(data, run_classes)
    elif list(data.classes) != list(run_classes):
        raise InputError(f"{opts.data_root}: its {len(data.classes)} classes "
                         f"({', '.join(data.classes[:3])}, ...) are not the run's "
                         f"{len(run_classes)} ({', '.join(run_classes[:3])}, ...)")
    if run_seconds is None:
        _, run_data = load_data(run_opts, Logger(quiet=True))
        run_seconds = run_data.snippet_seconds
    if abs(data.snippet_seconds - run_seconds) > 1e-9:
        says = (f"{opts.data_root}: {data.snippet_seconds:g} s per snippet, the run "
                f"{run_dir} was trained on {run_seconds:g} s")
        if not snippet_ok:
            raise InputError(says + "; pass --snippet-mismatch ok to localise anyway")
        print(f"warning: {says} (a factor {data.snippet_seconds / run_seconds:g})",
              file=sys.stderr)


def take_classes(data, classes):
    """Data without annotations takes the run's class list (its videos: no label)."""
    data.classes = list(classes)
    for v in data.videos:
        v.labels = torch.zeros(len(classes))


def chosen_videos(data, split, names):
    videos = data.videos if split == "all" else data.split(split)
    if not videos:
        raise InputError(f"{data.source}: no video of the {split} split")
    if names:
        known = {v.name: v for v in videos}
        for name in names:
            if name not in known:
                raise InputError(f"--videos {name}: not a video of the {split} split "
                                 f"({len(known)} videos)")
        wanted = set(names)
        videos = [v for v in videos if v.name in wanted]
    return videos


def prepare_seed(args, given, run_dir, saved, out, log):
    """Everything one seed needs before the first write, each part checked."""
    check_finished(run_dir)
    device = device_here(args.device, saved["device"], warn, run_dir)
    opts = merge_options(saved, given, "detect", then=dict(
        output_dir=out, overwrite=args.overwrite, report=args.report, quiet=args.quiet,
        device=args.device or (device.type if saved["device"] == "cuda" else saved["device"]),
        threads=args.threads))
    # --video: the folder was checked before its extraction wrote into it
    check_output_dir(out, args.overwrite or bool(args.video), resumable=False)
    root, data = load_data(opts, log, unannotated=True)
    data_given = bool(DATA & set(given))
    check_against_run(opts, data, saved, run_dir, data_given, args.snippet_mismatch == "ok")
    videos = chosen_videos(data, args.split, args.videos)
    gt = chosen_ground_truth(opts, data, args.split, videos)
    val_videos, val_gt = held_out(opts, data, args.split, args.videos, data_given)
    model, classifier = load_networks(run_dir, opts, len(data.classes), device)
    loc = Localisation(model, classifier, device, data, SnippetDataset(videos, data.snippet_seconds),
                  gt, val_videos, val_gt)
    record = {"source_run": os.path.abspath(run_dir), "weights_sha256": weights_sha256(run_dir),
              "overrides": given, "split": args.split, "videos": args.videos}
    if args.video:
        record["video"] = os.path.abspath(args.video)
    return opts, loc, record


def detect_seed(opts, loc, record, run_dir, log):
    """The first write, then localise, evaluate and report, as run.py ends."""
    t0 = time.time()
    if opts.overwrite:
        clear_earlier_run(opts.output_dir)
    os.makedirs(opts.output_dir, exist_ok=True)
    folder = RunFolder(opts.output_dir)
    log.open(folder.log)
    save_opts(argparse.Namespace(**vars(opts), detect=record), folder.opts, loc.device)
    log(f"detect: {len(loc.video_set)} {record['split']} videos of {loc.data.source} with the "
        f"run {run_dir}; overrides: {record['overrides'] or 'none'}")
    if loc.gt is None:
        log("no ground truth for these videos: no metrics.json")
    metrics = localise_and_evaluate(opts.output_dir, opts, loc, log,
                                    history=RunFolder(run_dir).read_history(10 ** 9),
                                    show=not opts.quiet)
    log(f"wall time {time.time() - t0:.1f} s; everything is in {opts.output_dir}")
    log.close()
    return metrics


def extract_video(args, given, runs):
    """--video: its features extracted into OUT/extraction/ (the run's folders, the video
    and the weights checked first; what depends on the data, after); the data options
    that make the run localise them."""
    if DATA & set(given) or args.videos or args.split != "test":
        raise InputError("--video: the data is that video's features; --data-root, --dataset, "
                         "--layout, --split and --videos do not go with it")
    for _, run_dir, _ in runs:
        check_finished(run_dir)
    folder = os.path.join(args.output_dir, EXTRACTION)
    todo = plan(folder, [args.video], streams=STREAMS, flow=args.flow,
                weights=weights_of(args), random_init=args.random_init,
                overwrite=args.overwrite)
    if todo.problems:
        raise InputError(todo.problems[0])
    said = []
    progress = run(todo, device=args.device or "auto", say=(lambda line: None) if args.quiet
                   else print, warn=said.append)
    if progress.failed:
        raise InputError(said[0].removeprefix("error: "))
    if progress.short:
        raise InputError(f"{args.video}: shorter than one chunk (16 frames at 25 fps): no "
                         f"feature to localise")
    return {**given, "data_root": folder, "layout": "folders"}


def main(argv=None):
    args, given = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = run_folders(args.run_dir)
    several = len(runs) > 1 or runs[0][1] != args.run_dir
    if os.path.abspath(args.output_dir) == os.path.abspath(args.run_dir):
        raise InputError(f"--output-dir {args.output_dir}: is RUN_DIR; write elsewhere")
    check_output_dir(args.output_dir, args.overwrite, resumable=False)
    log = Logger(quiet=args.quiet)
    if args.video:
        given = extract_video(args, given, runs)           # the first write
    prepared = []
    for seed, run_dir, saved in runs:                   # every seed checked before a write
        out = os.path.join(args.output_dir, f"seed_{seed}") if several else args.output_dir
        prepared.append((seed, run_dir, *prepare_seed(args, given, run_dir, saved, out,
                                                      log.fresh())))
    if several and args.overwrite:
        clear_earlier_run(args.output_dir)
    results = [detect_seed(opts, loc, record, run_dir, log.fresh())
               for seed, run_dir, opts, loc, record in prepared]
    if args.video:
        for seed, run_dir, opts, loc, record in prepared:
            for path in write_timelines(opts.output_dir, opts, loc):
                if not args.quiet:
                    print(f"timeline: {path}")
    if several and all(m is not None for m in results):
        write_seeds_summary(args.output_dir, [seed for seed, *_ in prepared], results,
                            prepared[0][2])
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
