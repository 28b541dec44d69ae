"""Temporal action localisation evaluation: detection mAP and classification mAP.

Two detection protocols are implemented, each reproducing an official tool:

* ``activitynet``: the ActivityNet ``eval_detection.py`` semantics (tIoU, each
  prediction greedily takes the best still-free ground truth with tIoU >= threshold,
  all-point interpolated AP).
* ``thumos14``: the THUMOS14 Matlab kit (``TH14evalDet.m``) semantics (each ground
  truth greedily takes the best still-free detection with overlap > threshold,
  unmatched detections touching an ``Ambiguous`` segment are dropped,
  non-interpolated AP).

Both greedy matchings are computed for all classes, videos and thresholds at once
(protocols.py).  Importable without torch.

Command line: ``python evaluate.py PRED --gt GT [options]`` (``--help``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.eval_inputs import (GroundTruth, load_ground_truth, load_predictions,
                                    warnings_on_stderr)
from evaluation.protocols import activitynet_ap, thumos14_ap
from evaluation.tious import (ANET_AVERAGES, ANET_TIOUS, THUMOS_AVERAGES, THUMOS_TIOUS,
                             tiou_averages)
from core.cli import OneLineParser, cli
from core.errors import InputError
from core.files import atomic_write_json
from option_checks import check_rules

PROTOCOLS = ("activitynet", "thumos14")
# ----------------------------------------------------------------------------- detection mAP

def category_codes(values, categories) -> np.ndarray:
    """(n,) int64: the index of each value in `categories`, -1 for one absent."""
    return pd.Index(categories).get_indexer(np.asarray(values, dtype=object)).astype(np.int64)


def evaluate_detection(pred: pd.DataFrame, gt: GroundTruth, tious,
                       protocol: str = "activitynet") -> dict:
    """Detection AP per class and threshold.

    Returns {"mAP": (T,), "per_class": (C, T)}; mAP is the mean over the classes that
    have ground-truth instances (per_class is NaN for the others)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (choose from {PROTOCOLS})")
    tious = np.atleast_1d(np.asarray(tious, dtype=float))
    if not len(tious) or not ((tious >= 0) & (tious <= 1)).all():
        raise ValueError(f"tIoU thresholds must be a non-empty list in [0, 1], got {tious}")
    # Video codes in name order (the TH14 kit ranks score ties by video name).
    sizes = [len(gt.segments), len(pred), len(gt.ambiguous)]
    names = np.concatenate([np.asarray(gt.segments["video"], dtype=object),
                            np.asarray(pred["video"], dtype=object),
                            np.asarray(gt.ambiguous["video"], dtype=object)])
    codes, videos = pd.factorize(names, sort=True)
    g_vid, p_vid, a_vid = np.split(codes.astype(np.int64), np.cumsum(sizes)[:-1])
    p = dict(cls=category_codes(pred["label"], gt.classes), vid=p_vid,
             start=pred["start"].to_numpy(float), end=pred["end"].to_numpy(float),
             score=pred["score"].to_numpy(float))
    if (p["cls"] < 0).any():
        unknown = sorted(set(map(str, pred["label"][p["cls"] < 0])))
        raise InputError(f"predictions of classes absent from the ground truth: {unknown[:5]}")
    g = dict(cls=category_codes(gt.segments["label"], gt.classes), vid=g_vid,
             start=gt.segments["start"].to_numpy(float), end=gt.segments["end"].to_numpy(float))
    n_pos = np.bincount(g["cls"], minlength=len(gt.classes))
    if protocol == "activitynet":
        per_class = activitynet_ap(p, g, tious, len(gt.classes), len(videos), n_pos)
    else:
        amb = dict(vid=a_vid, start=gt.ambiguous["start"].to_numpy(float),
                   end=gt.ambiguous["end"].to_numpy(float))
        per_class = thumos14_ap(p, g, amb, tious, len(gt.classes), len(videos), n_pos)
    per_class[n_pos == 0] = np.nan
    has_gt = n_pos > 0               # mAP is undefined (NaN) when no class has a segment
    mean = per_class[has_gt].mean(axis=0) if has_gt.any() else np.full(len(tious), np.nan)
    return {"mAP": mean, "per_class": per_class}


# ----------------------------------------------------------------------------- classification

def classification_map(scores: np.ndarray, labels: np.ndarray) -> float:
    """Video classification mAP: per class non-interpolated AP over videos (mean of
    the precision at each positive, ranking by score, stable), averaged over the
    classes having at least one positive; NaN (reported as null) when no class has one,
    as the detection mAP is when no class has a ground-truth segment."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(labels) > 0
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = np.take_along_axis(positive, order, axis=0)
    precision = np.cumsum(hits, axis=0) / np.arange(1, len(scores) + 1)[:, None]
    n_pos = hits.sum(axis=0)
    has_pos = n_pos > 0
    if not has_pos.any():
        return float("nan")
    ap = (precision * hits).sum(axis=0)[has_pos] / n_pos[has_pos]
    return float(ap.mean())


# ----------------------------------------------------------------------------- reporting

def _key(t: float) -> str:
    return f"{float(t):g}"


def _value(x):
    return None if x is None or not np.isfinite(x) else float(x)


def build_metrics(protocol, tious, map_values, averages, cmap=None, per_class=None,
                  classes=None) -> dict:
    """The metrics dictionary written as JSON (values are fractions)."""
    tious = np.asarray(tious, dtype=float)
    map_values = np.asarray(map_values, dtype=float)
    average_map = {}
    for name, (lo, hi) in averages.items():
        inside = (tious >= lo - 1e-9) & (tious <= hi + 1e-9)
        if not inside.any():
            raise ValueError(f"average {name}: no tIoU in [{lo}, {hi}]")
        average_map[name] = _value(map_values[inside].mean())
    metrics = {"protocol": protocol,
               "tiou": [round(float(t), 10) for t in tious],
               "mAP": {_key(t): _value(v) for t, v in zip(tious, map_values)},
               "average_mAP": average_map,
               "cmAP": _value(cmap)}
    if per_class is not None:
        metrics["per_class"] = {c: {_key(t): _value(v) for t, v in zip(tious, row)}
                                for c, row in zip(classes, np.asarray(per_class, dtype=float))}
    return metrics


def format_table(metrics: dict) -> str:
    """Plain-text table, values in percent."""
    def pct(x):
        return "    --" if x is None else f"{100 * x:6.2f}"
    lines = [f"{'tIoU':<12}{'mAP (%)':>8}"]
    lines += [f"{t:<12}{pct(v):>8}" for t, v in metrics["mAP"].items()]
    lines += [f"{'avg ' + name:<12}{pct(v):>8}" for name, v in metrics["average_mAP"].items()]
    lines.append(f"{'cmAP':<12}{pct(metrics.get('cmAP')):>8}")
    return "\n".join(lines)


def default_tious(gt: GroundTruth):
    """THUMOS14-like ground truth (20 classes): 0.1:0.1:0.9; otherwise 0.5:0.05:0.95."""
    if len(gt.classes) == 20:
        return THUMOS_TIOUS, THUMOS_AVERAGES
    return ANET_TIOUS, ANET_AVERAGES


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="evaluate.py",
        description="Temporal action detection mAP of predictions against a ground truth.",
        epilog="Predictions or ground-truth segments with start > end are accepted: start "
               "and end are swapped, with a warning giving their count (and, for the ground truth, the "
               "first one's video and times). NaN/Inf times or "
               "scores are errors, and so are video names that are not plain names (a path "
               "separator, '.' or '..', whitespace or a control character). Errors in the "
               "input give one line on stderr and exit 2.")
    parser.add_argument("pred", help="predictions: ActivityNet result JSON, or THUMOS14 txt "
                                     "lines 'video start end class_id score'")
    parser.add_argument("--gt", required=True,
                        help="ground truth: gt.json, W-TALC *-Annotations folder, or "
                             "official THUMOS14 annotation folder")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="activitynet",
                        help="activitynet: ActivityNet eval_detection.py (default); "
                             "thumos14: the THUMOS14 kit TH14evalDet.m")
    parser.add_argument("--subset", default="test",
                        help="ground-truth subset (default test; 'test' and 'train' map onto "
                             "the names a bundle uses, e.g. ActivityNet 'validation')")
    parser.add_argument("--tiou", type=float, nargs="+",
                        help="tIoU thresholds (default 0.1:0.1:0.9 for 20-class THUMOS14-like "
                             "ground truth, else 0.5:0.05:0.95)")
    parser.add_argument("--per-class", action="store_true", help="also report AP per class")
    parser.add_argument("--json", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--ignore-unknown-classes", action="store_true",
                        help="drop predictions of classes absent from the ground truth, "
                             "with a warning giving their count (default: an error)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    check_rules(args)
    with warnings_on_stderr("evaluate.py"):
        gt = load_ground_truth(args.gt, args.subset)
        pred = load_predictions(args.pred, gt, args.ignore_unknown_classes)
    tious, averages = default_tious(gt)
    if args.tiou:
        tious, averages = args.tiou, tiou_averages(args.tiou, tious, averages)
    result = evaluate_detection(pred, gt, tious, args.protocol)
    metrics = build_metrics(args.protocol, tious, result["mAP"], averages,
                            per_class=result["per_class"] if args.per_class else None,
                            classes=gt.classes)
    print(f"{len(gt.videos)} videos evaluated, {len(pred)} predictions, "
          f"protocol {args.protocol}")
    print(format_table(metrics))
    if args.per_class:
        print(f"{'AP (%) per class':<24}" + " ".join(f"{t:>6}" for t in metrics["mAP"]))
        for cls, row in metrics["per_class"].items():
            values = " ".join("    --" if v is None else f"{100 * v:6.2f}"
                              for v in row.values())
            print(f"{cls:<24}{values}")
    if args.json:
        atomic_write_json(args.json, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
