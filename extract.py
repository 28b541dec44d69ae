"""I3D RGB and flow features of your own videos, in the W-TALC convention (docs/extract.md).

    python extract.py VIDEO_OR_FOLDER ... --out DIR --rgb-weights rgb_imagenet.pt \\
        --flow-weights flow_imagenet.pt [--split test | --split-list FILE] [--flow tvl1|dis]
        [--streams rgb,flow] [--device auto|cpu|cuda] [--workers N] [--address auto]
        [--to-hdf5 FILE] [--overwrite] [--max-hours H]

DIR gets the folders layout that run.py, detect.py and dataset.py read:
DIR/features/<split>/{rgb,flow}/<video>.npy (float32 (T, 1024)), DIR/split_<split>.txt and
DIR/extraction.json (the options, the weights' sha256, the versions, whether the features
are comparable with the published ones, the videos done). The same command again skips the
videos finished. A video that cannot be read fails alone, with one line naming it (exit 2
at the end, the others done); a video shorter than one chunk (16 frames at 25 fps) is left
out with a warning. docs/extract.md lists every bad input and what it gives; Ctrl-C is one
line and exit code 130.
"""
import argparse
import os
import sys

from extraction.frames import MAX_HOURS
from extraction.inputs import SPLITS
from extraction.jobs import plan, run
from extraction.to_hdf5 import write_extraction_hdf5
from extraction.record import check_precision, uses_tf32
from extraction.options import STREAMS, add_extraction_options, parse_streams, weights_of
from core.cli import OneLineParser, cli
from core.errors import InputError
from option_checks import check_rules
from opts import add_ray_option
from sweeps.cluster import check_address, check_resources, local_cores
from utils import resolve_device


def build_parser():
    p = OneLineParser(prog="extract.py", allow_abbrev=False,
                      description="I3D RGB + flow features of videos in the W-TALC convention "
                                  "(25 fps, 16-frame chunks, 1024-d per stream).",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER",
                   help="video files, or folders of them (not recursive); a video's name is "
                        "its file name without the extension")
    p.add_argument("--out", required=True, metavar="DIR", help="the output folder")
    add_extraction_options(p)
    g = p.add_argument_group("videos and output")
    g.add_argument("--split", default=None, choices=SPLITS,
                   help="the split every video goes to (None: test, unless --split-list)")
    g.add_argument("--split-list", default=None, metavar="FILE",
                   help="lines 'video split' giving each video's split")
    g.add_argument("--to-hdf5", default=None, metavar="FILE",
                   help="also collect the finished videos into our HDF5 file (docs/data.md); "
                        "DIR keeps the per-video files for reruns")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an earlier extraction in DIR (and FILE of --to-hdf5)")
    g.add_argument("--max-hours", type=float, default=MAX_HOURS,
                   help="the longest video accepted: a longer one (as its header declares, or "
                        "as its frames run) is refused in one line")
    g.add_argument("--quiet", action="store_true", help="no line per video")
    g = p.add_argument_group("scale")
    for name in ("workers", "address", "threads", "gpus"):
        add_ray_option(g, name, "extract")
    return p


def check_args(args, streams):
    if args.split is not None and args.split_list is not None:
        raise InputError("--split and --split-list: give one")
    check_rules(args)
    if not args.address:
        resolve_device(args.device)                 # --device cuda without one: refused
    if args.to_hdf5:
        if streams != STREAMS:
            raise InputError("--to-hdf5: our HDF5 file holds both streams; --streams rgb,flow")
        if os.path.exists(args.to_hdf5) and not args.overwrite:
            raise InputError(f"{args.to_hdf5}: exists; choose another name or pass --overwrite")
        if os.path.abspath(args.to_hdf5).startswith(os.path.abspath(args.out) + os.sep):
            raise InputError(f"--to-hdf5 {args.to_hdf5}: inside --out; write it elsewhere")


def main(argv=None):
    args = build_parser().parse_args(argv)
    streams = parse_streams(args.streams)
    check_args(args, streams)
    workers = args.workers if args.workers is not None else None if args.address else 1
    if args.address:                # the cluster answers and has room for a video's task
        nodes = check_address(args.address)
        check_resources(nodes, args.threads or 1, args.gpus_per_task or 0)
        if args.device == "cuda" and not any(n["gpus"] for n in nodes):
            raise InputError(f"--device cuda: no node of the cluster at {args.address} has a GPU")
    else:
        workers = local_cores(workers, args.threads)
    todo = plan(args.out, args.inputs, split=args.split or "test", split_list=args.split_list,
                streams=streams, flow=args.flow, weights=weights_of(args),
                random_init=args.random_init, overwrite=args.overwrite, max_hours=args.max_hours)
    say = (lambda line: None) if args.quiet else print
    device = args.device if args.address else resolve_device(args.device).type
    if device in ("cpu", "cuda"):              # on a cluster with auto: each video records its own
        check_precision(todo.record, uses_tf32(device), todo.out)
    progress = run(todo, device=device, workers=workers,
                   address=args.address, threads=args.threads,
                   gpus_per_task=args.gpus_per_task, say=say)
    if args.to_hdf5 and todo.record["videos"]:
        n = write_extraction_hdf5(todo, args.to_hdf5)
        say(f"{args.to_hdf5}: {n} videos")
    record = todo.record
    say(f"{todo.out}: {len(progress.finished)} videos extracted, {len(todo.done)} finished "
        f"before, {len(progress.short)} left out (shorter than one chunk), "
        f"{len(progress.failed)} failed; comparable: {record['comparable']}"
        + (f" ({'; '.join(record['reasons'])})" if record["reasons"] else ""))
    return 2 if progress.failed else 0


def interruptible(argv=None):
    """main, but Ctrl-C is one line and exit code 130: what was finished is recorded, what
    was in progress leaves nothing (every file is written atomically)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("error: interrupted; the videos finished are recorded, the same command again "
              "does the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli(interruptible))
