"""The report of a run or of any method's results: the error analysis (error_analysis.py),
the pictures (figures.py) and the page (report_html.py), written into FOLDER/report/.
Torch-free; matplotlib is imported only here and below, when a report is made.

    write_report(folder, Inputs(pred, gt, tious, protocol, ...))     # one run or one file
    write_summary_report(folder, runs, tious)                          # seeds, methods

Only files of the names in REPORT_FILES are written or removed, and only inside report/:
each through core.files.write_atomically (a link there is replaced, never written through); a
report/ that is itself a link, or not a folder, is refused.
"""
import os
import re
from dataclasses import dataclass, field

import numpy as np

from analysis import error_analysis
import evaluate
from analysis import published
from evaluation.eval_inputs import GroundTruth
from analysis.report_html import Section, page
from core.errors import InputError
from core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from analysis.seeds import percent

REPORT = "report"
REPORT_FILES = re.compile(r"(index\.html|analysis\.json|map_tiou\.png|per_class_ap\.png"
                          r"|errors\.png|ap_buckets\.png|training\.png|methods\.png"
                          r"|timeline_.+\.png|\.tmp-.*)")


@dataclass
class Inputs:
    pred: object                     # DataFrame video, label, start, end, score
    gt: GroundTruth
    tious: list                      # the tIoUs of the mAP curve and of the per-video mAP
    protocol: str                    # the evaluator's protocol
    title: str                       # what is analysed, for the page's heading
    durations: dict = None           # {video: seconds}; coverage needs them
    curves: object = None            # callable [names] -> {name: curve record} (see curve_lines)
    metrics: dict = None             # metrics.json of a run (else computed here)
    history: list = None             # history.json of a run
    paper: list = None               # [(tIoU, mAP)] published EM-MIL figures, real features only
    videos: list = field(default_factory=list)   # --videos: drawn besides the chosen ones
    n_videos: int = 12               # best, median and worst, a third each
    alpha: float = 0.5               # the analysis tIoU (DETAD's)
    k: int = 10                      # DETAD's top k x G predictions per class
    detad_mode: str = None           # "thumos14" (at alpha) or "activitynet" (0.5:0.05:0.95);
    #                                  None: as evaluate.default_tious judges the ground truth
    same_label_first: bool = False   # the label test's variant (error_analysis)
    dpi: int = 80


def detad_tious(inputs):
    """(tIoUs, mode) of the false-positive analysis: DETAD's THUMOS14 mode at alpha, or its
    ActivityNet mode; by default THUMOS14's for THUMOS14-like ground truth."""
    mode = inputs.detad_mode or ("thumos14" if evaluate.default_tious(inputs.gt)[0] ==
                                 evaluate.THUMOS_TIOUS else "activitynet")
    if mode == "thumos14":
        return [float(inputs.alpha)], mode
    return list(error_analysis.DETAD_TIOUS[mode]), mode


def report_folder(folder):
    """FOLDER/report, made if missing (a link or a file of that name is replaced by a new
    folder, never followed). Files an earlier report wrote there (REPORT_FILES) are removed,
    so no stale timeline stays behind; other files are left alone."""
    path = os.path.join(folder, REPORT)
    try:
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            os.remove(path)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            inside = os.path.join(path, name)
            if REPORT_FILES.fullmatch(name) and (os.path.islink(inside) or
                                                 not os.path.isdir(inside)):
                os.remove(inside)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def run_inputs(opts, detections, gt, data, *, synthetic_root, metrics=None, history=None,
               curves=None, localised=None, **extra):
    """Inputs of a run (run.py's end and analyze.py RUN_DIR alike): its options, detections,
    evaluation ground truth and data (durations of the `localised` videos, default the test
    split); the paper's figures only on real features. extra: more fields of Inputs (videos:
    the --videos names)."""
    real = published.on_real_features(opts.dataset, opts.data_root, opts.generate_synthetic,
                                      synthetic_root)
    if localised is None:
        localised = [v for v in data.videos if v.split == "test"]
    durations = {v.name: v.duration for v in localised}
    return Inputs(detections, gt, list(opts.tiou), opts.eval_protocol,
                  title=os.path.abspath(opts.output_dir), durations=durations, curves=curves,
                  metrics=metrics, history=history,
                  paper=published.paper_curve(opts.dataset) if real else None, **extra)


def check_videos(names, gt):
    """--videos: each name must be a video of the evaluated split; InputError naming it."""
    known = set(gt.videos)
    for name in names:
        if name not in known:
            raise InputError(f"--videos {name}: not a video of the test split "
                             f"({len(known)} videos)")


def check_predictions(pred, gt, source):
    """Every predicted video must be one of the ground truth's videos."""
    unknown = sorted(set(pred["video"]) - set(gt.videos))
    if unknown:
        raise InputError(f"{source}: {len(unknown)} videos not in the test split's ground "
                         f"truth, e.g. {unknown[0]}")


def _save(folder, name, fig, dpi):
    """The figure as FOLDER/NAME (PNG); (name, PNG bytes) for the page."""
    from analysis.figures import to_png
    png = to_png(fig, dpi)
    atomic_write_bytes(os.path.join(folder, name), png)
    return name, png


def curve_lines(record, drawn):
    """The lines and cutoffs of figures.timeline for the drawn classes, from a curve record
    {"snippet_seconds", "video": {name: (T,)}, "class": {name: (T, K)}, "cutoffs": (L, K),
    "classes": [names]} (pipeline/localise.report_curves builds it)."""
    index = {c: i for i, c in enumerate(record["classes"])}
    lines = [(name, values, None, "-") for name, values in record["video"].items()]
    for style, (name, values) in zip(("--", "-"), record["class"].items()):
        lines += [(f"{name} {c}", values[:, index[c]], c, style) for c in drawn]
    cutoffs = [(c, float(v)) for row in record["cutoffs"] for c, v in
               ((c, row[index[c]]) for c in drawn)]
    return {"snippet_seconds": record["snippet_seconds"], "lines": lines, "cutoffs": cutoffs}


def _timelines(inputs, folder, chosen, video_map, labelled):
    """(section, [video entries]) of the timelines of the chosen videos."""
    from analysis import figures
    gt, pred = inputs.gt.segments, labelled
    records = inputs.curves([v for v, _ in chosen]) if inputs.curves else {}
    amb = inputs.gt.ambiguous
    images, entries = [], []
    for video, why in chosen:
        g, d = gt[gt["video"] == video], pred[pred["video"] == video]
        spans = amb.loc[amb["video"] == video, ["start", "end"]].to_numpy(float).tolist()
        ends = [0.0] + list(g["end"]) + list(d["end"])
        duration = (inputs.durations or {}).get(video) or max(ends) or 1.0
        curves = None
        if video in records:
            drawn = figures.timeline_classes(list(g["label"]), list(d["label"]),
                                             list(d["score"]), inputs.gt.classes)
            curves = curve_lines(records[video], drawn)
        ap = video_map.get(video)
        fig = figures.timeline(video, g, d, duration=duration, classes=inputs.gt.classes,
                               curves=curves, ambiguous=spans, ap=ap,
                               ap_note=f" (mean over tIoU {inputs.tious[0]:g}..."
                                       f"{inputs.tious[-1]:g}; {why})")
        images.append(_save(folder, f"timeline_{video}.png", fig, inputs.dpi))
        entries.append({"video": video, "why": why, "mAP": ap})
    caption = ("One video a picture: per class, its ground-truth segments (upper half of the "
               "row) and the detections (lower half; darker = more confident); "
               + ("below, the curves the detections come from (q, p_c and the localisation "
                  "score s_c, dotted: the threshold a snippet must pass). " if records else "")
               + "The title gives the video's mAP (mean over the tIoUs); the best, the median "
                 "and the worst videos by that mAP, then any named with --videos.")
    return Section("Timelines", caption, images=images), entries


def _map_series(inputs, result):
    values = (np.array([inputs.metrics["mAP"][f"{float(t):g}"] for t in inputs.tious],
                       dtype=float)
              if inputs.metrics else result["mAP"])
    series = [("this " + ("run" if inputs.metrics else "file"), values, None, "o-")]
    if inputs.paper:
        t, v = zip(*inputs.paper)
        series.append(("EM-MIL, published (real I3D features)", np.array(v), None, "s--"))
    return series, values


def _map_section(inputs, numbers, draw, figures):
    """mAP against tIoU: the curve, the paper's beside it where given, and the table."""
    series, values = _map_series(inputs, {"mAP": np.array(numbers["mAP"])})
    paper_note = (" The dashed line is the paper's published EM-MIL (I3D features, real "
                  "THUMOS14 / ActivityNet1.2), drawn only for runs on real features."
                  if inputs.paper else "")
    table = [["tIoU"] + [f"{t:g}" for t in inputs.tious],
             ["mAP (%)"] + [f"{100 * v:.2f}" for v in values]]
    return Section("mAP against tIoU", f"Detection mAP ({inputs.protocol} protocol) "
                   f"at each tIoU threshold.{paper_note}",
                   [draw("map_tiou.png", figures.map_vs_tiou(inputs.tious, series))], table)


def _class_section(inputs, per_class, draw, figures):
    """AP per class at alpha; per_class: (K,) APs, NaN for classes without ground truth."""
    return Section("AP per class", f"AP of each class at tIoU {inputs.alpha:g}, "
                   "sorted (classes without ground truth left out).",
                   [draw("per_class_ap.png",
                         figures.per_class_ap(inputs.gt.classes, per_class, inputs.alpha))])


def _error_section(inputs, numbers, fp_tious, draw, figures):
    """DETAD's false-positive analysis: the breakdown picture and its table."""
    counts, gains, mode = numbers["counts"], numbers["mAP_N_gain"], numbers["detad_mode"]
    where = (f"tIoU {fp_tious[0]:g}" if len(fp_tious) == 1 else
             f"tIoU {fp_tious[0]:g}:{fp_tious[1] - fp_tious[0]:.2g}:{fp_tious[-1]:g}, mean")
    variant = (" The label test asks first for a same-label ground truth (--same-label-first), "
               "not DETAD's." if inputs.same_label_first else "")
    return Section(
        "Error analysis (DETAD)",
        f"DETAD's false-positive analysis, its {mode} mode ({where}): the top-ranked "
        f"predictions ({numbers['top_predictions']}: the first {inputs.k} G of each class, G "
        f"its ground-truth count), each a true positive or one error type (rules in "
        f"docs/report.md), per window 1G..{inputs.k}G; right: the average-mAP_N gained if the "
        f"top-ranked predictions of one type were removed (DETAD's normalised AP, N = "
        f"{numbers['n_per_class']:.4g}; average-mAP_N {100 * numbers['average_mAP_N']:.2f} "
        f"%).{variant}",
        [draw("errors.png", figures.error_breakdown(numbers["buckets"], gains, where))],
        [["kind", "count" + ("" if len(fp_tious) == 1 else " (mean over the tIoUs)"),
          "share of false positives (%)", "average-mAP_N gain if removed (points)"]] +
        [[k.replace("_", " "), f"{counts[k]:g}",
          "" if k == "true_positive" else f"{100 * numbers['fractions'][k]:.1f}",
          "" if k == "true_positive" else f"{100 * gains[k]:+.2f}"]
         for k in error_analysis.KINDS])


def _bucket_section(inputs, numbers, draw, figures):
    """AP by ground-truth length and, where durations are known, by coverage."""
    panels = [("by ground-truth length (s)", numbers["ap_by_length"]["values"])]
    if numbers["ap_by_coverage"]:
        panels.append(("by coverage (length / video duration)",
                       numbers["ap_by_coverage"]["values"]))
    return Section(
        "AP by ground-truth length and coverage",
        f"mAP at tIoU {inputs.alpha:g} against the ground truth of each bucket only (XS..XL: "
        f"length (0,3], (3,6], (6,12], (12,18], >18 s; coverage (0,.02], ..., (.08,1]), the "
        f"predictions held by ground truth of other buckets left out; n = segments."
        + ("" if numbers["ap_by_coverage"] else " Coverage needs video durations; this ground "
           "truth has none."),
        [draw("ap_buckets.png", figures.ap_by_buckets(panels, inputs.alpha))])


def _training_section(inputs, draw, figures):
    return Section("Training", "Loss of each epoch (log scale) and the positive "
                   "fraction of each pseudo-label rule (M1, E, M2), by position "
                   "in the schedule (the classifier's epochs first).",
                   [draw("training.png", figures.training_curves(inputs.history))])


def write_report(folder, inputs):
    """Everything into FOLDER/report/; returns the analysis numbers (analysis.json)."""
    from analysis import figures
    check_videos(inputs.videos, inputs.gt)
    out = report_folder(folder)
    gt, pred = inputs.gt, inputs.pred.reset_index(drop=True)
    fp_tious, mode = detad_tious(inputs)
    numbers, labelled, _ = error_analysis.analyse(
        pred, gt, inputs.tious, inputs.protocol, inputs.alpha, inputs.k, inputs.durations,
        detad_tious=fp_tious, same_label_first=inputs.same_label_first)
    numbers["detad_mode"] = mode
    at_alpha = evaluate.evaluate_detection(pred, gt, [inputs.alpha], inputs.protocol)
    per_class = at_alpha["per_class"][:, 0]                      # (K,) AP at alpha
    video_map = error_analysis.per_video_map(pred, gt, inputs.tious, inputs.protocol)
    chosen = error_analysis.choose_videos(video_map, inputs.n_videos)
    chosen += [(v, "named") for v in inputs.videos if v not in dict(chosen)]

    def draw(name, fig):
        return _save(out, name, fig, inputs.dpi)

    sections = [_map_section(inputs, numbers, draw, figures),
                _class_section(inputs, per_class, draw, figures),
                _error_section(inputs, numbers, fp_tious, draw, figures),
                _bucket_section(inputs, numbers, draw, figures)]
    if inputs.history:
        sections.append(_training_section(inputs, draw, figures))
    timelines, entries = _timelines(inputs, out, chosen, video_map, labelled)
    sections.append(timelines)

    numbers.update({"per_class_ap_at_alpha": {c: (None if not np.isfinite(a) else float(a))
                                              for c, a in zip(gt.classes, per_class)},
                    "per_video_mAP": video_map, "timelines": entries,
                    "paper": inputs.paper or None})
    atomic_write_json(os.path.join(out, "analysis.json"), numbers)
    atomic_write_text(os.path.join(out, "index.html"),
                      page(f"Report: {inputs.title}", sections,
                           intro="Every number comes from the project's evaluator "
                                 "(evaluate.py), but the error analysis's, which follow "
                                 "DETAD's own rules (error_analysis.py); all of them are in "
                                 "analysis.json."))
    return numbers


def write_summary_report(folder, runs, tious, paper=None, dpi=80):
    """FOLDER/report/ for several runs: mean ± std over seeds per tIoU of each (name, summary)
    in runs (summary.json's content, or a single run's metrics as one seed), methods side by
    side. Returns the numbers written to analysis.json."""
    from analysis import figures
    series, rows = [], [["run"] + [f"{t:g}" for t in tious]]
    for name, summary in runs:
        m = summary["metrics"]
        mean = np.array([m[f"mAP@{t:g}"]["mean"] for t in tious])
        stds = [m[f"mAP@{t:g}"]["std"] for t in tious]                 # None: one seed
        std = np.array([np.nan if v is None else v for v in stds])
        series.append((f"{name} (seeds {summary['seeds']})", mean,
                       std if len(summary["seeds"]) > 1 else None, "o-"))
        rows.append([name] + [percent(a, s, 1) for a, s in zip(mean, stds)])
    if paper:
        series.append(("EM-MIL, published (real I3D features)",
                       np.array([v for _, v in paper]), None, "s--"))
    out = report_folder(folder)
    name = "methods.png" if len(runs) > 1 else "map_tiou.png"
    images = [_save(out, name, figures.map_vs_tiou(tious, series, "mAP against tIoU, "
                                                   "mean ± std over seeds"), dpi)]
    sections = [Section("mAP against tIoU over seeds",
                        "Mean (line) ± sample standard deviation (band) over the seeds of each "
                        "run in this folder; the reports of single seeds are in their own "
                        "seed_<s>/report/.", images, rows)]
    numbers = {"tiou": list(map(float, tious)),
               "runs": {n: s for n, s in runs}, "paper": paper or None}
    atomic_write_json(os.path.join(out, "analysis.json"), numbers)
    atomic_write_text(os.path.join(out, "index.html"),
                      page(f"Report: {os.path.abspath(folder)}", sections))
    return numbers
