"""extraction/frames.py, flow.py, video_features.py without the network: tiny videos written with
PyAV at 24, 25, 30 and variable frame rates give the 25-fps frames the nearest-timestamp
rule says (checked against the frames' own brightness) and floor(frames / 16) chunks; a
known shift gives its flow; the flow's clip and scale round trip."""
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from extraction import frames as fr
from extraction.video_features import CHUNK, VideoStats, chunk_inputs
from extraction.flow import FLOW_BOUND, flow_algorithm, flow_field, scale_flow, unscale_flow
from core.errors import InputError

LEVEL = 5                # frame i of a written video is grey level LEVEL * i


def audio_only(path):
    """A file with one audio stream and no video stream."""
    out = av.open(str(path), "w")
    stream = out.add_stream("aac", rate=8000)
    for _ in range(4):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def write_video(path, times, size=(64, 48), rate=25, level=LEVEL, container=None, image=None):
    """A video whose frame i is uniformly grey LEVEL * i (or image(i), (H, W, 3) uint8),
    shown at times[i] seconds (Fractions, on a time base of 1/1000 s)."""
    out = av.open(str(path), "w", format=container)
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    base = Fraction(1, 1000)
    stream.codec_context.time_base = base
    stream.time_base = base
    for i, t in enumerate(times):
        pixels = (np.full((size[1], size[0], 3), level * i % 256, np.uint8) if image is None
                  else image(i))
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = int(t / base), base
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return str(path)


def constant_rate(n, rate):
    return [Fraction(i, rate) for i in range(n)]


def nearest(times, end, fps=25):
    """The rule by brute force: for each k with k / fps < end, the index of the nearest
    time (a tie to the later one)."""
    out, k = [], 0
    while Fraction(k, fps) < end:
        t = Fraction(k, fps)
        out.append(min(range(len(times)), key=lambda i: (abs(times[i] - t), -i)))
        k += 1
    return out


@pytest.mark.parametrize("rate, n", [(24, 48), (25, 40), (30, 45)])
def test_constant_rates_resample_to_the_nearest_frame(tmp_path, rate, n):
    times = constant_rate(n, rate)
    path = write_video(tmp_path / f"r{rate}.mp4", times, rate=rate)
    got = [(k, i, frame.to_ndarray(format="rgb24").mean()) for k, i, frame in fr.frames_at(path)]
    expected = nearest(times, Fraction(n, rate))
    assert [i for _, i, _ in got] == expected
    assert [k for k, _, _ in got] == list(range(len(expected)))
    # the frames are the written ones (their grey level tells which), not just indices
    np.testing.assert_allclose([m for _, _, m in got], [LEVEL * i for i in expected], atol=2)
    # 24 fps: 2 s = 50 frames at 25 fps (two repeated); 30 fps: 1.5 s = 38 (7 dropped)
    assert len(expected) == {24: 50, 25: 40, 30: 38}[rate]
    stats = VideoStats()
    assert sum(1 for _ in chunk_inputs(path, ("rgb",), stats=stats)) == {24: 3, 25: 2, 30: 2}[rate]
    assert stats.frames == len(expected)


def test_variable_frame_rate(tmp_path):
    gaps = [40, 40, 20, 20, 80, 10, 10, 80, 40, 40, 40, 80, 40, 20, 40, 100, 30, 30, 40, 40]
    times = [Fraction(sum(gaps[:i]), 1000) for i in range(len(gaps) + 1)]     # 21 frames
    path = write_video(tmp_path / "vfr.mkv", times, container="matroska")
    got = [(k, i) for k, i, _ in fr.frames_at(path)]
    end = times[-1] + Fraction(40, 1000)              # the last frame shows 1/25 s
    expected = nearest(times, end)
    assert [i for _, i in got] == expected
    assert len(expected) == 22                        # 0.84 s at 25 fps
    assert len(set(expected)) < len(times)            # some frames never chosen, ...
    assert len(expected) > len(set(expected))         # ... some chosen twice


def test_resample_by_hand():
    # frames at 0, 0.1, 0.2 s (10 fps, each 0.1 s): 25-fps frames 0..7 (0.3 s * 25 = 7.5)
    timed = [(Fraction(i, 10), Fraction(1, 10), i) for i in range(3)]
    # k/25: 0 .04 .08 .12 .16 .20 .24 .28; midpoints .05 and .15: 0 0 1 1 2 2 2 2
    assert [item for _, item in fr.resample(timed)] == [0, 0, 1, 1, 2, 2, 2, 2]
    # a tie goes to the later frame: frames at 0 and 0.08 s, midpoint 0.04 = k 1
    timed = [(Fraction(0), None, "a"), (Fraction(8, 100), None, "b")]
    assert [item for _, item in fr.resample(timed)][:3] == ["a", "b", "b"]
    assert list(fr.resample([])) == []


@pytest.mark.parametrize("frames, chunks", [(15, 0), (16, 1), (31, 1), (32, 2), (40, 2)])
def test_chunks_are_floor_of_frames_over_16_for_both_streams(tmp_path, frames, chunks):
    path = write_video(tmp_path / "v.mp4", constant_rate(frames, 25))
    stats = VideoStats()
    out = list(chunk_inputs(path, ("rgb", "flow"), "dis", stats=stats))
    assert len(out) == chunks == stats.chunks and stats.frames == frames
    for c in out:
        assert c["rgb"].shape == (CHUNK, 224, 224, 3) and c["rgb"].dtype == np.float32
        assert c["flow"].shape == (CHUNK, 224, 224, 2) and c["flow"].dtype == np.float32
        assert c["rgb"].min() >= -1 and c["rgb"].max() <= 1
        assert np.abs(c["flow"]).max() <= 1
    if chunks:                    # grey level LEVEL * i scaled to [-1, 1]: frame 0 is -1
        assert out[0]["rgb"][0].mean() == pytest.approx(-1, abs=0.02)
        assert out[-1]["rgb"][-1].mean() == pytest.approx(
            LEVEL * (CHUNK * chunks - 1) / 127.5 - 1, abs=0.02)


def test_the_flow_stream_of_a_moving_texture(tmp_path):
    """Content moving 2 px a frame to the right in a 64 x 48 video is 2 * 256 / 48 = 10.7 px
    at the resized scale: every field of the chunk (the last one repeated) reads 10.7 / 20."""
    texture = np.repeat(textured((48, 120), seed=1)[:, :, None], 3, axis=2)
    path = write_video(tmp_path / "moving.mp4", constant_rate(16, 25),
                       image=lambda i: np.ascontiguousarray(texture[:, 40 - 2 * i:104 - 2 * i]))
    chunk, = chunk_inputs(path, ("flow",), "dis")
    assert set(chunk) == {"flow"}
    median = np.median(chunk["flow"][:, 40:-40, 40:-40].reshape(CHUNK, -1, 2), axis=1)
    np.testing.assert_allclose(median[:, 0], 2 * 256 / 48 / 20, atol=0.05)    # x
    np.testing.assert_allclose(median[:, 1], 0, atol=0.05)                    # y
    assert np.array_equal(chunk["flow"][-1], chunk["flow"][-2])               # repeated


def test_resize_short_side_and_centre_crop():
    image = np.zeros((48, 64, 3), np.uint8)
    big = fr.resize_short_side(image)
    assert big.shape == (256, 341, 3)                 # 64 * 256 / 48 = 341.3
    assert fr.resize_short_side(np.zeros((100, 50, 1), np.uint8)).shape[:2] == (512, 256)
    ramp = np.arange(341)[None, :].repeat(256, 0)
    crop = fr.centre_crop(ramp)
    assert crop.shape == (224, 224) and crop[0, 0] == (341 - 224) // 2
    assert fr.rgb_values(np.array([[0, 255]], np.uint8)).tolist() == [[-1.0, 1.0]]


def textured(size=(64, 80), seed=0):
    """A smooth random texture (grey uint8) with room to shift."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 4, size[1] // 4)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC),
                            (0, 0), 1.0)


@pytest.fixture
def one_thread():
    """tvl1-torch on one thread: on a loaded machine a second one only waits."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("method", ["tvl1", "dis", "tvl1-torch"])
def test_a_known_shift_gives_its_flow(method, one_thread):
    image = textured()
    dx, dy = 3, -2
    moved = np.roll(image, (dy, dx), axis=(0, 1))     # the content moves right 3, up 2
    flow = flow_field(flow_algorithm(method), image, moved)
    assert flow.shape == image.shape + (2,) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10].reshape(-1, 2)
    median = np.median(inner, axis=0)
    assert median == pytest.approx([dx, dy], abs=0.2)
    assert np.mean(np.abs(inner - [dx, dy]) < 0.5) > 0.9


def test_flow_clip_and_scale_round_trip():
    pixels = np.array([-35.0, -20.0, -7.5, 0.0, 0.25, 19.9, 20.0, 64.0], np.float32)
    scaled = scale_flow(pixels)
    assert scaled.dtype == np.float32
    assert scaled.tolist() == pytest.approx([-1, -1, -0.375, 0, 0.0125, 0.995, 1, 1])
    back = unscale_flow(scaled)
    inside = np.abs(pixels) <= FLOW_BOUND
    np.testing.assert_allclose(back[inside], pixels[inside], rtol=1e-6)
    assert back[~inside].tolist() == [-20.0, 20.0]


def test_bad_files_are_one_line(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 20)
    with pytest.raises(InputError, match=r"notes.mp4: not a readable video \(Invalid data"):
        list(fr.frames_at(str(text)))
    audio = tmp_path / "sound.mp4"
    audio_only(audio)
    with pytest.raises(InputError, match=r"sound.mp4: no video stream \(streams: audio\)"):
        fr.probe(str(audio))


def test_frames_stream_through_one_chunk_at_a_time(tmp_path, monkeypatch):
    """Memory stays bounded for any length: the first chunk comes out when 17 frames have
    been decoded (16 and the next one, for the last flow field), not at the end."""
    path = write_video(tmp_path / "long.mp4", constant_rate(80, 25))
    decoded = []
    original = fr.timed_frames

    def counting(*args, **kwargs):
        for item in original(*args, **kwargs):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(fr, "timed_frames", counting)
    chunks = chunk_inputs(path, ("rgb", "flow"), "dis")
    next(chunks)
    assert len(decoded) <= CHUNK + 2
    assert sum(1 for _ in chunks) == 4 and len(decoded) == 80


def test_bench_flow_compares_two_fields_by_hand():
    """bench/bench_flow.compare on a hand-worked pair: TV-L1 (3, 4) px everywhere, DIS
    (0, 4): end-point error 3, mean TV-L1 magnitude 5, and the cosine of the scaled fields
    (3, 4) . (0, 4) / (5 * 4) = 0.8."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "bench_flow", os.path.join(os.path.dirname(__file__), "..", "bench", "bench_flow.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tvl1 = [np.dstack([np.full((256, 300), 3.0), np.full((256, 300), 4.0)]).astype(np.float32)]
    dis = [np.dstack([np.zeros((256, 300)), np.full((256, 300), 4.0)]).astype(np.float32)]
    got = bench.compare(tvl1, dis)
    assert got["epe"] == pytest.approx(3.0) and got["tvl1_magnitude"] == pytest.approx(5.0)
    assert got["cosine"] == pytest.approx(0.8)
