"""--detection released: the released EM-MIL test(), against a plain transcription of its
snippet loop (tests/ref_released_detection.py), segment for segment."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from detection import (RELEASED_LAM, PostProcess, detect_batch, localisation_scores,
                       released_class_ids, segments_frame, write_results_txt)
from core.files import file_sha256
from opts import build_parser
from ref_released_detection import normalise_released, released_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = PostProcess.from_opts(build_parser().parse_args([]))     # opts.py's defaults
RELEASED = replace(OURS, detection="released")


def random_videos(rng, n_videos=40, n_classes=5):
    """Curves of many shapes: smooth, piecewise constant (plateaus), flat, 0 and 1 snippet
    long; video scores of which some never reach 0.15."""
    videos = []
    for v in range(n_videos):
        T = int(rng.choice([0, 1, 2, 3, 17, 50, 120]))
        kind = v % 3
        if kind == 0:                                            # smooth random walks
            q = rng.random() + 0.1 * np.cumsum(rng.normal(size=T))
            p = 0.1 * np.cumsum(rng.normal(size=(T, n_classes)), axis=0)
        elif kind == 1:                                          # plateaus
            q = np.repeat(rng.random(max(T // 5, 1) + 1), 5)[:T]
            p = np.repeat(rng.random((max(T // 5, 1) + 1, n_classes)), 5, axis=0)[:T]
        else:                                                    # independent snippets
            q, p = rng.random(T), rng.random((T, n_classes))
        if v % 7 == 3 and T:                                     # a flat curve
            q, p[:, 0] = np.full(T, 0.3), 0.6
        scores = rng.random(n_classes) * (0.12 if v % 5 == 0 else 0.6)   # some: no class
        videos.append((f"video_{v:03d}", q, p, scores))
    return videos


def ours_lines(videos, ratio, tmp_path, durations=None):
    """detect_batch in released mode, written by our results.txt writer and read back."""
    curves = [localisation_scores(q, p, RELEASED_LAM) for _, q, p, _ in videos]
    scores = np.stack([s for *_, s in videos])
    durations = durations if durations is not None else [1.0] * len(videos)
    found = detect_batch(curves, scores, RELEASED, snippet_seconds=ratio, durations=durations)
    classes = [f"class{k}" for k in range(scores.shape[1])]
    path = tmp_path / "results.txt"
    write_results_txt(path, segments_frame([n for n, *_ in videos], found, classes),
                      released_class_ids(classes))
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(r[0], float(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in rows], found


@pytest.mark.parametrize("seed", range(4))
def test_released_detection_matches_the_released_loop(seed, tmp_path):
    rng = np.random.default_rng(seed)
    videos = random_videos(rng)
    ratio = 15 * 2 / 24                       # the released clips: 15 frames, every 2nd, 24 fps
    expected = [line for name, q, p, s in videos for line in released_lines(name, q, p, s, ratio)]
    # durations far shorter than the features: the released code does not clamp
    got, found = ours_lines(videos, ratio, tmp_path, durations=[0.5] * len(videos))
    assert got == expected
    assert len(expected) > 150
    assert (found["score"] == 1).all()


def test_released_curve_is_lam_one_half_after_normalisation():
    """lam*q + lam*p_c, normalised by (s - mean) / (max - min), is the normalised
    0.5*q + 0.5*p_c, whatever lam: the released test() does not depend on lambda."""
    rng = np.random.default_rng(0)
    q, p = rng.random(200), rng.random((200, 6))
    ours = normalise_released(localisation_scores(q, p, RELEASED_LAM))
    for lam in (0.8, 0.3, 1.0):
        np.testing.assert_allclose(normalise_released(lam * q[:, None] + lam * p), ours,
                                   rtol=0, atol=1e-12)
    assert np.abs(normalise_released(localisation_scores(q, p, 0.8)) - ours).max() > 0.05


def test_released_rules_on_a_hand_made_video():
    # 8 snippets, one class: runs [1, 3) and [6, 8); the second reaches the last snippet.
    p = np.array([[0.0], [1.0], [1.0], [0.0], [0.0], [0.0], [0.9], [0.9]])
    q = np.zeros(8)
    curves = [localisation_scores(q, p, RELEASED_LAM)]
    ours = OURS
    for post, starts, ends, conf in [(RELEASED, [0.64], [3 * 0.64], [1.0]),
                                     (ours, [0.64, 6 * 0.64], [3 * 0.64, 5.0],
                                      [0.5 * 0.9, 0.5 * 0.9 * 0.9])]:
        found = detect_batch(curves, np.array([[0.9]]), post, snippet_seconds=0.64,
                             durations=[5.0])
        np.testing.assert_allclose(found["start"], starts)
        np.testing.assert_allclose(found["end"], ends)
        np.testing.assert_allclose(found["score"], conf)
    # no class reaches the threshold: released localises nothing, ours the top-1 class
    for post, n in [(RELEASED, 0), (ours, 2)]:
        found = detect_batch(curves, np.array([[0.1]]), post, snippet_seconds=0.64,
                             durations=[5.0])
        assert len(found["start"]) == n


def run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_run_with_released_detection(tmp_path):
    out = tmp_path / "out"
    # after one epoch no video score reaches 0.15: localise every class (threshold 0)
    r = run("--dry-run", "--detection", "released", "--cls-threshold", "0",
            "--output-dir", str(out), "--no-tensorboard", "--no-report")
    assert r.returncode == 0, r.stderr
    dets = [d for v in json.loads((out / "results.json").read_text())["results"].values()
            for d in v]
    assert dets and {d["score"] for d in dets} == {1.0}
    rows = [line.split() for line in (out / "results.txt").read_text().splitlines()]
    assert len(rows) == len(dets) and {int(r[3]) for r in rows} <= set(range(1, 21))
    assert json.loads((out / "opts.json").read_text())["detection"] == "released"


@pytest.mark.parametrize("extra", [["--nms", "hard"], ["--score", "oic"],
                                   ["--loc-threshold", "0.05", "0.1"], ["--drop-ambiguous"],
                                   ["--method", "untrimmednet"]])
def test_released_detection_refuses_options_it_does_not_have(tmp_path, extra):
    r = run("--dry-run", "--detection", "released", *extra, "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and "--detection released" in r.stderr
    assert not (tmp_path / "o").exists()


def test_compare_detection_script_detects_three_ways_on_the_same_weights(tmp_path):
    """run.py --seeds trains, detect.py localises twice more with the same weights."""
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "compare_detection.py"),
                        "--seeds", "1", "--output-dir", str(out), "--",
                        "--dry-run", "--cls-threshold", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and "released" in rows[3]              # header + three detections
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 3
    runs = [out / folder / "seed_1" for folder in ("trained", "lam_0.5", "released")]
    trained = json.loads((runs[0] / "opts.json").read_text())
    for d in runs[1:]:                                            # the same trained weights
        record = json.loads((d / "opts.json").read_text())["detect"]
        assert record["source_run"] == str(runs[0])
        assert record["weights_sha256"]["em_mil.pt"] == file_sha256(runs[0] / "em_mil.pt")
    assert json.loads((runs[1] / "opts.json").read_text())["lam"] == 0.5 != trained["lam"]
    assert json.loads((runs[2] / "opts.json").read_text())["detection"] == "released"
    dets = json.loads((runs[2] / "results.json").read_text())["results"]
    assert {d["score"] for v in dets.values() for d in v} == {1.0}
    for name, s in summary.items():
        m = json.loads((runs[list(summary).index(name)] / "metrics.json").read_text())
        assert s["metrics"]["mAP@0.5"]["values"] == [m["mAP"]["0.5"]]
