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
    s: (T, C). A flat curve gives zeros."""
    return normalise_columns(s, np.full(s.shape[1], s.shape[0]))


def find_runs(active):
    """Maximal runs of True along time, for every column at once.

    active: (T, C) bool. Returns (column, start, end) int arrays, end exclusive,
    ordered by column then start. A run reaching the last snippet ends at T.
    """
    T, C = active.shape
    padded = np.zeros((C, T + 2), dtype=np.int8)
    padded[:, 1:-1] = active.T
    change = np.diff(padded, axis=1)                # (C, T + 1): +1 opens, -1 closes
    col_s, start = np.nonzero(change == 1)
    _, end = np.nonzero(change == -1)
    return col_s, start, end


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


def run_scores(s, col, start, end, kind, margin, lengths=None):
    """Score of each run (col, [start, end)) of the curves s (T, C).

    mean: mean of s over the run. oic: that mean minus the mean over the outer region,
    `margin` x the run's length on each side (clipped to the curve's length, `lengths` (C,)
    when the columns are padded), as in AutoLoc.
    """
    T = s.shape[0] if lengths is None else lengths[col]
    cumsum = np.vstack([np.zeros((1, s.shape[1])), np.cumsum(s, axis=0)])  # (T + 1, C)
    inner = (cumsum[end, col] - cumsum[start, col]) / (end - start)
    if kind == "mean":
        return inner
    pad = np.maximum(1, np.round(margin * (end - start))).astype(int)
    lo, hi = np.maximum(start - pad, 0), np.minimum(end + pad, T)
    outer_sum = (cumsum[hi, col] - cumsum[lo, col]) - (cumsum[end, col] - cumsum[start, col])
    outer_len = (hi - lo) - (end - start)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    return inner - outer


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


def stack_columns(curves):
    """Curves of different lengths [(T_i,)] -> (max T, n) array, zero beyond each length."""
    lengths = np.array([len(c) for c in curves], dtype=int)
    out = np.zeros((lengths.max(initial=1), len(curves)))
    for j, c in enumerate(curves):
        out[:len(c), j] = c
    return out, lengths


def normalise_columns(s, lengths):
    """normalise_released for padded columns: statistics over each column's real length."""
    real = np.arange(s.shape[0])[:, None] < lengths[None, :]              # (T, n)
    mean = s.sum(axis=0) / np.maximum(lengths, 1)
    spread = np.where(real, s, -np.inf).max(axis=0) - np.where(real, s, np.inf).min(axis=0)
    norm = (s - mean) / np.where(spread > 0, spread, 1.0)
    return np.where(real, norm, -np.inf)                                  # padding never fires


def _runs_of_columns(curves, post, chunk=64):
    """Runs and their scores in many curves [(T_j,)]: (column, start, end, score) arrays.
    Curves are sorted by length and handled `chunk` at a time, so padding stays small."""
    order = np.argsort([len(c) for c in curves], kind="stable")
    parts = []
    for group in np.array_split(order, max(1, -(-len(order) // chunk))):
        s, lengths = stack_columns([curves[j] for j in group])          # (T, n)
        norm = normalise_columns(s, lengths)
        runs = [find_runs(norm > t) for t in post.loc_thresholds]
        col, start, end = (np.concatenate(x) for x in zip(*runs))
        if len(post.loc_thresholds) > 1:                               # same run, several thresholds
            _, first = np.unique(np.stack([col, start, end]), axis=1, return_index=True)
            col, start, end = col[first], start[first], end[first]
        score = run_scores(s, col, start, end, post.score, post.oic_margin, lengths)
        parts.append((group[col], start, end, score))
    if not parts:
        return (np.zeros(0, dtype=int),) * 3 + (np.zeros(0),)
    return tuple(np.concatenate(x) for x in zip(*parts))


def detect_batch(scores, video_scores, post, *, snippet_seconds, durations, ambiguous=None,
                 chunk=64):
    """Segments of many videos at once, as arrays (video_index, label_index, start, end, score).

    scores: [(T_i, K)] localisation score of every class of each video (EM-MIL:
    localisation_scores(q, p, lam)); video_scores: (N, K); durations: (N,) seconds;
    ambiguous: {video_index: [(start, end)]} (used with post.drop_ambiguous); chunk: curves
    handled together (sorted by length). Per video, only the classes chosen by select_classes are localised; every chosen
    (video, class) curve becomes one column and runs are found in all columns together.
    Confidence of a run (default 'mean') = mean of the raw localisation score s_c over the
    run's snippets times the video score of c: in [0, 1], it ranks runs across videos.
    """
    chosen = [select_classes(v, post.cls_threshold) for v in video_scores]
    col_video = np.repeat(np.arange(len(scores)), [len(c) for c in chosen]).astype(int)
    col_class = np.concatenate(chosen).astype(int) if chosen else np.zeros(0, dtype=int)
    curves = [scores[v][:, c] for v, c in zip(col_video, col_class)]
    col, start, end, run_score = _runs_of_columns(curves, post, chunk)
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

