"""ActivityNet protocol with tied scores and tied tIoUs: evaluate.py ranks exactly as the
official eval_detection.py does (numpy's default argsort, reversed), checked against a
plain transcription of the official per-class loop (tests/ref_official_anet.py)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import eval_inputs as EI
import evaluate as E
from evaluation import protocols
from ref_official_anet import official_map

ROOT = Path(__file__).resolve().parents[1]
TIOUS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]


def tied_case(seed, n_videos=4, classes="ABC", n_gt=40, n_pred=400):
    """Segments on a coarse grid (tied tIoUs, duplicated ground truth, several ground
    truths of one class per video), scores rounded to one decimal, duplicated rows."""
    rng = np.random.default_rng(seed)
    videos = [f"v{i}" for i in range(n_videos)]
    start = rng.integers(0, 8, n_gt).astype(float)
    gt = pd.DataFrame({"video": rng.choice(videos, n_gt), "label": rng.choice(list(classes), n_gt),
                       "start": start, "end": start + rng.integers(1, 4, n_gt)})
    gt = pd.concat([gt, gt.iloc[:6]], ignore_index=True)          # exact duplicates
    start = rng.integers(0, 9, n_pred).astype(float)
    pred = pd.DataFrame({"video": rng.choice(videos + ["elsewhere"], n_pred),
                         "label": rng.choice(list(classes), n_pred),
                         "start": start, "end": start + rng.integers(1, 5, n_pred),
                         "score": rng.random(n_pred).round(1)})
    pred = pd.concat([pred, pred.iloc[::7]], ignore_index=True)     # repeated predictions
    truth = EI.GroundTruth(gt, videos, list(classes), pd.DataFrame(
        {"video": [], "start": [], "end": []}), EI.class_ids(list(classes)))
    return pred, truth


@pytest.mark.parametrize("seed", range(6))
def test_ties_follow_the_official_loop(seed):
    pred, gt = tied_case(seed)
    assert pred["score"].duplicated().mean() > 0.9                   # ties everywhere
    ours = E.evaluate_detection(pred, gt, TIOUS, "activitynet")
    ref_map, ref_per_class = official_map(pred, gt.segments, gt.classes, TIOUS)
    np.testing.assert_allclose(ours["per_class"], ref_per_class, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["mAP"], ref_map, rtol=0, atol=1e-12)


def test_a_stable_ranking_gives_other_figures_on_this_case():
    """The case is one where the order of ties matters: ranking tied scores stably (the
    previous rule) moves the result, so the test above can fail."""
    moved = 0
    for seed in range(6):
        pred, gt = tied_case(seed)
        stable = pred.iloc[np.argsort(-pred["score"].to_numpy(), kind="stable")]
        # Scores made distinct in the stable order, the official rank is the stable one.
        stable = stable.assign(score=np.linspace(1, 0, len(stable)))
        ref_stable, _ = official_map(stable, gt.segments, gt.classes, TIOUS)
        moved += np.abs(E.evaluate_detection(pred, gt, TIOUS)["mAP"] - ref_stable).max() > 1e-6
    assert moved >= 3


def test_official_rank_is_numpy_argsort_reversed_per_class_in_file_order():
    cls = np.array([1, 0, 1, 1, 0, 1, 1, 1])
    score = np.array([.5, .2, .5, .5, .2, .1, .5, .5])
    order = protocols.official_rank(cls, score, 2)
    idx0, idx1 = np.flatnonzero(cls == 0), np.flatnonzero(cls == 1)
    expected = np.r_[idx0[np.argsort(score[idx0])[::-1]], idx1[np.argsort(score[idx1])[::-1]]]
    np.testing.assert_array_equal(order, expected)


def test_official_preference_rows_equal_one_dimensional_argsort():
    """Sorting the blocks of equal length as rows of one array gives, per block, exactly
    the 1-d np.argsort of that block (the official call), with many ties."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, 300)
    prop = np.repeat(np.arange(len(sizes)), sizes)
    value = rng.integers(0, 3, len(prop)) / 4
    pos = protocols.official_preference(prop, value)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    for f, n in zip(first, sizes):
        block = value[f:f + n]
        np.testing.assert_array_equal(np.argsort(pos[f:f + n]), np.argsort(block)[::-1])


def test_real_stpn_file_equals_the_official_loop():
    gt = EI.load_ground_truth(ROOT / "data/thumos14/gt_basnet_210.json", "test")
    pred = EI.load_predictions(ROOT / "data/predictions/stpn_thumos14_test.json", gt)
    tious = np.arange(1, 10) / 10
    ours = E.evaluate_detection(pred, gt, tious, "activitynet")["mAP"]
    ref, _ = official_map(pred, gt.segments, gt.classes, tious)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
