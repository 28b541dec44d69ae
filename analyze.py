"""See what a model does: pictures and an error analysis of a run, or of any method's results.

    python analyze.py RUN_DIR                       # writes RUN_DIR/report/ (run.py does it too)
    python analyze.py RUN_DIR --videos NAME ...     # also these videos' timelines
    python analyze.py --pred RESULTS --gt GT [--protocol thumos14] --out DIR   # DIR/report/

RUN_DIR is a run's output folder (results.json), a --seeds folder (summary.json), or a folder
holding such runs (one a subfolder, e.g. EM-MIL beside --method untrimmednet). The timelines
of a run show its curves: they are recomputed for the drawn videos only, from the run's
opts.json, data and final weights (docs/report.md). Bad input: one line, exit 2.
"""
import argparse
import os
import sys
import time

from evaluation import eval_inputs
import evaluate
from analysis import published
from analysis import report
from core.cli import OneLineParser, cli
from core.errors import InputError, warn
from core.safe_load import read_json
from option_checks import check_rules
from pipeline.run_files import RunFolder



def build_parser():
    p = OneLineParser(prog="analyze.py", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", help="a run's output folder")
    p.add_argument("--pred", help="results of any method: ActivityNet result JSON or THUMOS14 "
                                  "txt (with --gt and --out, instead of RUN_DIR)")
    p.add_argument("--gt", help="--pred: ground truth (gt.json, W-TALC *-Annotations folder, or "
                                "the official THUMOS14 folder)")
    p.add_argument("--out", help="--pred: the report is written into OUT/report/")
    p.add_argument("--protocol", choices=evaluate.PROTOCOLS, default="activitynet",
                   help="--pred: the evaluator's protocol (a run uses its own)")
    p.add_argument("--subset", default="test", help="--pred: ground-truth subset")
    p.add_argument("--tiou", type=float, nargs="+",
                   help="--pred: tIoUs (default: evaluate.py's for the ground truth)")
    p.add_argument("--paper", choices=sorted(published.PAPER),
                   help="--pred: draw the paper's published EM-MIL figures of this benchmark "
                        "beside the results (only for results on its real features)")
    p.add_argument("--videos", nargs="+", default=[], metavar="NAME",
                   help="also draw the timelines of these test videos")
    p.add_argument("--timelines", type=int, default=12,
                   help="timelines of the best, median and worst videos, a third each")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="tIoU of the error analysis (in DETAD's thumos14 mode), of the AP "
                        "per class and of the AP by ground-truth length and coverage")
    p.add_argument("--top-k", type=int, default=10,
                   help="error analysis of the top k x G predictions of each class (DETAD)")
    p.add_argument("--detad-mode", choices=("thumos14", "activitynet"),
                   help="DETAD's mode of the false-positive analysis: thumos14 at --alpha "
                        "only, activitynet at 0.5:0.05:0.95 (default: thumos14 for "
                        "THUMOS14-like ground truth of 20 classes, else activitynet)")
    p.add_argument("--same-label-first", action="store_true",
                   help="error analysis: ask first whether a same-label ground truth overlaps "
                        "an unmatched prediction, instead of DETAD's one most-overlapping "
                        "ground truth (docs/report.md)")
    p.add_argument("--dpi", type=int, default=80, help="resolution of the pictures")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where a run's networks compute the timelines' curves (default: the "
                        "run's device when this machine has it, else the CPU)")
    return p


def check_args(a):
    if a.pred is None and a.run_dir is None:
        raise InputError("give a RUN_DIR, or --pred RESULTS --gt GT --out DIR")
    if a.pred is not None and (a.run_dir is not None or not a.gt or not a.out):
        raise InputError("--pred needs --gt and --out, and no RUN_DIR")
    if a.pred is None and (a.gt or a.out or a.paper or a.tiou):
        raise InputError("--gt, --out, --paper and --tiou go with --pred")
    if a.pred is not None and a.device:
        raise InputError("--device goes with a RUN_DIR (its networks), not --pred")
    check_rules(a)


def common(a):
    return dict(videos=a.videos, n_videos=a.timelines, alpha=a.alpha, k=a.top_k, dpi=a.dpi,
                detad_mode=a.detad_mode, same_label_first=a.same_label_first)


# ----------------------------------------------------------------------------- --pred

def analyse_file(a):
    """--pred RESULTS --gt GT --out DIR: the report without curves."""
    from readers import annotation_reader
    ann = annotation_reader.read_annotations(a.gt, a.subset)
    gt = eval_inputs.ground_truth_of(ann, a.subset)
    pred = eval_inputs.load_predictions(a.pred, gt)
    report.check_predictions(pred, gt, a.pred)
    tious, _ = evaluate.default_tious(gt)
    durations = {v: ann.videos[v].duration for v in gt.videos
                 if ann.videos[v].duration is not None}
    return report.write_report(a.out, report.Inputs(
        pred, gt, list(a.tiou or tious), a.protocol, title=os.path.abspath(a.pred),
        durations=durations, paper=published.paper_curve(a.paper) if a.paper else None,
        **common(a)))


# ----------------------------------------------------------------------------- RUN_DIR

def saved_options(folder):
    """The run's opts.json as a Namespace, checked as --resume checks it."""
    from pipeline.saved_opts import read_saved
    return argparse.Namespace(**read_saved(folder, "RUN_DIR must be a run's output folder"))


def analyse_run(folder, a):
    """RUN_DIR holding results.json: the full report, curves recomputed for drawn videos."""
    from opts import DATA_ROOTS
    from pipeline.data import load_data
    from pipeline.localise import test_ground_truth
    opts = saved_options(folder)
    opts.output_dir = folder
    run = RunFolder(folder)
    results = run.results
    if not os.path.isfile(results):
        raise InputError(f"{results}: not found")
    _, data = load_data(opts, lambda *_: None)
    gt = test_ground_truth(data, opts)
    report.check_videos(a.videos, gt)
    pred = eval_inputs.load_predictions(results, gt)
    report.check_predictions(pred, gt, results)
    metrics = read_json(run.metrics) if os.path.isfile(run.metrics) else None
    history = read_json(run.history) if os.path.isfile(run.history) else None
    return report.write_report(folder, report.run_inputs(
        opts, pred, gt, data, synthetic_root=DATA_ROOTS["synthetic"], metrics=metrics,
        history=history, curves=run_curves(folder, opts, data, a.device), **common(a)))


def run_curves(folder, opts, data, device=None):
    """A callable names -> {name: curve record} from the run's final weights, loaded and
    checked now, before anything is written (finished_run.load_networks: weights_only, every
    name and shape); None when they are missing. device: --device (None: the run's when this
    machine has it, else the CPU, said in one line)."""
    from pipeline.finished_run import load_networks
    from utils import device_here
    if not all(os.path.isfile(RunFolder(folder).file(w)) for w in RunFolder.WEIGHTS):
        return None
    device = device_here(device, opts.device, warn, folder)
    model, classifier = load_networks(folder, opts, len(data.classes), device)

    def curves(names):
        from pipeline.localise import report_curves
        wanted = set(names)
        videos = [v for v in data.split("test") if v.name in wanted]
        return report_curves(model, classifier, videos, data.classes, data.snippet_seconds,
                             opts, device)
    return curves


def runs_in(folder):
    """[(name, summary)] of the runs directly in folder (a --seeds folder, or subfolders
    holding runs: opts.json with summary.json or metrics.json); a single run counts as one
    seed. Only folders that run.py made are taken."""
    if os.path.isfile(RunFolder(folder).summary):
        return [(_method(folder) or "?", read_summary(RunFolder(folder).summary))]
    found = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if os.path.islink(sub) or not os.path.isdir(sub) or name.startswith("seed_") \
                or _method(sub) is None:
            continue
        if os.path.isfile(RunFolder(sub).summary):
            found.append((f"{name}: {_method(sub)}", read_summary(RunFolder(sub).summary)))
        elif os.path.isfile(RunFolder(sub).metrics):
            found.append((f"{name}: {_method(sub)}", one_seed(sub)))
    return found


def read_summary(path):
    """A summary.json of run.py --seeds: {"seeds", "metrics": {"mAP@t": {"mean", "std"}}}."""
    summary = read_json(path)
    metrics = summary.get("metrics") if isinstance(summary, dict) else None
    if not isinstance(metrics, dict) or not isinstance(summary.get("seeds"), list) or \
            not any(k.startswith("mAP@") for k in metrics) or \
            not all(isinstance(v, dict) and {"mean", "std"} <= set(v) for v in metrics.values()):
        raise InputError(f"{path}: not a summary.json of run.py --seeds")
    return summary


def _method(folder):
    """The method a run folder (or its first seed) was made with; None when it holds none."""
    for candidate in [folder] + sorted(os.path.join(folder, n) for n in os.listdir(folder)
                                       if n.startswith("seed_")):
        path = RunFolder(candidate).opts
        if os.path.isfile(path):
            saved = read_json(path)
            method = saved.get("method") if isinstance(saved, dict) else None
            return {"emmil": "EM-MIL", "untrimmednet": "attention MIL"}.get(method)
    return None


def one_seed(folder):
    """A single run's metrics.json as a summary of one seed."""
    from analysis.seeds import summarise_seeds
    run = RunFolder(folder)
    return summarise_seeds([read_json(run.opts).get("seed")], [run.read_metrics()])


def analyse_folder(folder, a):
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder")
    if os.path.isfile(RunFolder(folder).results):
        return analyse_run(folder, a)
    runs = runs_in(folder)
    if not runs:
        raise InputError(f"{folder}: no {RunFolder.RESULTS} (nor {RunFolder.SUMMARY}, nor runs in subfolders); "
                         f"RUN_DIR must be a run's output folder")
    first = runs[0][1]["metrics"]
    tious = [float(k.split("@")[1]) for k in first if k.startswith("mAP@")]
    return report.write_summary_report(folder, runs, tious, dpi=a.dpi)


def main(argv=None):
    a = build_parser().parse_args(argv)
    t0 = time.time()
    check_args(a)
    with eval_inputs.warnings_on_stderr("analyze.py"):
        if a.pred:
            analyse_file(a)
            where = os.path.join(a.out, report.REPORT)
        else:
            analyse_folder(a.run_dir, a)
            where = os.path.join(a.run_dir, report.REPORT)
    print(f"report written to {where}/index.html in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
