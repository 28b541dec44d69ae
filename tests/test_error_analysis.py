"""error_analysis.py: DETAD's labels on hand-made cases, AP_N worked by hand, the whole
false-positive analysis against DETAD's own output on STPN's predictions (both modes),
per-video mAP against the evaluator on one video, AP by bucket."""
import json
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
DETAD = json.loads((ROOT / "tests/data/detad_stpn_thumos14.json").read_text())  # README there
DETAD_NAMES = dict(zip(A.KINDS, ["True Positive", "Double Detection Err", "Wrong Label Err",
                                 "Localization Err", "Confusion Err", "Background Err"]))


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
    fp = A.false_positive_analysis(pred, gt, [0.5], k=10)
    assert fp["counts"] == {k: [1] for k in HAND_KINDS}
    assert fp["top_predictions"] == 6
    assert fp["buckets"][0] == {**{k: [0] for k in HAND_KINDS}, "true_positive": [1],
                                "double_detection": [1]}
    assert fp["buckets"][2] == {**{k: [0] for k in HAND_KINDS}, "confusion": [1],
                                "background": [1]}
    # only the first k G = 4 with k = 2: confusion and background fall out
    top2 = A.top_predictions(labelled, gt, k=2)
    assert list(top2["kind"]) == HAND_KINDS[:4]
    assert A.false_positive_analysis(pred, gt, [0.5], k=2)["counts"]["background"] == [0]


def test_the_most_overlapping_ground_truth_decides_the_label():
    # DETAD: the one ground truth overlapping most, of any class; the variant asks first for
    # any same-label one (this project's rule before, kept as same_label_first)
    gt = gt_of([("v", "A", 0, 10), ("v", "B", 2, 12), ("v", "B", 50, 60), ("v", "A", 50, 60),
                ("v", "A", 80, 90), ("v", "B", 81, 90)])
    pred = pred_of([
        ("v", "A", 0, 10, 0.9),    # true positive: holds A [0, 10]
        ("v", "A", 1, 11, 0.8),    # A [0, 10] 9/11 (held), B [2, 12] 9/11 too: A is first
        ("v", "A", 2, 12, 0.7),    # A 8/12, B 1: wrong label (was double detection)
        ("v", "A", 3, 16, 0.6),    # A 7/16, B 9/14: wrong label (so it was: B >= alpha)
        ("v", "A", 4, 20, 0.5),    # A 6/20, B 8/18: confusion (was localisation)
        ("v", "A", 52, 56, 0.4),   # B [50, 60] and A [50, 60] both 0.4, B first in the file:
        #                            confusion (was localisation)
        ("v", "A", 80, 84, 0.3),   # A [80, 90] 0.4, B [81, 90] 3/10, A overlaps most
    ])
    detad = ["true_positive", "double_detection", "wrong_label", "wrong_label", "confusion",
             "confusion", "localization"]
    before = ["true_positive", "double_detection", "double_detection", "wrong_label",
              "localization", "localization", "localization"]
    assert list(A.label_predictions(pred, gt, 0.5)["kind"]) == detad
    assert list(A.label_predictions(pred, gt, 0.5, same_label_first=True)["kind"]) == before
    # at 0.7 the 9/11 of the second is still a double detection, B's 9/14 no longer >= alpha
    assert list(A.label_predictions(pred, gt, 0.7)["kind"])[1:4] == [
        "double_detection", "wrong_label", "confusion"]


def test_a_video_without_ground_truth_is_all_background():
    # DETAD labels only the first such prediction background and gives the others the
    # previous video's ground truth (its groupby loop keeps this_gt); ours: all background
    gt = gt_of([("v", "A", 0, 10)], videos=("v", "w"))
    pred = pred_of([("v", "A", 0, 10, 0.9), ("w", "A", 0, 10, 0.8), ("w", "A", 1, 9, 0.7),
                    ("w", "B", 0, 10, 0.6)])
    assert list(A.label_predictions(pred, gt)["kind"]) == ["true_positive"] + 3 * ["background"]


def test_normalised_ap_worked_by_hand():
    # one class, G = 2, ranked hits 1 0 1: recall .5 .5 1, false positives 0 1 1
    tp = np.array([[1, 0, 1]])
    # N = 2: precision rN / (rN + fp) = 1/1, 1/2, 2/3; envelope 1, 2/3, 2/3; AP .5 + .5 * 2/3
    assert A.normalised_ap(tp, 2, 2.0)[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    # N = 4: precision 2/2, 2/3, 4/5; envelope 1, .8, .8: AP .5 + .5 * .8
    assert A.normalised_ap(tp, 2, 4.0)[0] == pytest.approx(0.9, abs=1e-15)
    # the false positive removed, the hits kept: precision 1, 1
    assert A.normalised_ap(tp, 2, 2.0, np.array([[True, False, True]]))[0] == 1.0
    # a hit removed is not re-matched: recall stays .5 (precision 1): AP .5
    assert A.normalised_ap(tp, 2, 2.0, np.array([[True, True, False]]))[0] == 0.5
    assert A.normalised_ap(np.zeros((3, 0)), 2, 2.0).tolist() == [0, 0, 0]


def test_normalised_ap_with_n_the_class_count_is_the_plain_ap(stpn):
    # precision r G / (r G + fp) = hits / (hits + fp): the evaluator's interpolated AP
    gt, pred = stpn
    labelled = A.label_predictions(pred, gt, alpha=0.5)
    for c in gt.classes[::4]:
        rows = labelled[labelled["label"] == c].sort_values("rank")
        tp = (rows["kind"] == "true_positive").to_numpy()[None]
        G = int((gt.segments["label"] == c).sum())
        assert A.normalised_ap(tp, G, G)[0] == pytest.approx(interpolated_ap(tp, G)[0],
                                                             abs=1e-12)


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


@pytest.mark.parametrize("mode", ["thumos14", "activitynet"])
def test_false_positive_analysis_is_detads_own_on_stpn(stpn, mode):
    # DETAD's false_positive_analysis.py on the same files (tests/data/README.md): every
    # count of every window 1G..10G at every tIoU, and the AP_N figures to 1e-9
    gt, pred = stpn
    theirs = DETAD[mode]
    ours = A.false_positive_analysis(pred, gt, A.DETAD_TIOUS[mode], k=10)
    assert ours["tiou"] == theirs["tiou"]
    assert ours["top_predictions"] == theirs["top_predictions"] == len(pred)   # all < 10 G
    assert ours["n_per_class"] == theirs["average_num_instance_per_class"] == 3311 / 20
    for kind, name in DETAD_NAMES.items():
        assert ours["counts"][kind] == theirs["counts_all"][name], kind
        for window in range(10):
            assert ours["buckets"][window][kind] == \
                theirs["counts_per_window"][window][name], (kind, window)
    np.testing.assert_allclose(ours["mAP_N"], theirs["mAP_N"], rtol=0, atol=1e-9)
    assert ours["average_mAP_N"] == pytest.approx(theirs["average_mAP_N"], abs=1e-9)
    for kind in A.ERROR_TYPES:
        np.testing.assert_allclose(ours["mAP_N_if_removed"][kind],
                                   theirs["mAP_N_if_removed"][DETAD_NAMES[kind]],
                                   rtol=0, atol=1e-9)
        assert ours["mAP_N_gain"][kind] == pytest.approx(
            theirs["average_mAP_N_gain"][DETAD_NAMES[kind]], abs=1e-9)


def test_same_label_first_moves_diving_confusions_to_localisation(stpn):
    # window 1G at 0.5, DETAD: 1243 localisation, 254 confusion, 32 double detections, 61
    # wrong label; the variant calls 164 of those confusions localisation errors (most are
    # Diving predictions on segments annotated both CliffDiving and Diving, where an equal
    # overlap goes to the CliffDiving line, first in the file) and one wrong label a double
    gt, pred = stpn
    fp = A.false_positive_analysis(pred, gt, [0.5], k=10, same_label_first=True)
    assert {k: v[0] for k, v in fp["buckets"][0].items()} == {
        "true_positive": 959, "double_detection": 33, "wrong_label": 60, "localization": 1407,
        "confusion": 90, "background": 762}


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
    # the default: DETAD's THUMOS14 mode at alpha, its counts themselves
    assert numbers["detad_tiou"] == [0.5]
    assert c == {k: DETAD["thumos14"]["counts_all"][n][0] for k, n in DETAD_NAMES.items()}


def test_analyse_in_activitynet_mode_gives_detads_means(stpn):
    # DETAD's ActivityNet mode plots each window's counts averaged over its ten tIoUs ('avg')
    gt, pred = stpn
    numbers, _, _ = A.analyse(pred, gt, TIOUS, detad_tious=A.DETAD_TIOUS["activitynet"])
    theirs = DETAD["activitynet"]
    for kind, name in DETAD_NAMES.items():
        assert numbers["counts"][kind] == pytest.approx(np.mean(theirs["counts_all"][name]))
        assert numbers["buckets"][0][kind] == pytest.approx(
            np.mean(theirs["counts_per_window"][0][name]))
    for kind in A.ERROR_TYPES:
        assert numbers["mAP_N_gain"][kind] == pytest.approx(
            theirs["average_mAP_N_gain"][DETAD_NAMES[kind]], abs=1e-9)
    assert numbers["false_positives"] == pytest.approx(len(pred) - numbers["counts"][
        "true_positive"])


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
