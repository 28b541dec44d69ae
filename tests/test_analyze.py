"""The report: timeline coordinates, the drawn threshold, analyze.py on a run and on a
prediction file (every file, nothing outside report/), bad input, the page in a browser."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis import report
from detection import PostProcess, raw_cutoffs
from test_detection import detect_video
from pipeline.run_files import RunFolder

ROOT = Path(__file__).resolve().parents[1]
STPN = ROOT / "data/predictions/stpn_thumos14_test.json"
RUN_REPORT = {"index.html", "analysis.json", "map_tiou.png", "per_class_ap.png", "errors.png",
              "ap_buckets.png", "training.png"}


def cli(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def files(folder):
    """{relative path: (size, mtime)} of everything under folder, report/ excluded."""
    out = {}
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "report"]
        for n in names:
            st = os.lstat(os.path.join(base, n))
            out[os.path.relpath(os.path.join(base, n), folder)] = (st.st_size, st.st_mtime_ns)
    return out


# ----------------------------------------------------------------------------- pictures

def test_timeline_draws_segments_at_their_seconds():
    gt = pd.DataFrame({"label": ["A", "B"], "start": [10.0, 40.0], "end": [20.0, 52.5]})
    dets = pd.DataFrame({"label": ["A", "A"], "start": [12.0, 60.0], "end": [18.0, 61.5],
                         "score": [0.8, 0.2]})
    T, step = 200, 0.5
    curves = {"snippet_seconds": step,
              "lines": [("q", np.linspace(0, 1, T), None, "-"),
                        ("s_c A", np.full(T, 0.3), "A", "-")],
              "cutoffs": [("A", 0.25)]}
    fig = figures.timeline("v", gt, dets, duration=100.0, classes=["A", "B", "C"],
                           curves=curves, ambiguous=[(30.0, 35.0)], ap=0.5)
    ax, axc = fig.axes
    patches = {}
    for p in ax.patches:
        patches.setdefault(p.get_gid(), []).append((p.get_x(), p.get_x() + p.get_width(),
                                                     p.get_y()))
    # rows: A (row 0), B (row 1); ground truth in the row's upper half (y axis inverted)
    assert sorted(patches["gt"]) == [(10.0, 20.0, 0.05), (40.0, 52.5, 1.05)]
    assert sorted(patches["detection"]) == [(12.0, 18.0, 0.53), (60.0, 61.5, 0.53)]
    assert patches["ambiguous"] == [(30.0, 35.0, 0)]
    alphas = sorted(p.get_alpha() for p in ax.patches if p.get_gid() == "detection")
    assert alphas[0] < alphas[1] == 1.0                      # opacity follows confidence
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    assert ax.get_xlim() == (0.0, 100.0) and "AP 50.0 %" in ax.get_title()
    q = next(line for line in axc.lines if line.get_gid() == "curve:q")
    x = q.get_xdata()
    assert x[0] == 0 and x[-1] == T * step and np.allclose(np.diff(x), step)
    cutoff = next(line for line in axc.lines if line.get_gid() == "cutoff:A")
    assert list(cutoff.get_ydata()) == [0.25, 0.25]
    assert axc.get_xlabel() == "time (s)"


def test_drawn_threshold_is_the_one_detection_uses():
    rng = np.random.default_rng(0)
    s = rng.random((60, 3))                                  # (T, K)
    post = PostProcess(0.5, (0.05,), "mean", 0.25, "none", 0.5, 0.3, False, "ours")
    found = detect_video("v", s, np.array([1.0, 0.0, 0.0]), post, snippet_seconds=1.0,
                         duration=60.0, classes=["A", "B", "C"])
    above = s[:, 0] > raw_cutoffs(s, [0.05])[0, 0]           # (T,)
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0]))
    runs = list(zip(edges[::2].astype(float), edges[1::2].astype(float)))
    assert runs == list(zip(found["start"], found["end"]))


def test_report_folder_replaces_a_link_and_keeps_other_files(tmp_path):
    outside = tmp_path / "outside.html"
    outside.write_text("mine")
    (tmp_path / "run").mkdir()
    os.symlink(outside, tmp_path / "run" / "report")
    path = report.report_folder(str(tmp_path / "run"))
    assert os.path.isdir(path) and not os.path.islink(path)
    assert outside.read_text() == "mine"
    (Path(path) / "notes.txt").write_text("kept")
    (Path(path) / "timeline_old.png").write_text("stale")
    report.report_folder(str(tmp_path / "run"))
    assert sorted(os.listdir(path)) == ["notes.txt"]


def test_history_is_cut_at_the_checkpoint(tmp_path):
    entries = [{"position": i, "phase": "C", "loss": 1.0} for i in range(1, 6)]
    (tmp_path / "history.json").write_text(json.dumps(entries))
    assert [e["position"] for e in RunFolder(str(tmp_path)).read_history(3)] == [1, 2, 3]
    (tmp_path / "history.json").write_text("{broken")
    assert RunFolder(str(tmp_path)).read_history(3) == []


# ----------------------------------------------------------------------------- a run

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """A --dry-run (with its report) and an attention-MIL --dry-run beside it (without)."""
    base = tmp_path_factory.mktemp("runs")
    for name, extra in (("emmil", []), ("unt", ["--method", "untrimmednet", "--no-report"])):
        r = cli("run.py", "--dry-run", "--quiet", "--output-dir", base / name, *extra)
        assert r.returncode == 0, r.stderr
    return base


def test_run_writes_history_and_report(dry_run):
    run = dry_run / "emmil"
    history = json.loads((run / "history.json").read_text())
    assert [h["phase"] for h in history] == ["C", "M1", "E", "M2", "E", "M2"]
    assert [h["position"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert all(h["positive"] > 0 for h in history[1:]) and history[0]["positive"] is None
    names = set(os.listdir(run / "report"))
    assert RUN_REPORT <= names
    assert len([n for n in names if n.startswith("timeline_")]) == 4     # 4 test videos
    assert "report: " in (run / "log.txt").read_text()


def test_analyze_run_dir_writes_every_file_and_nothing_else(dry_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(dry_run / "emmil", run)
    shutil.rmtree(run / "report")
    before = files(run)
    r = cli("analyze.py", run, "--videos", "video_test_0000006")
    assert r.returncode == 0, r.stderr
    assert files(run) == before                               # nothing outside report/
    names = set(os.listdir(run / "report"))
    assert RUN_REPORT <= names and "timeline_video_test_0000006.png" in names
    numbers = json.loads((run / "report" / "analysis.json").read_text())
    assert set(numbers["counts"]) == {"true_positive", "double_detection", "wrong_label",
                                      "localization", "confusion", "background"}
    assert numbers["false_positives"] == numbers["top_predictions"] - \
        numbers["counts"]["true_positive"]
    assert numbers["paper"] is None                           # synthetic: never beside it
    metrics = json.loads((run / "metrics.json").read_text())
    assert numbers["mAP"] == pytest.approx(list(metrics["mAP"].values()), abs=1e-12)
    assert numbers["ap_by_coverage"] is not None              # the data have durations
    html = (run / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])
    assert "src=\"http" not in html and "<script" not in html


def test_analyze_a_folder_of_runs_compares_methods(dry_run):
    r = cli("analyze.py", dry_run)
    assert r.returncode == 0, r.stderr
    numbers = json.loads((dry_run / "report" / "analysis.json").read_text())
    assert sorted(numbers["runs"]) == ["emmil: EM-MIL", "unt: attention MIL"]
    assert (dry_run / "report" / "methods.png").is_file()


def test_no_report(dry_run):
    assert not (dry_run / "unt" / "report").exists()          # run with --no-report
    assert (dry_run / "unt" / "history.json").is_file()


# ----------------------------------------------------------------------------- bad input

def one_line_error(r, *words):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_folder_without_results(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    one_line_error(cli("analyze.py", tmp_path), "results.json")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_results_naming_unknown_videos(dry_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(dry_run / "emmil", run)
    shutil.rmtree(run / "report")
    results = json.loads((run / "results.json").read_text())
    results["results"]["video_test_9999999"] = [{"label": "HighJump", "segment": [1, 2],
                                                 "score": 0.5}]
    (run / "results.json").write_text(json.dumps(results))
    before = files(run)
    one_line_error(cli("analyze.py", run), "video_test_9999999")
    assert files(run) == before and not (run / "report").exists()


def test_unknown_video_name(dry_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(dry_run / "emmil", run)
    shutil.rmtree(run / "report")
    one_line_error(cli("analyze.py", run, "--videos", "video_test_0000006", "no_such_video"),
                   "no_such_video")
    assert not (run / "report").exists()


# ----------------------------------------------------------------------------- --pred

@pytest.fixture(scope="module")
def stpn_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("stpn")
    gt = ROOT / "data/thumos14/Thumos14reduced-Annotations"
    r = cli("analyze.py", "--pred", STPN, "--gt", gt, "--out", out, "--paper", "thumos14")
    assert r.returncode == 0, r.stderr
    return out / "report"


def test_pred_mode_on_stpn(stpn_report):
    names = set(os.listdir(stpn_report))
    assert RUN_REPORT - {"training.png"} <= names and "training.png" not in names
    assert len([n for n in names if n.startswith("timeline_")]) == 12
    numbers = json.loads((stpn_report / "analysis.json").read_text())
    assert numbers["paper"][0] == [0.1, 0.591]                # asked for with --paper
    assert sum(numbers["counts"].values()) == numbers["top_predictions"]
    assert 0.2 < numbers["fractions"]["localization"] < 0.35


def test_page_renders_in_a_headless_browser(stpn_report, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium to render the page with")
    shot = tmp_path / "page.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                        "--window-size=1200,2400", (stpn_report / "index.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr
    from matplotlib.image import imread
    pixels = imread(shot)                                     # (H, W, 3 or 4) in [0, 1]
    assert pixels.shape[:2] == (2400, 1200)
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    colours = len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert dark > 0.005 and colours > 50                      # text and pictures, not blank
