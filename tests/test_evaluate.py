"""evaluate.py: both detection protocols on hand-worked cases, against simple loops,
classification mAP, the loaders on files written here, the metrics dict and the CLI."""
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import eval_inputs as EI
import evaluate as E
from evaluation import protocols
from core.safe_load import load_npy
from evaluation.eval_inputs import GroundTruth, InputWarning
from core.cli import cli
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
THUMOS = ROOT / "data/thumos14"


def frame(rows, columns=("video", "label", "start", "end")):
    return pd.DataFrame(list(rows), columns=list(columns))


def make_gt(segments, classes, ambiguous=()):
    segs = frame(segments)
    amb = frame(ambiguous, ("video", "start", "end")).astype({"start": float, "end": float})
    videos = sorted(set(segs["video"]) | set(amb["video"]))
    return GroundTruth(segs, videos, list(classes), amb, EI.class_ids(list(classes)))


def preds(rows):
    return frame(rows, ("video", "label", "start", "end", "score"))


NO_PRED = preds([])

# ---------------------------------------------------------------------------- hand-worked
#
# Two videos, classes A and B:
#   ground truth   g0 v1 A [0,10]   g1 v1 A [20,30]   g2 v2 A [0,10]   g3 v2 B [5,15]
#   predictions    p1 v1 A [0,10]  .9    tIoU(g0) = 1
#                  p2 v1 A [2,10]  .8    tIoU(g0) = 8/10 = 0.8, g1: 0
#                  p3 v2 A [5,10]  .7    tIoU(g2) = 5/10 = 0.5
#                  p4 v1 A [21,26] .6    tIoU(g1) = 5/10 = 0.5
#                  q1 v2 B [5,15]  .5    tIoU(g3) = 1
# (both tIoU and the THUMOS overlap are 0.8 and 0.5 here: the segments are nested.)
#
# activitynet, tIoU >= 0.5: p1 TP (g0); p2: g0 taken, g1 at 0 -> FP; p3 TP; p4 TP.
#   A: precision 1, 1/2, 2/3, 3/4; recall 1/3, 1/3, 2/3, 1; envelope 1, 3/4, 3/4, 3/4
#      AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6;  B: 1;  mAP = 11/12
#   tIoU 0.4: the same matches -> 11/12
#   tIoU 0.7: only p1 TP -> A: AP = 1/3 * 1 = 1/3; mAP = (1/3 + 1) / 2 = 2/3
# thumos14, overlap > 0.5: g0 takes p1 (largest overlap); g1: p4 at 0.5 is not > 0.5;
#   g2: p3 at 0.5 is not > 0.5.  A ranked p1 T, p2 F, p3 F, p4 F: AP = (1) / 3 = 1/3
#   mAP = 2/3
# thumos14, overlap > 0.4: g0 takes p1, g1 takes p4, g2 takes p3.
#   A ranked p1 T, p2 F, p3 T, p4 T: AP = (1 + 2/3 + 3/4) / 3 = 29/36; mAP = 65/72
#   with an Ambiguous segment v1 [9,12]: p2 (unmatched, meets it) is dropped; p1 meets it
#   too but is matched, so stays.  A ranked p1 T, p3 T, p4 T: AP = 1; mAP = 1
HAND_GT = [("v1", "A", 0, 10), ("v1", "A", 20, 30), ("v2", "A", 0, 10), ("v2", "B", 5, 15)]
HAND_PRED = [("v1", "A", 0, 10, .9), ("v1", "A", 2, 10, .8), ("v2", "A", 5, 10, .7),
             ("v1", "A", 21, 26, .6), ("v2", "B", 5, 15, .5)]


def test_hand_worked_activitynet():
    result = E.evaluate_detection(preds(HAND_PRED), make_gt(HAND_GT, "AB"), [0.4, 0.5, 0.7])
    np.testing.assert_allclose(result["mAP"], [11 / 12, 11 / 12, 2 / 3], atol=1e-9)
    np.testing.assert_allclose(result["per_class"][0], [5 / 6, 5 / 6, 1 / 3], atol=1e-9)


def test_hand_worked_thumos14():
    result = E.evaluate_detection(preds(HAND_PRED), make_gt(HAND_GT, "AB"), [0.4, 0.5],
                                  "thumos14")
    np.testing.assert_allclose(result["mAP"], [65 / 72, 2 / 3], atol=1e-9)
    np.testing.assert_allclose(result["per_class"][0], [29 / 36, 1 / 3], atol=1e-9)


def test_thumos14_drops_unmatched_detections_meeting_ambiguous():
    gt = make_gt(HAND_GT, "AB", ambiguous=[("v1", 9, 12)])
    result = E.evaluate_detection(preds(HAND_PRED), gt, [0.4], "thumos14")
    np.testing.assert_allclose(result["per_class"][:, 0], [1.0, 1.0], atol=1e-9)
    # A segment that only touches the detection (intersection 0) drops nothing.
    gt = make_gt(HAND_GT, "AB", ambiguous=[("v1", 10, 12)])
    result = E.evaluate_detection(preds(HAND_PRED), gt, [0.4], "thumos14")
    np.testing.assert_allclose(result["per_class"][0, 0], 29 / 36, atol=1e-9)


def test_thumos14_threshold_is_strict():
    gt = make_gt([("v", "A", 0, 10)], "A")
    half = preds([("v", "A", 5, 10, 1.0)])               # overlap exactly 0.5
    result = E.evaluate_detection(half, gt, [0.4999, 0.5], "thumos14")
    np.testing.assert_allclose(result["mAP"], [1.0, 0.0])
    result = E.evaluate_detection(half, gt, [0.4999, 0.5], "activitynet")   # >= here
    np.testing.assert_allclose(result["mAP"], [1.0, 1.0])


def test_thumos14_ground_truth_takes_largest_overlap_whatever_the_score():
    # d1 [0,6] score .9 overlap .6; d2 [0,9] score .5 overlap .9.  The kit gives the
    # ground truth d2, so d1 is a false positive ranked first: AP = (1/2) / 1.
    # ActivityNet gives the ground truth to d1 (first by score): AP = 1.
    gt = make_gt([("v", "A", 0, 10)], "A")
    two = preds([("v", "A", 0, 6, .9), ("v", "A", 0, 9, .5)])
    assert E.evaluate_detection(two, gt, [0.5], "thumos14")["mAP"][0] == pytest.approx(0.5)
    assert E.evaluate_detection(two, gt, [0.5], "activitynet")["mAP"][0] == pytest.approx(1.0)


def test_activitynet_falls_back_to_next_best_ground_truth():
    # g0 [0,10], g1 [5,15].  a [0,10] .9 takes g0 (tIoU 1).  b [2,12] .8: tIoU g0 = 8/12,
    # g1 = 7/13 = 0.538; g0 is taken, so b falls back to g1 when 7/13 >= threshold.
    gt = make_gt([("v", "A", 0, 10), ("v", "A", 5, 15)], "A")
    two = preds([("v", "A", 0, 10, .9), ("v", "A", 2, 12, .8)])
    result = E.evaluate_detection(two, gt, [0.5, 0.6])
    # 0.5: both TP -> AP 1.  0.6: b FP -> precision 1, 1/2, recall 1/2, 1/2 -> AP 1/2.
    np.testing.assert_allclose(result["mAP"], [1.0, 0.5], atol=1e-12)


def test_activitynet_equal_tious_take_the_later_ground_truth_first():
    # p covers g0 and g1 equally (tIoU 0.2 each); the official argsort()[::-1] tries g1
    # first.  q [0,1] then still finds g0 free: both TP.
    gt = make_gt([("v", "A", 0, 1), ("v", "A", 4, 5)], "A")
    two = preds([("v", "A", 0, 5, .9), ("v", "A", 0, 1, .8)])
    assert E.evaluate_detection(two, gt, [0.1])["mAP"][0] == pytest.approx(1.0)


def test_predictions_outside_the_ground_truth_videos_are_false_positives():
    gt = make_gt([("v", "A", 0, 10)], "A")
    two = preds([("elsewhere", "A", 0, 10, .9), ("v", "A", 0, 10, .5)])
    for protocol in E.PROTOCOLS:
        assert E.evaluate_detection(two, gt, [0.5], protocol)["mAP"][0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- edge cases

@pytest.fixture(scope="module")
def official():
    return EI.load_ground_truth(THUMOS / "official_annotation")


@pytest.mark.parametrize("protocol", E.PROTOCOLS)
def test_perfect_predictions_give_one(official, protocol):
    perfect = official.segments.assign(score=1.0)
    result = E.evaluate_detection(perfect, official, E.THUMOS_TIOUS, protocol)
    np.testing.assert_allclose(result["mAP"], 1.0)


@pytest.mark.parametrize("protocol", E.PROTOCOLS)
def test_no_predictions_give_zero(official, protocol):
    result = E.evaluate_detection(NO_PRED, official, [0.5], protocol)
    assert result["mAP"].tolist() == [0.0]
    assert result["per_class"].shape == (20, 1)


@pytest.mark.parametrize("protocol", E.PROTOCOLS)
def test_class_without_predictions_is_zero_and_others_keep_their_ap(protocol):
    gt = make_gt(HAND_GT, "AB")
    only_a = preds([p for p in HAND_PRED if p[1] == "A"])
    result = E.evaluate_detection(only_a, gt, [0.4], protocol)
    full = E.evaluate_detection(preds(HAND_PRED), gt, [0.4], protocol)
    assert result["per_class"][1, 0] == 0.0
    assert result["per_class"][0, 0] == full["per_class"][0, 0] > 0
    assert result["mAP"][0] == pytest.approx(full["per_class"][0, 0] / 2)


def test_class_without_ground_truth_is_left_out_of_the_mean():
    gt = make_gt([("v", "A", 0, 10)], "ABC")
    result = E.evaluate_detection(preds([("v", "A", 0, 10, 1.0)]), gt, [0.5])
    assert result["mAP"][0] == 1.0 and np.isnan(result["per_class"][1:]).all()


def test_unknown_class_in_predictions_is_an_input_error():
    with pytest.raises(InputError):
        E.evaluate_detection(preds([("v", "Z", 0, 1, 1.0)]), make_gt(HAND_GT, "AB"), [0.5])


# ---------------------------------------------------------------------------- vs simple loops

def activitynet_by_loop(pred, gt, tiou):
    """Reference: the official per-prediction loop (one class, one threshold)."""
    pred = pred.sort_values("score", ascending=False, kind="stable")
    taken, tp = set(), []
    for p in pred.itertuples():
        cands = gt[gt.video == p.video]
        inter = (np.minimum(cands.end, p.end) - np.maximum(cands.start, p.start)).clip(0)
        iou = inter / ((cands.end - cands.start) + (p.end - p.start) - inter)
        hit = next((j for j in iou.sort_values(ascending=False).index
                    if iou[j] >= tiou and j not in taken), None)
        tp.append(hit is not None)
        taken.add(hit)
    tp = np.array(tp, dtype=float)
    if not len(tp):
        return 0.0
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    rec = np.cumsum(tp) / len(gt)
    env = [prec[k:].max() for k in range(len(prec))]
    return float(np.sum(np.diff(np.r_[0, rec]) * env))


def thumos_by_loop(pred, gt, amb, thr):
    """Reference: the TH14 kit loop (one class, one threshold)."""
    kept = []
    for video in sorted(set(gt.video) | set(pred.video)):
        det = pred[pred.video == video].sort_values("score", ascending=False, kind="stable")
        free = [True] * len(det)
        for g in gt[gt.video == video].itertuples():
            ov = [0.0 if not f else max(0.0, min(g.end, d.end) - max(g.start, d.start))
                  / (max(g.end, d.end) - min(g.start, d.start))
                  for f, d in zip(free, det.itertuples())]
            if ov and max(ov) > thr:
                free[int(np.argmax(ov))] = False
        a = amb[amb.video == video]
        for f, d in zip(free, det.itertuples()):
            meets = ((np.minimum(a.end, d.end) - np.maximum(a.start, d.start)) > 0).any()
            if not f or not meets:
                kept.append((d.score, not f))
    kept.sort(key=lambda k: -k[0])
    tp = np.array([k[1] for k in kept], dtype=float)
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float(prec[tp == 1].sum() / len(gt))


def random_case(rng, n_videos=4, n_gt=12, n_pred=40):
    videos = [f"v{i}" for i in range(n_videos)]
    s = rng.uniform(0, 50, n_gt)
    gt = make_gt(zip(rng.choice(videos, n_gt), rng.choice(list("AB"), n_gt), s,
                     s + rng.uniform(1, 10, n_gt)), "AB",
                 ambiguous=[(v, x, x + 3) for v, x in zip(videos, rng.uniform(0, 50, 4))])
    s = rng.uniform(0, 50, n_pred)
    pred = preds(zip(rng.choice(videos + ["other"], n_pred), rng.choice(list("AB"), n_pred),
                     s, s + rng.uniform(0.5, 12, n_pred), rng.random(n_pred)))
    return pred, gt


def test_vectorised_protocols_match_simple_loops_on_random_cases():
    rng = np.random.default_rng(1)
    tious = [0.1, 0.3, 0.5, 0.7]
    for _ in range(15):
        pred, gt = random_case(rng)
        anet = E.evaluate_detection(pred, gt, tious, "activitynet")["per_class"]
        th14 = E.evaluate_detection(pred, gt, tious, "thumos14")["per_class"]
        for c, cls in enumerate("AB"):
            p, g = pred[pred.label == cls], gt.segments[gt.segments.label == cls]
            if not len(g):
                continue
            for t, thr in enumerate(tious):
                assert anet[c, t] == pytest.approx(activitynet_by_loop(p, g, thr), abs=1e-12)
                assert th14[c, t] == pytest.approx(thumos_by_loop(p, g, gt.ambiguous, thr),
                                                   abs=1e-12)


def test_serial_dictatorship_is_greedy_in_priority_order():
    # proposer 0 prefers a1 then a0; proposer 1 prefers a1; proposer 2 prefers a1, a0, a2.
    proposer = np.array([0, 0, 1, 2, 2, 2])
    acceptor = np.array([1, 0, 1, 1, 0, 2])
    holder = protocols.serial_dictatorship(proposer, acceptor, 4)
    # 0 takes a1; 1 finds a1 taken and has nothing else; 2 finds a1 taken and takes a0.
    assert holder.tolist() == [2, 0, -1, -1]


# ---------------------------------------------------------------------------- classification

def test_classification_map_hand_worked():
    # class 0: ranking + - + -       precision at positives 1, 2/3 -> AP 5/6
    # class 1: ranking - - + +       precision at positives 1/3, 2/4 -> AP 5/12
    # class 2: no positive video: left out.   mean = (5/6 + 5/12) / 2 = 5/8
    scores = np.array([[.9, .2, .5], [.8, .6, .1], [.7, .4, .3], [.1, .3, .2]])
    labels = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert E.classification_map(scores, labels) == pytest.approx(5 / 8, abs=1e-12)


def test_classification_map_without_any_positive_is_undefined_not_an_error():
    # e.g. a run whose only labelled test videos were dropped for empty features
    cmap = E.classification_map(np.array([[.9, .2], [.1, .3]]), np.zeros((2, 2)))
    assert np.isnan(cmap)
    metrics = E.build_metrics("activitynet", [0.5], [0.25], {}, cmap)
    assert metrics["cmAP"] is None and metrics["mAP"] == {"0.5": 0.25}
    assert E.format_table(metrics).splitlines()[-1].split() == ["cmAP", "--"]


# ---------------------------------------------------------------------------- loaders

def test_gt_json_with_string_segments(tmp_path):
    data = {"database": {
        "v1": {"subset": "test", "annotations": [
            {"segment": ["18.6", "24.8"], "label": "HighJump"},
            {"segment": ["30.0", "29.0"], "label": "HighJump"}]},
        "v2": {"subset": "test", "annotations": []},
        "v3": {"subset": "train", "annotations": [{"segment": ["1", "2"], "label": "Diving"}]}}}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.warns(InputWarning, match="1 ground-truth segments had start > end"):
        gt = EI.load_ground_truth(path, "test")
    assert gt.videos == ["v1", "v2"]
    assert gt.segments.values.tolist() == [["v1", "HighJump", 18.6, 24.8],
                                           ["v1", "HighJump", 29.0, 30.0]]
    assert gt.classes == ["Diving", "HighJump"]
    assert gt.class_ids == {"Diving": 26, "HighJump": 40}
    assert gt.ambiguous.empty
    with pytest.warns(InputWarning):          # the one reader reads (and repairs) the whole file
        assert EI.load_ground_truth(path, "train").videos == ["v3"]


class Py2Pickler(pickle._Pickler):
    """Pickles bytes the way Python 2 pickled its str (SHORT_BINSTRING), as in the
    W-TALC bundle; np.load(..., encoding='bytes') gives them back as bytes."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj if len(obj) < 256
                   else pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_py2_str


def save_py2_npy(path, array):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        if array.dtype.hasobject:
            Py2Pickler(f, protocol=2).dump(array)
        else:
            f.write(np.ascontiguousarray(array).tobytes())


def object_array(items):
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def write_wtalc(folder, subsets, classes=(b"BaseballPitch", b"Billiards")):
    folder.mkdir()
    names = [f"video_{i}".encode() for i in range(len(subsets))]
    segments = [[[1.0, 2.5], [7.0, 4.0]], [], [[0.5, 3.0]]][:len(subsets)]
    labels = [[classes[0], classes[1]], [], [classes[1]]][:len(subsets)]
    save_py2_npy(folder / "videoname.npy", np.array(names))
    save_py2_npy(folder / "subset.npy", np.array([s.encode() for s in subsets]))
    save_py2_npy(folder / "classlist.npy", np.array(classes))
    save_py2_npy(folder / "segments.npy", object_array(segments))
    save_py2_npy(folder / "labels.npy", object_array(labels))
    save_py2_npy(folder / "duration.npy", np.array([[10.0], [20.0], [30.0]][:len(subsets)]))


def test_wtalc_folder_in_python2_pickle_format(tmp_path):
    folder = tmp_path / "Thumos14reduced-Annotations"
    write_wtalc(folder, ["test", "test", "validation"])
    (folder / "Ambiguous_test.txt").write_text("video_0  4.0 5.0\n")
    raw = load_npy(str(folder / "labels.npy"))
    assert isinstance(raw[0][0], bytes)                      # really the bytes format
    with pytest.warns(InputWarning, match="1 ground-truth segments had start > end"):
        gt = EI.load_ground_truth(folder, "test")
    assert gt.videos == ["video_0", "video_1"]                # video_1 has no segment
    assert gt.segments.values.tolist() == [["video_0", "BaseballPitch", 1.0, 2.5],
                                           ["video_0", "Billiards", 4.0, 7.0]]
    assert gt.classes == ["BaseballPitch", "Billiards"]
    assert gt.class_ids == {"BaseballPitch": 7, "Billiards": 12}
    assert gt.ambiguous.values.tolist() == [["video_0", 4.0, 5.0]]
    with pytest.warns(InputWarning):
        train = EI.load_ground_truth(folder, "train")
    assert train.videos == ["video_2"] and train.ambiguous.empty


def test_wtalc_activitynet_style_subsets(tmp_path):
    folder = tmp_path / "ActivityNet1.2-Annotations"
    write_wtalc(folder, ["training", "validation", "validation"], (b"Archery", b"Ballet"))
    with pytest.warns(InputWarning):                 # video_0 (training) is swapped: the
        gt = EI.load_ground_truth(folder, "test")     # whole file is read, and said once
    assert gt.videos == ["video_1", "video_2"]
    assert gt.class_ids == {"Archery": 1, "Ballet": 2}
    with pytest.warns(InputWarning):
        assert EI.load_ground_truth(folder, "train").videos == ["video_0"]


def write_official(folder):
    folder.mkdir()
    (folder / "detclasslist.txt").write_bytes(b"7 BaseballPitch\r\n12 Billiards\r\n")
    (folder / "BaseballPitch_test.txt").write_text("video_test_1  1.0 2.0\nvideo_test_2 3 4\n")
    (folder / "Billiards_test.txt").write_text("video_test_2  5.5 6.5\n\n")
    (folder / "Ambiguous_test.txt").write_text("video_test_9  0.0 1.4\n")


def test_official_folder(tmp_path):
    write_official(tmp_path / "ann")
    gt = EI.load_ground_truth(tmp_path / "ann")
    assert gt.classes == ["BaseballPitch", "Billiards"]
    assert gt.class_ids == {"BaseballPitch": 7, "Billiards": 12}
    assert gt.segments.values.tolist() == [["video_test_1", "BaseballPitch", 1.0, 2.0],
                                           ["video_test_2", "BaseballPitch", 3.0, 4.0],
                                           ["video_test_2", "Billiards", 5.5, 6.5]]
    assert gt.videos == ["video_test_1", "video_test_2", "video_test_9"]
    assert gt.ambiguous.values.tolist() == [["video_test_9", 0.0, 1.4]]


def test_official_folder_errors(tmp_path):
    write_official(tmp_path / "dup")
    (tmp_path / "dup" / "billiards_test.txt").write_text("video_test_2 1 2\n")
    with pytest.raises(InputError, match="duplicate ground-truth files for class Billiards"):
        EI.load_ground_truth(tmp_path / "dup")
    write_official(tmp_path / "missing")
    (tmp_path / "missing" / "Billiards_test.txt").unlink()
    with pytest.raises(InputError, match="class Billiards has no ground-truth file"):
        EI.load_ground_truth(tmp_path / "missing")


def test_real_video_counts():
    assert len(EI.load_ground_truth(THUMOS / "Thumos14reduced-Annotations").videos) == 212
    assert len(EI.load_ground_truth(THUMOS / "gt_basnet_210.json").videos) == 210
    assert len(EI.load_ground_truth(THUMOS / "official_annotation").videos) == 213


def test_load_predictions_json_and_txt(tmp_path):
    gt = make_gt([("v", "BaseballPitch", 0, 1), ("v", "Billiards", 0, 1)],
                 ["BaseballPitch", "Billiards"])
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"results": {"v": [
        {"label": "Billiards", "segment": [1.0, 2.0], "score": 0.5}]}}))
    assert EI.load_predictions(js, gt).values.tolist() == [["v", "Billiards", 1.0, 2.0, 0.5]]
    txt = tmp_path / "p.txt"
    txt.write_text("v.mp4 1.0 2.0 12 0.5\nv 3 2 7 0.25\n")
    with pytest.warns(InputWarning, match="1 predictions had start > end"):
        pred = EI.load_predictions(txt, gt)
    assert pred.values.tolist() == [["v", "Billiards", 1.0, 2.0, 0.5],
                                    ["v", "BaseballPitch", 2.0, 3.0, 0.25]]
    txt.write_text("v 1 2 99 0.5\nv 1 2 98 0.5\nv 1 2 7 0.5\n")
    with pytest.raises(InputError, match="2 predictions of classes absent"):
        EI.load_predictions(txt, gt)
    with pytest.warns(InputWarning, match="dropped 2 predictions of 2 classes"):
        assert len(EI.load_predictions(txt, gt, ignore_unknown_classes=True)) == 1


@pytest.mark.parametrize("content, message", [
    ("v 1 2 7\n", "line 1: expected 5 fields"),
    ("v 1 two 7 0.5\n", "end is not a number"),
    ("v 1 2 7 nan\n", "NaN/Inf"),
    ("v 1 inf 7 0.5\n", "NaN/Inf"),
])
def test_bad_prediction_txt(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        EI.load_predictions(path, make_gt([("v", "BaseballPitch", 0, 1)], ["BaseballPitch"]))


# ---------------------------------------------------------------------------- metrics, table

def test_build_metrics_schema():
    m = E.build_metrics("thumos14", [0.1, 0.55, 0.7], [0.5, 0.25, 0.0],
                        {"0.1:0.55": (0.1, 0.55), "0.1:0.7": (0.1, 0.7)}, cmap=0.9,
                        per_class=np.array([[1.0, 0.5, np.nan]]), classes=["A"])
    assert m == {"protocol": "thumos14", "tiou": [0.1, 0.55, 0.7],
                 "mAP": {"0.1": 0.5, "0.55": 0.25, "0.7": 0.0},
                 "average_mAP": {"0.1:0.55": 0.375, "0.1:0.7": 0.25},
                 "cmAP": 0.9, "per_class": {"A": {"0.1": 1.0, "0.55": 0.5, "0.7": None}}}
    assert E.build_metrics("activitynet", [0.5], [0.1], {})["cmAP"] is None
    json.dumps(m)
    table = E.format_table(m)
    assert "0.55" in table and "25.00" in table and "37.50" in table and "90.00" in table


# ---------------------------------------------------------------------------- CLI

def run_cli(capsys, *args):
    code = cli(E.main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_published_files_and_json(tmp_path, capsys):
    out_json = tmp_path / "m.json"
    code, out, err = run_cli(capsys, ROOT / "data/predictions/stpn_thumos14_test.txt", "--gt",
                             THUMOS / "official_annotation", "--protocol", "thumos14",
                             "--json", out_json, "--per-class")
    assert code == 0 and err == ""
    assert "213 videos" in out and "thumos14" in out and "avg 0.1:0.7" in out
    metrics = json.loads(out_json.read_text())
    assert list(metrics) == ["protocol", "tiou", "mAP", "average_mAP", "cmAP", "per_class"]
    assert list(metrics["average_mAP"]) == ["0.1:0.5", "0.1:0.7", "0.1:0.9"]
    assert len(metrics["per_class"]) == 20


def test_cli_empty_predictions_give_zero(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text('{"results": {}}')
    code, out, _ = run_cli(capsys, empty, "--gt", THUMOS / "gt_basnet_210.json",
                           "--tiou", "0.3", "0.5")
    assert code == 0 and "0.00" in out and "avg 0.3:0.5" in out


@pytest.mark.parametrize("name, content, message", [
    ("bad.txt", "video_test_0000004 1.0 2.0 7\n", "line 1: expected 5 fields"),
    ("bad.json", '{"results": {"v": [', "malformed JSON"),
    ("bad2.json", '{"results": {"v": [{"label": "Billiards"}]}}', "malformed prediction"),
    ("unknown.txt", "video_test_0000004 1.0 2.0 3 0.5\n", "classes absent from the ground"),
    ("nan.txt", "video_test_0000004 1.0 2.0 7 nan\n", "NaN/Inf"),
    ("missing.txt", None, "file not found"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, path, "--gt", THUMOS / "official_annotation")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and str(path) in err
    assert "Traceback" not in err


def test_cli_swaps_and_ignores_with_warnings(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("video_test_0000004 2.0 1.0 7 0.5\nvideo_test_0000004 1.0 2.0 3 0.5\n")
    code, out, err = run_cli(capsys, path, "--gt", THUMOS / "official_annotation",
                             "--ignore-unknown-classes")
    assert code == 0
    assert "dropped 1 predictions" in err and "1 predictions had start > end" in err
