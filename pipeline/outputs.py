"""What a run writes once its networks are trained, and detect.py with a finished run's:
the detections (results.json, results.txt), metrics.json and the report. run.py and
detect.py call the same function, so the same networks on the same videos give the same
bytes."""
import json
import os
import time
from dataclasses import dataclass

import pandas as pd

from analysis import report
from analysis.seeds import format_summary, summarise_seeds
from detection import released_class_ids, write_results_json, write_results_txt
from evaluate import format_table
from evaluation.eval_inputs import GroundTruth, class_ids
from opts import DATA_ROOTS
from pipeline.localise import evaluate_run, held_out_map, localise, report_curves
from pipeline.run_files import RunFolder
from core.files import atomic_write_bytes, atomic_write_json, atomic_write_text


@dataclass
class Localisation:
    """What localising needs (read as `loc`): the trained networks on their device, the
    videos to localise with them, and their ground truth."""
    model: object               # EMMIL (q and p)
    classifier: object          # UntrimmedNetClassifier (the video classifier)
    device: object
    data: object                # the VideoSet the videos come from (classes, snippet length)
    video_set: object           # SnippetDataset of the videos to localise
    gt: GroundTruth = None      # their evaluation ground truth; None: no metrics.json
    val_videos: list = None     # held-out training videos (--val-fraction), or None
    val_gt: GroundTruth = None  # and their ground truth


def write_detections(folder, opts, detections, classes, gt):
    """results.json, and for THUMOS14 results.txt with the official class ids."""
    write_results_json(RunFolder(folder).results, detections)
    if opts.thumos_ids:
        ids = (released_class_ids(classes) if opts.detection == "released"
               else gt.class_ids if gt is not None else class_ids(list(classes)))
        write_results_txt(RunFolder(folder).results_txt, detections, ids)


def write_run_report(folder, opts, loc, detections, metrics, history, log):
    """report/ as analyze.py writes it, from what is in memory."""
    t0 = time.time()
    by_name = {v.name: v for v in loc.video_set.videos}

    def curves(names):
        return report_curves(loc.model, loc.classifier, [by_name[n] for n in names
                                                         if n in by_name],
                             loc.data.classes, loc.data.snippet_seconds, opts, loc.device)

    report.write_report(folder, report.run_inputs(
        opts, detections, loc.gt, loc.data, synthetic_root=DATA_ROOTS["synthetic"],
        metrics=metrics, history=history, curves=curves, localised=loc.video_set.videos))
    log(f"report: {os.path.join(folder, 'report', 'index.html')} ({time.time() - t0:.1f} s)")


def localise_and_evaluate(folder, opts, loc, log, history=None, show=False):
    """Detect on loc.video_set, write the detections, evaluate them against loc.gt (when there
    is one) and the held-out videos (when there are), write metrics.json and the report.
    Returns the metrics dict (None without ground truth)."""
    # the final mAP on the held-out training videos: what sweeps rank by, never the test split
    val_map = (held_out_map(loc.model, loc.classifier, loc.val_videos, loc.val_gt, loc.data,
                            opts, loc.device) if loc.val_gt is not None else None)
    detections, video_scores = localise(loc.model, loc.classifier, loc.video_set,
                                        loc.data.classes, opts, loc.device,
                                        show_progress=show, ambiguous=loc.data.ambiguous)
    write_detections(folder, opts, detections, loc.data.classes, loc.gt)
    metrics = None
    if loc.gt is not None:
        metrics = evaluate_run(detections, video_scores, loc.video_set.videos, loc.gt, opts)
        if val_map is not None:
            metrics["val_mAP"] = val_map
        atomic_write_json(RunFolder(folder).metrics, metrics)
    log(f"{len(detections)} detections on {len(loc.video_set)} videos "
        f"(protocol {opts.eval_protocol})")
    if metrics is not None:
        log(format_table(metrics))
    if opts.report and loc.gt is not None:
        write_run_report(folder, opts, loc, detections, metrics, history, log)
    return metrics


def write_seeds_summary(folder, seeds, results, opts):
    """A --seeds folder's summary of its seeds' metrics (in the order of `seeds`):
    summary.json, summary.txt (also printed) and, with opts.report, its report. Returns the
    summary."""
    summary = summarise_seeds(seeds, results)
    atomic_write_json(RunFolder(folder).summary, summary)
    text = format_summary(summary)
    print(text)
    atomic_write_text(RunFolder(folder).summary_txt, text + "\n")
    if opts.report:
        report.write_summary_report(folder, [(opts.method, summary)], opts.tiou)
    return summary


def write_timelines(folder, opts, loc, dpi=None):
    """FOLDER/timeline_<video>.png of each localised video (detect.py --video): its
    detections of FOLDER/results.json, as the report draws a timeline (no ground truth),
    over the curves they come from (dpi: figures.DPI by default). Returns the paths."""
    from analysis import figures        # matplotlib, imported only when something is drawn
    dpi = dpi or figures.DPI
    with open(RunFolder(folder).results, encoding="utf-8") as f:
        results = json.load(f)["results"]
    records = report_curves(loc.model, loc.classifier, loc.video_set.videos, loc.data.classes,
                            loc.data.snippet_seconds, opts, loc.device)
    no_gt = pd.DataFrame(columns=["label", "start", "end"])
    paths = []
    for v in loc.video_set.videos:
        found = pd.DataFrame([(d["label"], *d["segment"], d["score"])
                              for d in results.get(v.name, [])],
                             columns=["label", "start", "end", "score"])
        drawn = figures.timeline_classes([], list(found["label"]), list(found["score"]),
                                         list(loc.data.classes))
        fig = figures.timeline(v.name, no_gt, found, duration=v.duration,
                               classes=list(loc.data.classes),
                               curves=report.curve_lines(records[v.name], drawn))
        path = os.path.join(folder, f"timeline_{v.name}.png")
        atomic_write_bytes(path, figures.to_png(fig, dpi))
        paths.append(path)
    return paths

