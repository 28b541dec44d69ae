"""Time evaluate.evaluate_detection on a THUMOS14-sized and an ActivityNet1.2-sized case.

    python bench/bench_eval.py [--repeat 3] [--seed 0]

THUMOS14: the real W-TALC test ground truth (212 videos), 50,000 random but plausible
predictions, 9 tIoUs (0.1:0.1:0.9).  ActivityNet1.2: the real validation annotations
of the W-TALC-style bundle (2,383 videos) repeated under new names up to 4,900 videos,
100 classes, 100 predictions per video, 10 tIoUs (0.5:0.05:0.95).  Prints the best of
``--repeat`` runs per protocol, and the same for the real PMIL prediction file when
it is present.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from readers import annotation_reader  # noqa: E402
from evaluation import eval_inputs  # noqa: E402
import evaluate  # noqa: E402

THUMOS_GT = ROOT / "data/thumos14/Thumos14reduced-Annotations"
ANET_GT = ROOT / "data/activitynet12/ActivityNet1.2-Annotations"
PMIL = Path("/work/shared/data/predictions/pmil_base_thumos14_test.json")
TARGETS = {("thumos14-sized", "activitynet"): 0.2, ("thumos14-sized", "thumos14"): 0.7,
           ("activitynet12-sized", "activitynet"): 1.0}


def durations(folder: Path, gt: eval_inputs.GroundTruth) -> pd.Series:
    """Video duration (s) of the videos of ``gt``, from the bundle's duration.npy."""
    ann = annotation_reader.read_wtalc(str(folder))
    return pd.Series({v: a.duration for v, a in ann.videos.items()}, dtype=float).reindex(gt.videos)


def plausible_predictions(gt, duration: pd.Series, n: int, rng) -> pd.DataFrame:
    """Half jittered copies of ground-truth segments (right or wrong class), half random
    segments in random videos, labelled mostly with a class present in the video.
    Scores are higher for the jittered ones, with noise."""
    seg = gt.segments
    n_near = n // 2
    pick = seg.iloc[rng.integers(0, len(seg), n_near)]
    length = (pick["end"] - pick["start"]).to_numpy()
    shift = rng.normal(0, 0.3, (n_near, 2)) * length[:, None]
    labels = np.array(pick["label"], dtype=object)
    wrong = rng.random(n_near) < 0.2
    labels[wrong] = rng.choice(gt.classes, wrong.sum())
    near = pd.DataFrame({"video": np.array(pick["video"], dtype=object), "label": labels,
                         "start": pick["start"].to_numpy() + shift[:, 0],
                         "end": pick["end"].to_numpy() + shift[:, 1],
                         "score": rng.normal(1.0, 0.5, n_near)})

    n_far = n - n_near
    videos = rng.choice(gt.videos, n_far)
    video_class = seg.drop_duplicates("video").set_index("video")["label"]
    labels = np.array(video_class.reindex(videos), dtype=object)
    random_label = pd.isna(labels) | (rng.random(n_far) < 0.3)
    labels[random_label] = rng.choice(gt.classes, random_label.sum())
    total = duration.reindex(videos).fillna(200.0).to_numpy()
    start = rng.random(n_far) * total
    far = pd.DataFrame({"video": videos, "label": labels, "start": start,
                        "end": np.minimum(start + rng.exponential(0.1, n_far) * total, total),
                        "score": rng.normal(0.0, 0.5, n_far)})
    pred = pd.concat([near, far], ignore_index=True)
    lo, hi = pred[["start", "end"]].min(axis=1), pred[["start", "end"]].max(axis=1)
    pred["start"], pred["end"] = lo.clip(lower=0), hi
    return pred.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def repeat_videos(gt: eval_inputs.GroundTruth, n_videos: int) -> eval_inputs.GroundTruth:
    """The ground truth with its videos repeated under new names up to ``n_videos``."""
    copies = -(-n_videos // len(gt.videos))
    names = [f"{v}~{k}" if k else v for k in range(copies) for v in gt.videos][:n_videos]
    keep = set(names)
    parts = [gt.segments.assign(video=gt.segments["video"] + (f"~{k}" if k else ""))
             for k in range(copies)]
    segments = pd.concat(parts, ignore_index=True)
    segments = segments[segments["video"].isin(keep)].reset_index(drop=True)
    return eval_inputs.GroundTruth(segments, names, gt.classes, gt.ambiguous, gt.class_ids)


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def report(case, gt, pred, tious, repeat, protocols=evaluate.PROTOCOLS):
    print(f"{case}: {len(gt.videos)} videos, {len(gt.classes)} classes, "
          f"{len(gt.segments)} ground-truth segments, {len(pred)} predictions, "
          f"{len(tious)} tIoUs")
    for protocol in protocols:
        result = {}

        def run():
            result.update(evaluate.evaluate_detection(pred, gt, tious, protocol))
        seconds = best_time(run, repeat)
        target = TARGETS.get((case, protocol))
        note = f" (target <= {target} s: {'ok' if seconds <= target else 'MISSED'})" \
            if target else ""
        print(f"  {protocol:<12} best of {repeat}: {seconds:.3f} s{note}; "
              f"mAP@{tious[0]:g} = {100 * result['mAP'][0]:.2f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    thumos = eval_inputs.load_ground_truth(THUMOS_GT, "test")
    pred = plausible_predictions(thumos, durations(THUMOS_GT, thumos), 50_000, rng)
    report("thumos14-sized", thumos, pred, evaluate.THUMOS_TIOUS, args.repeat)

    anet_val = eval_inputs.load_ground_truth(ANET_GT, "test")
    anet = repeat_videos(anet_val, 4_900)
    duration = durations(ANET_GT, anet_val)
    duration.index = duration.index.astype(str)
    duration = pd.Series({v: duration[v.split("~")[0]] for v in anet.videos})
    pred = plausible_predictions(anet, duration, 100 * len(anet.videos), rng)
    report("activitynet12-sized", anet, pred, evaluate.ANET_TIOUS, args.repeat)

    if PMIL.is_file():
        pred = eval_inputs.load_predictions(PMIL, thumos)
        report("pmil_base (real file)", thumos, pred, evaluate.THUMOS_TIOUS, args.repeat)
    else:
        print(f"{PMIL} not found: real-file timing skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
