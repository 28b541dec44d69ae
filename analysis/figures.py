"""The report's pictures: each function returns a matplotlib Figure (no pyplot, no display:
the Agg canvas; tests read the artists' coordinates). Torch-free. Times are in seconds.

    fig = timeline(video, gt, detections, duration=..., curves=...)
    png = to_png(fig)                          # bytes
"""
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 80
KIND_COLORS = {"true_positive": "#2ca02c", "double_detection": "#9467bd",
               "wrong_label": "#8c564b", "localization": "#ff7f0e", "confusion": "#e377c2",
               "background": "#7f7f7f"}
MAX_ROWS = 6                    # class rows of a timeline


def to_png(fig, dpi=DPI):
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def class_color(index):
    """A colour per class index (tab20, then around again)."""
    from matplotlib import colormaps
    return colormaps["tab20"](index % 20)


# ----------------------------------------------------------------------------- timelines

def timeline_classes(gt_labels, det_labels, det_scores, classes):
    """The classes drawn on a timeline: those with ground truth, then the detected ones by
    their best confidence, at most MAX_ROWS."""
    chosen = list(dict.fromkeys(sorted(gt_labels, key=classes.index)))
    best = {}
    for label, score in zip(det_labels, det_scores):
        best[label] = max(score, best.get(label, -np.inf))
    chosen += [c for c in sorted(best, key=lambda c: -best[c]) if c not in chosen]
    return chosen[:MAX_ROWS]


def timeline(video, gt, detections, *, duration, classes, curves=None, ambiguous=(),
             ap=None, ap_note=""):
    """One video: per class a row with its ground truth (upper half, solid) and detections
    (lower half, opacity = confidence / the video's best); Ambiguous segments hatched; below,
    when `curves` is given, the curves drawn against the same time axis.

    gt: DataFrame (label, start, end) of this video; detections: (label, start, end, score);
    classes: the class list (colours and order); ambiguous: [(start, end)];
    curves: {"snippet_seconds", "lines": [(name, values (T,), class or None, style)],
    "cutoffs": [(class, value)]} (analyze.curve_lines builds it). Patches carry a gid
    ('gt', 'detection', 'ambiguous') so that tests can find them."""
    rows = timeline_classes(list(gt["label"]), list(detections["label"]),
                            list(detections["score"]), classes)
    fig = Figure(figsize=(10, 2.2 + 0.45 * len(rows) + (2.2 if curves else 0)))
    if curves:
        ax, axc = fig.subplots(2, 1, sharex=True,
                               gridspec_kw={"height_ratios": [max(len(rows), 1), 4]})
    else:
        ax, axc = fig.subplots(1, 1), None
    top = max(detections["score"].max() if len(detections) else 1.0, 1e-12)
    for y, label in enumerate(rows):
        color = class_color(classes.index(label))
        for s, e in gt.loc[gt["label"] == label, ["start", "end"]].to_numpy(float):
            ax.add_patch(Rectangle((s, y + 0.05), e - s, 0.42, color=color, gid="gt"))
        dets = detections[detections["label"] == label]
        for s, e, score in dets[["start", "end", "score"]].to_numpy(float):
            ax.add_patch(Rectangle((s, y + 0.53), e - s, 0.42, facecolor=color,
                                   edgecolor="black", linewidth=0.4,
                                   alpha=float(np.clip(0.15 + 0.85 * score / top, 0, 1)),
                                   gid="detection"))
    for s, e in ambiguous:
        ax.add_patch(Rectangle((s, 0), e - s, max(len(rows), 1), facecolor="none",
                               edgecolor="grey", hatch="//", linewidth=0, gid="ambiguous"))
    ax.set_xlim(0, duration)
    ax.set_ylim(0, max(len(rows), 1))
    ax.set_yticks(np.arange(len(rows)) + 0.5, rows)
    ax.invert_yaxis()
    title = video if ap is None else f"{video}   AP {100 * ap:.1f} %{ap_note}"
    ax.set_title(title + ("   (upper: ground truth; lower: detections, darker = more "
                          "confident" + ("; hatched: Ambiguous" if len(ambiguous) else "") + ")"),
                 fontsize=9)
    if axc is not None:
        _curves(axc, curves, classes)
    (axc or ax).set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def _curves(ax, curves, classes):
    step = curves["snippet_seconds"]
    for name, values, label, style in curves["lines"]:
        values = np.asarray(values, dtype=float)
        edges = np.arange(len(values) + 1) * step              # snippet t: [t, t + 1) * step
        color = "black" if label is None else class_color(classes.index(label))
        ax.step(edges, np.r_[values, values[-1:]], where="post", color=color,
                linestyle=style, linewidth=1.0, label=name, gid=f"curve:{name}")
    for label, value in curves["cutoffs"]:
        ax.axhline(value, color=class_color(classes.index(label)), linestyle=":",
                   linewidth=1.0, gid=f"cutoff:{label}")
    ax.set_ylabel("score")
    ax.legend(fontsize=7, ncol=4, loc="upper right")


# ----------------------------------------------------------------------------- summaries

def map_vs_tiou(tious, series, title="mAP against tIoU"):
    """series: [(name, values (T,) fractions, std (T,) or None, style)], style e.g. 'o-'."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for name, values, std, style in series:
        x = np.asarray(tious[:len(values)], dtype=float)
        y = 100 * np.asarray(values, dtype=float)
        ax.plot(x, y, style, label=name, gid=f"series:{name}")
        if std is not None:
            ax.fill_between(x, y - 100 * np.asarray(std), y + 100 * np.asarray(std), alpha=0.2)
    ax.set_xlabel("tIoU")
    ax.set_ylabel("mAP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def per_class_ap(classes, ap, alpha):
    """Horizontal bars of AP at tIoU alpha per class, sorted (classes without ground truth,
    NaN, left out)."""
    pairs = sorted([(a, c) for c, a in zip(classes, ap) if np.isfinite(a)])
    fig = Figure(figsize=(6, 1 + 0.22 * max(len(pairs), 1)))
    ax = fig.subplots()
    ax.barh(np.arange(len(pairs)), [100 * a for a, _ in pairs], color="#1f77b4")
    ax.set_yticks(np.arange(len(pairs)), [c for _, c in pairs], fontsize=7)
    ax.set_xlabel(f"AP at tIoU {alpha:g} (%)")
    ax.set_title("AP per class", fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(history):
    """history: [{"position", "phase", "epoch", "loss", "positive", ...}] (history.json)."""
    fig = Figure(figsize=(9, 3.2))
    ax_loss, ax_pos = fig.subplots(1, 2)
    phases = list(dict.fromkeys(h["phase"] for h in history))
    for i, phase in enumerate(phases):
        rows = [h for h in history if h["phase"] == phase]
        x = [h["position"] for h in rows]
        color = f"C{i}"
        ax_loss.plot(x, [h["loss"] for h in rows], ".", color=color, label=phase, ms=4)
        if any(h.get("positive") is not None for h in rows):
            ax_pos.plot(x, [h.get("positive") for h in rows], ".", color=color, label=phase,
                        ms=4)
    ax_loss.set_yscale("log")
    ax_loss.set_title("loss per epoch", fontsize=10)
    ax_pos.set_title("positive fraction of the pseudo-labels", fontsize=10)
    for ax in (ax_loss, ax_pos):
        ax.set_xlabel("epoch of the schedule")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:          # attention MIL: no pseudo-labels
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def error_breakdown(buckets, gains, where):
    """Left: for each window 1G..kG of the top-ranked predictions, the share of each kind of
    prediction (stacked); right: DETAD's average-mAP_N gained (points) if each error type were
    removed. buckets: [{kind: n}]; gains: {error: fraction}; where: the tIoUs, in words."""
    fig = Figure(figsize=(11, 3.6))
    ax, ax_gain = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    kinds = list(KIND_COLORS)
    totals = np.array([max(sum(b.values()), 1) for b in buckets], dtype=float)
    bottom = np.zeros(len(buckets))
    x = np.arange(1, len(buckets) + 1)
    for kind in kinds:
        share = 100 * np.array([b[kind] for b in buckets]) / totals
        ax.bar(x, share, bottom=bottom, color=KIND_COLORS[kind], label=kind.replace("_", " "),
               gid=f"bar:{kind}")
        bottom += share
    ax.set_xticks(x, [f"{i}G" for i in x])
    ax.set_ylabel("share of predictions (%)")
    ax.set_title(f"top-ranked predictions by window ({where})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    errors = list(gains)
    y = np.arange(len(errors))
    ax_gain.barh(y, [100 * gains[e] for e in errors], 0.6,
                 color=[KIND_COLORS[e] for e in errors])
    ax_gain.axvline(0, color="black", linewidth=0.6)
    ax_gain.set_yticks(y, [e.replace("_", " ") for e in errors], fontsize=8)
    ax_gain.invert_yaxis()
    ax_gain.set_xlabel("average-mAP$_N$ gained if removed (points)")
    fig.tight_layout()
    return fig


def ap_by_buckets(panels, alpha):
    """panels: [(title, {bucket: {"n_gt", "mAP"}})]; a bar of mAP at alpha per bucket, its
    ground-truth count written on it."""
    fig = Figure(figsize=(4.5 * len(panels), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, values) in zip(axes, panels):
        names = list(values)
        heights = [100 * (values[n]["mAP"] or 0.0) for n in names]
        ax.bar(names, heights, color="#1f77b4")
        for i, n in enumerate(names):
            ax.text(i, heights[i], f"n={values[n]['n_gt']}", ha="center", va="bottom",
                    fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(f"mAP at tIoU {alpha:g} (%)")
    fig.tight_layout()
    return fig
