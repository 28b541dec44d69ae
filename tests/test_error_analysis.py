"""error_analysis.py: DETAD's labels on a hand-made case, mAP if removed against the evaluator
re-run, per-video mAP against the evaluator on one video, AP by bucket."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import error_analysis as A
from evaluation import eval_inputs as EI
import evaluate as E
from evaluation.protocols import interpolated_ap

ROOT = Path(__file__).resolve().parents[1]
STPN = ROOT / "data/predictions/stpn_thumos14_test.json"
TIOUS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def gt_of(rows, classes=("A", "B"), videos=("v",)):
    seg = pd.DataFrame(rows, columns=["video", "label", "start", "end"])
    amb = pd.DataFrame({"video": pd.Series([], dtype=object), "start": [], "end": []})
    return EI.GroundTruth(seg, list(videos), list(classes), amb, {c: i + 1 for i, c in
                                                                 enumerate(classes)})


def pred_of(rows):
    return pd.DataFrame(rows, columns=["video", "label", "start", "end", "score"])


# one video; ground truth A [10, 20], B [40, 50], A [70, 80]; each kind exactly once
HAND_GT = [("v", "A", 10, 20), ("v", "B", 40, 50), ("v", "A", 70, 80)]
HAND_PRED = [
    ("v", "A", 10, 20, 0.9),      # true positive: tIoU 1 with A [10, 20]
    ("v", "A", 11, 20, 0.8),      # double detection: tIoU 0.9 with the same, already held
    ("v", "A", 40, 50, 0.7),      # wrong label: tIoU 1 with B [40, 50]
    ("v", "A", 70, 74, 0.6),      # localisation: tIoU 0.4 with A [70, 80]
    ("v", "A", 40, 42, 0.5),      # confusion: tIoU 0.2 with B, none with an A
    ("v", "A", 90, 95, 0.4),      # background: no overlap at all
]
HAND_KINDS = ["true_positive", "double_detection", "wrong_label", "localization",
              "confusion", "background"]


def test_each_error_type_exactly_once():
    gt, pred = gt_of(HAND_GT), pred_of(HAND_PRED)
    labelled = A.label_predictions(pred, gt, alpha=0.5)
    assert list(labelled["kind"]) == HAND_KINDS
    assert list(labelled["rank"]) == [0, 1, 2, 3, 4, 5]
    assert list(labelled["gt"]) == [0, -1, -1, -1, -1, -1]
    np.testing.assert_allclose(labelled["tiou_same"], [1, 0.9, 0, 0.4, 0, 0])
    np.testing.assert_allclose(labelled["tiou_other"], [0, 0, 1, 0, 0.2, 0])
    top = A.top_predictions(labelled, gt, k=10)                 # G(A) = 2: 20 allowed, 6 there
    assert list(top["bucket"]) == [1, 1, 2, 2, 3, 3]            # ranks 0-1, 2-3, 4-5
    b = A.breakdown(top, k=10)
    assert b["counts"] == {k: 1 for k in HAND_KINDS}
    assert b["false_positives"] == 5 == len(top) - b["counts"]["true_positive"]
    assert sum(b["fractions"].values()) == pytest.approx(1.0)
    assert b["buckets"][0] == {**{k: 0 for k in HAND_KINDS}, "true_positive": 1,
                               "double_detection": 1}
    # only the first k G = 4 with k = 2: confusion and background fall out
    top2 = A.top_predictions(labelled, gt, k=2)
    assert list(top2["kind"]) == HAND_KINDS[:4]


def test_input_order_and_other_videos_do_not_change_the_labels():
    gt = gt_of(HAND_GT + [("w", "A", 0, 5)], videos=("v", "w"))
    rows = HAND_PRED[::-1] + [("w", "A", 10, 20, 0.95)]     # w's A [0, 5]: no overlap
    labelled = A.label_predictions(pred_of(rows), gt)
    assert list(labelled["kind"]) == HAND_KINDS[::-1] + ["background"]


def test_held_ground_truth_goes_to_the_higher_score_and_the_best_overlap():
    gt = gt_of([("v", "A", 0, 10), ("v", "A", 8, 18)])
    pred = pred_of([("v", "A", 1, 10, 0.5), ("v", "A", 0, 10, 0.9)])
    labelled = A.label_predictions(pred, gt)
    # the 0.9 one holds [0, 10] (tIoU 1); the 0.5 one's tIoU with [8, 18] is 2/17 < 0.5
    assert list(labelled["kind"]) == ["double_detection", "true_positive"]
    assert list(labelled["gt"]) == [-1, 0]


@pytest.fixture(scope="module")
def stpn():
    gt = EI.load_ground_truth(ROOT / "data/thumos14/gt_basnet_210.json", "test")
    return gt, EI.load_predictions(STPN, gt)


def test_true_positives_are_the_evaluators_at_alpha(stpn):
    gt, pred = stpn
    labelled = A.label_predictions(pred, gt, alpha=0.5)
    # AP from the labels (ActivityNet interpolation, per class) equals the evaluator's
    ours = []
    for c in gt.classes:
        rows = labelled[labelled["label"] == c].sort_values("rank")
        tp = (rows["kind"] == "true_positive").to_numpy()[None]
        ours.append(interpolated_ap(tp, (gt.segments["label"] == c).sum())[0])
    theirs = E.evaluate_detection(pred, gt, [0.5])["per_class"][:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("protocol", ["activitynet", "thumos14"])
def test_map_if_removed_is_the_evaluator_rerun(stpn, protocol):
    gt, pred = stpn
    labelled = A.label_predictions(pred, gt)
    top = A.top_predictions(labelled, gt, k=3)
    removed = A.map_if_removed(pred, top, gt, TIOUS, protocol)
    np.testing.assert_array_equal(removed["all"],
                                  E.evaluate_detection(pred, gt, TIOUS, protocol)["mAP"])
    for kind in A.ERROR_TYPES:
        keep = ~pred.index.isin(top.index[top["kind"] == kind])
        assert (~keep).sum() > 0
        expected = E.evaluate_detection(pred[keep], gt, TIOUS, protocol)["mAP"]
        np.testing.assert_array_equal(removed[kind], expected)
    # localisation errors are true positives at low tIoU: removing them costs at 0.1
    assert removed["localization"][0] < removed["all"][0]                   # tIoU 0.1
    assert removed["localization"][4] > removed["all"][4]                   # tIoU 0.5


def test_analyse_numbers_add_up(stpn):
    gt, pred = stpn
    numbers, labelled, top = A.analyse(pred, gt, TIOUS, k=10)
    c = numbers["counts"]
    assert sum(c.values()) == numbers["top_predictions"] == len(top)
    assert numbers["false_positives"] == len(top) - c["true_positive"]
    assert sum(sum(b.values()) for b in numbers["buckets"]) == len(top)
    assert numbers["ap_by_coverage"] is None                   # gt.json without durations
    length = numbers["ap_by_length"]["values"]
    assert sum(v["n_gt"] for v in length.values()) == len(gt.segments)


def test_per_video_map_is_the_evaluator_on_each_video(stpn):
    gt, pred = stpn
    per_video = A.per_video_map(pred, gt, TIOUS)
    assert set(per_video) == set(gt.segments["video"])
    for video in sorted(per_video)[::40]:
        one = EI.GroundTruth(gt.segments[gt.segments["video"] == video], [video], gt.classes,
                            gt.ambiguous, gt.class_ids)
        expected = E.evaluate_detection(pred[pred["video"] == video], one, TIOUS)["mAP"].mean()
        assert per_video[video] == pytest.approx(expected, abs=1e-12)


def test_choose_videos_best_median_worst():
    scores = {f"v{i:02d}": i / 30 for i in range(30)}
    picks = A.choose_videos(scores, 12)
    assert [v for v, why in picks if why == "best"] == ["v29", "v28", "v27", "v26"]
    assert [v for v, why in picks if why == "worst"] == ["v03", "v02", "v01", "v00"]
    assert len({v for v, _ in picks}) == 12


def test_ap_by_bucket_leaves_out_predictions_held_by_other_buckets():
    # A [0, 2] (XS) is found, A [10, 30] (XL) is found: each bucket alone has AP 1
    gt = gt_of([("v", "A", 0, 2), ("v", "A", 10, 30)], classes=("A",))
    pred = pred_of([("v", "A", 0, 2, 0.9), ("v", "A", 10, 30, 0.8)])
    labelled = A.label_predictions(pred, gt)
    out = A.ap_by_bucket(pred, labelled, gt, A.gt_lengths(gt), A.LENGTH_BUCKETS)
    assert out["XS"] == {"n_gt": 1, "mAP": 1.0} and out["XL"] == {"n_gt": 1, "mAP": 1.0}
    assert out["M"] == {"n_gt": 0, "mAP": None}
    cov = A.gt_coverage(gt, {"v": 100.0})
    np.testing.assert_allclose(cov, [0.02, 0.2])
    assert list(A.bucket_of(cov, A.COVERAGE_BUCKETS)) == ["XS", "XL"]
