"""A plain per-video transcription of the released EM-MIL training loop (written for the
tests and the benchmark, never used by run.py).

airmachine/EM-MIL-WeaklyActionDetection, train.py: one video at a time, all four branches
forwarded, the frozen one with requires_grad off, the loss a Python loop over classes of
torch's BCELoss. Used to check em_trainer.EMTrainer (tests/test_em_trainer.py) and as the
baseline of bench/bench_train.py.

`ReleasedEMMIL` holds the weights the released way, eight torch layers (a Conv1d per branch
and stream, its ReLU-Linear-Sigmoid tail), under the released names; it loads an EMMIL state
dict (which is written under those names), so the reference starts from the same weights and
runs none of model.py's code.
"""
import torch
from torch import nn

STREAMS = ("rgb", "flow")


class ReleasedEMMIL(nn.Module):
    """The released network, layer by layer: <kind>_<stream> = Sequential(Conv1d(D, H, 3,
    padding 1)), <kind>_tail_<stream> = Sequential(ReLU, Linear(H, O), Sigmoid)."""

    def __init__(self, num_classes, feature_dim=1024, hidden_dim=256):
        super().__init__()
        for kind, out in (("key", 1), ("cls", num_classes)):
            for s in STREAMS:
                self.add_module(f"{kind}_{s}", nn.Sequential(
                    nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, padding=1)))
                self.add_module(f"{kind}_tail_{s}", nn.Sequential(
                    nn.ReLU(), nn.Linear(hidden_dim, out), nn.Sigmoid()))

    def branch(self, kind, stream, x):
        """(1, T, O) scores of one branch and stream. x: (1, T, D)."""
        h = getattr(self, f"{kind}_{stream}")(x.transpose(1, 2)).transpose(1, 2)  # (1, T, H)
        return getattr(self, f"{kind}_tail_{stream}")(h)

    def key_streams(self, rgb, flow):
        return self.branch("key", "rgb", rgb)[..., 0], self.branch("key", "flow", flow)[..., 0]

    def cls_streams(self, rgb, flow):
        return self.branch("cls", "rgb", rgb), self.branch("cls", "flow", flow)

    def key_parameters(self):
        return [p for s in STREAMS for m in (f"key_{s}", f"key_tail_{s}")
                for p in getattr(self, m).parameters()]

    def cls_parameters(self):
        return [p for s in STREAMS for m in (f"cls_{s}", f"cls_tail_{s}")
                for p in getattr(self, m).parameters()]


def released_copy(model):
    """A ReleasedEMMIL with the weights of an EMMIL `model`."""
    K = model.num_classes
    D = model.key_W.shape[1]
    H = model.key_b.shape[2]
    ref = ReleasedEMMIL(K, D, H)
    ref.load_state_dict(model.state_dict())
    return ref


def reference_epoch(model, videos, phase, gamma, optimizers, order, lr):
    """One epoch the way the released train.py does it (model: a ReleasedEMMIL): one video at
    a time, all four branches forwarded, the frozen one with requires_grad off, the loss as a Python loop
    over classes. `optimizers` = {'M': Adam(cls), 'E': Adam(key)} (separate, as ours).

    On any device: `videos`' features and labels on the model's device. As released, the
    constant targets are made on the CPU and copied over, each label is tested on the host
    (`label[c] == 1`), and an E-step's per-class pseudo-label goes through the CPU
    (`.type('torch.FloatTensor').to(device)`). Not transcribed: the released DataLoader,
    which reads each video's .pt files from disk every epoch, and its torch.save after every
    epoch (both make the released code slower than this loop). Returns the losses (floats),
    read once at the end of the epoch."""
    bce = torch.nn.BCELoss()
    trained = model.cls_parameters() if phase.step == "M" else model.key_parameters()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    opt = optimizers[phase.step]
    for g in opt.param_groups:
        g["lr"] = lr * phase.lr_mult
    losses = []
    dev = next(model.parameters()).device
    for i in order:
        v = videos[i]
        rgb, flow = v.features[None, :, :1024], v.features[None, :, 1024:]
        T, K = v.features.shape[0], v.labels.shape[0]
        q_rgb, q_flow = model.key_streams(rgb, flow)
        p_rgb, p_flow = model.cls_streams(rgb, flow)
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        if phase.step == "M":
            if phase.stage == 1:
                one = torch.ones(T).to(dev)
            else:
                key = ((q_rgb + q_flow) / 2)[0].detach()
                one = (key > key.mean() + gamma * (key.max() - key.min())).float()
            for c in range(K):
                target = one if v.labels[c] == 1 else torch.zeros(T).to(dev)
                loss = loss + bce(p_rgb[0, :, c], target) + bce(p_flow[0, :, c], target)
        else:
            cls = ((p_rgb + p_flow) / 2)[0].detach()
            pseudo = torch.zeros(T).to(dev)
            for c in range(K):
                if v.labels[c] == 1:
                    above = (cls[:, c] > cls[:, c].mean()).cpu().float().to(dev)
                    pseudo = torch.max(pseudo, above)
            loss = bce(q_rgb[0], pseudo) + bce(q_flow[0], pseudo)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    for p in model.parameters():
        p.requires_grad_(True)
    return torch.stack(losses).tolist() if losses else []
