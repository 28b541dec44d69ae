"""Scores to segments: class selection, localisation score, runs of snippets, confidences.

All functions work on NumPy arrays of one video, vectorised over snippets and classes.
"""
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset import snippets_to_seconds
from utils import atomic_write_text

COLUMNS = ["video", "label", "start", "end", "score"]


def select_classes(video_scores, threshold):
    """Indices of the classes to localise: video score >= threshold, else the top-1 class.

    video_scores: (K,). Returns int array (C,).
    """
    chosen = np.flatnonzero(video_scores >= threshold)
    return chosen if chosen.size else np.array([int(np.argmax(video_scores))])


def localisation_scores(q, p, lam):
    """s_c = lam * q + (1 - lam) * p_c. q: (T,), p: (T, C) -> (T, C)."""
    return lam * q[:, None] + (1.0 - lam) * p


def attention_scores(attention, class_probs):
    """UntrimmedNet baseline: attention rescaled to max 1 over time, times class probabilities.
    attention: (T,), class_probs: (T, K) -> (T, K) in [0, 1]."""
    return (attention / attention.max())[:, None] * class_probs


def normalise_released(s):
    """(s - mean) / (max - min) over time, per class, as the released test code.
    s: (T, C). A flat curve gives zeros. (detect_batch computes the same on curves laid end
    to end; a test checks the two against each other.)"""
    spread = s.max(axis=0) - s.min(axis=0)
    return (s - s.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


@dataclass(frozen=True)
class PostProcess:
    """How runs of snippets become scored segments (defaults: opts.py, the released ones)."""
    cls_threshold: float          # localise classes with video score >= this (else top-1)
    loc_thresholds: tuple         # one threshold (released) or a sweep whose runs are pooled
    score: str = "mean"           # 'mean': mean s_c over the run; 'oic': outer-inner contrast
    oic_margin: float = 0.25      # outer region on each side, as a fraction of the run length
    nms: str = "none"             # 'none', 'hard' (per-class NMS) or 'soft' (Gaussian soft-NMS)
    nms_iou: float = 0.5          # hard NMS: drop a segment overlapping a better one by more
    soft_sigma: float = 0.3       # soft-NMS: score *= exp(-tIoU^2 / sigma)
    drop_ambiguous: bool = False  # drop segments that overlap an Ambiguous segment

    @classmethod
    def from_opts(cls, opts):
        return cls(opts.cls_threshold, tuple(opts.loc_threshold), opts.score, opts.oic_margin,
                   opts.nms, opts.nms_iou, opts.soft_sigma, opts.drop_ambiguous)


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


def _runs_of_columns(curves, post):
    """Runs and their scores in many curves [(T_j,)], found in one pass over all of them laid
    end to end (no padding, no loop over curves). Returns (column, start, end, score) arrays,
    ordered by column, then start."""
    lengths = np.array([len(c) for c in curves], dtype=int)
    live = np.flatnonzero(lengths > 0)                        # an empty curve has no runs
    if live.size == 0:
        return (np.zeros(0, dtype=int),) * 3 + (np.zeros(0),)
    flat = np.concatenate([curves[j] for j in live]).astype(float)      # (N,)
    n = lengths[live]
    first = np.concatenate([[0], np.cumsum(n)[:-1]])          # where each curve starts in flat
    which = np.repeat(np.arange(live.size), n)                # (N,) its curve
    # the released normalisation, (s - mean) / (max - min), per curve
    mean = np.add.reduceat(flat, first) / n
    spread = np.maximum.reduceat(flat, first) - np.minimum.reduceat(flat, first)
    norm = (flat - mean[which]) / np.where(spread > 0, spread, 1.0)[which]
    # one inactive slot before every curve and after the last keeps runs inside their curve
    slot = np.arange(flat.size) + which + 1                   # (N,) position with the gaps
    base = first + np.arange(live.size) + 1                   # slot of each curve's first snippet
    col, start, end = [], [], []
    for threshold in post.loc_thresholds:
        active = np.zeros(flat.size + live.size + 1, dtype=np.int8)
        active[slot] = norm > threshold
        change = np.diff(active)                              # +1 opens a run, -1 closes it
        opens, closes = np.flatnonzero(change == 1) + 1, np.flatnonzero(change == -1) + 1
        j = np.searchsorted(base, opens, side="right") - 1
        col.append(j)
        start.append(opens - base[j])
        end.append(closes - base[j])
    col, start, end = (np.concatenate(x) for x in (col, start, end))
    if len(post.loc_thresholds) > 1:                         # same run, several thresholds
        _, keep = np.unique(np.stack([col, start, end]), axis=1, return_index=True)
        col, start, end = col[keep], start[keep], end[keep]
    score = flat_run_scores(flat, first, n, col, start, end, post.score, post.oic_margin)
    return live[col], start, end, score


def flat_run_scores(flat, first, n, col, start, end, kind, margin):
    """Score of each run (col, [start, end)) of curves laid end to end (curve j is
    flat[first[j]:first[j] + n[j]]). mean: mean of the curve over the run. oic: that mean minus
    the mean over the outer region, `margin` x the run's length on each side (clipped to the
    curve), as in AutoLoc."""
    cumsum = np.concatenate([[0.0], np.cumsum(flat)])
    at = first[col]

    def total(lo, hi):
        return cumsum[at + hi] - cumsum[at + lo]

    inner = total(start, end) / (end - start)
    if kind == "mean":
        return inner
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
    """
    chosen = [select_classes(v, post.cls_threshold) for v in video_scores]
    col_video = np.repeat(np.arange(len(scores)), [len(c) for c in chosen]).astype(int)
    col_class = np.concatenate(chosen).astype(int) if chosen else np.zeros(0, dtype=int)
    curves = [scores[v][:, c] for v, c in zip(col_video, col_class)]
    col, start, end, run_score = _runs_of_columns(curves, post)
    video, label = col_video[col], col_class[col]
    conf = run_score * video_scores[video, label]
    duration = np.asarray(durations, dtype=float)[video]
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
    }, columns=COLUMNS)


def detect_video(name, scores, video_scores, post, *, snippet_seconds, duration, classes,
                 ambiguous=()):
    """Segments of one video as a DataFrame (video, label, start, end, score); see
    detect_batch. scores: (T, K); video_scores: (K,); ambiguous: [(start, end)]."""
    found = detect_batch([scores], video_scores[None], post, snippet_seconds=snippet_seconds,
                         durations=[duration], ambiguous={0: list(ambiguous)})
    return segments_frame([name], found, classes)


def write_results_json(path, detections):
    """ActivityNet result format: {"version", "external_data", "results": {video: [...]}}."""
    results = {}
    for row in detections.itertuples(index=False):
        results.setdefault(row.video, []).append({
            "label": row.label,
            "segment": [round(float(row.start), 3), round(float(row.end), 3)],
            "score": float(row.score)})
    payload = {"version": "EM-MIL reimplementation", "results": results,
               "external_data": {"used": False, "details": "features only"}}
    atomic_write_text(path, json.dumps(payload) + "\n")


def write_results_txt(path, detections, class_ids):
    """Official THUMOS14 format: 'video start end class_id score' per line."""
    lines = [f"{r.video} {r.start:.2f} {r.end:.2f} {class_ids[r.label]} {r.score:.6f}"
             for r in detections.itertuples(index=False)]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))

