"""A plain transcription of the official ActivityNet detection AP (written for the tests).

It follows activitynet/ActivityNet Evaluation/eval_detection.py
(`compute_average_precision_detection` and `utils.interpolated_prec_rec`) step by step,
one class at a time and one prediction at a time, with no vectorisation: the class's
predictions in file order ranked by `scores.argsort()[::-1]` (numpy's default sort,
reversed), each taking the first unlocked ground truth of its video in the order
`tiou.argsort()[::-1]`.  Used only to check evaluate.py's vectorised version.
"""
import numpy as np


def segment_iou(start, end, g_start, g_end):
    """tIoU of one segment against (n,) candidate segments, as the official utils."""
    inter = (np.minimum(end, g_end) - np.maximum(start, g_start)).clip(0)
    union = (g_end - g_start) + (end - start) - inter
    return inter.astype(float) / union


def interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def class_ap(gt_rows, pred_rows, tious):
    """gt_rows: [(video, start, end)] of one class in file order; pred_rows:
    [(video, start, end, score)] of that class in file order.  Returns (T,) AP."""
    npos = float(len(gt_rows))
    lock = -np.ones((len(tious), len(gt_rows)))
    scores = np.array([r[3] for r in pred_rows], dtype=float)
    ranked = [pred_rows[i] for i in scores.argsort()[::-1]]
    tp = np.zeros((len(tious), len(ranked)))
    fp = np.zeros((len(tious), len(ranked)))
    for idx, (video, start, end, _) in enumerate(ranked):
        mine = [k for k, g in enumerate(gt_rows) if g[0] == video]     # class gt order
        if not mine:
            fp[:, idx] = 1
            continue
        g_start = np.array([gt_rows[k][1] for k in mine], dtype=float)
        g_end = np.array([gt_rows[k][2] for k in mine], dtype=float)
        tiou = segment_iou(start, end, g_start, g_end)
        for t, thr in enumerate(tious):
            for j in tiou.argsort()[::-1]:
                if tiou[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock[t, mine[j]] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, mine[j]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall = tp_c / npos
    precision = tp_c / (tp_c + fp_c)
    return np.array([interpolated_prec_rec(precision[t], recall[t])
                     for t in range(len(tious))])


def official_map(pred, gt_segments, classes, tious):
    """mAP (T,) and per-class AP (C, T) over the classes that have ground truth.

    pred: DataFrame video, label, start, end, score (file order); gt_segments: DataFrame
    video, label, start, end (file order)."""
    per_class = []
    for c in classes:
        g = gt_segments[gt_segments["label"] == c]
        if not len(g):
            continue
        p = pred[pred["label"] == c]
        gt_rows = list(zip(g["video"], g["start"], g["end"]))
        pred_rows = list(zip(p["video"], p["start"], p["end"], p["score"]))
        per_class.append(class_ap(gt_rows, pred_rows, tious))
    per_class = np.array(per_class)
    return per_class.mean(axis=0), per_class
