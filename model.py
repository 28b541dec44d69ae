"""The EM-MIL networks and the UntrimmedNet-style video classifier.

Parameter names equal the released code's, so its state dicts load directly:
key_rgb.0.weight, key_tail_rgb.1.weight, cls_flow.0.bias, cls_tail_flow.1.bias, ...
Tensors are batch-first here: features (B, T, D), masks (B, T).
"""
import torch
import torch.nn as nn


def channels_first(x):
    """(B, T, D) -> (B, D, T) contiguous, the layout Conv1d wants."""
    return x.transpose(1, 2).contiguous()


def _trunk(in_dim, hidden):
    # Sequential so that the conv is '<name>.0' as released
    return nn.Sequential(nn.Conv1d(in_dim, hidden, kernel_size=3, stride=1, padding=1))


def _tail(hidden, out):
    # ReLU, Linear, Sigmoid: the Linear is '<name>.1' as released
    return nn.Sequential(nn.ReLU(), nn.Linear(hidden, out), nn.Sigmoid())


class EMMIL(nn.Module):
    """Key-instance network q and classifier p, one of each per stream.

    Zero padding after a video's end gives the same outputs on its real snippets
    as the unpadded video (the conv already pads with zeros).
    """

    def __init__(self, num_classes, feature_dim=1024, hidden_dim=256):
        super().__init__()
        self.num_classes = num_classes
        self.key_rgb = _trunk(feature_dim, hidden_dim)
        self.key_flow = _trunk(feature_dim, hidden_dim)
        self.key_tail_rgb = _tail(hidden_dim, 1)
        self.key_tail_flow = _tail(hidden_dim, 1)
        self.cls_rgb = _trunk(feature_dim, hidden_dim)
        self.cls_flow = _trunk(feature_dim, hidden_dim)
        self.cls_tail_rgb = _tail(hidden_dim, num_classes)
        self.cls_tail_flow = _tail(hidden_dim, num_classes)

    @staticmethod
    def _branch(trunk, tail, x_t):
        """x_t: (B, D, T) contiguous -> (B, T, out)."""
        h = trunk(x_t)                           # (B, D, T) -> (B, H, T)
        return tail(h.transpose(1, 2))           # (B, T, H) -> (B, T, out)

    def key_branches(self):
        return [self.key_rgb, self.key_flow, self.key_tail_rgb, self.key_tail_flow]

    def cls_branches(self):
        return [self.cls_rgb, self.cls_flow, self.cls_tail_rgb, self.cls_tail_flow]

    def key_parameters(self):
        return [p for m in self.key_branches() for p in m.parameters()]

    def cls_parameters(self):
        return [p for m in self.cls_branches() for p in m.parameters()]

    def key_streams(self, rgb, flow, transposed=False):
        """q per stream: two tensors (B, T). rgb, flow: (B, T, D), or (B, D, T) contiguous
        when transposed (one transposing copy per stream, shared by both branches and by
        the backward pass, instead of one inside every conv call)."""
        if not transposed:
            rgb, flow = channels_first(rgb), channels_first(flow)
        q_rgb = self._branch(self.key_rgb, self.key_tail_rgb, rgb)[..., 0]
        q_flow = self._branch(self.key_flow, self.key_tail_flow, flow)[..., 0]
        return q_rgb, q_flow

    def cls_streams(self, rgb, flow, transposed=False):
        """p per stream: two tensors (B, T, K); inputs as in key_streams."""
        if not transposed:
            rgb, flow = channels_first(rgb), channels_first(flow)
        return (self._branch(self.cls_rgb, self.cls_tail_rgb, rgb),
                self._branch(self.cls_flow, self.cls_tail_flow, flow))

    def forward(self, rgb, flow):
        """Stream-averaged scores: q (B, T) and p (B, T, K). rgb, flow: (B, T, D)."""
        rgb, flow = channels_first(rgb), channels_first(flow)
        q_rgb, q_flow = self.key_streams(rgb, flow, transposed=True)
        p_rgb, p_flow = self.cls_streams(rgb, flow, transposed=True)
        return (q_rgb + q_flow) / 2, (p_rgb + p_flow) / 2


def masked_softmax_time(logits, mask):
    """Softmax over time (dim 1) of logits (B, T) ignoring padded snippets."""
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=1)


class UntrimmedNetClassifier(nn.Module):
    """Video-level classifier: attention over time x class softmax, per stream, blended 0.5.

    Parameter names as released: att_rgb.0, att_flow.0, cls_rgb.0, cls_flow.0.
    """

    def __init__(self, num_classes, feature_dim=1024, blend=0.5):
        super().__init__()
        self.blend = blend
        self.att_rgb = nn.Sequential(nn.Linear(feature_dim, 1))
        self.att_flow = nn.Sequential(nn.Linear(feature_dim, 1))
        self.cls_rgb = nn.Sequential(nn.Linear(feature_dim, num_classes))
        self.cls_flow = nn.Sequential(nn.Linear(feature_dim, num_classes))

    def attention_and_classes(self, rgb, flow, mask):
        """Blended attention a (B, T) (sums to 1 over real snippets) and class probs c (B, T, K)."""
        a_rgb = masked_softmax_time(self.att_rgb(rgb)[..., 0], mask)
        a_flow = masked_softmax_time(self.att_flow(flow)[..., 0], mask)
        c_rgb = torch.softmax(self.cls_rgb(rgb), dim=-1)
        c_flow = torch.softmax(self.cls_flow(flow), dim=-1)
        a = self.blend * a_rgb + (1 - self.blend) * a_flow
        c = self.blend * c_rgb + (1 - self.blend) * c_flow
        return a, c

    def forward(self, rgb, flow, mask):
        """Video class scores (B, K): sum over time of attention x class probabilities."""
        a, c = self.attention_and_classes(rgb, flow, mask)
        return (a[..., None] * c).sum(dim=1)


def video_classifier_loss(scores, labels):
    """Negative log-likelihood of the L1-normalised label, summed over the batch.

    scores, labels: (B, K). (The released code minimises +log, the wrong sign.)
    """
    target = labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return -(target * torch.log(scores.clamp_min(1e-12))).sum()
