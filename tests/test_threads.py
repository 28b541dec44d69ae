"""Features do not depend on the thread count: flow fields of real footage with 1 and 2
threads (OpenCV's TV-L1 and DIS, tvl1-torch), I3D's features with 1 and 2 threads, and
extract.py's features with --threads 1 and --threads 2, byte for byte.

Why it holds: OpenCV's TV-L1 splits only pointwise steps across threads (its stopping sum
is one serial loop); DIS with spatial propagation (preset MEDIUM) searches in a fixed 8
stripes whatever the thread count, and the rest of it is pointwise or red-black; tvl1-torch
is made of exact IEEE steps, its stopping sums in float64. The field tests run TV-L1 with
fewer iterations: independence is a property of each step, not of how many run. I3D's CPU
convolutions are not independent by themselves: extraction.video_features.forward pins them."""
import cv2
import numpy as np
import pytest
import torch

import extract
from extraction import flow as fl
from extraction.video_features import forward
from extraction.i3d import random_i3d
from extraction.tvl1_torch import TVL1
from test_extract import call, moving
from test_extract_frames import constant_rate, write_video
from test_tvl1_torch import clip_frames

SHORT = TVL1(scales=2, warps=1, outer=2, inner=3)       # few iterations, every step


@pytest.fixture(autouse=True)
def restore_threads():
    saved = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


@pytest.fixture
def short_tvl1(monkeypatch):
    """TV-L1 (both) with SHORT's iterations, so that a chunk takes seconds."""
    monkeypatch.setattr(fl.TorchTVL1, "params", SHORT)
    opencv = fl.flow_algorithm

    def fewer(method, device="cpu"):
        algo = opencv(method, device)
        if method == "tvl1":
            algo.setScalesNumber(SHORT.scales)
            algo.setWarpingsNumber(SHORT.warps)
            algo.setOuterIterations(SHORT.outer)
            algo.setInnerIterations(SHORT.inner)
        return algo

    monkeypatch.setattr(fl, "flow_algorithm", fewer)


@pytest.mark.parametrize("method", ["tvl1", "dis", "tvl1-torch"])
def test_fields_of_real_footage_do_not_depend_on_threads(method, short_tvl1):
    """Two pairs large enough that every step is split across threads (> 32768 pixels)."""
    greys = clip_frames("carphone_pristine.mp4", 176, 3)             # 176 x 144
    fields = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        fields[threads] = np.stack(fl.flow_fields(fl.flow_algorithm(method), greys))
    assert np.abs(fields[1]).mean() > 0.1                               # it moves
    assert fields[1].tobytes() == fields[2].tobytes()


def test_dis_is_pinned_to_spatial_propagation():
    """What makes DIS thread-count independent (its fixed 8 stripes) is on."""
    assert fl.flow_params("dis")["UseSpatialPropagation"] is True


def test_i3d_features_do_not_depend_on_threads():
    """A CPU convolution run on 2 threads rounds differently from one on 1 (checked: I3D's
    Mixed_3c differs in the last bits), so extraction.video_features.forward runs each chunk on
    one thread and spreads the chunks over the threads."""
    net = random_i3d("flow", 1)
    x = torch.rand(2, 2, 16, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out[threads] = forward(net, x)                                  # (2, 1024)
    assert out[1].shape == (2, 1024) and out[1].tobytes() == out[2].tobytes()


def test_extracted_features_do_not_depend_on_threads(tmp_path):
    """extract.py end to end, --threads 1 against --threads 2, with DIS (a chunk takes
    seconds; TV-L1's and tvl1-torch's fields and I3D's features are checked above)."""
    (tmp_path / "vids").mkdir()
    write_video(tmp_path / "vids" / "one.mp4", constant_rate(17, 25), image=moving(17))
    out = {}
    for threads in (1, 2):
        folder = tmp_path / f"out{threads}"
        code, _, err = call(extract.main, [str(tmp_path / "vids"), "--out", str(folder),
                                           "--random-init", "--flow", "dis", "--streams",
                                           "flow", "--threads", str(threads), "--quiet"])
        assert code == 0, err
        out[threads] = (folder / "features" / "test" / "flow" / "one.npy").read_bytes()
    assert out[1] == out[2] and len(out[1]) > 4096                      # one chunk, 1024 floats
