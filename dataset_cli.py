"""The `summary` and `convert` commands of `python dataset.py` (see README.md):

    python dataset.py summary --data-root DIR [--layout L] [--dataset D] [--annotations A]
    python dataset.py convert --data-root DIR --to hdf5 OUT.h5 [--fp16]

A command line, so it reads the presets of the options layer (opts.py) and hands their
values to the data layer (dataset.load_dataset).
"""
import argparse
import json
import os
import sys

from dataset import LAYOUTS, load_dataset, read_class_list
from features import STREAM_DIM
from hdf5_format import HDF5_SCHEMA, close_hdf5, hdf5_info, write_hdf5
from layouts import detect_layout
from opts import FEATURE_PRESETS, PRESETS, layout_snippet_seconds
from opts import snippet_seconds as preset_snippet_seconds
from safe_io import InputError
from utils import warn


def summarize(data, dataset):
    """The layout-independent description of a loaded VideoSet (plus its layout)."""
    splits = {}
    for split in ("train", "test"):
        videos = data.split(split)
        splits[split] = {"videos": len(videos),
                         "snippets": int(sum(v.num_snippets for v in videos)),
                         "segments": int(sum(len(v.segments) for v in videos))}
    return {"layout": data.layout, "dataset": dataset, "classes": list(data.classes),
            "snippets_per_second": 1.0 / data.snippet_seconds, "feature_dim": STREAM_DIM,
            "splits": splits, "warnings": list(data.warnings)}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser():
    p = _OneLineParser(prog="dataset.py", description="Describe or convert feature data.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("summary", "print what a data root holds, as JSON"),
                       ("convert", "write the data of any layout as one HDF5 file")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--data-root", required=True, help="folder (or HDF5 file) of the data")
        s.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS,
                       help="feature layout (default: detected)")
        s.add_argument("--dataset", default=None, choices=sorted(PRESETS),
                       help="preset: W-TALC bundle and subsets (default: the HDF5 file's, "
                            "else thumos14)")
        s.add_argument("--annotations", default=None,
                       help="ground truth of the emmil layout: gt.json or *-Annotations folder")
        s.add_argument("--features", default=None, choices=sorted(FEATURE_PRESETS),
                       help="feature rate preset (default: the HDF5 file's, else i3d)")
    convert = sub.choices["convert"]
    convert.epilog = HDF5_SCHEMA
    convert.formatter_class = argparse.RawDescriptionHelpFormatter
    convert.add_argument("--to", nargs=2, required=True, metavar=("FORMAT", "OUT"),
                         help="output format (hdf5) and file")
    convert.add_argument("--fp16", action="store_true", help="store features as float16")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def load_from_args(args):
    """(VideoSet, dataset name) for the data options of a command."""
    layout = detect_layout(args.data_root) if args.layout == "auto" else args.layout
    dataset = args.dataset
    if dataset is None and layout == "hdf5":
        try:
            stored = hdf5_info(args.data_root)["dataset"]
        except InputError:
            close_hdf5(args.data_root)
            raise
        dataset = stored if stored in PRESETS else None
    dataset = dataset or "thumos14"
    preset = PRESETS[dataset]
    rate = preset_snippet_seconds(*FEATURE_PRESETS[args.features]) if args.features else None
    # a preset named on the command line brings its canonical class list
    classes = read_class_list(preset["classes"]) if args.dataset else None
    data = load_dataset(args.data_root, preset["bundle"], preset["train_subset"],
                        preset["test_subset"], layout, args.annotations, snippet_seconds=rate,
                        layout_seconds=layout_snippet_seconds(), classes=classes,
                        log=lambda message: None)
    return data, dataset


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        fmt, out = args.to
        if fmt != "hdf5":
            raise InputError(f"--to {fmt}: unknown format (only hdf5)")
        if os.path.exists(out) and not args.overwrite:
            raise InputError(f"{out}: exists; choose another name or pass --overwrite")
    data, dataset = load_from_args(args)
    if args.command == "summary":
        print(json.dumps(summarize(data, dataset), indent=2))
        return 0
    for message in data.warnings:
        warn(message)
    write_hdf5(out, data.classes, data.videos, data.snippet_seconds, fp16=args.fp16,
               dataset=dataset, source=os.path.abspath(data.source), ambiguous=data.ambiguous,
               notes=data.warnings, total=len(data.videos))
    print(f"{out}: {len(data.videos)} videos, {len(data.classes)} classes "
          f"({'float16' if args.fp16 else 'float32'})")
    return 0


def cli(argv=None):
    try:
        return main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
