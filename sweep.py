"""Seeds and ablation grids, each trial a normal run, as Ray tasks (docs/sweeps.md).

    python sweep.py --grid gamma=0.1,0.15,0.2 lam=0.5,0.8 --seeds 1 2 3 --output-dir DIR
    python sweep.py --grid method=emmil,untrimmednet --seeds 1 2 3 4 5 --output-dir DIR
    python sweep.py --address auto ...            # on a running Ray cluster
    python sweep.py --from-run RUN_DIR --grid loc_threshold=0.05,0.1 nms=none,hard --output-dir DIR

One trial per (grid point, seed) in DIR/trials/<name>/, with the files run.py writes;
DIR/results.csv (one row per trial), DIR/summary.csv and the printed table (per grid point,
mean ± sample std over the seeds), ranked by the mAP on held-out *training* videos
(--val-fraction), never by the test split. Every trial's options, and the data against the
first trial's, are checked before Ray starts or anything is written; the same command again
skips finished trials and resumes interrupted ones, and with more seeds adds their trials; a
folder holding another sweep is refused.

--from-run RUN_DIR sweeps post-processing only (the detection and evaluation options) over
a finished run's networks, with no training and no Ray: sweeps/from_run.py.
"""
import argparse
import dataclasses
import json
import math
import os
import sys

import pandas as pd
from tqdm import tqdm

from sweeps import sweep_grid
from readers import synthetic
from option_checks import check_rules
from opts import EXECUTION, add_ray_option, build_parser, given_options, parse_opts
from run import RUN_TRIAL, trial_work
from pipeline.data import check_data, load_data
from pipeline.run_folder import check_output_dir
from core.cli import OneLineParser, cli
from core.errors import InputError
from core.files import atomic_write_json, atomic_write_text, hold_lock
from core.safe_load import read_json
from analysis.seeds import flatten_metrics
from sweeps.cluster import check_address, check_resources, local_cores
from sweeps.sweep_grid import parse_grid, points, trial_name
from sweeps.sweep_tables import (RESULTS, SUMMARY, SUMMARY_TXT, clear_sweep, results_frame,
                                 shown_metrics, write_tables)
from sweeps.from_run import sweep_from_run
from sweeps.trials import run_trials, trial_state, trials_of

DEFAULT_VAL_FRACTION = 0.2
MANIFEST, LOCK, TRIALS = "sweep.json", "sweep.lock", "trials"
NODE_FILE = "ray_node.json"         # in a finished trial's folder: the Ray node that ran it
SWEEP_TRIAL = dataclasses.replace(RUN_TRIAL, node=NODE_FILE)
# run.py options that neither a grid nor the fixed options of a sweep can hold, and why
NOT_SWEPT = {**{k: "it changes no result" for k in EXECUTION},
             "output_dir": "each trial has its folder DIR/trials/<name>",
             "seed": "sweep.py --seeds gives the seeds", "seeds": "sweep.py --seeds gives them",
             "overwrite": "sweep.py --overwrite starts the whole sweep over",
             "resume": "the same sweep command again resumes its trials",
             "val_fraction": "the ranking compares grid points on the same held-out videos"}
NOT_FIXED = ("seed", "resume")            # the sweep's own options take the others


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    pass


def build_sweep_parser():
    p = OneLineParser(prog="sweep.py", allow_abbrev=False, formatter_class=HelpFormatter,
                      description="One trial per (grid point, seed), each a run of run.py in "
                                  "DIR/trials/<name>/, as Ray tasks. Every other option is "
                                  "run.py's (python run.py --help), given to every trial.",
                      epilog="grid syntax:\n" + sweep_grid.__doc__.split("\n\n")[1])
    p.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="the options to sweep and their values (syntax below); none: the"
                        " seeds only")
    p.add_argument("--from-run", default=None, metavar="RUN_DIR",
                   help="sweep the detection and evaluation options over this finished run"
                        " (or each seed of a --seeds folder): no training, no Ray")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="the seeds of every point (default: 1)")
    p.add_argument("--output-dir", required=True, help="the sweep's folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: remove what a sweep wrote in --output-dir (its tables and "
                        "the runs' files under trials/; other files are kept)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction of each trial's training videos held out (not trained on) to "
                        "rank the grid points by their mAP; 0: train on all of them, no ranking"
                        f" (default: {DEFAULT_VAL_FRACTION})")
    for name in ("cpus", "gpus", "workers", "address", "max_retries"):
        add_ray_option(p, name, "sweep")
    return p


def parse_args(argv):
    """(the sweep's options, the run.py options given to every trial)."""
    args, rest = build_sweep_parser().parse_known_args(argv)
    check_rules(args)
    if args.from_run is not None:
        for name, value in (("seeds", args.seeds), ("val_fraction", args.val_fraction)):
            if value is not None:
                raise InputError(f"--{name.replace('_', '-')}: --from-run takes them from "
                                 f"the run")
        return args, rest
    args.seeds = [1] if args.seeds is None else args.seeds
    args.val_fraction = (DEFAULT_VAL_FRACTION if args.val_fraction is None
                         else args.val_fraction)
    return args, rest


def fixed_options(rest, axes):
    """The run.py options of every trial, as given ({dest: value}); refuses the ones a
    sweep sets itself and those also in --grid."""
    fixed = given_options(rest)                       # a bad one: one line, exit 2
    for dest in NOT_FIXED:
        if dest in fixed:
            raise InputError(f"--{dest}: {NOT_SWEPT[dest]}, not a run option of sweep.py")
    for axis in axes:
        if axis.dest in fixed:
            raise InputError(f"{axis.flag} is given both in --grid and as a fixed option")
    return fixed


def absolute_paths(opts):
    """The trial's options with its input paths absolute (a Ray worker may run elsewhere)."""
    out = dict(opts)
    for key in ("data_root", "annotations", "classes"):
        if out.get(key) and out[key] != "annotations":
            out[key] = os.path.abspath(out[key])
    return out


def build_trials(args, rest, axes):
    """[(point, seed, Trial)] of every grid point and seed, each trial's options parsed and
    checked by run.py's own parser and checks (InputError naming the trial)."""
    base = [*rest, "--val-fraction", repr(args.val_fraction)]
    folder = os.path.join(os.path.abspath(args.output_dir), TRIALS)
    out = []
    for point in points(axes):
        tokens = [t for value in point for t in value.tokens]
        for seed in args.seeds:
            name = trial_name(axes, point, seed)
            argv = [*base, *tokens, "--seed", str(seed), "--output-dir",
                    os.path.join(folder, name)]
            try:
                opts = vars(parse_opts(argv))
            except InputError as e:
                raise InputError(f"trial {name}: {e}") from None
            if opts["device"] == "cuda" and not args.gpus_per_trial:
                raise InputError("--device cuda needs --gpus-per-trial > 0 (Ray gives a "
                                 "trial a GPU only when it asks for one)")
            trial, = trials_of([absolute_paths(opts)], EXECUTION, SWEEP_TRIAL)
            out.append((point, seed, trial))
    names = [t.name for _, _, t in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--grid: two grid points give the trial name {twice[0]}; "
                         f"spell their values apart")
    return out


def manifest(args, axes, fixed):
    """What makes two sweep commands the same sweep (resources and EXECUTION aside)."""
    return json.loads(json.dumps({
        "format": "emmil-sweep", "version": 1,
        "grid": [[axis.dest, [value.typed for value in axis.values]] for axis in axes],
        "seeds": args.seeds, "val_fraction": args.val_fraction,
        "options": {k: v for k, v in sorted(fixed.items()) if k not in EXECUTION}}))


def extended_seeds(saved, wanted):
    """The seeds of a sweep that continues the `saved` one (its manifest) with `wanted`'s
    seeds: the saved seeds, then wanted's new ones, when wanted is the saved sweep with the
    same or more seeds (same grid, options and --val-fraction); None otherwise."""
    if not (isinstance(saved, dict) and isinstance(saved.get("seeds"), list)):
        return None
    old, new = saved["seeds"], wanted["seeds"]
    if isinstance(saved.get("options"), dict):
        # an earlier version's manifest may hold an execution option (--device): not compared
        saved = {**saved, "options": {k: v for k, v in saved["options"].items()
                                      if k not in EXECUTION}}
    if {**saved, "seeds": None} != {**wanted, "seeds": None} or not set(old) <= set(new):
        return None
    return old + [s for s in new if s not in old]


def check_sweep_folder(folder, wanted, overwrite, names):
    """The folder is new, empty, or holds this same sweep, maybe with fewer seeds (then it is
    resumed, and extended); --overwrite allows another. Writable; no link where the trials
    are written."""
    if os.path.isdir(folder) and set(os.listdir(folder)) - {LOCK} and not overwrite:
        saved = read_json(os.path.join(folder, MANIFEST), or_none=True)
        if saved is None:
            raise InputError(f"{folder}: not empty and holds no sweep ({MANIFEST}); choose "
                             f"another --output-dir or pass --overwrite")
        if extended_seeds(saved, wanted) != wanted["seeds"]:
            grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in saved.get("grid", []))
            raise InputError(f"{folder}: holds another sweep (grid {grid or '(none)'}, seeds "
                             f"{saved.get('seeds')}, other options or --val-fraction); choose "
                             f"another --output-dir or pass --overwrite to start over (more "
                             f"seeds: give the earlier ones too)")
    check_output_dir(folder, overwrite=True)
    trials = os.path.join(folder, TRIALS)
    for path in [trials] + [os.path.join(trials, n) for n in names]:
        if os.path.islink(path):
            raise InputError(f"{path}: is a symbolic link; a sweep never writes through one")


def sweep_seeds(args, axes, fixed, folder):
    """(the seeds to run, those new to the folder): --seeds, or (a folder holding this sweep
    with some of them) the folder's seeds and then the new ones; the manifest then records
    them all."""
    saved = None if args.overwrite else read_json(os.path.join(folder, MANIFEST), or_none=True)
    seeds = extended_seeds(saved, manifest(args, axes, fixed))
    if seeds is None:
        return args.seeds, []
    return seeds, seeds[len(saved["seeds"]):]


def check_first_data(trial):
    """The data of the first trial, read once here (the embedded default generated on first
    use) and checked against its options: a wrong --data-root or data that refuse the
    options is one line before Ray starts, not a failure of every trial."""
    opts = argparse.Namespace(**trial.opts)
    try:
        check_data(opts, load_data(opts, print)[1])
    except InputError as e:
        raise InputError(f"trial {trial.name}: {e}") from None


def progress_line(r, metrics_shown):
    if r["status"] == "skipped":
        return f"{r['name']}: finished before"
    if r["status"] == "failed":
        return f"{r['name']}: FAILED: {r['error']}"
    flat = flatten_metrics(r["metrics"])
    shown = " | ".join(f"{label} {100 * flat[k]:.2f}" for k, label in metrics_shown if k in flat)
    extra = f", attempt {r['attempts']}" if r["attempts"] > 1 else ""
    extra += ", resumed" if r["resumed"] else ""
    return f"{r['name']}: {shown} ({r['seconds']:.0f} s on {r['host']}{extra})"


def plan_sweep(args, rest):
    """Every check, nothing written: (axes, [(point, seed, Trial)], the manifest, the seeds
    added, the manifest found in the folder)."""
    axes = parse_grid(args.grid, build_parser(), NOT_SWEPT)
    fixed = fixed_options(rest, axes)
    folder = os.path.abspath(args.output_dir)
    found = None if args.overwrite else read_json(os.path.join(folder, MANIFEST), or_none=True)
    args.seeds, added = sweep_seeds(args, axes, fixed, folder)
    planned = build_trials(args, rest, axes)
    wanted = manifest(args, axes, fixed)
    check_sweep_folder(folder, wanted, args.overwrite, [t.name for _, _, t in planned])
    check_first_data(planned[0][2])
    return axes, planned, wanted, added, found


def where_to_run(args):
    """The cluster at --address answers and has room for a trial, or this machine's cores
    hold --workers x --cpus-per-trial (capped, with a line); the workers to use."""
    if args.address:
        check_resources(check_address(args.address), args.cpus_per_trial, args.gpus_per_trial)
        return args.workers
    return local_cores(args.workers, math.ceil(args.cpus_per_trial))


def take_folder(folder, found, overwrite):
    """The folder's lock, and then its manifest read again: a second command that wrote
    it since it was checked is one line (nothing of this one is written)."""
    os.makedirs(folder, exist_ok=True)
    held = hold_lock(folder, LOCK, "another sweep command is running in it")
    now = None if overwrite else read_json(os.path.join(folder, MANIFEST), or_none=True)
    if now != found:
        os.close(held)
        raise InputError(f"{folder}: another sweep command changed {MANIFEST} meanwhile; run "
                         f"the command again")
    if overwrite:
        clear_sweep(folder, TRIALS, (MANIFEST, RESULTS, SUMMARY, SUMMARY_TXT), (NODE_FILE,))
    return held


def main(argv=None):
    """Check everything (sweep options, grid, every trial, the folder, where it runs), then
    run."""
    args, rest = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.from_run is not None:
        return sweep_from_run(args.from_run, args.grid, rest, os.path.abspath(args.output_dir),
                              args.overwrite)
    workers = where_to_run(args)
    axes, planned, wanted, added, found = plan_sweep(args, rest)
    trials, folder = [t for _, _, t in planned], os.path.abspath(args.output_dir)

    # everything is checked: the first writes
    held = take_folder(folder, found, args.overwrite)
    atomic_write_json(os.path.join(folder, MANIFEST), wanted)
    todo = [t for t in trials if trial_state(t) != "done"]
    for root, n, seconds in sorted({(t.opts["data_root"], t.opts["synthetic_videos"],
                                     t.opts["synthetic_max_seconds"]) for t in todo
                                    if t.opts["generate_synthetic"]}):
        synthetic.ensure(root, n, seconds)              # once here, not in racing trials
    print(f"sweep: {len(planned) // len(args.seeds)} grid points x {len(args.seeds)} seeds = "
          f"{len(trials)} trials in {folder}; {len(trials) - len(todo)} finished before"
          + (f"; seeds added: {' '.join(map(str, added))}" if added else ""), flush=True)
    earlier = read_csv(os.path.join(folder, RESULTS))
    averages = trials[0].opts["averages"]
    done = {}
    bar = tqdm(total=len(trials), unit="trial", file=sys.stderr, dynamic_ncols=True)

    def on_done(r):
        done[r["name"]] = r
        bar.update(1)
        tqdm.write(progress_line(r, shown_metrics(averages)), file=sys.stdout)
        rows = [(p, s, done[t.name]) for p, s, t in planned if t.name in done]
        atomic_write_text(os.path.join(folder, RESULTS),
                          results_frame(axes, rows, earlier).to_csv(index=False))

    run_trials(trials, trial_work, cpus=args.cpus_per_trial, gpus=args.gpus_per_trial,
               workers=workers, max_retries=args.max_retries, address=args.address,
               on_done=on_done)
    bar.close()
    results = write_tables(folder, axes, [(p, s, done[t.name]) for p, s, t in planned],
                           averages, args.val_fraction, len(args.seeds), earlier)
    os.close(held)
    failed = int((results["status"] == "failed").sum())
    if failed:
        print(f"{failed} of {len(trials)} trials failed (their errors are in the table and in "
              f"{RESULTS}); the same command runs them again", file=sys.stderr)
    return 1 if failed else 0


def read_csv(path):
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(cli(main))
