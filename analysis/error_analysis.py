"""What kind of mistakes cost a detector its mAP: the false-positive analysis and the
sensitivity to ground-truth length and coverage of DETAD (Alwassel et al., "Diagnosing Error
in Temporal Action Detectors", ECCV 2018), the latter with the project's evaluator. Pure:
DataFrames and GroundTruth in, numbers out. The false-positive analysis gives the numbers of
DETAD's own code (github.com/HumamAlwassel/DETAD, false_positive_analysis.py), number for
number: tests/test_error_analysis.py checks them against its output on STPN's predictions.

The rules (alpha = the analysis tIoU; LOW = 0.1; tIoU as ActivityNet's):
* Ranking: each class's predictions in the official ActivityNet order
  (protocols.official_rank); a prediction's rank counts from 0 within its class.
* Top-ranked predictions: of each class the first k x G (k = 10), G its number of
  ground-truth segments (none for a class without any); window j (1G..kG) holds ranks
  (j - 1) G .. j G - 1. Only they are analysed.
* True positive: tIoU >= alpha with a same-label ground truth of its video that no
  higher-ranked prediction holds; among several, the one of highest tIoU (ties in the
  official order), as evaluate.py's ActivityNet matching at alpha.
* Every other prediction: the ONE ground truth of its video that it overlaps most, of any
  class (the first in file order among equals), decides:
  double detection  tIoU >= alpha, same label;
  wrong label       tIoU >= alpha, another label;
  localisation      LOW <= tIoU < alpha, same label;
  confusion         LOW <= tIoU < alpha, another label;
  background        tIoU < LOW, and every prediction in a video without ground truth (DETAD
                    gives the first such prediction background and the others the previous
                    video's ground truth, a defect not copied).
  same_label_first=True instead tests any same-label ground truth first (the rule of this
  project before DETAD's: see label_predictions).
* AP_N (DETAD's normalised AP): N = segments / classes with a segment; of a class's
  top-ranked predictions in rank order, recall = hits / G and precision = recall N /
  (recall N + false positives so far), all-point interpolated (VOC). mAP_N: mean over the
  classes with a segment; the average-mAP_N: mean over the analysis tIoUs.
* mAP_N if a type were removed: AP_N of the top-ranked predictions without those of that
  type at that tIoU, the others' hit flags kept (nothing matched again); its gain: the
  average-mAP_N of that minus the average-mAP_N.
* DETAD's two modes: THUMOS14 analyses at tIoU 0.5 only, ActivityNet at 0.5:0.05:0.95
  (DETAD_TIOUS), each tIoU labelling its own way; counts are then means over the tIoUs.
* AP by bucket of a ground-truth characteristic (length in seconds, coverage = length /
  video duration), at alpha: the evaluator against the ground truth of that bucket, with the
  predictions that are true positives of ground truths outside it removed (they are neither
  right nor wrong for this bucket), as DETAD. Buckets are (lo, hi].
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

import evaluate
from evaluate import category_codes
from evaluation.eval_inputs import GroundTruth
from evaluation.protocols import official_rank, same_key_pairs, segment_tiou

LOW = 0.1
ERROR_TYPES = ("double_detection", "wrong_label", "localization", "confusion", "background")
KINDS = ("true_positive",) + ERROR_TYPES
DETAD_TIOUS = {"thumos14": (0.5,),                   # DETAD's two modes; its very values
               "activitynet": tuple(float(t) for t in np.linspace(0.5, 0.95, 10))}  # .8999..
LENGTH_BUCKETS = (("XS", 0.0, 3.0), ("S", 3.0, 6.0), ("M", 6.0, 12.0), ("L", 12.0, 18.0),
                  ("XL", 18.0, math.inf))                   # seconds, (lo, hi]
COVERAGE_BUCKETS = (("XS", 0.0, 0.02), ("S", 0.02, 0.04), ("M", 0.04, 0.06),
                    ("L", 0.06, 0.08), ("XL", 0.08, 1.0))   # length / duration, (lo, hi]


@dataclass
class Overlaps:
    """Every (prediction, ground truth) pair of one video and what the labels need."""
    pi: np.ndarray            # (P,) prediction of each pair, sorted by prediction then gt row
    gi: np.ndarray            # (P,) its ground-truth row (gt.segments)
    tiou: np.ndarray          # (P,)
    same: np.ndarray          # (P,) bool: same label
    order: np.ndarray         # (n,) the predictions in the official order, class by class
    rank: np.ndarray          # (n,) rank within its class
    best_same: np.ndarray     # (n,) highest tIoU with a same-label ground truth, 0 if none
    best_other: np.ndarray    # (n,) ... with a ground truth of another label
    top_same: np.ndarray      # (n,) bool: the ground truth it overlaps most (first among
    #                           equals, in gt row order) has its label; False without overlap


def overlaps(pred, gt):
    """The Overlaps of pred (DataFrame video, label, start, end, score) and gt (GroundTruth)."""
    n = len(pred)
    p_cls = category_codes(pred["label"], gt.classes)                  # (n,)
    seg = gt.segments
    g_cls = category_codes(seg["label"], gt.classes)                   # (G,)
    names = pd.Index(pd.unique(np.concatenate([np.asarray(seg["video"], dtype=object),
                                               np.asarray(pred["video"], dtype=object)])))
    p_vid, g_vid = category_codes(pred["video"], names), category_codes(seg["video"], names)
    ps, pe = pred["start"].to_numpy(float), pred["end"].to_numpy(float)
    gs, ge = seg["start"].to_numpy(float), seg["end"].to_numpy(float)

    pi, gi = same_key_pairs(p_vid, g_vid)            # every (prediction, gt) of one video
    tiou = segment_tiou(ps[pi], pe[pi], gs[gi], ge[gi])
    same = p_cls[pi] == g_cls[gi]
    best_same, best_other = np.zeros(n), np.zeros(n)
    np.maximum.at(best_same, pi[same], tiou[same])
    np.maximum.at(best_other, pi[~same], tiou[~same])
    best = np.maximum(best_same, best_other)
    at_best = np.flatnonzero((tiou == best[pi]) & (tiou > 0))
    first = at_best[np.r_[True, pi[at_best][1:] != pi[at_best][:-1]]] if len(at_best) \
        else at_best                                                     # first pair at max
    top_same = np.zeros(n, dtype=bool)
    top_same[pi[first]] = same[first]

    # ranks within each class, in the official order
    order = official_rank(p_cls, pred["score"].to_numpy(float), len(gt.classes)) if n else \
        np.zeros(0, dtype=int)
    rank = np.zeros(n, dtype=np.int64)
    cls_sorted = p_cls[order]
    rank[order] = np.arange(n) - np.searchsorted(cls_sorted, cls_sorted)
    return Overlaps(pi, gi, tiou, same, order, rank, best_same, best_other, top_same)


def match(ov, n_gt, alpha):
    """(n,) the ground-truth row each prediction holds at tIoU alpha, else -1: the greedy
    matching in rank order, each taking its free same-label ground truth of highest tIoU."""
    n = len(ov.order)
    held = np.full(n_gt, False)
    matched = np.full(n, -1)
    sp, sg, st = ov.pi[ov.same], ov.gi[ov.same], ov.tiou[ov.same]   # sorted by prediction
    lo = np.searchsorted(sp, np.arange(n), side="left")
    hi = np.searchsorted(sp, np.arange(n), side="right")
    for i in ov.order[ov.best_same[ov.order] >= alpha]:             # only those that can
        t, g = st[lo[i]:hi[i]], sg[lo[i]:hi[i]]                      # its same-label gts
        for j in np.argsort(t)[::-1]:                                # official preference
            if t[j] < alpha:
                break
            if not held[g[j]]:
                held[g[j]] = True
                matched[i] = g[j]
                break
    return matched


def kinds_of(ov, matched, alpha, same_label_first=False):
    """(n,) each prediction's kind (one of KINDS) at tIoU alpha (rules in the docstring)."""
    if same_label_first:
        conditions = [matched >= 0, ov.best_same >= alpha, ov.best_other >= alpha,
                      ov.best_same >= LOW, ov.best_other >= LOW]
    else:
        best = np.maximum(ov.best_same, ov.best_other)
        conditions = [matched >= 0, (best >= alpha) & ov.top_same, best >= alpha,
                      (best >= LOW) & ov.top_same, best >= LOW]
    return np.select(conditions, list(KINDS[:5]), default="background")


def label_predictions(pred, gt, alpha=0.5, same_label_first=False):
    """Every prediction's DETAD kind at tIoU alpha. pred: DataFrame (video, label, start, end,
    score); gt: eval_inputs.GroundTruth. Returns a copy of pred with the columns
    rank (int, within its class), kind (one of KINDS), gt (the row of gt.segments a true
    positive holds, else -1), tiou_same / tiou_other (highest tIoU with a ground truth of its
    video of the same / another label, 0 when none).
    same_label_first: the unmatched prediction's label test asks first whether a same-label
    ground truth overlaps (>= alpha: double detection, else >= LOW: localisation) and only
    then looks at other labels, instead of DETAD's one most-overlapping ground truth. On
    THUMOS14, where CliffDiving segments are also annotated Diving, DETAD's rule decides an
    equal overlap by file order (a Diving prediction on such a pair is a confusion error
    when the CliffDiving line comes first); this variant calls it what it is for its own
    class. Off by default: DETAD's numbers are what papers publish."""
    ov = overlaps(pred, gt)
    matched = match(ov, len(gt.segments), alpha)
    out = pred.copy()
    out["rank"], out["gt"] = ov.rank, matched
    out["kind"] = kinds_of(ov, matched, alpha, same_label_first)
    out["tiou_same"], out["tiou_other"] = ov.best_same, ov.best_other
    return out


def gt_counts(gt):
    """{class name: number of ground-truth segments} (0 for a class without any)."""
    counts = gt.segments["label"].value_counts()
    return {c: int(counts.get(c, 0)) for c in gt.classes}


def top_predictions(labelled, gt, k=10):
    """The top-ranked predictions (rank < k G of their class) with their window (1..k)."""
    G = labelled["label"].map(gt_counts(gt)).to_numpy(dtype=np.int64)
    inside = labelled["rank"].to_numpy() < k * G
    top = labelled[inside].copy()
    top["bucket"] = top["rank"] // G[inside] + 1
    return top


def normalised_ap(tp, n_pos, n_avg, keep=None):
    """DETAD's AP_N of each row of tp (T, m): one class's ranked hit flags, n_pos its
    ground-truth count, n_avg = N. keep (T, m) bool: the predictions counted (the others are
    left out, nothing matched again). recall = hits / n_pos, precision = recall N / (recall N
    + false positives so far), all-point interpolated (VOC: the precision envelope times each
    step of recall)."""
    tp = np.asarray(tp, dtype=float)
    keep = np.ones(tp.shape, dtype=bool) if keep is None else keep
    hits = np.cumsum(tp * keep, axis=1)
    false = np.cumsum((1.0 - tp) * keep, axis=1)
    recall = hits / n_pos
    num = recall * n_avg
    # a left-out prediction repeats the precision before it, so the envelope is unchanged
    precision = np.divide(num, num + false, out=np.zeros(tp.shape), where=num + false > 0)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(recall, axis=1, prepend=0.0) * envelope, axis=1)


def false_positive_analysis(pred, gt, tious=(0.5,), k=10, same_label_first=False):
    """DETAD's false-positive analysis of the top-ranked predictions at each tIoU of tious
    (DETAD_TIOUS: its two modes). Returns plain numbers (JSON-ready):
    {"tiou", "k", "top_predictions", "n_per_class": N,
     "counts": {kind: [n per tIoU]}, "buckets": [{kind: [n per tIoU]} per window 1G..kG],
     "mAP_N": [per tIoU], "average_mAP_N",
     "mAP_N_if_removed": {error: [per tIoU]}, "mAP_N_gain": {error: average-mAP_N gain}}."""
    tious = [float(t) for t in tious]
    ov = overlaps(pred, gt)
    n_gt = gt_counts(gt)
    G = pred["label"].map(n_gt).to_numpy(dtype=np.int64)                 # (n,)
    top = np.flatnonzero(ov.rank < k * G)
    labels = category_codes(pred["label"].to_numpy()[top], gt.classes)
    top = top[np.lexsort((ov.rank[top], labels))]
    kinds = np.stack([kinds_of(ov, match(ov, len(gt.segments), t), t, same_label_first)[top]
                      for t in tious])                                   # (T, top)
    window = ov.rank[top] // G[top] + 1                                  # (top,)
    counts = {kind: [int(x) for x in (kinds == kind).sum(axis=1)] for kind in KINDS}
    buckets = [{kind: [int(x) for x in ((kinds == kind) & (window == b)).sum(axis=1)]
                for kind in KINDS} for b in range(1, k + 1)]

    classes = [c for c in gt.classes if n_gt[c] > 0]                     # DETAD's classes
    n_avg = len(gt.segments) / len(classes) if classes else 0.0
    labels = pred["label"].to_numpy()[top]
    ap = np.zeros((len(tious), len(classes)))
    removed = {e: np.zeros((len(tious), len(classes))) for e in ERROR_TYPES}
    for c, name in enumerate(classes):
        rows = labels == name                                            # in rank order
        hit = kinds[:, rows] == "true_positive"                          # (T, m)
        ap[:, c] = normalised_ap(hit, n_gt[name], n_avg)
        for e in ERROR_TYPES:
            removed[e][:, c] = normalised_ap(hit, n_gt[name], n_avg, kinds[:, rows] != e)
    m_ap = ap.mean(axis=1) if classes else np.zeros(len(tious))
    m_removed = {e: (r.mean(axis=1) if classes else np.zeros(len(tious)))
                 for e, r in removed.items()}
    return {"tiou": tious, "k": k, "top_predictions": int(len(top)), "n_per_class": n_avg,
            "counts": counts, "buckets": buckets,
            "mAP_N": [float(x) for x in m_ap], "average_mAP_N": float(m_ap.mean()),
            "mAP_N_if_removed": {e: [float(x) for x in m_removed[e]] for e in ERROR_TYPES},
            "mAP_N_gain": {e: float(m_removed[e].mean() - m_ap.mean()) for e in ERROR_TYPES}}


def subset_gt(gt, keep):
    """The ground truth with only the segments where keep (G,) is True (same videos)."""
    return GroundTruth(segments=gt.segments[np.asarray(keep)].reset_index(drop=True),
                                videos=gt.videos, classes=gt.classes, ambiguous=gt.ambiguous,
                                class_ids=gt.class_ids)


def bucket_of(values, buckets):
    """The bucket name of each value ((lo, hi]); None outside every bucket."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), None, dtype=object)
    for name, lo, hi in buckets:
        out[(values > lo) & (values <= hi)] = name
    return out


def ap_by_bucket(pred, labelled, gt, values, buckets, alpha=0.5, protocol="activitynet"):
    """{bucket: {"n_gt", "mAP"}} at tIoU alpha (see the module docstring). values: (G,) the
    characteristic of each row of gt.segments (NaN: in no bucket); mAP None when the bucket
    has no segment."""
    names = bucket_of(values, buckets)
    out = {}
    for name, _, _ in buckets:
        inside = names == name
        held_outside = labelled["gt"].to_numpy() >= 0
        held_outside &= ~inside[np.maximum(labelled["gt"].to_numpy(), 0)]
        result = None
        if inside.any():
            m = evaluate.evaluate_detection(pred[~held_outside], subset_gt(gt, inside),
                                            [alpha], protocol)["mAP"][0]
            result = float(m)
        out[name] = {"n_gt": int(inside.sum()), "mAP": result}
    return out


def gt_lengths(gt):
    """(G,) seconds of each ground-truth segment."""
    return (gt.segments["end"] - gt.segments["start"]).to_numpy(float)


def gt_coverage(gt, durations):
    """(G,) length / duration of each segment's video (NaN where the duration is unknown)."""
    d = gt.segments["video"].map(lambda v: durations.get(v, np.nan)).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, gt_lengths(gt) / d, np.nan)


def per_video_map(pred, gt, tious, protocol="activitynet"):
    """{video: mean over tious of its mAP}, the evaluator restricted to each video with a
    ground-truth segment (videos without one are not ranked). All videos in one call: the
    classes become (video, class) pairs, so each video's classes are evaluated on their own
    and a video's mAP is the mean of its pairs' APs, as the evaluator on that video alone."""
    def pairs(df):                     # a video name has no "/" (core.names.check_video_name)
        return df["video"].astype(str) + "/" + df["label"].astype(str)

    seg = gt.segments.assign(label=pairs(gt.segments))
    classes = list(pd.unique(seg["label"]))
    keep = pairs(pred).isin(set(classes)).to_numpy()
    p = pred[keep].assign(label=pairs(pred[keep]))
    per_pair = evaluate.evaluate_detection(
        p, GroundTruth(seg, gt.videos, classes, gt.ambiguous, {}), tious,
        protocol)["per_class"].mean(axis=1)                           # (pairs,)
    video_of = [c.split("/", 1)[0] for c in classes]
    frame = pd.DataFrame({"video": video_of, "ap": per_pair})
    return {v: float(a) for v, a in frame.groupby("video", sort=False)["ap"].mean().items()}


def choose_videos(video_map, n=12):
    """The best, the median and the worst videos by mAP, n // 3 of each (the rest from the
    best), without repeats: [(video, why)], why in 'best', 'median', 'worst'."""
    ranked = sorted(video_map, key=lambda v: (-video_map[v], v))
    if len(ranked) <= n:
        return [(v, "best" if i < len(ranked) / 3 else "median" if i < 2 * len(ranked) / 3
                 else "worst") for i, v in enumerate(ranked)]
    third = n // 3
    mid = len(ranked) // 2 - third // 2
    picks = ([(v, "best") for v in ranked[:n - 2 * third]] +
             [(v, "median") for v in ranked[mid:mid + third]] +
             [(v, "worst") for v in ranked[len(ranked) - third:]])
    return picks


def _mean(values):
    """A count over the analysis tIoUs: the count itself for one tIoU, else the mean (as
    DETAD's 'avg')."""
    return values[0] if len(values) == 1 else float(np.mean(values))


def analyse(pred, gt, tious, protocol="activitynet", alpha=0.5, k=10, durations=None,
            detad_tious=None, same_label_first=False):
    """Everything of the error analysis, as plain numbers (JSON-ready) and the predictions
    labelled at alpha: (numbers, labelled, top). tious: the run's (the evaluator's mAP);
    detad_tious: those of the false-positive analysis (default [alpha]: DETAD's THUMOS14
    mode at alpha; DETAD_TIOUS["activitynet"]: its ActivityNet mode). counts, buckets,
    false_positives and fractions are means over detad_tious (the counts themselves for
    one); *_per_tiou give each tIoU's."""
    detad_tious = [float(t) for t in (detad_tious or [alpha])]
    labelled = label_predictions(pred, gt, alpha, same_label_first)
    top = top_predictions(labelled, gt, k)
    tious = [float(t) for t in tious]
    fp = false_positive_analysis(pred, gt, detad_tious, k, same_label_first)
    counts = {kind: _mean(v) for kind, v in fp["counts"].items()}
    n_fp = sum(counts[e] for e in ERROR_TYPES)
    numbers = {
        "alpha": alpha, "k": k, "low": LOW, "protocol": protocol, "tiou": tious,
        "detad_tiou": detad_tious, "same_label_first": bool(same_label_first),
        "top_predictions": fp["top_predictions"],
        "counts": counts, "false_positives": n_fp,
        "fractions": {e: counts[e] / n_fp if n_fp else 0.0 for e in ERROR_TYPES},
        "buckets": [{kind: _mean(v) for kind, v in b.items()} for b in fp["buckets"]],
        "counts_per_tiou": fp["counts"], "buckets_per_tiou": fp["buckets"],
        "mAP": [float(x) for x in evaluate.evaluate_detection(pred, gt, tious, protocol)["mAP"]],
        "n_per_class": fp["n_per_class"], "mAP_N": fp["mAP_N"],
        "average_mAP_N": fp["average_mAP_N"], "mAP_N_if_removed": fp["mAP_N_if_removed"],
        "mAP_N_gain": fp["mAP_N_gain"],
        "ap_by_length": {"buckets": [list(b[:2]) + [b[2] if math.isfinite(b[2]) else None]
                                     for b in LENGTH_BUCKETS],
                         "values": ap_by_bucket(pred, labelled, gt, gt_lengths(gt),
                                                LENGTH_BUCKETS, alpha, protocol)},
        "ap_by_coverage": None,
    }
    if durations:
        numbers["ap_by_coverage"] = {
            "buckets": [list(b) for b in COVERAGE_BUCKETS],
            "values": ap_by_bucket(pred, labelled, gt, gt_coverage(gt, durations),
                                   COVERAGE_BUCKETS, alpha, protocol)}
    return numbers, labelled, top
