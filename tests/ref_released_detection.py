"""A plain transcription of the released EM-MIL test() loop (written for the tests).

airmachine/EM-MIL-WeaklyActionDetection, test.py: for each class whose video score is at
least 0.15, score every snippet by lam*q + lam*p_c (lam = 0.8), normalise it by
(s - mean) / (max - min), and walk the snippets one by one: a snippet above 0.05 opens a
proposal, the first snippet at or below it closes the proposal [start, j) and writes
"name start end class+1 1" with the times (snippet index x convert_ratio) rounded to two
decimals.  A proposal still open after the last snippet is never written.  Used only to
check detection.py's --detection released.
"""
import numpy as np


def released_lines(name, q, p, video_scores, convert_ratio, cls_threshold=0.15,
                   loc_threshold=0.05, lam=0.8):
    """q: (T,), p: (T, K), video_scores: (K,). Returns [(name, start, end, class_id, 1)]."""
    lines = []
    n_snippets, n_classes = p.shape
    if n_snippets == 0:                 # the released code fails on the max of no snippet
        return lines
    for i in range(n_classes):
        if video_scores[i] < cls_threshold:
            continue
        score = lam * q + lam * p[:, i]
        size = score.max() - score.min()
        with np.errstate(invalid="ignore", divide="ignore"):     # a flat curve: 0 / 0
            score = (score - score.mean()) / size
        is_open, start = False, 0
        for j in range(n_snippets):
            if float(score[j]) > loc_threshold:
                if not is_open:
                    is_open, start = True, j
            elif is_open:
                lines.append((name, round(float(start) * convert_ratio, 2),
                              round(float(j) * convert_ratio, 2), i + 1, 1))
                is_open = False
    return lines


def normalise_released(s):
    """(s - mean) / (max - min) over time, per class, as the released test code.
    s: (T, C). A flat curve gives zeros. (detection.detect_batch computes the same on curves
    laid end to end; a test checks the two against each other.)"""
    spread = s.max(axis=0) - s.min(axis=0)
    return (s - s.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
