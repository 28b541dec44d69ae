"""Every option of the project, in one place.

Defaults equal the released EM-MIL code unless a comment says otherwise.
Dataset presets fill the options left at ``None`` (snippet rate, tIoUs, ...);
after `parse_opts` returns, the options are never modified.

To point the project at your features without typing ``--data-root`` every
time, edit `DATA_ROOTS` just below.
"""
import argparse
import json
import os
import re
import time

# ----------------------------------------------------------------------------
# Default feature folders, one per dataset (edit these, or pass --data-root).
# ----------------------------------------------------------------------------
PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_ROOTS = {
    "synthetic": os.path.join(PROJECT_DIR, "data", "synthetic"),  # generated on first use
    "thumos14": "data/features/Thumos14reduced",   # the W-TALC I3D bundle
    "activitynet12": "data/features/ActivityNet1.2",
}

# ----------------------------------------------------------------------------
# Dataset presets.
# ----------------------------------------------------------------------------
THUMOS_TIOU = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
THUMOS_AVERAGES = {"0.1:0.5": (0.1, 0.5), "0.1:0.7": (0.1, 0.7), "0.1:0.9": (0.1, 0.9)}
ANET_TIOU = [round(0.5 + 0.05 * i, 2) for i in range(10)]
ANET_AVERAGES = {"0.5:0.95": (0.5, 0.95)}

PRESETS = {
    # THUMOS14-shaped synthetic data built on the real THUMOS14 annotations.
    "synthetic": dict(bundle="Thumos14reduced", num_classes=20, train_subset="validation",
                      test_subset="test",
                      tiou=THUMOS_TIOU, averages=THUMOS_AVERAGES, thumos_ids=True),
    # W-TALC bundle: I3D, one snippet = 16 frames at 25 fps = 0.64 s.
    "thumos14": dict(bundle="Thumos14reduced", num_classes=20, train_subset="validation",
                     test_subset="test",
                     tiou=THUMOS_TIOU, averages=THUMOS_AVERAGES, thumos_ids=True),
    "activitynet12": dict(bundle="ActivityNet1.2", num_classes=100, train_subset="training",
                          test_subset="validation",
                          tiou=ANET_TIOU, averages=ANET_AVERAGES, thumos_ids=False),
}

# Feature-rate presets: (frames per second, frames per snippet).
FEATURE_PRESETS = {
    "i3d": (25.0, 16),      # W-TALC I3D bundle: 0.64 s per snippet
    "unt": (10.0, 4),       # W-TALC UntrimmedNet features: 2.5 snippets per second
    "emmil": (24.0, 30),    # released EM-MIL clips: 15 frames sampled every 2nd at 24 fps = 1.25 s
}

RELEASED_SCHEDULE = "M1:10,E:10,M2:10,alt:35"


def snippet_seconds(feature_fps, frames_per_snippet):
    """Seconds covered by one feature vector (dataset.snippets_to_seconds uses it)."""
    return frames_per_snippet / feature_fps


def dry_run_schedule(schedule):
    """The same schedule with one epoch per phase (two for 'alt'): M1:10,E:10 -> M1:1,E:1."""
    def shorten(part):
        m = re.match(r"^\s*(\w+):(\d+)\s*$", part)
        if not m:
            return part                       # left for parse_schedule to report
        return f"{m.group(1)}:{min(int(m.group(2)), 2 if m.group(1) == 'alt' else 1)}"
    return ",".join(shorten(p) for p in schedule.split(","))


def build_parser():
    p = argparse.ArgumentParser(
        prog="run.py",
        description="Train EM-MIL (Luo et al., ECCV 2020), localise actions, evaluate mAP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)

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
                   help="feature layout under --data-root (auto: detected; see README)")
    g.add_argument("--annotations", default=None,
                   help="ground truth for the emmil layout: a gt.json or a W-TALC *-Annotations folder")
    g.add_argument("--memory", default="auto", choices=["auto", "float32", "float16", "stream"],
                   help="where features live: auto = W-TALC in RAM, other layouts streamed from"
                        " disk; float32 / float16 = in RAM (float16: half the size); stream ="
                        " read from disk at every use")
    g.add_argument("--features", default="i3d", choices=sorted(FEATURE_PRESETS),
                   help="feature rate preset: i3d = 16 frames at 25 fps (0.64 s), unt = 4 frames at"
                        " 10 fps (0.4 s), emmil = 15 frames sampled every 2nd at 24 fps (1.25 s)")
    g.add_argument("--feature-fps", type=float, default=None,
                   help="frame rate the features were extracted at (overrides --features)")
    g.add_argument("--frames-per-snippet", type=int, default=None,
                   help="frames covered by one feature vector (overrides --features)")

    g = p.add_argument_group("model")
    g.add_argument("--feature-dim", type=int, default=1024, help="feature width of one stream")
    g.add_argument("--hidden-dim", type=int, default=256, help="width of the Conv1d trunk")

    g = p.add_argument_group("EM schedule")
    g.add_argument("--schedule", default=RELEASED_SCHEDULE,
                   help="EM schedule: comma-separated PHASE:EPOCHS with PHASE in M1 (M-step,"
                        " stage 1), E, M2 (M-step, stage 2), alt (E and M2 alternating, E first)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of the EM networks")
    g.add_argument("--stage2-lr-mult", type=float, default=4.0,
                   help="learning-rate factor from the first stage-2 M epoch on (released: x4)")
    g.add_argument("--gamma", type=float, default=0.15,
                   help="stage-2 M-step: positive if q > mean(q) + gamma*(max(q)-min(q))")
    g.add_argument("--batch-size", type=int, default=1, help="videos per optimizer step")
    g.add_argument("--cls-epochs", type=int, default=45, help="video classifier epochs")
    g.add_argument("--cls-lr", type=float, default=1e-4, help="video classifier learning rate")

    g.add_argument("--method", default="emmil", choices=["emmil", "untrimmednet"],
                   help="emmil: localise with q and p after EM training; untrimmednet: the"
                        " attention-MIL baseline, localising with the video classifier's own"
                        " attention x class scores (no EM training)")

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

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-protocol", default="activitynet", choices=["activitynet", "thumos14"],
                   help="detection mAP protocol (see README)")
    g.add_argument("--tiou", type=float, nargs="+", default=None,
                   help="tIoU thresholds (preset: 0.1:0.1:0.9 THUMOS14, 0.5:0.05:0.95 ActivityNet)")

    g.add_argument("--eval-every", type=int, default=0,
                   help="every N EM epochs, mAP on the held-out part of the training split"
                        " (needs --val-fraction > 0; never the test split); 0 = off")
    g.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of the training videos held out for --eval-every (not trained on)")

    g = p.add_argument_group("system")
    g.add_argument("--output-dir", default=None,
                   help="where everything is written; default runs/<dataset>-<time>;"
                        " must be empty or new unless --overwrite")
    g.add_argument("--overwrite", action="store_true",
                   help="allow writing into a non-empty --output-dir (files of the same name are replaced)")
    g.add_argument("--seed", type=int, default=1, help="seed of Python, NumPy and torch")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    g.add_argument("--resume", default=None, metavar="OUTPUT_DIR",
                   help="continue the run in OUTPUT_DIR from its last complete checkpoint,"
                        " with its saved options")
    g.add_argument("--save-every", type=int, default=0,
                   help="besides the last checkpoint, keep one every N epochs (0 = only the last)")
    g.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run the whole pipeline once per seed into OUTPUT_DIR/seed_<s> and"
                        " write summary.json (mean and std of every metric)")
    g.add_argument("--deterministic", action="store_true",
                   help="torch deterministic algorithms (and the CUDA settings they need)")
    g.add_argument("--amp", action="store_true",
                   help="bfloat16 matrix products in the EM networks, CPU or CUDA (weights,"
                        " losses and Adam stay float32); about 1.5x faster on a CPU with"
                        " AVX-512 bf16")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="write TensorBoard event files into the output folder")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars, no console log (log.txt is still written; warnings"
                        " still go to stderr)")
    g.add_argument("--dry-run", action="store_true",
                   help="smoke test: 4 train and 4 test videos, the --schedule cut to one epoch"
                        " per phase (two for alt), one classifier epoch")
    return p


def resolve(args):
    """Fill preset values into the options left at None; returns a new Namespace."""
    preset = PRESETS[args.dataset]
    r = argparse.Namespace(**vars(args))
    r.data_root = args.data_root or DATA_ROOTS[args.dataset]
    # the embedded default is generated only in its own folder, never into a --data-root
    r.generate_synthetic = args.dataset == "synthetic" and not args.data_root
    r.bundle = preset["bundle"]
    r.num_classes = preset["num_classes"]
    r.train_subset = preset["train_subset"]
    r.test_subset = preset["test_subset"]
    fps, frames = FEATURE_PRESETS[args.features]
    r.feature_fps = args.feature_fps or fps
    r.frames_per_snippet = args.frames_per_snippet or frames
    r.snippet_seconds = snippet_seconds(r.feature_fps, r.frames_per_snippet)
    r.tiou = args.tiou or list(preset["tiou"])
    if args.tiou:
        r.averages = {f"{min(r.tiou):g}:{max(r.tiou):g}": (min(r.tiou), max(r.tiou))}
    else:
        r.averages = dict(preset["averages"])
    r.thumos_ids = preset["thumos_ids"]
    if args.dry_run:
        r.schedule = dry_run_schedule(args.schedule)
        r.cls_epochs = 1
    r.output_dir = args.output_dir or os.path.join(
        "runs", f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return r


def parse_opts(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if not 0.0 <= args.lam <= 1.0:
        parser.error("--lam must be in [0, 1]")
    if args.detection == "released":
        extra = [flag for flag, used in [
            ("--method untrimmednet", args.method != "emmil"),
            ("several --loc-threshold", len(args.loc_threshold) > 1),
            ("--score oic", args.score != "mean"), ("--nms", args.nms != "none"),
            ("--drop-ambiguous", args.drop_ambiguous)] if used]
        if extra:
            parser.error(f"--detection released is the released test(); it has no {extra[0]}")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error("--val-fraction must be in [0, 1)")
    if args.eval_every and not args.val_fraction:
        parser.error("--eval-every needs --val-fraction > 0 (mAP is never computed on the test split)")
    return resolve(args)


def save_opts(opts, path):
    """Write the resolved options as JSON (tuples become lists)."""
    from utils import atomic_write_text
    atomic_write_text(path, json.dumps(vars(opts), indent=2, sort_keys=True) + "\n")


# Options that may differ when a run is resumed (they change no result).
RESUME_MAY_CHANGE = {"resume", "quiet", "threads", "tensorboard"}


def given_options(argv):
    """The options present on the command line, with their parsed values."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def resume_opts(argv):
    """Saved options of the run named by --resume; refuses contradicting options."""
    from utils import InputError
    given = given_options(argv)
    folder = given["resume"]
    path = os.path.join(folder, "opts.json")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found; --resume needs the output folder of an earlier run")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable saved options ({e})") from None
    base = vars(build_parser().parse_args([]))
    for key, value in given.items():
        if key in RESUME_MAY_CHANGE:
            continue
        if key == "output_dir":
            same = os.path.abspath(value) == os.path.abspath(folder)
        else:
            same = saved.get(key, base.get(key)) == value
        if not same:
            raise InputError(f"--resume {folder}: --{key.replace('_', '-')} {value} contradicts "
                             f"the saved option {saved.get(key)!r}")
    opts = argparse.Namespace(**saved)
    opts.output_dir = folder
    for key in RESUME_MAY_CHANGE - {"resume"}:
        if key in given:
            setattr(opts, key, given[key])
    opts.resume = folder
    return opts
