"""extraction/i3d.py: our Inception-I3D gives piergiaj/pytorch-i3d's extract_features on the
same random weights (tests/data/README.md says how the expected features were made), loads
weights by piergiaj's names strictly, and refuses anything else in one line."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from extraction.i3d import (IN_CHANNELS, InceptionI3d, conv_flops, git_blob_id, load_i3d,
                            random_state, same_padding, weights_identity)
from core.errors import InputError

REFERENCE = "tests/data/i3d_reference.npz"
CASES = {"rgb": (1, 2), "flow": (3, 4)}           # weights seed, input seed (README)


def piergiaj_state(stream, seed):
    """Random weights under piergiaj's names, as newer PyTorch saves his network: with the
    57 num_batches_tracked counters ours has not."""
    shapes = {k: v.shape for k, v in InceptionI3d(IN_CHANNELS[stream]).state_dict().items()}
    shapes.update({k[:-len("weight")] + "num_batches_tracked": () for k in shapes
                   if k.endswith(".bn.weight")})
    return random_state(shapes, seed)


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_our_network_gives_piergiajs_features(stream, tmp_path):
    wseed, xseed = CASES[stream]
    path = tmp_path / f"{stream}.pt"
    torch.save(piergiaj_state(stream, wseed), path)
    net = load_i3d(str(path), stream)                       # strict, by piergiaj's names
    c = IN_CHANNELS[stream]
    x = torch.rand((1, c, 16, 224, 224), generator=torch.Generator().manual_seed(xseed)) * 2 - 1
    # channels-last in memory, as extraction/video_features.py hands chunks over
    x = x.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        ours = net.features(x).numpy()                       # (1, 1024)
    expected = np.load(REFERENCE, allow_pickle=False)[stream]
    assert ours.shape == expected.shape == (1, 1024)
    assert np.abs(expected).max() > 1.0                      # the random features are not tiny
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * scale)


def test_piergiajs_files_have_no_batch_counters_and_load(tmp_path):
    state = {k: v for k, v in piergiaj_state("flow", 0).items()
             if not k.endswith("num_batches_tracked")}
    assert len(state) == 287                       # as in flow_imagenet.pt
    torch.save(state, tmp_path / "flow.pt")
    net = load_i3d(str(tmp_path / "flow.pt"), "flow")
    assert torch.equal(net.Mixed_5c.b3b.conv3d.weight, state["Mixed_5c.b3b.conv3d.weight"])
    assert net.logits.conv3d.weight.shape == (400, 1024, 1, 1, 1)


def test_same_padding_as_tensorflow_by_hand():
    # 224 cells, kernel 7, stride 2: 112 outputs need (111 * 2 + 7) - 224 = 5 zeros, 2 + 3
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(15, 7, 2) == (3, 3)                  # odd size: 8 outputs, 6 zeros
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(28, 3, 1) == (1, 1)
    assert same_padding(4, 2, 2) == (0, 0)
    assert same_padding(3, 2, 2) == (0, 1)


def test_mixed_5c_shape_and_cost():
    net = InceptionI3d(3).eval()
    with torch.no_grad():
        assert net.mixed_5c(torch.zeros(1, 3, 16, 64, 64)).shape == (1, 1024, 2, 2, 2)
    # the stem by hand: 64 x 3 x 7^3 weights on (8, 112, 112) outputs, 2 FLOPs each
    flops = conv_flops(net, (1, 3, 16, 224, 224))
    stem = 2 * 64 * 3 * 7 ** 3 * 8 * 112 * 112
    assert 3 * stem < flops < 5 * stem
    # I3D costs 108 G multiply-adds on 64 frames of 224 x 224 (SlowFast, Feichtenhofer et
    # al., ICCV 2019, Table 3, whose FLOPs are multiply-adds): a quarter for 16 frames
    assert flops / 2 == pytest.approx(108e9 / 4, rel=0.05)


def test_weights_file_identity_is_gits_blob_id(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"not really weights\n")
    if shutil.which("git"):                     # git's own hash of the file
        git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True)
        assert git_blob_id(str(path)) == git.stdout.strip()
    ident = weights_identity(str(path), "rgb")
    assert ident["piergiaj"] is None and len(ident["sha256"]) == 64


class NotWeights:
    pass


def bad_weights(kind, tmp_path):
    path = tmp_path / f"{kind}.pt"
    if kind == "pickled-object":
        torch.save({"net": NotWeights()}, path)
    elif kind == "flow-for-rgb":
        torch.save(piergiaj_state("flow", 0), path)
    elif kind == "missing-key":
        state = piergiaj_state("rgb", 0)
        del state["Mixed_4c.b2b.bn.running_var"]
        torch.save(state, path)
    elif kind == "extra-key":
        torch.save({**piergiaj_state("rgb", 0), "fc.weight": torch.zeros(3)}, path)
    elif kind == "other-network":
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(3)], path)
    elif kind == "text":
        path.write_text("hello\n")
    return str(path)


@pytest.mark.parametrize("kind, says", [
    ("pickled-object", "refused: it holds a pickled object"),
    ("flow-for-rgb", "Conv3d_1a_7x7.conv3d.weight has shape (64, 2, 7, 7, 7); Inception-I3D for "
                     "the rgb stream (3 input channels) has (64, 3, 7, 7, 7)"),
    ("missing-key", "lacks Mixed_4c.b2b.bn.running_var"),
    ("extra-key", "holds fc.weight, which Inception-I3D"),
    ("other-network", "lacks Conv3d_1a_7x7.conv3d.weight"),
    ("not-a-dict", "not a state dict but a list"),
    ("text", "not a weights file"),
])
def test_bad_weights_are_one_line(kind, says, tmp_path):
    path = bad_weights(kind, tmp_path)
    with pytest.raises(InputError) as e:
        load_i3d(path, "rgb")
    assert str(e.value).startswith(path) and says in str(e.value)
    assert "\n" not in str(e.value)


def test_random_state_does_not_depend_on_the_order_of_names():
    shapes = {"b.conv3d.weight": (2, 1, 1, 1, 1), "a.bn.weight": (3,), "a.bn.running_var": (3,)}
    one = random_state(shapes, 5)
    other = random_state(dict(reversed(list(shapes.items()))), 5)
    for k in shapes:
        assert torch.equal(one[k], other[k])
    assert one["a.bn.weight"].min() >= 0.8 and one["a.bn.weight"].max() < 1.2
    assert not torch.equal(one["a.bn.weight"], random_state(shapes, 6)["a.bn.weight"])
