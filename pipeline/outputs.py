"""What a run writes once its networks are trained, and detect.py with a finished run's:
the detections (results.json, results.txt), metrics.json and the report. run.py and
detect.py call the same function, so the same networks on the same videos give the same
bytes."""
import functools
import json
import os
import time
from dataclasses import dataclass

import pandas as pd

from analysis import report
from detection import released_class_ids, write_results_json, write_results_txt
from evaluate import format_table
from evaluation.eval_inputs import GroundTruth, class_ids
from opts import DATA_ROOTS
from pipeline.localise import evaluate_run, held_out_map, localise, report_curves
from core.files import atomic_write_json, write_atomically


@dataclass
class Trained:
    """The trained networks on their device, and the videos to localise with them."""
    model: object               # EMMIL (q and p)
    classifier: object          # UntrimmedNetClassifier (the video classifier)
    device: object
    data: object                # the VideoSet the videos come from (classes, snippet length)
    videos: object              # SnippetDataset of the videos to localise
    gt: GroundTruth = None      # their evaluation ground truth; None: no metrics.json
    val_videos: list = None     # held-out training videos (--val-fraction), or None
    val_gt: GroundTruth = None  # and their ground truth


def write_detections(folder, opts, detections, classes, gt):
    """results.json, and for THUMOS14 results.txt with the official class ids."""
    write_results_json(os.path.join(folder, "results.json"), detections)
    if opts.thumos_ids:
        ids = (released_class_ids(classes) if opts.detection == "released"
               else gt.class_ids if gt is not None else class_ids(list(classes)))
        write_results_txt(os.path.join(folder, "results.txt"), detections, ids)


def write_report(folder, opts, net, detections, metrics, history, log):
    """report/ as analyze.py writes it, from what is in memory."""
    t0 = time.time()
    by_name = {v.name: v for v in net.videos.videos}

    def curves(names):
        return report_curves(net.model, net.classifier, [by_name[n] for n in names
                                                         if n in by_name],
                             net.data.classes, net.data.snippet_seconds, opts, net.device)

    report.write_report(folder, report.run_inputs(
        opts, detections, net.gt, net.data, synthetic_root=DATA_ROOTS["synthetic"],
        metrics=metrics, history=history, curves=curves, localised=net.videos.videos))
    log(f"report: {os.path.join(folder, 'report', 'index.html')} ({time.time() - t0:.1f} s)")


def localise_and_evaluate(folder, opts, net, log, history=None, show=False):
    """Detect on net.videos, write the detections, evaluate them against net.gt (when there
    is one) and the held-out videos (when there are), write metrics.json and the report.
    Returns the metrics dict (None without ground truth)."""
    # the final mAP on the held-out training videos: what sweeps rank by, never the test split
    val_map = (held_out_map(net.model, net.classifier, net.val_videos, net.val_gt, net.data,
                            opts, net.device) if net.val_gt is not None else None)
    detections, video_scores = localise(net.model, net.classifier, net.videos,
                                        net.data.classes, opts, net.device,
                                        show_progress=show, ambiguous=net.data.ambiguous)
    write_detections(folder, opts, detections, net.data.classes, net.gt)
    metrics = None
    if net.gt is not None:
        metrics = evaluate_run(detections, video_scores, net.videos.videos, net.gt, opts)
        if val_map is not None:
            metrics["val_mAP"] = val_map
        atomic_write_json(os.path.join(folder, "metrics.json"), metrics)
    log(f"{len(detections)} detections on {len(net.videos)} test videos "
        f"(protocol {opts.eval_protocol})")
    if metrics is not None:
        log(format_table(metrics))
    if opts.report and net.gt is not None:
        write_report(folder, opts, net, detections, metrics, history, log)
    return metrics


def write_timelines(folder, opts, net, dpi=None):
    """FOLDER/timeline_<video>.png of each localised video (detect.py --video): its
    detections of FOLDER/results.json, as the report draws a timeline (no ground truth),
    over the curves they come from (dpi: figures.DPI by default). Returns the paths."""
    from analysis import figures        # matplotlib, imported only when something is drawn
    dpi = dpi or figures.DPI
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]
    records = report_curves(net.model, net.classifier, net.videos.videos, net.data.classes,
                            net.data.snippet_seconds, opts, net.device)
    no_gt = pd.DataFrame(columns=["label", "start", "end"])
    paths = []
    for v in net.videos.videos:
        found = pd.DataFrame([(d["label"], *d["segment"], d["score"])
                              for d in results.get(v.name, [])],
                             columns=["label", "start", "end", "score"])
        drawn = figures.timeline_classes([], list(found["label"]), list(found["score"]),
                                         list(net.data.classes))
        fig = figures.timeline(v.name, no_gt, found, duration=v.duration,
                               classes=list(net.data.classes),
                               curves=report.curve_lines(records[v.name], drawn))
        path = os.path.join(folder, f"timeline_{v.name}.png")
        write_atomically(path, functools.partial(_write_bytes, figures.to_png(fig, dpi)))
        paths.append(path)
    return paths


def _write_bytes(data, path):
    with open(path, "wb") as f:
        f.write(data)
