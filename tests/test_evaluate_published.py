"""evaluate.py reproduces published figures of real STPN predictions on THUMOS14.

The predictions are bellos1203/STPN code/ckpt/ckpt001/results.{json,txt} (see
data/SOURCES.md).  Two published figures are not reproduced; they are kept here as
strict expected failures, with the evidence:

* ActivityNet protocol, tIoU 0.7: the STPN README prints 4.9, the official algorithm
  gives 4.988 (5.0).  No ordering choice can change it: these predictions have no tied
  scores and no tied tIoU >= 0.5, so the matching at 0.7 is fully determined (the README
  itself warns its figures may differ slightly).  The other eight figures and the
  README's average (21.3) are reproduced.  Below 0.5 some predictions meet several
  ground truths with equal tIoU; the official code tries them in the order of
  ``tiou.argsort()[::-1]``, numpy's default (unstable) sort, and evaluate.py makes the
  same call, so it gives the official figures to 1e-12 (OFFICIAL_ANET, from
  tests/ref_official_anet.py; tests/test_ties.py compares the two on this file).  With
  "later ground truth first" (a reversed stable sort) 0.1 would be 52.096 instead.
* THUMOS14 kit, tIoU 0.4: 0.250325 is given, 0.2503615 comes out of STPN's results.txt
  (the other eight agree to 1e-6).  The cause is the input file: the published figures
  were computed on a txt converted from the json by the issue's author, and with the
  times written to 3 decimals all nine published figures are reproduced to 1e-6 (one
  BasketballDunk detection in video_test_0000716 then has overlap exactly 0.4, not > 0.4).
  `test_thumos14_kit_figures_on_times_rounded_to_3_decimals` checks that.
"""
from pathlib import Path

import numpy as np
import pytest

from evaluation import eval_inputs as EI
import evaluate as E

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data/predictions"
TIOUS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]

# STPN README ("Reproduced" row), ActivityNet eval_detection.py, gt of 210 test videos.
ANET_PUBLISHED = [52.1, 44.2, 34.7, 26.1, 17.7, 10.1, 4.9, 1.3, 0.1]
ANET_NOT_REPRODUCED = {0.7: "README prints 4.9; the official algorithm gives 4.988"}
# The official eval_detection.py on these files (the plain transcription in
# tests/ref_official_anet.py, numpy 2.4, x86-64), in %.
OFFICIAL_ANET = [52.1223, 44.1963, 34.6982, 26.0620, 17.7048, 10.0886, 4.9884, 1.3361, 0.0981]
# THUMOS14 kit (TH14evalDet.m) on results.txt with the official annotation.
TH14_PUBLISHED = [0.465688, 0.402861, 0.324524, 0.250325, 0.171563, 0.097312, 0.047556,
                  0.012638, 0.000900]
TH14_NOT_REPRODUCED = {0.4: "0.250325 was computed on times rounded to 3 decimals"}


@pytest.fixture(scope="module")
def anet_map():
    gt = EI.load_ground_truth(ROOT / "data/thumos14/gt_basnet_210.json", "test")
    pred = EI.load_predictions(DATA / "stpn_thumos14_test.json", gt)
    return E.evaluate_detection(pred, gt, TIOUS, "activitynet")["mAP"]


@pytest.fixture(scope="module")
def th14_map():
    gt = EI.load_ground_truth(ROOT / "data/thumos14/official_annotation", "test")
    pred = EI.load_predictions(DATA / "stpn_thumos14_test.txt", gt)
    return E.evaluate_detection(pred, gt, TIOUS, "thumos14")["mAP"]


def cases(published, not_reproduced):
    return [pytest.param(i, value, marks=pytest.mark.xfail(strict=True,
                                                             reason=not_reproduced[t]))
            if t in not_reproduced else pytest.param(i, value)
            for i, (t, value) in enumerate(zip(TIOUS, published))]


@pytest.mark.parametrize("i, published", cases(ANET_PUBLISHED, ANET_NOT_REPRODUCED))
def test_activitynet_protocol_matches_stpn_readme(anet_map, i, published):
    assert round(100 * anet_map[i], 1) == published


@pytest.mark.parametrize("i, published", cases(TH14_PUBLISHED, TH14_NOT_REPRODUCED))
def test_thumos14_protocol_matches_kit_figures(th14_map, i, published):
    assert abs(th14_map[i] - published) <= 1e-6


# np.argsort of this array on the machine OFFICIAL_ANET was computed on (AVX-512 sort).
SORT_PROBE = np.array([0.2, 0.5, 0.2, 0.5, 0.2, 0.5, 0.0, 0.2])
SORT_PROBE_ORDER = [6, 0, 4, 2, 7, 1, 3, 5]


def test_activitynet_protocol_gives_the_official_figures(anet_map):
    """Where no tie decides (tIoU >= 0.5) the figures hold everywhere; below, they are
    those of numpy's default sort on this kind of machine, which the official code
    depends on too (elsewhere tests/test_ties.py still checks the official order)."""
    np.testing.assert_allclose(100 * anet_map[4:], OFFICIAL_ANET[4:], rtol=0, atol=5e-5)
    if np.argsort(SORT_PROBE).tolist() != SORT_PROBE_ORDER:
        pytest.skip("numpy's default sort orders ties differently on this machine")
    np.testing.assert_allclose(100 * anet_map, OFFICIAL_ANET, rtol=0, atol=5e-5)


def test_figures_that_differ_from_the_published_ones(anet_map, th14_map):
    """Pin what is computed where the published figure is not reproduced."""
    assert round(100 * anet_map[6], 1) == 5.0
    # README: 21.3; 21.2550 here, 21.2576 where numpy sorts ties stably (both 21.3)
    assert 100 * np.mean(anet_map) == pytest.approx(21.256, abs=0.002)
    assert th14_map[3] == pytest.approx(0.2503615, abs=1e-7)


def test_json_and_txt_predictions_are_the_same(th14_map):
    gt = EI.load_ground_truth(ROOT / "data/thumos14/official_annotation", "test")
    pred = EI.load_predictions(DATA / "stpn_thumos14_test.json", gt)
    np.testing.assert_allclose(E.evaluate_detection(pred, gt, TIOUS, "thumos14")["mAP"],
                               th14_map, atol=1e-9)


def test_thumos14_kit_figures_on_times_rounded_to_3_decimals():
    """The published kit figures came from a txt with 3-decimal times: all nine match."""
    gt = EI.load_ground_truth(ROOT / "data/thumos14/official_annotation", "test")
    pred = EI.load_predictions(DATA / "stpn_thumos14_test.json", gt)
    pred = pred.assign(start=pred["start"].round(3), end=pred["end"].round(3))
    got = E.evaluate_detection(pred, gt, TIOUS, "thumos14")["mAP"]
    np.testing.assert_allclose(got, TH14_PUBLISHED, atol=1e-6, rtol=0)
