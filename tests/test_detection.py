"""Detection on hand-made score curves; vectorised runs against a simple loop."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dataset import snippets_to_seconds
from detection import (PostProcess, attention_scores, detect_batch, flat_run_scores,
                       lay_end_to_end, localisation_scores, nms, runs_end_to_end,
                       segments_frame, select_classes)
from opts import build_parser
from ref_released_detection import normalise_released

POST = PostProcess.from_opts(build_parser().parse_args([]))     # opts.py's defaults


def detect_video(name, scores, video_scores, post, *, snippet_seconds, duration, classes,
                 ambiguous=()):
    """Segments of one video as a DataFrame (video, label, start, end, score); see
    detect_batch. scores: (T, K); video_scores: (K,); ambiguous: [(start, end)]."""
    found = detect_batch([scores], video_scores[None], post, snippet_seconds=snippet_seconds,
                         durations=[duration], ambiguous={0: list(ambiguous)})
    return segments_frame([name], found, classes)


def test_the_defaults_are_the_released_post_processing():
    assert POST == PostProcess(0.15, (0.05,), "mean", 0.25, "none", 0.5, 0.3, False, "ours")


def runs_by_loop(active):
    """Reference: walk every column snippet by snippet."""
    out = []
    T, C = active.shape
    for c in range(C):
        start = None
        for t in range(T + 1):
            on = t < T and active[t, c]
            if on and start is None:
                start = t
            elif not on and start is not None:
                out.append((c, start, t))
                start = None
    return out


def test_runs_of_many_curves_match_the_loop_curve_by_curve():
    """Curves of many lengths (0 and 1 included) laid end to end: the runs are those of the
    snippet loop over each curve's released normalisation, none crossing into the next."""
    rng = np.random.default_rng(0)
    for threshold in (0.05, -0.2, 0.3):
        curves = [np.cumsum(rng.normal(size=T)) for T in rng.integers(0, 40, size=30)]
        curves[3] = np.ones(12)                                 # flat: normalised to 0
        videos = [c[:, None] for c in curves]                   # one class per video
        flat, n = lay_end_to_end(videos, [[0] if len(c) else [] for c in curves])
        post = replace(POST, cls_threshold=0.1, loc_thresholds=(threshold,))
        col, start, end, _ = runs_end_to_end(flat, n, post)
        live = np.flatnonzero([len(c) for c in curves])         # column -> curve
        col = live[col]
        expected = []
        for j, c in enumerate(curves):
            if len(c):
                active = normalise_released(c[:, None]) > threshold
                expected += [(j, s, e) for _, s, e in runs_by_loop(active)]
        assert list(zip(col.tolist(), start.tolist(), end.tolist())) == expected
        assert len(expected) > 20


def test_seconds_conversion_and_clamp():
    np.testing.assert_allclose(snippets_to_seconds([0, 1, 10], 0.64), [0.0, 0.64, 6.4])
    np.testing.assert_allclose(snippets_to_seconds([10], 0.64, duration=5.0), [5.0])


def test_select_classes_threshold_and_top1_fallback():
    assert select_classes(np.array([0.1, 0.5, 0.15, 0.2]), 0.15).tolist() == [1, 2, 3]
    assert select_classes(np.array([0.1, 0.05, 0.12]), 0.15).tolist() == [2]


def test_hand_made_curve_with_run_touching_the_end():
    # T = 8 snippets of 0.64 s; one class; q = 0, p shaped so that snippets 1-2 and 6-7 fire
    p = np.array([[0.0], [1.0], [1.0], [0.0], [0.0], [0.0], [0.9], [0.9]])
    q = np.zeros(8)
    s = localisation_scores(q, p, lam=0.8)                      # 0.2 * p
    np.testing.assert_allclose(s[:, 0], 0.2 * p[:, 0])
    norm = normalise_released(s)                                # (s - mean) / range
    np.testing.assert_allclose(norm[:, 0], (p[:, 0] - p[:, 0].mean()) / 1.0)
    det = detect_video("vid", s, np.array([0.9]), POST,
                       snippet_seconds=0.64, duration=8 * 0.64 - 0.1,
                       classes=["Jump"])
    assert det["label"].tolist() == ["Jump", "Jump"]
    np.testing.assert_allclose(det["start"], [0.64, 6 * 0.64])
    # the run reaching the last snippet is kept and clamped to the duration
    np.testing.assert_allclose(det["end"], [3 * 0.64, 8 * 0.64 - 0.1])
    # confidence = mean raw score over the run x video score
    np.testing.assert_allclose(det["score"], [0.2 * 1.0 * 0.9, 0.2 * 0.9 * 0.9])


def test_flat_curve_gives_no_division_by_zero():
    s = localisation_scores(np.full(5, 0.5), np.full((5, 2), 0.5), 0.8)
    det = detect_video("v", s, np.array([0.9, 0.01]), POST, snippet_seconds=1.0,
                       duration=5.0, classes=["a", "b"])
    assert len(det) == 0


def test_confidences_are_not_constant():
    rng = np.random.default_rng(1)
    s = localisation_scores(rng.random(60), rng.random((60, 3)), 0.8)
    det = detect_video("v", s, np.array([0.5, 0.3, 0.2]), POST, snippet_seconds=0.64,
                       duration=60 * 0.64, classes=["a", "b", "c"])
    assert len(det) > 3 and det["score"].nunique() > 1
    assert ((det["score"] > 0) & (det["score"] <= 1)).all()
    assert (det["end"] > det["start"]).all()


def test_only_selected_classes_are_localised():
    s = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    det = detect_video("v", s, np.array([0.1, 0.9]), POST,
                       snippet_seconds=1.0, duration=3.0, classes=["a", "b"])
    assert det["label"].tolist() == ["b"] and det[["start", "end"]].values.tolist() == [[1.0, 2.0]]


def test_attention_scores_baseline():
    a = np.array([0.1, 0.4, 0.5])
    c = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    np.testing.assert_allclose(attention_scores(a, c), [[0.1, 0.1], [0.8, 0.0], [0.2, 0.8]])


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_lambda_is_used(lam):
    q, p = np.array([0.0, 1.0]), np.array([[1.0], [0.0]])
    np.testing.assert_allclose(localisation_scores(q, p, lam)[:, 0], [1 - lam, lam])


def test_oic_score_hand_worked():
    # one curve: 0 0 1 1 0 0 ; run [2, 4): inner mean 1; margin 0.5 -> one snippet each side
    # laid after another curve of 3 snippets, which must not count as the outer region
    flat = np.array([9.0, 9.0, 9.0, 0.0, 0.2, 1.0, 1.0, 0.4, 0.0])
    first, n = np.array([0, 3]), np.array([3, 6])
    col, start, end = np.array([1]), np.array([2]), np.array([4])
    np.testing.assert_allclose(flat_run_scores(flat, first, n, col, start, end, "mean", 0.5),
                               [1.0])
    np.testing.assert_allclose(flat_run_scores(flat, first, n, col, start, end, "oic", 0.5),
                               [1.0 - 0.3])
    # a run at a curve's start: the outer region is clipped to the curve (right side only)
    np.testing.assert_allclose(flat_run_scores(flat, first, n, np.array([1]), np.array([0]),
                                               np.array([2]), "oic", 0.5), [0.1 - 1.0])


def test_hard_and_soft_nms_hand_worked():
    starts, ends = np.array([0.0, 1.0, 10.0]), np.array([10.0, 10.0, 12.0])
    scores = np.array([0.9, 0.8, 0.5])
    kept, new = nms(starts, ends, scores, "hard", 0.5, 0.3)       # tIoU(0, 1) = 0.9 > 0.5
    assert kept.tolist() == [0, 2] and new.tolist() == [0.9, 0.5]
    kept, new = nms(starts, ends, scores, "soft", 0.5, 0.3)
    assert kept.tolist() == [0, 2, 1]          # 0.8 decays to 0.054, below 0.5
    np.testing.assert_allclose(new, [0.9, 0.5, 0.8 * np.exp(-0.81 / 0.3)])


def test_threshold_sweep_pools_runs_and_merges_duplicates():
    p = np.array([[0.0], [0.5], [1.0], [1.0], [0.5], [0.0], [0.0], [0.0]])
    s = localisation_scores(np.zeros(8), p, 0.0)
    one = detect_video("v", s, np.array([1.0]), POST, snippet_seconds=1.0, duration=8.0,
                       classes=["a"])
    sweep = replace(POST, loc_thresholds=(0.05, 0.5, 0.6))
    many = detect_video("v", s, np.array([1.0]), sweep, snippet_seconds=1.0, duration=8.0,
                        classes=["a"])
    # norm = p - 0.375: 0.05 -> [1, 5); 0.5 and 0.6 -> [2, 4) once
    assert one[["start", "end"]].values.tolist() == [[1.0, 5.0]]
    assert sorted(many[["start", "end"]].values.tolist()) == [[1.0, 5.0], [2.0, 4.0]]
    hard = replace(POST, loc_thresholds=(0.05, 0.5), nms="hard", nms_iou=0.4)
    merged = detect_video("v", s, np.array([1.0]), hard, snippet_seconds=1.0, duration=8.0,
                          classes=["a"])
    assert merged[["start", "end"]].values.tolist() == [[2.0, 4.0]]   # higher mean wins


def test_drop_ambiguous():
    p = np.array([[1.0], [0.0], [0.0], [1.0], [0.0]])
    drop = replace(POST, drop_ambiguous=True)
    det = detect_video("v", p, np.array([1.0]), drop, snippet_seconds=1.0, duration=5.0,
                       classes=["a"], ambiguous=[(3.5, 3.8)])
    assert det[["start", "end"]].values.tolist() == [[0.0, 1.0]]
    keep = detect_video("v", p, np.array([1.0]), POST, snippet_seconds=1.0, duration=5.0,
                        classes=["a"], ambiguous=[(3.5, 3.8)])
    assert len(keep) == 2


@pytest.mark.parametrize("post", [
    POST,
    replace(POST, cls_threshold=0.3, loc_thresholds=(0.0, 0.1), score="oic", nms="hard"),
    replace(POST, cls_threshold=0.2, loc_thresholds=(0.05,), nms="soft", drop_ambiguous=True)])
def test_batch_over_videos_equals_one_video_at_a_time(post):
    from detection import detect_batch, segments_frame
    rng = np.random.default_rng(4)
    lengths = [7, 40, 1, 23, 60]
    scores = [rng.random((T, 4)) for T in lengths]
    vscores = rng.dirichlet(np.ones(4), size=len(lengths))
    durations = [T * 0.64 - 0.2 for T in lengths]
    amb = {1: [(3.0, 5.0)], 4: [(10.0, 12.0)]}
    names, classes = [f"v{i}" for i in range(5)], list("abcd")
    batch = segments_frame(names, detect_batch(scores, vscores, post, snippet_seconds=0.64,
                                               durations=durations, ambiguous=amb),
                           classes)
    single = pd.concat([detect_video(names[i], scores[i], vscores[i], post, snippet_seconds=0.64,
                                     duration=durations[i], classes=classes,
                                     ambiguous=amb.get(i, ())) for i in range(5)])
    key = ["video", "label", "start", "end"]
    a = batch.sort_values(key).reset_index(drop=True)
    b = single.sort_values(key).reset_index(drop=True)
    assert len(a) > 5
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, check_dtype=False)
