"""The options of a run (run.py's parser, group by group), their defaults and presets, and
the one merge of saved and given options (merge_options: which groups may change on --resume, in detect.py, in a
detection-only sweep).

The other commands (detect.py, sweep.py, evaluate.py, analyze.py, extract.py, dataset.py)
have parsers of their own for their own options; detect.py and sweep.py take run.py's
groups from here (add_*_options). The checks of every option are option_checks.py's.

Defaults equal the released EM-MIL code unless a comment says otherwise.
Dataset presets fill the options left at ``None`` (snippet rate, tIoUs, ...);
after `parse_opts` returns, the options are never modified.

To point the project at your features without typing ``--data-root`` every
time, edit `DATA_ROOTS` just below.
"""
import argparse
import os
import time

from evaluation.tious import (ANET_AVERAGES, ANET_TIOUS, THUMOS_AVERAGES, THUMOS_TIOUS,
                             tiou_averages)
from core.cli import OneLineParser
from core.errors import InputError
from core.files import PROJECT_DIR
from option_checks import check_options, flag
from training.schedule import dry_run_schedule

# ----------------------------------------------------------------------------
# Default feature folders, one per dataset (edit these, or pass --data-root).
# ----------------------------------------------------------------------------
DATA_ROOTS = {
    "synthetic": os.path.join(PROJECT_DIR, "data", "synthetic"),  # generated on first use
    "thumos14": "data/features/Thumos14reduced",   # the W-TALC I3D bundle
    "activitynet12": "data/features/ActivityNet1.2",
}

# ----------------------------------------------------------------------------
# Dataset presets.
# ----------------------------------------------------------------------------
# The tIoU thresholds and averaged ranges are the benchmarks' own (THUMOS14: 0.1:0.1:0.9,
# ActivityNet: 0.5:0.05:0.95); they are defined once, in evaluation/tious.py.

# Canonical class lists (one name a line, index order), copied from the W-TALC classlist.npy
# of each dataset (see data/SOURCES.md).
THUMOS_CLASSES = os.path.join(PROJECT_DIR, "data", "thumos14", "classes.txt")
ANET_CLASSES = os.path.join(PROJECT_DIR, "data", "activitynet12", "classes.txt")

PRESETS = {
    # THUMOS14-shaped synthetic data built on the real THUMOS14 annotations.
    "synthetic": dict(bundle="Thumos14reduced", train_subset="validation",
                      test_subset="test",
                      tiou=THUMOS_TIOUS, averages=THUMOS_AVERAGES, thumos_ids=True,
                      classes=THUMOS_CLASSES),
    # W-TALC bundle: I3D, one snippet = 16 frames at 25 fps = 0.64 s.
    "thumos14": dict(bundle="Thumos14reduced", train_subset="validation",
                     test_subset="test",
                     tiou=THUMOS_TIOUS, averages=THUMOS_AVERAGES, thumos_ids=True,
                     classes=THUMOS_CLASSES),
    "activitynet12": dict(bundle="ActivityNet1.2", train_subset="training",
                          test_subset="validation",
                          tiou=ANET_TIOUS, averages=ANET_AVERAGES, thumos_ids=False,
                          classes=ANET_CLASSES),
}

# Feature-rate presets: (frames per second, frames per snippet). Without --features (or
# --feature-fps / --frames-per-snippet) each layout uses its own: LAYOUT_FEATURES below, and an
# HDF5 file the rate stored in it.
FEATURE_PRESETS = {
    "i3d": (25.0, 16),      # W-TALC I3D bundle: 0.64 s per snippet
    "unt": (10.0, 4),       # W-TALC UntrimmedNet features: 2.5 snippets per second
    "emmil": (24.0, 30),    # released EM-MIL clips: 15 frames sampled every 2nd at 24 fps = 1.25 s
}

LAYOUT_FEATURES = {"wtalc": "i3d", "folders": "i3d", "emmil": "emmil",
                   "wtalc-unt": "unt"}      # a W-TALC bundle holding only its UNT file

# The EM phases of the released schedule (schedule.py); the video classifier's 45 epochs
# (--cls-epochs) come first: C:45,M1:10,E:10,M2:10,alt:35.
RELEASED_SCHEDULE = "M1:10,E:10,M2:10,alt:35"


def snippet_seconds(feature_fps, frames_per_snippet):
    """Seconds covered by one feature vector (dataset.snippets_to_seconds uses it)."""
    return frames_per_snippet / feature_fps


def layout_snippet_seconds():
    """{layout: seconds per snippet} of each folder layout's own features (LAYOUT_FEATURES),
    handed to dataset.load_dataset; an HDF5 file stores its own."""
    return {layout: snippet_seconds(*FEATURE_PRESETS[f]) for layout, f in LAYOUT_FEATURES.items()}


def add_data_options(p):
    """Which data: the preset, where it is, its layout and feature rate, the class list."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic", choices=sorted(PRESETS),
                   help="dataset preset (classes, snippet rate, tIoUs, splits)")
    g.add_argument("--data-root", default=None,
                   help="the features: a folder in one of the layouts (W-TALC: holding"
                        " <bundle>-I3D-JOINTFeatures.npy and <bundle>-Annotations/) or an .h5 file;"
                        " default: DATA_ROOTS[dataset] at the top of opts.py (for synthetic, the"
                        " folder where the embedded default is generated on first use)")
    g.add_argument("--synthetic-videos", type=int, default=120,
                   help="synthetic data: number of videos (half train, half test);"
                        " 0 = the full 412-video THUMOS14 scale")
    g.add_argument("--synthetic-max-seconds", type=float, default=150.0,
                   help="synthetic data: longest video kept in the small default set"
                        " (ignored at full scale)")
    g.add_argument("--layout", default="auto", choices=["auto", "wtalc", "folders", "emmil", "hdf5"],
                   help="feature layout under --data-root (auto: detected; see docs/data.md)")
    g.add_argument("--annotations", default=None,
                   help="ground truth for the emmil layout: a gt.json or a W-TALC *-Annotations folder")
    g.add_argument("--memory", default="auto", choices=["auto", "float32", "float16", "stream"],
                   help="where features live: auto = W-TALC in RAM, other layouts streamed from"
                        " disk; float32 / float16 = in RAM (float16: half the size); stream ="
                        " read from disk at every use")
    g.add_argument("--features", default=None, choices=sorted(FEATURE_PRESETS),
                   help="feature rate preset: i3d = 16 frames at 25 fps (0.64 s), unt = 4 frames at"
                        " 10 fps (0.4 s), emmil = 15 frames sampled every 2nd at 24 fps (1.25 s);"
                        " default: the layout's own (emmil layout: emmil; HDF5: the file's rate;"
                        " W-TALC and folders: i3d, or unt for a bundle holding only its UNT file);"
                        " a W-TALC bundle holding both files reads the one named")
    g.add_argument("--feature-fps", type=float, default=None,
                   help="frame rate the features were extracted at (overrides --features;"
                        " alone, it takes the frames per snippet of --features or i3d)")
    g.add_argument("--frames-per-snippet", type=int, default=None,
                   help="frames covered by one feature vector (overrides --features;"
                        " alone, it takes the frame rate of --features or i3d)")
    g.add_argument("--classes", default=None,
                   help="class list, one name a line in index order; default: the preset's"
                        " canonical list (THUMOS14: the 20 W-TALC classes; ActivityNet1.2: its"
                        " 100), whatever subset of them an annotation file holds; 'annotations':"
                        " the sorted labels of the annotation file")


def add_model_options(p):
    """The networks' sizes."""
    g = p.add_argument_group("model")
    g.add_argument("--feature-dim", type=int, default=1024, help="feature width of one stream")
    g.add_argument("--hidden-dim", type=int, default=256, help="width of the Conv1d trunk")


def add_training_options(p):
    """How the networks are trained: the schedule, learning rates, the method."""
    g = p.add_argument_group("EM schedule")
    g.add_argument("--schedule", default=RELEASED_SCHEDULE,
                   help="EM schedule: comma-separated PHASE:EPOCHS with PHASE in M1 (M-step,"
                        " stage 1), E, M2 (M-step, stage 2), alt (E and M2 alternating, E first);"
                        " trained after the --cls-epochs of the video classifier (the run's whole"
                        " schedule, as released: C:45,M1:10,E:10,M2:10,alt:35)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of the EM networks")
    g.add_argument("--stage2-lr-mult", type=float, default=4.0,
                   help="learning-rate factor from the first stage-2 M epoch on (released: x4)")
    g.add_argument("--gamma", type=float, default=0.15,
                   help="stage-2 M-step: positive if q > mean(q) + gamma*(max(q)-min(q))")
    g.add_argument("--batch-size", type=int, default=1, help="videos per optimizer step")
    g.add_argument("--step", default="unpadded", choices=["unpadded", "padded"], help="padded:"
                   " one-video EM steps padded to length buckets, for fixed GPU shapes (buckets.py)")
    g.add_argument("--cls-epochs", type=int, default=45, help="video classifier epochs (the C phase,"
                   " trained before the --schedule)")
    g.add_argument("--cls-lr", type=float, default=1e-4, help="video classifier learning rate")
    g.add_argument("--method", default="emmil", choices=["emmil", "untrimmednet"],
                   help="emmil: localise with q and p after EM training; untrimmednet: the"
                        " attention-MIL baseline, localising with the video classifier's own"
                        " attention x class scores (no EM training)")


def add_detection_options(p):
    """How scores become segments (detection.PostProcess): the options detect.py may change."""
    g = p.add_argument_group("detection")
    g.add_argument("--detection", default="ours", choices=["ours", "released"],
                   help="ours: the post-processing below; released: the released test()"
                        " exactly (curve q + p normalised, so --lam is unused; no top-1"
                        " class; runs reaching the last snippet dropped; confidence 1;"
                        " no clamp to the duration; results.txt class ids 1..K)")
    g.add_argument("--lam", type=float, default=0.8,
                   help="localisation score s_c = lam*q + (1-lam)*p_c")
    g.add_argument("--cls-threshold", type=float, default=0.15,
                   help="classes with video score >= this are localised (else the top-1 class)")
    g.add_argument("--loc-threshold", type=float, nargs="+", default=[0.05],
                   help="threshold on the normalised localisation score; several values sweep"
                        " them and pool the runs (identical runs merged; add --nms to merge more)")
    g.add_argument("--score", default="mean", choices=["mean", "oic"],
                   help="segment confidence: mean localisation score over the run, or the"
                        " outer-inner contrast (inner mean - outer mean); times the video score")
    g.add_argument("--oic-margin", type=float, default=0.25,
                   help="--score oic: outer region on each side, as a fraction of the run length")
    g.add_argument("--nms", default="none", choices=["none", "hard", "soft"],
                   help="per-class non-maximum suppression of each video's segments:"
                        " hard NMS or Gaussian soft-NMS (released: none)")
    g.add_argument("--nms-iou", type=float, default=0.5,
                   help="--nms hard: drop a segment whose tIoU with a better one exceeds this")
    g.add_argument("--soft-sigma", type=float, default=0.3,
                   help="--nms soft: score *= exp(-tIoU^2 / sigma)")
    g.add_argument("--drop-ambiguous", action="store_true",
                   help="drop segments overlapping the dataset's Ambiguous segments (THUMOS14)")


def add_evaluation_options(p):
    """How detections are scored: the options detect.py may change."""
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-protocol", default="activitynet", choices=["activitynet", "thumos14"],
                   help="detection mAP protocol (see docs/evaluation.md)")
    g.add_argument("--tiou", type=float, nargs="+", default=None,
                   help="tIoU thresholds (preset: 0.1:0.1:0.9 THUMOS14, 0.5:0.05:0.95 ActivityNet)")


def add_validation_options(p):
    """Training videos held out (never trained on) to measure and rank by."""
    g = p.add_argument_group("held-out videos")
    g.add_argument("--eval-every", type=int, default=0,
                   help="every N EM epochs, mAP on the held-out part of the training split"
                        " (needs --val-fraction > 0; never the test split); 0 = off")
    g.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of the training videos held out (not trained on): --eval-every"
                        " reports mAP on them, and metrics.json gets their final mAP as"
                        " val_mAP (what sweep.py ranks by)")


# --workers (tasks at once: seeds, trials, videos), --threads (CPU threads per task),
# --address (a Ray cluster), --gpus-per-task: one meaning wherever they appear (run.py
# --seeds, sweep.py, extract.py), each command with its flags and defaults:
# {option: {command: (flags, keywords)}}.
RAY_OPTIONS = {
    "workers": {
        "run": (["--workers"], dict(type=int, default=1, help=(
            "with --seeds: seeds at once, each a Ray task (trials.py) on a local Ray; 1 = one "
            "after the other in this process, without Ray"))),
        "sweep": (["--workers"], dict(type=int, default=None, help=(
            "trials at once (None: as many as the CPUs and GPUs allow)"))),
        "extract": (["--workers"], dict(type=int, default=None, help=(
            "videos at once; above 1, as Ray tasks (None: 1, or with --address as many as "
            "the cluster's CPUs allow)")))},
    "threads": {
        "run": (["--threads"], dict(type=int, default=0, help=(
            "CPU threads of the run, or of each seed with --workers (0 = torch's default)"))),
        "extract": (["--threads"], dict(type=int, default=0, help=(
            "CPU threads per video (0: the cores shared among --workers; 1 on a cluster)")))},
    "cpus": {"sweep": (["--cpus-per-trial", "--cpus-per-task"], dict(
        type=float, default=1.0, help="CPU cores Ray reserves for a trial (its torch threads, "
                                      "unless --threads)"))},
    "gpus": {
        "sweep": (["--gpus-per-trial", "--gpus-per-task"], dict(type=float, default=0.0, help=(
            "GPUs Ray gives a trial (1: an 8-GPU node runs 8 trials at once)"))),
        "extract": (["--gpus-per-task", "--gpus-per-trial"], dict(type=float, default=None,
                    help="GPUs of a video's task (None with --device cuda: min(1, GPUs / "
                         "--workers))"))},
    "address": {command: (["--address"], dict(default=None, help=(
        "a running Ray cluster: auto, or its head's HOST:PORT (docs/sweeps.md); the paths "
        "must be the same on every node"))) for command in ("sweep", "extract")},
    "max_retries": {"sweep": (["--max-retries"], dict(type=int, default=3, help=(
        "times a trial is restarted (from its last checkpoint) when its process or node "
        "dies")))},
}


def add_ray_option(group, name, command):
    """Declare one of RAY_OPTIONS (`name`) with `command`'s flags and default."""
    flags, keywords = RAY_OPTIONS[name][command]
    group.add_argument(*flags, **keywords)


def add_system_options(p):
    """Where and how the run runs: output folder, seeds, device, resuming, logging."""
    g = p.add_argument_group("system")
    g.add_argument("--output-dir", default=None,
                   help="where everything is written; default runs/<dataset>-<time>;"
                        " must be empty or new unless --overwrite")
    g.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty --output-dir: the files an earlier run wrote there are removed"
                        " once every check has passed (files of other names are kept)")
    g.add_argument("--seed", type=int, default=1, help="seed of Python, NumPy and torch")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available")
    add_ray_option(g, "threads", "run")
    g.add_argument("--resume", default=None, metavar="OUTPUT_DIR",
                   help="continue the run in OUTPUT_DIR from its last complete checkpoint,"
                        " with its saved options")
    g.add_argument("--save-every", type=int, default=0,
                   help="besides the last checkpoint, keep one every N epochs (0 = only the last)")
    g.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run the whole pipeline once per seed into OUTPUT_DIR/seed_<s> and"
                        " write summary.json (mean and std of every metric)")
    add_ray_option(g, "workers", "run")
    g.add_argument("--deterministic", action="store_true",
                   help="torch deterministic algorithms (and the CUDA settings they need)")
    g.add_argument("--amp", action="store_true",
                   help="bfloat16 matrix products in the EM networks, CPU or CUDA (weights,"
                        " losses and Adam stay float32); about 1.5x faster on a CPU with"
                        " AVX-512 bf16")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="write TensorBoard event files into the output folder")
    g.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="at the end, write the pictures and error analysis of analyze.py into"
                        " OUTPUT_DIR/report/ (--no-report to skip)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars, no console log (log.txt is still written; warnings"
                        " still go to stderr)")
    g.add_argument("--dry-run", action="store_true",
                   help="smoke test: 4 train and 4 test videos, the --schedule cut to one epoch"
                        " per phase (two for alt), one classifier epoch")


def build_parser():
    """run.py's parser, group by group."""
    p = OneLineParser(
        prog="run.py",
        description="Train EM-MIL (Luo et al., ECCV 2020), localise actions, evaluate mAP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for add in (add_data_options, add_model_options, add_training_options, add_detection_options,
                add_evaluation_options, add_validation_options, add_system_options):
        add(p)
    return p


def resolve(args):
    """Fill preset values into the options left at None; returns a new Namespace."""
    preset = PRESETS[args.dataset]
    r = argparse.Namespace(**vars(args))
    r.data_root = args.data_root or DATA_ROOTS[args.dataset]
    # the embedded default is generated only in its own folder, never into a --data-root
    r.generate_synthetic = args.dataset == "synthetic" and not args.data_root
    r.bundle = preset["bundle"]
    r.train_subset = preset["train_subset"]
    r.test_subset = preset["test_subset"]
    r.classes = args.classes or preset["classes"]
    # the snippet length: given (a preset and/or its two numbers), else None = the layout's own
    # (dataset.load_dataset decides; run.py reads it from the loaded data)
    if args.features or args.feature_fps is not None or args.frames_per_snippet is not None:
        fps, frames = FEATURE_PRESETS[args.features or "i3d"]
        r.feature_fps = fps if args.feature_fps is None else args.feature_fps
        r.frames_per_snippet = frames if args.frames_per_snippet is None else args.frames_per_snippet
        r.snippet_seconds = snippet_seconds(r.feature_fps, r.frames_per_snippet)
    else:
        r.feature_fps = r.frames_per_snippet = r.snippet_seconds = None
    r.tiou = args.tiou or list(preset["tiou"])
    r.averages = tiou_averages(r.tiou, preset["tiou"], preset["averages"])
    r.thumos_ids = preset["thumos_ids"]
    if args.dry_run:
        r.schedule = dry_run_schedule(args.schedule)
        r.cls_epochs = 1
    r.output_dir = args.output_dir or os.path.join(
        "runs", f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return r


# ----------------------------------------------------------------------------
# Option groups, and where each may change: the one merge of saved and given options.
# ----------------------------------------------------------------------------

def dests(*groups):
    """The option names (opts.json keys) of some of run.py's option groups."""
    p = argparse.ArgumentParser(add_help=False)
    for add in groups:
        add(p)
    return {a.dest for a in p._actions}


DATA = dests(add_data_options)
# what a run's results depend on after its networks: what a detection-only sweep varies
POST_PROCESSING = dests(add_detection_options, add_evaluation_options)
# where and how a run executes, not what it computes: may change anywhere (--resume, a
# sweep's trials, detect.py), and is no part of a trial's identity
EXECUTION = {"device", "threads", "workers", "quiet", "tensorboard", "report", "resume"}
MAY_CHANGE = {
    "resume": EXECUTION,                              # run.py --resume: the same run, continued
    "detect": EXECUTION | DATA | POST_PROCESSING,     # detect.py: the networks, other data
    "from_run": EXECUTION | POST_PROCESSING,          # sweep.py --from-run: post-processing
}
# the fields `resolve` derives from the data options and the tIoUs
RESOLVED = ("generate_synthetic", "bundle", "train_subset", "test_subset", "snippet_seconds",
            "thumos_ids", "tiou", "averages")
# a finished run reused (detect.py, --from-run) is never resumed, seeded again or logged
REUSED = dict(seeds=None, resume=None, tensorboard=False)


def given_options(argv):
    """The run.py options present on a command line, with their parsed values."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def _resolved_anew(saved, changed):
    """The data fields and tIoU averages of `saved` (a resolved run's options) after the
    changed data options or --tiou. Another preset: its folder, class list and tIoUs; the
    run's preset: its tIoUs kept unless --tiou is given."""
    preset = PRESETS[saved["dataset"]]
    if not DATA & set(changed):
        return dict(averages=tiou_averages(changed["tiou"], preset["tiou"], preset["averages"]))
    same = changed.get("dataset", saved["dataset"]) == saved["dataset"]
    fresh = {**vars(build_parser().parse_args([])), **{k: saved[k] for k in DATA},
             "tiou": changed.get("tiou")}
    if not same or saved["generate_synthetic"]:       # the preset's (or generated) folder
        fresh["data_root"] = None
    if not same:                                       # another preset: its class list
        fresh["classes"] = None
    fresh.update({k: v for k, v in changed.items() if k in DATA})
    r = vars(resolve(argparse.Namespace(**fresh)))
    keep = ("tiou", "averages") if same and "tiou" not in changed else ()
    return {k: r[k] for k in (*DATA, *RESOLVED) if k not in keep}


def merge_options(saved, given, where, then):
    """The options of a run continued or reused: `saved` (opts.json's checked dict) with the
    `given` ones ({dest: value}) over it, as `where` allows (MAY_CHANGE): a given option
    outside its groups must equal the saved one. Changed data options resolve the data
    fields anew; a changed --tiou, its averages (evaluation/tious.py). then: the command's
    own fields, set last (output_dir, ...). Checked as run.py checks its own."""
    may = MAY_CHANGE[where]
    base = vars(build_parser().parse_args([]))
    reference = {**saved, **then}
    for key, value in given.items():
        if key in may:
            continue
        if key == "output_dir":
            same = os.path.abspath(value) == os.path.abspath(reference[key])
        else:
            same = reference.get(key, base.get(key)) == value
        if not same:
            said = f"--resume {then['resume']}: " if where == "resume" else ""
            raise InputError(f"{said}{flag(key)} {value} contradicts the saved option "
                             f"{saved.get(key)!r}")
    changed = {k: v for k, v in given.items() if k in may}
    opts = dict(saved)
    if DATA & set(changed) or "tiou" in changed:
        opts.update(_resolved_anew(saved, changed))
    opts.update({k: v for k, v in changed.items() if k not in DATA})
    opts.update({**(REUSED if where != "resume" else {}), **then})
    opts = argparse.Namespace(**opts)
    check_options(opts)
    return opts


def parse_opts(argv=None):
    """The resolved, checked options of a command line (a bad one: InputError, or exit 2
    from argparse for what it checks itself)."""
    args = build_parser().parse_args(argv)
    check_options(args)              # before the presets fill in: "" and 0 are not defaults
    return resolve(args)
