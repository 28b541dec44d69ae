"""extract.py end to end with random weights (--random-init, test-only) and DIS flow on tiny
videos: the folders layout and its shapes, extraction.json, the bad inputs (one line each,
the other videos done), a rerun skips, another extraction's folder is refused, --to-hdf5,
and what reads the output: dataset.py summary, detect.py (--data-root, --video), run.py
(with annotations added), Ray workers."""
import contextlib
import io
import json
import os
import re
import shutil

import av
import numpy as np
import pytest
import torch

import dataset
import detect
import extract
import run
from extraction.i3d import PIERGIAJ_BLOBS
from extraction.inputs import jobs_of
from extraction.record import comparability
from core.cli import cli
from core.errors import InputError
from test_extract_frames import audio_only, constant_rate, textured, write_video

DRY = ["--dry-run", "--quiet", "--no-report", "--no-tensorboard"]
TEST_ONLY = ["--random-init", "--flow", "dis"]


def call(main, argv):
    """(exit code, stdout, stderr) of a command's main."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(main, argv)
    return code, out.getvalue(), err.getvalue()


def moving(n, seed=1):
    texture = np.repeat(textured((48, 160), seed=seed)[:, :, None], 3, axis=2)
    return lambda i: np.ascontiguousarray(texture[:, 80 - 2 * i:144 - 2 * i])


def truncated(path, tmp):
    """An mp4 with its index first (faststart), cut after its first few frames."""
    whole = tmp / "whole.mp4"
    out = av.open(str(whole), "w", options={"movflags": "faststart"})
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(100):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 8])
    whole.unlink()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """vids/: one (20 frames at 25 fps: one chunk), short (10 frames), broken (text),
    cut (truncated), sound (no video stream), twin; more/twin (the same name)."""
    base = tmp_path_factory.mktemp("videos")
    vids, more = base / "vids", base / "more"
    vids.mkdir()
    more.mkdir()
    write_video(vids / "one.mp4", constant_rate(20, 25), image=moving(20))
    write_video(vids / "short.mp4", constant_rate(10, 25))
    (vids / "broken.mp4").write_text("not a video\n" * 20)
    truncated(vids / "cut.mp4", base)
    audio_only(vids / "sound.mp4")
    write_video(vids / "twin.mp4", constant_rate(20, 25))
    write_video(more / "twin.mkv", constant_rate(20, 25), container="matroska")
    return base


@pytest.fixture(scope="module")
def extracted(videos):
    """The extraction of every video above: (exit code, stdout, stderr, folder)."""
    out = videos / "out"
    code, stdout, stderr = call(extract.main, [str(videos / "vids"), str(videos / "more"),
                                               "--out", str(out), *TEST_ONLY])
    return code, stdout, stderr, out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli(run.main, [*DRY, "--output-dir", str(out)]) == 0
    return out


def test_layout_shapes_and_record(extracted):
    code, stdout, _, out = extracted
    assert code == 2                                     # some videos failed (below)
    assert sorted(os.listdir(out)) == ["extraction.json", "features", "split_test.txt"]
    for stream in ("rgb", "flow"):
        assert os.listdir(out / "features" / "test" / stream) == ["one.npy"]
        x = np.load(out / "features" / "test" / stream / "one.npy", allow_pickle=False)
        assert x.shape == (1, 1024) and x.dtype == np.float32 and np.isfinite(x).all()
        assert x.std() > 0
    assert (out / "split_test.txt").read_text() == "one\n"
    record = json.loads((out / "extraction.json").read_text())
    assert record["comparable"] == "meaningless"
    assert record["videos"]["one"]["snippets"] == 1 and record["videos"]["one"]["frames"] == 20
    assert record["videos"]["one"]["split"] == "test"
    made = record["videos"]["one"]["machine"]                # which device made it (issue 24)
    assert made["device"] == "cpu" and made["cpu_capability"] and made["blas"]
    assert record["videos"]["one"]["tf32"] is False
    assert list(record["left_out"]) == ["short"]
    conv = record["options"]["convention"]
    assert (conv["fps"], conv["chunk_frames"], conv["crop"]["size"],
            conv["resize"]["short_side"]) == (25, 16, 224, 256)
    assert conv["flow"]["method"] == "dis" and conv["flow"]["params"]["preset"] == "MEDIUM"
    assert record["options"]["weights"] == {"rgb": {"random_init_seed": 0},
                                            "flow": {"random_init_seed": 1}}
    assert {"torch", "av", "opencv", "ffmpeg"} <= set(record["versions"])
    assert "one: 1 snippets (20 frames at 25 fps)" in stdout


def test_bad_videos_are_one_line_each_and_the_others_done(extracted, videos):
    _, _, stderr, _ = extracted
    lines = stderr.strip().splitlines()
    vids = videos / "vids"
    expected = {
        f"error: {vids / 'broken.mp4'}: not a readable video (Invalid data",
        f"error: {vids / 'cut.mp4'}: ",
        f"error: {vids / 'sound.mp4'}: no video stream (streams: audio)",
        f"error: {vids / 'twin.mp4'}: two videos have the name twin",
        f"error: {videos / 'more' / 'twin.mkv'}: two videos have the name twin",
        f"warning: {vids / 'short.mp4'}: 10 frames at 25 fps, fewer than one chunk of 16",
    }
    assert len(lines) == len(expected)
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, start
    # FFmpeg stops with an error, or quietly (then fewer frames than its index lists)
    cut = [line for line in lines if "cut.mp4" in line][0]
    assert re.search(r"truncated video: \d of the 100 frames its index lists could be decoded"
                     r"|damaged or truncated video: decoding stopped after \d frames", cut)


def test_a_rerun_skips_what_is_done(extracted, videos):
    _, _, _, out = extracted
    feature = out / "features" / "test" / "rgb" / "one.npy"
    before = (os.stat(feature).st_mtime_ns, (out / "extraction.json").read_bytes())
    code, stdout, stderr = call(extract.main, [str(videos / "vids" / "one.mp4"),
                                               str(videos / "vids" / "short.mp4"),
                                               "--out", str(out), *TEST_ONLY])
    assert code == 0 and stderr == ""
    assert "2 videos were finished before: skipped" in stdout and "one:" not in stdout
    assert (os.stat(feature).st_mtime_ns, (out / "extraction.json").read_bytes()) == before


def test_another_extraction_in_the_folder_is_refused(extracted, videos):
    _, _, _, out = extracted
    before = (out / "extraction.json").read_bytes()
    code, _, stderr = call(extract.main, [str(videos / "vids" / "one.mp4"), "--out", str(out),
                                          "--random-init", "--flow", "tvl1"])
    assert code == 2
    assert stderr.startswith(f"error: {out / 'extraction.json'}: another extraction (flow "
                             f"differs); choose another --out, or pass --overwrite")
    assert len(stderr.splitlines()) == 1 and (out / "extraction.json").read_bytes() == before


def test_gpu_tf32_videos_are_not_added_to_a_cpu_extraction(extracted, videos, tmp_path):
    """A record whose videos say TF32 (made on a GPU): the CPU's float32 ones are refused."""
    _, _, _, out = extracted
    record = json.loads((out / "extraction.json").read_text())
    for v in record["videos"].values():
        v["tf32"] = True
    folder = tmp_path / "gpu"
    folder.mkdir()
    (folder / "extraction.json").write_text(json.dumps(record))
    code, _, stderr = call(extract.main, [str(videos / "vids" / "twin.mp4"), "--out",
                                          str(folder), *TEST_ONLY])
    assert code == 2 and len(stderr.splitlines()) == 1
    assert "extracted in TF32 convolutions (GPU), these would be in float32" in stderr
    assert "choose another --out" in stderr and os.listdir(folder) == ["extraction.json"]


def test_dataset_summary_reads_it(extracted):
    _, _, _, out = extracted
    code, stdout, _ = call(dataset.main, ["summary", "--data-root", str(out)])
    assert code == 0
    summary = json.loads(stdout)
    assert summary["layout"] == "folders" and summary["annotated"] is False
    assert summary["splits"]["test"] == {"videos": 1, "snippets": 1, "segments": 0}
    assert summary["splits"]["train"]["videos"] == 0
    assert summary["snippets_per_second"] == 25 / 16
    assert len(summary["warnings"]) == 1 and "not comparable" in summary["warnings"][0]


def test_to_hdf5_is_read_like_the_folder(extracted, videos, tmp_path):
    _, _, _, out = extracted
    h5 = tmp_path / "own.h5"
    code, _, _ = call(extract.main, [str(videos / "vids" / "one.mp4"), "--out", str(out),
                                     "--to-hdf5", str(h5), *TEST_ONLY])
    assert code == 0
    code, stdout, _ = call(dataset.main, ["summary", "--data-root", str(h5)])
    assert code == 0
    summary = json.loads(stdout)
    assert summary["layout"] == "hdf5" and summary["annotated"] is False
    assert summary["splits"]["test"]["snippets"] == 1
    assert "not comparable" in summary["warnings"][0]
    data = dataset.load_dataset(str(h5), "", "", "", unannotated=True, log=lambda m: None,
                                memory="float32")
    joint = np.concatenate([np.load(out / "features" / "test" / s / "one.npy")
                            for s in ("rgb", "flow")], axis=1)
    assert np.array_equal(data.videos[0].features.numpy(), joint)
    code, _, stderr = call(extract.main, [str(videos / "vids" / "one.mp4"), "--out", str(out),
                                          "--to-hdf5", str(h5), *TEST_ONLY])
    assert code == 2 and "own.h5: exists" in stderr


def test_detect_localises_it_without_ground_truth(extracted, finished_run, tmp_path):
    _, _, _, out = extracted
    det = tmp_path / "det"
    code, _, stderr = call(detect.main, [str(finished_run), "--data-root", str(out),
                                         "--output-dir", str(det), "--quiet"])
    assert code == 0, stderr
    assert "not comparable" in stderr
    log = (det / "log.txt").read_text()
    assert f"detect: 1 test videos of {out} with the run" in log
    assert "no ground truth for these videos: no metrics.json" in log
    assert not (det / "metrics.json").exists()
    results = json.loads((det / "results.json").read_text())["results"]
    classes = open("data/thumos14/classes.txt").read().split()      # the run's class list
    assert set(results) <= {"one"}
    assert all(d["label"] in classes and d["segment"][1] <= 0.64 + 1e-9
               for d in results.get("one", []))


def test_run_reads_it_once_annotations_are_added(extracted, tmp_path):
    _, _, _, out = extracted
    root = tmp_path / "annotated"
    shutil.copytree(out, root)
    (root / "features" / "train").mkdir()
    shutil.copytree(root / "features" / "test", root / "features" / "train", dirs_exist_ok=True)
    for stream in ("rgb", "flow"):
        os.rename(root / "features" / "train" / stream / "one.npy",
                  root / "features" / "train" / stream / "one_train.npy")
    (root / "split_train.txt").write_text("one_train\n")
    gt = {"database": {
        "one": {"subset": "test", "annotations": [{"segment": [0.1, 0.5], "label": "Diving"}]},
        "one_train": {"subset": "validation",
                      "annotations": [{"segment": [0.0, 0.6], "label": "Diving"}]}}}
    (root / "gt.json").write_text(json.dumps(gt))
    code, _, stderr = call(run.main, [*DRY, "--dataset", "thumos14", "--data-root", str(root),
                                      "--output-dir", str(tmp_path / "r")])
    assert code == 0, stderr
    assert "extraction.json: these features are not comparable" in stderr
    assert (tmp_path / "r" / "metrics.json").exists()
    # without gt.json, run.py refuses in one line, naming what to do
    code, _, stderr = call(run.main, [*DRY, "--data-root", str(out),
                                      "--output-dir", str(tmp_path / "r2")])
    assert code == 2 and f"{out / 'gt.json'}: not found: the features extract.py wrote" in stderr


def test_detect_video_gives_detections_and_a_timeline(videos, finished_run, tmp_path):
    det = tmp_path / "det"
    code, stdout, stderr = call(detect.main, [
        str(finished_run), "--video", str(videos / "vids" / "one.mp4"), *TEST_ONLY,
        "--output-dir", str(det)])
    assert code == 0, stderr
    assert set(json.loads((det / "results.json").read_text())["results"]) <= {"one"}
    assert "detect: 1 test videos of" in (det / "log.txt").read_text()
    assert (det / "timeline_one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (det / "extraction" / "features" / "test" / "rgb" / "one.npy").exists()
    saved = json.loads((det / "opts.json").read_text())["detect"]
    assert saved["video"] == str(videos / "vids" / "one.mp4")
    assert f"timeline: {det / 'timeline_one.png'}" in stdout
    # a file that is not a video: one line, nothing written
    code, _, stderr = call(detect.main, [
        str(finished_run), "--video", str(videos / "vids" / "broken.mp4"), *TEST_ONLY,
        "--output-dir", str(tmp_path / "bad")])
    assert code == 2 and stderr.startswith(f"error: {videos / 'vids' / 'broken.mp4'}: not a")
    assert not (tmp_path / "bad").exists()


def test_workers_on_ray(videos, tmp_path):
    """Two videos as Ray tasks (no I3D pass: one too short, one failing in its task): the
    task's record comes back and is written, the failure is one line, the task folders go."""
    cut, short = videos / "vids" / "cut.mp4", videos / "vids" / "short.mp4"
    code, stdout, stderr = call(extract.main, [str(short), str(cut), "--out",
                                               str(tmp_path / "ray"), "--workers", "2",
                                               *TEST_ONLY])
    assert code == 2
    lines = sorted(stderr.splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {cut}: ") and "truncated video: " in lines[0]
    assert lines[1].startswith(f"warning: {short}: 10 frames at 25 fps")
    record = json.loads((tmp_path / "ray" / "extraction.json").read_text())
    assert record["videos"] == {} and record["left_out"]["short"]["source"] == str(short)
    assert sorted(os.listdir(tmp_path / "ray")) == ["extraction.json"]      # no .work/


@pytest.mark.parametrize("kind, says", [
    ("pickled", "refused: it holds a pickled object"),
    ("other-network", "lacks Conv3d_1a_7x7.conv3d.weight: not the weights of Inception-I3D"),
    ("missing", "file not found (--rgb-weights)"),
])
def test_bad_weights_stop_before_anything_is_written(videos, tmp_path, kind, says):
    path = tmp_path / "rgb.pt"
    if kind == "pickled":
        torch.save({"model": contextlib.nullcontext()}, path)
    elif kind == "other-network":
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    flow = tmp_path / "flow.pt"
    flow.write_bytes(b"")
    code, _, stderr = call(extract.main, [str(videos / "vids" / "one.mp4"),
                                          "--out", str(tmp_path / "out"), "--rgb-weights",
                                          str(path), "--flow-weights", str(flow)])
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {path}: {says}")
    assert not (tmp_path / "out").exists()


def test_comparable_only_for_tvl1_and_piergiajs_weights():
    theirs = {s: {"sha256": "0" * 64, "git_blob": PIERGIAJ_BLOBS[s],
                  "piergiaj": f"{s}_imagenet.pt"} for s in ("rgb", "flow")}
    assert comparability(("rgb", "flow"), "tvl1", theirs) == ("approximate", [])
    assert comparability(("rgb", "flow"), "tvl1-torch", theirs) == ("approximate", [])
    assert comparability(("rgb", "flow"), "dis", theirs) == ("no", ["flow by dis, not TV-L1"])
    other = {**theirs, "rgb": {"sha256": "ab" * 32, "git_blob": "1" * 40, "piergiaj": None}}
    assert comparability(("rgb", "flow"), "tvl1", other) == (
        "no", ["the rgb weights (sha256 abababababab...) are not piergiaj's rgb_imagenet.pt"])
    assert comparability(("rgb",), "dis", {"rgb": {"random_init_seed": 0}})[0] == "meaningless"


def test_split_list_gives_each_video_its_split(tmp_path):
    listing = tmp_path / "splits.txt"
    listing.write_text("a train\n\nb test\n")
    jobs, problems = jobs_of(["/v/a.mp4", "/v/b.avi", "/v/c d.mp4"], "test", str(listing))
    assert [(j.name, j.split) for j in jobs] == [("a", "train"), ("b", "test")]
    assert problems == ["/v/c d.mp4: video 'c d': the name contains whitespace; a video name "
                        "must be a plain file name without whitespace"]
    with pytest.raises(InputError, match=r"splits.txt: video e \(/v/e.mp4\) is not listed"):
        jobs_of(["/v/e.mp4"], "test", str(listing))
    listing.write_text("a validation\n")
    with pytest.raises(InputError, match=r"splits.txt: line 1: split 'validation', expected "
                                         r"train or test"):
        jobs_of(["/v/a.mp4"], "test", str(listing))
