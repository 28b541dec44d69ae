"""What kind of mistakes cost a detector its mAP: the false-positive analysis and the
sensitivity to ground-truth length and coverage of DETAD (Alwassel et al., "Diagnosing Error
in Temporal Action Detectors", ECCV 2018), on the project's own evaluator. Torch-free, pure:
DataFrames and GroundTruth in, numbers out.

The rules (alpha = the analysis tIoU, 0.5 by default; LOW = 0.1; tIoU as ActivityNet's):
* Ranking: each class's predictions in the official ActivityNet order
  (protocols.official_rank); a prediction's rank counts from 0 within its class.
* True positive: tIoU >= alpha with a same-label ground truth of its video that no
  higher-ranked prediction holds; among several, the one of highest tIoU (ties in the
  official order), as evaluate.py's ActivityNet matching at alpha.
* Every other prediction is the first of, in this order:
  double detection  tIoU >= alpha with a same-label ground truth (already held);
  wrong label       tIoU >= alpha with a ground truth of another label;
  localisation      LOW <= tIoU < alpha with a same-label ground truth;
  confusion         LOW <= tIoU < alpha with a ground truth of another label;
  background        tIoU < LOW with every ground truth of its video.
* The top-ranked predictions, as DETAD: of each class the first k x G, G its number of
  ground-truth segments (none for a class without any); bucket j (1..k) holds ranks
  (j - 1) G .. j G - 1.
* mAP if a type were removed: the evaluator (evaluate.evaluate_detection, the run's
  protocol) on every prediction except the top-ranked ones of that type.
* AP by bucket of a ground-truth characteristic (length in seconds, coverage = length /
  video duration), at alpha: the evaluator against the ground truth of that bucket, with the
  predictions that are true positives of ground truths outside it removed (they are neither
  right nor wrong for this bucket), as DETAD. Buckets are (lo, hi].
"""
import math

import numpy as np
import pandas as pd

import evaluate
from evaluation.eval_inputs import GroundTruth
from evaluation.protocols import official_rank, same_key_pairs, segment_tiou

LOW = 0.1
ERROR_TYPES = ("double_detection", "wrong_label", "localization", "confusion", "background")
KINDS = ("true_positive",) + ERROR_TYPES
LENGTH_BUCKETS = (("XS", 0.0, 3.0), ("S", 3.0, 6.0), ("M", 6.0, 12.0), ("L", 12.0, 18.0),
                  ("XL", 18.0, math.inf))                   # seconds, (lo, hi]
COVERAGE_BUCKETS = (("XS", 0.0, 0.02), ("S", 0.02, 0.04), ("M", 0.04, 0.06),
                    ("L", 0.06, 0.08), ("XL", 0.08, 1.0))   # length / duration, (lo, hi]


def _codes(values, categories):
    return pd.Index(categories).get_indexer(np.asarray(values, dtype=object)).astype(np.int64)


def label_predictions(pred, gt, alpha=0.5):
    """Every prediction's DETAD kind. pred: DataFrame (video, label, start, end, score);
    gt: eval_inputs.GroundTruth. Returns a copy of pred with the columns
    rank (int, within its class), kind (one of KINDS), gt (the row of gt.segments a true
    positive holds, else -1), tiou_same / tiou_other (highest tIoU with a ground truth of its
    video of the same / another label, 0 when none)."""
    n = len(pred)
    p_cls = _codes(pred["label"], gt.classes)                        # (n,)
    seg = gt.segments
    g_cls = _codes(seg["label"], gt.classes)                         # (G,)
    names = pd.Index(pd.unique(np.concatenate([np.asarray(seg["video"], dtype=object),
                                               np.asarray(pred["video"], dtype=object)])))
    p_vid, g_vid = _codes(pred["video"], names), _codes(seg["video"], names)
    ps, pe = pred["start"].to_numpy(float), pred["end"].to_numpy(float)
    gs, ge = seg["start"].to_numpy(float), seg["end"].to_numpy(float)

    pi, gi = same_key_pairs(p_vid, g_vid)            # every (prediction, gt) of one video
    tiou = segment_tiou(ps[pi], pe[pi], gs[gi], ge[gi])
    same = p_cls[pi] == g_cls[gi]
    best_same, best_other = np.zeros(n), np.zeros(n)
    np.maximum.at(best_same, pi[same], tiou[same])
    np.maximum.at(best_other, pi[~same], tiou[~same])

    # ranks within each class, in the official order
    order = official_rank(p_cls, pred["score"].to_numpy(float), len(gt.classes)) if n else \
        np.zeros(0, dtype=int)
    rank = np.zeros(n, dtype=np.int64)
    cls_sorted = p_cls[order]
    first = np.searchsorted(cls_sorted, cls_sorted)                  # class start in `order`
    rank[order] = np.arange(n) - first

    # the greedy matching at alpha, in rank order (only predictions that can match)
    held = np.full(len(seg), False)
    matched = np.full(n, -1)
    sp, sg, st = pi[same], gi[same], tiou[same]                      # sorted by prediction
    lo = np.searchsorted(sp, np.arange(n), side="left")
    hi = np.searchsorted(sp, np.arange(n), side="right")
    for i in order[best_same[order] >= alpha]:
        t, g = st[lo[i]:hi[i]], sg[lo[i]:hi[i]]                      # its same-label gts
        for j in np.argsort(t)[::-1]:                                # official preference
            if t[j] < alpha:
                break
            if not held[g[j]]:
                held[g[j]] = True
                matched[i] = g[j]
                break

    kind = np.select([matched >= 0, best_same >= alpha, best_other >= alpha,
                      best_same >= LOW, best_other >= LOW],
                     list(KINDS[:5]), default="background")
    out = pred.copy()
    out["rank"], out["kind"], out["gt"] = rank, kind, matched
    out["tiou_same"], out["tiou_other"] = best_same, best_other
    return out


def gt_counts(gt):
    """{class name: number of ground-truth segments} (0 for a class without any)."""
    counts = gt.segments["label"].value_counts()
    return {c: int(counts.get(c, 0)) for c in gt.classes}


def top_predictions(labelled, gt, k=10):
    """The top-ranked predictions (rank < k G of their class) with their bucket (1..k)."""
    G = labelled["label"].map(gt_counts(gt)).to_numpy(dtype=np.int64)
    top = labelled[labelled["rank"].to_numpy() < k * G].copy()
    top["bucket"] = top["rank"] // G[labelled["rank"].to_numpy() < k * G] + 1
    return top


def breakdown(top, k=10):
    """Counts of each kind among the top-ranked predictions, in all and per bucket.
    {"counts": {kind: n}, "false_positives": n, "fractions": {error: share of the false
    positives}, "buckets": [{kind: n} for bucket 1..k]}."""
    counts = {kind: int((top["kind"] == kind).sum()) for kind in KINDS}
    n_fp = sum(counts[e] for e in ERROR_TYPES)
    buckets = [{kind: int(((top["bucket"] == b) & (top["kind"] == kind)).sum()) for kind in KINDS}
               for b in range(1, k + 1)]
    return {"counts": counts, "false_positives": n_fp,
            "fractions": {e: counts[e] / n_fp if n_fp else 0.0 for e in ERROR_TYPES},
            "buckets": buckets}


def map_if_removed(pred, top, gt, tious, protocol="activitynet"):
    """{"all": mAP (T,), type: mAP (T,) without the top-ranked predictions of that type}:
    the evaluator run on each reduced prediction set. pred and top share their index."""
    out = {"all": evaluate.evaluate_detection(pred, gt, tious, protocol)["mAP"]}
    for e in ERROR_TYPES:
        drop = top.index[top["kind"] == e]
        out[e] = evaluate.evaluate_detection(pred.drop(index=drop), gt, tious, protocol)["mAP"]
    return out


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
    def pairs(df):                     # a video name has no "/" (safe_io.check_video_name)
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


def analyse(pred, gt, tious, protocol="activitynet", alpha=0.5, k=10, durations=None):
    """Everything of the error analysis, as plain numbers (JSON-ready) and the labelled
    predictions: (numbers, labelled, top)."""
    labelled = label_predictions(pred, gt, alpha)
    top = top_predictions(labelled, gt, k)
    tious = [float(t) for t in tious]
    both = sorted(set(tious) | {float(alpha)})              # the run's tIoUs and alpha
    removed = map_if_removed(pred, top, gt, both, protocol)
    at = [both.index(t) for t in tious]
    gain = {e: removed[e] - removed["all"] for e in ERROR_TYPES}
    numbers = {
        "alpha": alpha, "k": k, "low": LOW, "protocol": protocol, "tiou": tious,
        "top_predictions": int(len(top)),
        **breakdown(top, k),
        "mAP": [float(x) for x in removed["all"][at]],
        "mAP_if_removed": {e: [float(x) for x in removed[e][at]] for e in ERROR_TYPES},
        "mAP_gain_if_removed": {e: {"average": float(gain[e][at].mean()),
                                    "at_alpha": float(gain[e][both.index(float(alpha))])}
                                for e in ERROR_TYPES},
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
