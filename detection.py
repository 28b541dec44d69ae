"""Scores to segments: class selection, localisation score, runs of snippets, confidences.

All functions work on NumPy arrays of one video, vectorised over snippets and classes.
"""
import json

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
    spread = s.max(axis=0) - s.min(axis=0)
    return (s - s.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


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


def detect_video(name, scores, video_scores, *, cls_threshold, loc_threshold,
                 snippet_seconds, duration, classes):
    """Segments of one video as a DataFrame (video, label, start, end, score).

    scores: (T, K) localisation score of every class (EM-MIL: localisation_scores(q, p, lam));
    video_scores: (K,). Only the classes chosen by select_classes are localised.
    Confidence of a run = mean of the raw localisation score s_c over the run's snippets
    times the video score of c: in [0, 1], it ranks runs within and across videos.
    """
    chosen = select_classes(video_scores, cls_threshold)               # (C,)
    s = scores[:, chosen]                                              # (T, C)
    col, start, end = find_runs(normalise_released(s) > loc_threshold)
    cumsum = np.vstack([np.zeros((1, s.shape[1])), np.cumsum(s, axis=0)])  # (T + 1, C)
    mean_s = (cumsum[end, col] - cumsum[start, col]) / (end - start)
    label_idx = chosen[col]
    t0 = snippets_to_seconds(start, snippet_seconds, duration)
    t1 = snippets_to_seconds(end, snippet_seconds, duration)
    keep = t1 > t0                      # a run entirely past the annotated duration is empty
    return pd.DataFrame({
        "video": name,
        "label": [classes[i] for i in label_idx[keep]],
        "start": t0[keep],
        "end": t1[keep],
        "score": (mean_s * video_scores[label_idx])[keep],
    }, columns=COLUMNS)


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

