"""What the evaluator reads: the ground truth of a subset (from any annotation source, by
the one reader, annotation_reader.py) and a results file (ActivityNet JSON or THUMOS14 txt),
both checked; every problem an InputError naming the file. Importable without torch."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from readers import annotation_reader
from core.errors import InputError
from core.names import check_video_name
from core.safe_load import read_rows

# THUMOS14 detection classes and their UCF101 ids (detclasslist.txt of the official kit).
THUMOS14_CLASS_IDS = {
    "BaseballPitch": 7, "BasketballDunk": 9, "Billiards": 12, "CleanAndJerk": 21,
    "CliffDiving": 22, "CricketBowling": 23, "CricketShot": 24, "Diving": 26,
    "FrisbeeCatch": 31, "GolfSwing": 33, "HammerThrow": 36, "HighJump": 40,
    "JavelinThrow": 45, "LongJump": 51, "PoleVault": 68, "Shotput": 79,
    "SoccerPenalty": 85, "TennisSwing": 92, "ThrowDiscus": 93, "VolleyballSpiking": 97,
}
SEGMENT_COLUMNS = ["video", "label", "start", "end"]
PREDICTION_COLUMNS = SEGMENT_COLUMNS + ["score"]



class InputWarning(UserWarning):
    """Input accepted after a repair (swapped segment ends, dropped classes)."""


@contextlib.contextmanager
def warnings_on_stderr(prog):
    """The warnings raised within (every InputWarning, even a repeated one), each printed
    once the block has ended, as one line on stderr: 'PROG: warning: ...'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        yield
    for w in caught:
        print(f"{prog}: warning: {w.message}", file=sys.stderr)


@dataclass
class GroundTruth:
    segments: pd.DataFrame      # video, label, start, end; file order kept
    videos: list[str]           # evaluated videos of the subset (also those with no segment)
    classes: list[str]          # class names, in class-index order
    ambiguous: pd.DataFrame     # video, start, end (empty when none)
    class_ids: dict[str, int]   # class name -> official id


# ----------------------------------------------------------------------------- reading

def _to_float(path: Path, rows: list[list[str]], column: int, what: str) -> np.ndarray:
    try:
        return np.array([r[column] for r in rows], dtype=float)
    except ValueError:
        for r in rows:
            try:
                float(r[column])
            except ValueError:
                raise InputError(f"{path}: {what} is not a number: {r[column]!r} "
                                 f"(row {' '.join(r)!r})") from None
        raise


def _check_segments(df: pd.DataFrame, source, what: str) -> pd.DataFrame:
    """Reject NaN/Inf times (and scores); swap start > end with a warning."""
    numeric = [c for c in ("start", "end", "score") if c in df.columns]
    bad = ~np.isfinite(df[numeric].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise InputError(f"{source}: {int(bad.sum())} {what} with NaN/Inf "
                         f"{'/'.join(numeric)} (first in video {first['video']})")
    swapped = (df["start"] > df["end"]).to_numpy()
    if swapped.any():
        warnings.warn(f"{source}: {int(swapped.sum())} {what} had start > end; "
                      f"start and end swapped", InputWarning, stacklevel=3)
        df = df.copy()
        df.loc[swapped, ["start", "end"]] = df.loc[swapped, ["end", "start"]].to_numpy()
    return df


def _segments_frame(videos, labels, starts, ends) -> pd.DataFrame:
    return pd.DataFrame({"video": pd.Series(videos, dtype=object),
                         "label": pd.Series(labels, dtype=object),
                         "start": np.asarray(starts, dtype=float),
                         "end": np.asarray(ends, dtype=float)})


def class_ids(classes: list[str]) -> dict[str, int]:
    """Official id of each class: the UCF101 id for THUMOS14 classes, else index + 1."""
    if set(classes) <= set(THUMOS14_CLASS_IDS):
        return {c: THUMOS14_CLASS_IDS[c] for c in classes}
    return {c: i + 1 for i, c in enumerate(classes)}


def _resolve_subset(requested: str, present: set[str], source) -> str:
    """Map 'test'/'train' onto the subset names a bundle uses."""
    if requested in present:
        return requested
    if "test" in present:               # THUMOS14 style: validation (train), test
        aliases = {"train": "validation", "training": "validation", "val": "validation"}
    else:                               # ActivityNet style: training, validation
        aliases = {"test": "validation", "train": "training", "val": "validation"}
    name = aliases.get(requested)
    if name not in present:
        raise InputError(f"{source}: no subset {requested!r} (present: {sorted(present)})")
    return name


def _empty_ambiguous() -> pd.DataFrame:
    return pd.DataFrame({"video": pd.Series([], dtype=object),
                         "start": np.zeros(0), "end": np.zeros(0)})


def _ambiguous_frame(rows) -> pd.DataFrame:
    if not rows:
        return _empty_ambiguous()
    video, start, end = zip(*rows)
    return pd.DataFrame({"video": pd.Series(video, dtype=object),
                         "start": np.asarray(start, dtype=float),
                         "end": np.asarray(end, dtype=float)})


# ----------------------------------------------------------------------------- ground truth

def load_ground_truth(path, subset: str = "test", classes=None) -> GroundTruth:
    """Load a gt.json (ActivityNet style), a W-TALC ``*-Annotations`` folder or an
    official THUMOS14 annotation folder (``<Class>_<subset>.txt`` files), through the
    project's one annotation reader (annotation_reader.py). Segments that end before they
    start are swapped, with an InputWarning giving their count. classes: the class list to
    evaluate with (default: the source's own)."""
    ann = annotation_reader.read_annotations(path, subset)
    for message in ann.warnings:
        warnings.warn(message, InputWarning, stacklevel=2)
    return ground_truth_of(ann, subset, classes)


def ground_truth_of(ann: annotation_reader.Annotations, subset: str = "test",
                    classes=None) -> GroundTruth:
    """The GroundTruth of one subset of read annotations."""
    present = {a.subset for a in ann.videos.values()}
    name = _resolve_subset(subset, present, ann.source) if present else subset
    videos = ann.subset(name)
    rows = [(v, c, s, e) for v in videos for c, s, e in ann.videos[v].segments]
    segments = _segments_frame(*zip(*rows)) if rows else _segments_frame([], [], [], [])
    if ann.class_ids is None and name != "test":       # another subset's Ambiguous file
        folder = ann.source if os.path.isdir(ann.source) else os.path.dirname(ann.source)
        ambiguous, _ = annotation_reader.read_ambiguous(
            os.path.join(folder, f"Ambiguous_{name}.txt"))
    else:                               # the test subset's, or the official folder's own
        ambiguous = ann.ambiguous
    classes = list(ann.classes if classes is None else classes)
    unknown = sorted(set(segments["label"]) - set(classes))
    if unknown:
        raise InputError(f"{ann.source}: labels not in the class list: {unknown[:5]}")
    ids = ann.class_ids if ann.class_ids is not None else class_ids(classes)
    return GroundTruth(segments, videos, classes, _ambiguous_frame(ambiguous), ids)


# ----------------------------------------------------------------------------- predictions

def load_predictions(path, gt: GroundTruth, ignore_unknown_classes: bool = False) -> pd.DataFrame:
    """ActivityNet result JSON or THUMOS14 txt (``video start end class_id score``).

    Returns columns video, label, start, end, score.  A class absent from ``gt`` is an
    InputError unless ``ignore_unknown_classes`` (then dropped, with a warning)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        pred = _predictions_from_json(path, gt)
    else:
        pred = _predictions_from_txt(path, gt)
    known = pred["label"].isin(gt.classes).to_numpy()
    if not known.all():
        unknown = sorted(set(map(_shown, map(str, pred.loc[~known, "label"]))))
        if not ignore_unknown_classes:
            raise InputError(f"{path}: {int((~known).sum())} predictions of classes absent "
                             f"from the ground truth: {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''}")
        warnings.warn(f"{path}: dropped {int((~known).sum())} predictions of "
                      f"{len(unknown)} classes absent from the ground truth",
                      InputWarning, stacklevel=2)
        pred = pred.loc[known].reset_index(drop=True)
    return _check_segments(pred, path, "predictions")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _prediction_row(video, e, name_of_id: dict) -> tuple:
    """(video, label, start, end, score) of one ActivityNet result entry; ValueError saying
    what is wrong. Times and score must be JSON numbers; the label a class name or an
    integer class id."""
    if not isinstance(e, dict):
        raise ValueError(f"an entry is a {type(e).__name__}, expected an object")
    for key in ("segment", "label", "score"):
        if key not in e:
            raise ValueError(f"missing field '{key}'")
    segment, label, score = e["segment"], e["label"], e["score"]
    if not (isinstance(segment, list) and len(segment) == 2 and all(map(_is_number, segment))):
        raise ValueError(f"segment {json.dumps(segment)[:60]} is not [start, end] (two numbers)")
    if not _is_number(score):
        raise ValueError(f"score {json.dumps(score)[:60]} is not a number")
    if isinstance(label, str):
        pass
    elif _is_number(label) and float(label).is_integer():        # a class id, not a name
        label = name_of_id.get(int(label), f"class id {int(label)}")
    else:
        raise ValueError(f"label {json.dumps(label)[:60]} is neither a class name nor an "
                         f"integer class id")
    return video, label, float(segment[0]), float(segment[1]), float(score)


def _predictions_from_json(path: Path, gt: GroundTruth) -> pd.DataFrame:
    results = annotation_reader.read_json_object(path).get("results")
    if not isinstance(results, dict):
        raise InputError(f"{path}: no 'results' object")
    name_of_id = {i: c for c, i in gt.class_ids.items()}
    rows = []
    for video, entries in results.items():
        video = check_video_name(video, path)
        if not isinstance(entries, list):
            raise InputError(f"{path}: malformed prediction in video {_shown(video)}: "
                             f"expected a list of predictions, found {type(entries).__name__}")
        for e in entries:
            try:
                rows.append(_prediction_row(video, e, name_of_id))
            except (ValueError, OverflowError) as err:
                raise InputError(f"{path}: malformed prediction in video {_shown(video)}: "
                                 f"{err}") from None
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object if c in ("video", "label") else float)
                             for c in PREDICTION_COLUMNS})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def _shown(name: str) -> str:
    """A name from a file as it can appear in a one-line message."""
    return name if name.isprintable() and len(name) <= 80 else repr(name[:80])


def _predictions_from_txt(path: Path, gt: GroundTruth) -> pd.DataFrame:
    rows = [fields for _, fields in read_rows(path, 5, "video start end class_id score")]
    ids = _to_float(path, rows, 3, "class id")
    name_of_id = {i: c for c, i in gt.class_ids.items()}
    labels = [name_of_id.get(int(i), f"class id {i:g}") if float(i).is_integer()
              else f"class id {i:g}" for i in ids]
    videos = [check_video_name(r[0][:-4] if r[0].endswith(".mp4") else r[0], path)
              for r in rows]
    pred = _segments_frame(videos, labels, _to_float(path, rows, 1, "start"),
                           _to_float(path, rows, 2, "end"))
    pred["score"] = _to_float(path, rows, 4, "score")
    return pred
