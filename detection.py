"""Scores to segments: class selection, localisation score, runs of snippets, confidences.

The functions work on NumPy arrays of many videos at once (detect_batch): every chosen
(video, class) curve is one column, and runs are found in all of them together, vectorised
over snippets, classes and videos; the small helpers (select_classes, nms, ...) take one
video's arrays.
"""
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import InputError
from core.files import atomic_write_text
from core.names import check_video_name
from dataset import snippets_to_seconds
from evaluation.eval_inputs import PREDICTION_COLUMNS

# The released test() scores snippets by lam*q + lam*p_c (lam = 0.8 hard-coded), then
# normalises it, (s - mean) / (max - min): the factor lam cancels, so its curve is the
# normalised 0.5*q + 0.5*p_c, i.e. localisation_scores(q, p, RELEASED_LAM) (tested).
RELEASED_LAM = 0.5


def select_classes(video_scores, threshold, fallback=True):
    """Indices of the classes to localise: video score >= threshold, else (fallback) the
    top-1 class, else (the released rule) none.

    video_scores: (K,). Returns int array (C,).
    """
    chosen = np.flatnonzero(video_scores >= threshold)
    if chosen.size or not fallback:
        return chosen
    return np.array([int(np.argmax(video_scores))])


def released_class_ids(classes):
    """Class ids the released code writes into its results file: 1..K in class order."""
    return {c: i + 1 for i, c in enumerate(classes)}


def localisation_scores(q, p, lam):
    """s_c = lam * q + (1 - lam) * p_c. q: (T,), p: (T, C) -> (T, C)."""
    return lam * q[:, None] + (1.0 - lam) * p


def attention_scores(attention, class_probs):
    """UntrimmedNet baseline: attention rescaled to max 1 over time, times class probabilities.
    attention: (T,), class_probs: (T, K) -> (T, K) in [0, 1]."""
    return (attention / attention.max())[:, None] * class_probs


@dataclass(frozen=True)
class PostProcess:
    """How runs of snippets become scored segments: one field per option of opts.py's
    'detection' group, which holds their defaults (the released ones); see `from_opts`."""
    cls_threshold: float          # localise classes with video score >= this (else top-1)
    loc_thresholds: tuple         # one threshold (released) or a sweep whose runs are pooled
    score: str                    # 'mean': mean s_c over the run; 'oic': outer-inner contrast
    oic_margin: float             # outer region on each side, as a fraction of the run length
    nms: str                      # 'none', 'hard' (per-class NMS) or 'soft' (Gaussian soft-NMS)
    nms_iou: float                # hard NMS: drop a segment overlapping a better one by more
    soft_sigma: float             # soft-NMS: score *= exp(-tIoU^2 / sigma)
    drop_ambiguous: bool          # drop segments that overlap an Ambiguous segment
    detection: str                # 'ours', or 'released': the released test() (see detect_batch)

    @classmethod
    def from_opts(cls, opts):
        return cls(opts.cls_threshold, tuple(opts.loc_threshold), opts.score, opts.oic_margin,
                   opts.nms, opts.nms_iou, opts.soft_sigma, opts.drop_ambiguous,
                   opts.detection)


def segment_iou(starts, ends):
    """Pairwise tIoU of segments (N,) -> (N, N)."""
    inter = np.clip(np.minimum(ends[:, None], ends[None]) - np.maximum(starts[:, None], starts[None]),
                    0, None)
    union = (ends - starts)[:, None] + (ends - starts)[None] - inter
    return inter / np.where(union > 0, union, 1.0)


def nms(starts, ends, scores, mode, iou_threshold, sigma):
    """Greedy per-class NMS over the segments of one class. Returns (kept indices, scores)."""
    scores = scores.astype(float).copy()
    iou = segment_iou(starts, ends)
    alive = np.ones(len(scores), dtype=bool)
    kept = []
    while alive.any():
        i = int(np.flatnonzero(alive)[np.argmax(scores[alive])])
        kept.append(i)
        alive[i] = False
        if mode == "hard":
            alive &= iou[i] <= iou_threshold
        else:
            scores[alive] *= np.exp(-iou[i, alive] ** 2 / sigma)
    kept = np.array(kept, dtype=int)
    return kept, scores[kept]


def overlaps_any(starts, ends, spans):
    """(N,) bool: segment overlaps (intersection > 0) one of spans [(s, e)]."""
    if len(spans) == 0:
        return np.zeros(len(starts), dtype=bool)
    spans = np.asarray(spans, dtype=float)
    inter = np.minimum(ends[:, None], spans[None, :, 1]) - np.maximum(starts[:, None], spans[None, :, 0])
    return (inter > 0).any(axis=1)


def lay_end_to_end(scores, chosen):
    """The chosen class columns of every video's scores, one curve after another.

    scores: [(T_i, K)]; chosen: [class indices] per video. Returns flat (N,) float64 and the
    curve lengths n (C,), curves ordered by video, then by class as chosen."""
    n = np.repeat([len(s) for s in scores], [len(c) for c in chosen]).astype(int)
    flat = np.empty(n.sum())
    at = 0
    for s, c in zip(scores, chosen):
        size = len(s) * len(c)
        flat[at:at + size].reshape(len(c), len(s))[:] = s.T[c]      # (C_v, T_v), one gather
        at += size
    return flat, n


def runs_end_to_end(flat, n, post):
    """Runs and their scores in curves laid end to end (lengths n (C,), none empty), found in
    one pass over all of them: no padding, no loop over curves. Returns (column, start, end,
    score) arrays, ordered by column, then start; end exclusive."""
    if n.size == 0:
        return (np.zeros(0, dtype=int),) * 3 + (np.zeros(0),)
    first = np.zeros(n.size, dtype=int)                       # where each curve starts
    np.cumsum(n[:-1], out=first[1:])
    mean = np.add.reduceat(flat, first) / n                  # per curve (C,)
    low, high = np.minimum.reduceat(flat, first), np.maximum.reduceat(flat, first)
    edge = np.zeros(flat.size + 1, dtype=bool)                # a curve starts (or all end) here
    edge[first] = edge[-1] = True
    runs = []
    for threshold in post.loc_thresholds:
        on = flat > np.repeat(run_cutoff(mean, low, high, threshold), n)
        before = np.concatenate([[False], on[:-1]])           # the previous snippet was on
        after = np.concatenate([on[1:], [False]])             # the next snippet is on
        opens = np.flatnonzero(on & (edge[:-1] | ~before))    # first snippet of a run
        closes = np.flatnonzero(on & (edge[1:] | ~after)) + 1 # one past its last snippet
        j = np.searchsorted(first, opens, side="right") - 1
        start, end = opens - first[j], closes - first[j]
        runs.append((j, start, end, flat_run_scores(flat, first, n, j, start, end, post.score,
                                                    post.oic_margin)))
    col, start, end, score = (np.concatenate(x) for x in zip(*runs))
    if len(runs) > 1:                                        # same run, several thresholds
        _, keep = np.unique(np.stack([col, start, end]), axis=1, return_index=True)
        col, start, end, score = col[keep], start[keep], end[keep], score[keep]
    return col, start, end, score


def run_cutoff(mean, low, high, threshold):
    """The one rule of a run: the released test (s - mean) / (max - min) > threshold,
    written as s > mean + threshold (max - min), the value of the raw curve above which a
    snippet is in a run (one cut-off per curve, one comparison per snippet). A flat curve
    (max == min): s - mean = 0, so its cut-off is its mean plus the threshold.
    mean, low, high: per curve, any shape; returns the same shape."""
    spread = high - low
    return mean + threshold * np.where(spread > 0, spread, 1.0)


def raw_cutoffs(s, thresholds):
    """(L, K): for each normalised threshold, run_cutoff of each class's curve s (T, K)
    (for drawing the thresholds in the curve's own units)."""
    return np.stack([run_cutoff(s.mean(axis=0), s.min(axis=0), s.max(axis=0), t)
                     for t in thresholds])


def run_sums(flat, a, b):
    """Sums of flat over the runs [a_k, b_k), sorted and disjoint (one reduceat)."""
    if a.size == 0:
        return np.zeros(0)
    bounds = np.empty(2 * a.size, dtype=np.intp)
    bounds[0::2], bounds[1::2] = a, b
    if bounds[-1] == flat.size:                               # the last run ends the array
        bounds = bounds[:-1]
    return np.add.reduceat(flat, bounds)[0::2]


def flat_run_scores(flat, first, n, col, start, end, kind, margin):
    """Score of each run (col, [start, end)) of curves laid end to end (curve j is
    flat[first[j]:first[j] + n[j]]); the runs sorted and disjoint, as one threshold gives
    them. mean: mean of the curve over the run. oic: that mean minus the mean over the outer
    region, `margin` x the run's length on each side (clipped to the curve), as in AutoLoc."""
    at = first[col]
    inner = run_sums(flat, at + start, at + end) / (end - start)
    if kind == "mean":
        return inner
    cumsum = np.concatenate([[0.0], np.cumsum(flat)])        # outer regions may overlap

    def total(lo, hi):
        return cumsum[at + hi] - cumsum[at + lo]

    pad = np.maximum(1, np.round(margin * (end - start))).astype(int)
    lo, hi = np.maximum(start - pad, 0), np.minimum(end + pad, n[col])
    outer_len = (hi - lo) - (end - start)
    outer_sum = total(lo, hi) - total(start, end)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    return inner - outer


def detect_batch(scores, video_scores, post, *, snippet_seconds, durations, ambiguous=None):
    """Segments of many videos at once, as arrays (video_index, label_index, start, end, score).

    scores: [(T_i, K)] localisation score of every class of each video (EM-MIL:
    localisation_scores(q, p, lam)); video_scores: (N, K); durations: (N,) seconds;
    ambiguous: {video_index: [(start, end)]} (used with post.drop_ambiguous). Per video, only the classes chosen by select_classes are localised; every chosen
    (video, class) curve becomes one column and runs are found in all columns together.
    Confidence of a run (default 'mean') = mean of the raw localisation score s_c over the
    run's snippets times the video score of c: in [0, 1], it ranks runs across videos.

    post.detection == 'released' is the released test() instead (with scores made with
    RELEASED_LAM): no top-1 class when none reaches the threshold, a run still open at the
    last snippet is dropped (its loop closes a run only at a snippet below the threshold),
    every confidence is 1, and segments are not clamped to the duration.
    """
    released = post.detection == "released"
    chosen = [select_classes(v, post.cls_threshold, fallback=not released) if len(s)
              else np.zeros(0, dtype=int)
              for s, v in zip(scores, video_scores)]                # a video without snippets: none
    col_video = np.repeat(np.arange(len(scores)), [len(c) for c in chosen]).astype(int)
    col_class = np.concatenate(chosen).astype(int) if chosen else np.zeros(0, dtype=int)
    flat, n = lay_end_to_end(scores, chosen)
    col, start, end, run_score = runs_end_to_end(flat, n, post)
    if released:
        closed = end < n[col]                                   # not reaching the last snippet
        col, start, end = col[closed], start[closed], end[closed]
        run_score = np.ones(len(col))
    video, label = col_video[col], col_class[col]
    conf = run_score if released else run_score * video_scores[video, label]
    duration = None if released else np.asarray(durations, dtype=float)[video]
    t0 = snippets_to_seconds(start, snippet_seconds, duration)
    t1 = snippets_to_seconds(end, snippet_seconds, duration)
    keep = t1 > t0                      # a run entirely past the annotated duration is empty
    if post.drop_ambiguous and ambiguous:
        for v, spans in ambiguous.items():
            here = np.flatnonzero(video == v)
            keep[here] &= ~overlaps_any(t0[here], t1[here], spans)
    out = {"video_index": video[keep], "label_index": label[keep], "start": t0[keep],
           "end": t1[keep], "score": conf[keep]}
    return apply_nms(out, post) if post.nms != "none" else out


def apply_nms(found, post):
    """Per video and class NMS of detect_batch's arrays (a loop over the groups)."""
    key = found["video_index"] * (found["label_index"].max(initial=0) + 1) + found["label_index"]
    score = found["score"].copy()
    order = []
    for k in np.unique(key):
        idx = np.flatnonzero(key == k)
        kept, new = nms(found["start"][idx], found["end"][idx], score[idx], post.nms,
                        post.nms_iou, post.soft_sigma)
        score[idx[kept]] = new
        order.append(idx[kept])
    order = np.concatenate(order) if order else np.zeros(0, dtype=int)
    return {**{k: v[order] for k, v in found.items()}, "score": score[order]}


def segments_frame(names, found, classes):
    """detect_batch's arrays as one DataFrame (video, label, start, end, score)."""
    return pd.DataFrame({
        "video": np.asarray(names, dtype=object)[found["video_index"]],
        "label": np.asarray(classes, dtype=object)[found["label_index"]],
        "start": found["start"], "end": found["end"], "score": found["score"],
    }, columns=PREDICTION_COLUMNS)


def well_formed(detections):
    """The detections, if each makes one well-formed output line: a plain video name (no
    whitespace or separator: core.names.check_video_name) and finite times and score."""
    for name in pd.unique(detections["video"]):
        check_video_name(name, "detections")
    if not np.isfinite(detections[["start", "end", "score"]].to_numpy(float)).all():
        raise InputError("detections: a time or score is NaN or Inf; results not written")
    return detections


def write_results_json(path, detections):
    """ActivityNet result format: {"version", "external_data", "results": {video: [...]}}."""
    detections = well_formed(detections)
    results = {}
    for row in detections.itertuples(index=False):
        results.setdefault(row.video, []).append({
            "label": row.label,
            "segment": [round(float(row.start), 3), round(float(row.end), 3)],
            "score": float(row.score)})
    payload = {"version": "EM-MIL reimplementation", "results": results,
               "external_data": {"used": False, "details": "features only"}}
    atomic_write_text(path, json.dumps(payload, allow_nan=False) + "\n")


def write_results_txt(path, detections, class_ids):
    """Official THUMOS14 format: 'video start end class_id score' per line."""
    detections = well_formed(detections)
    lines = [f"{r.video} {r.start:.2f} {r.end:.2f} {class_ids[r.label]} {r.score:.6f}"
             for r in detections.itertuples(index=False)]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))

