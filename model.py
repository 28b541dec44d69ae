"""The EM-MIL networks and the UntrimmedNet-style video classifier, each with its one set of
weights and one forward.

EMMIL's weights are held once, in the layout of its products: per branch (key-instance q,
classifier p) both streams stacked, W (2, D, 3H) the kernel-3 conv [stream, in, (tap, out)],
b (2, 1, H), V (2, H, O) the Linear transposed, c (2, 1, O). The conv
z[t] = b + W0 x[t-1] + W1 x[t] + W2 x[t+1] (x[-1] = x[T] = 0, as Conv1d pads) is one product
per stream with the three taps side by side, Z = x [W0|W1|W2] (T, 3H), then a shifted sum.
Its state dict has the released code's names and layouts (key_rgb.0.weight (H, D, 3),
key_tail_rgb.1.weight (O, H), cls_flow.0.bias, ...), so released state dicts load and
em_mil.pt keeps them.

One word, one thing: in code a branch is named as the released parameters name it, "key"
for q and "cls" for p; the UntrimmedNet-style network is always "the video classifier"
(`classifier`), never "cls" (only the released option names --cls-epochs, --cls-lr and
--cls-threshold, kept for the scripts that use them, say "cls" for it).

The one-video training step (the paper's and the released code's setting) is
`BranchBCE`, a torch.autograd.Function whose backward is written by hand: it computes only
the weight gradients Adam needs (features need none), with none of the padding and transposing
copies, general convolution backward and graph bookkeeping of autograd through Conv1d. In
float32 its gradients equal autograd's through the same forward, and through the released
Conv1d, ReLU, Linear, Sigmoid and torch's BCE (its saturation included), to 1e-6
(tests/test_fast_step.py). With --amp the products run in bfloat16; weights, gradients, Adam,
the shifted sum, the sigmoid and the loss stay float32.
Tensors are batch-first: features (B, T, D), masks (B, T); one video's streams xs (2, T, D).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from readers.features import STREAMS

BRANCHES = ("key", "cls")     # released order of the state dict
BCE_EPS = 1e-12               # torch's BCE backward divides by max(y (1 - y), 1e-12)


def compute_dtype(amp):
    """The matrix products' dtype: bfloat16 with --amp (as autocast), else float32."""
    return torch.bfloat16 if amp else torch.float32


def operand(xs, dtype):
    """xs in the products' dtype; a bfloat16 copy is made contiguous (bfloat16 products on
    strided rows are slow), float32 rows are used as they are."""
    if dtype == xs.dtype:
        return xs
    return xs.to(dtype, memory_format=torch.contiguous_format)


def branch_forward(x, W, b, V, c):
    """One branch of both streams: kernel-3 conv, ReLU, Linear, sigmoid.

    x (2, ..., T, D) stream first, any row stride, in the products' dtype (that of W, V and
    c); b (2, 1, H) float32. Returns z (2, ..., T, H) before the ReLU (float32),
    a = relu(z) in the products' dtype, y (2, ..., T, O) after the sigmoid (float32).
    Zero padding after a video's end leaves its real snippets' outputs as they are.
    """
    lead, D = x.shape[1:-1], x.shape[-1]                           # (..., T)
    H, O = b.shape[2], c.shape[2]
    ones = (1,) * (len(lead) - 1)
    Z = torch.bmm(x.reshape(2, -1, D), W).float().view(2, *lead, 3 * H)   # (2, ..., T, 3H)
    z = Z[..., H:2 * H] + b.view(2, *ones, 1, H)                   # W1 x[t]
    z[..., 1:, :] += Z[..., :-1, :H]                               # W0 x[t-1]
    z[..., :-1, :] += Z[..., 1:, 2 * H:]                           # W2 x[t+1]
    a = z.clamp_min(0).to(W.dtype)
    logit = torch.baddbmm(c, a.reshape(2, -1, H), V).float()        # (2, ... T, O)
    # an overflowed (infinite) logit is divergence, not certainty: its output is NaN, for the
    # trainers' check (bce_loss); + 0 (the same bits) everywhere else
    y = logit.sigmoid() + (logit - logit).detach()
    return z, a, y.view(2, *lead, O)


def bce_loss(y, target, mask=None):
    """The loss of both steps: sum over streams, videos and outputs of the mean BCE over each
    video's real snippets (torch's BCE, as the released BCELoss, clamps log at -100).
    y (2, T, O) with target (T, O) or (1, O) and mask None or (T,) (one video, padded to T),
    or y (2, B, T, O) with target (B, T, O) and mask (B, T).
    No NaN reaches the BCE kernel (CUDA's asserts on one, which kills the process's CUDA
    context): a NaN output is read as 0.5 there and makes the loss NaN instead, for the
    trainers' once-an-epoch check (em_trainer.EpochStats). Finite outputs: unchanged."""
    nan = torch.isnan(y)
    bce = F.binary_cross_entropy(y.masked_fill(nan, 0.5), target.expand_as(y), reduction="none")
    flag = torch.where(nan.any(), float("nan"), 0.0)               # + 0.0: the same bits
    if mask is None:
        return bce.sum() / y.shape[-2] + flag
    m = mask[..., None].to(bce.dtype)                              # (B, T, 1)
    return ((bce * m).sum(dim=-2) / m.sum(dim=-2)).sum() + flag


class BranchBCE(torch.autograd.Function):
    """bce_loss of one branch on one video, with its weight gradients written by hand.

    apply(xs (2, T, D), target (T, O) or (1, O), W, b, V, c, dtype, mask) -> loss (0-d).
    mask None: all T snippets are real. mask (T,) bool: the video padded to T, its real
    snippets first and zeros after them in xs (as the conv's own zero padding); padded
    snippets enter neither the loss nor a gradient, so the result is the unpadded step's."""

    @staticmethod
    def forward(ctx, xs, target, W, b, V, c, dtype, mask=None):
        x, Wl, Vl = operand(xs, dtype), W.to(dtype), V.to(dtype)
        z, a, y = branch_forward(x, Wl, b, Vl, c.to(dtype))
        m = None if mask is None else mask[:, None].to(y.dtype)          # (T, 1)
        ctx.save_for_backward(x, z, a, y, target, Vl, m)
        return bce_loss(y, target, mask)

    @staticmethod
    def backward(ctx, grad):
        x, z, a, y, target, Vl, m = ctx.saved_tensors
        T, H = x.shape[1], z.shape[2]
        # d loss / d logit: (y - t) / T, times torch's saturation factor s / max(s, eps);
        # padded: (y - t) m / (real snippets), 0 on padded snippets
        s = y * (1 - y)
        if m is None:
            dl = (y - target) * (s / s.clamp_min(BCE_EPS)) / T * grad  # (2, T, O)
        else:
            dl = (y - target) * (s / s.clamp_min(BCE_EPS)) * m / m.sum() * grad
        dc = dl.sum(dim=1, keepdim=True)                               # (2, 1, O)
        dl = dl.to(Vl.dtype)
        dV = torch.bmm(a.transpose(1, 2), dl).float()                  # (2, H, O)
        dz = torch.bmm(dl, Vl.transpose(1, 2)).mul_(z > 0)             # (2, T, H), 0 if padded
        db = dz.sum(dim=1, keepdim=True, dtype=torch.float32)          # (2, 1, H)
        dZ = dz.new_empty(2, T, 3 * H)                                 # what x[t] fed, per tap
        dZ[:, :-1, :H] = dz[:, 1:]                                     # tap 0 fed z[t+1]
        dZ[:, -1, :H] = 0                                              # (x[T-1] feeds no z[T])
        dZ[:, :, H:2 * H] = dz                                         # tap 1 fed z[t]
        dZ[:, 1:, 2 * H:] = dz[:, :-1]                                 # tap 2 fed z[t-1]
        dZ[:, 0, 2 * H:] = 0                                           # (x[0] feeds no z[-1])
        dW = torch.bmm(x.transpose(1, 2), dZ).float()                  # (2, D, 3H)
        return None, None, dW, db, dV, dc, None, None


class EMMIL(nn.Module):
    """Key-instance network q and classifier p, one of each per stream."""

    def __init__(self, num_classes, feature_dim=1024, hidden_dim=256):
        super().__init__()
        self.num_classes = num_classes
        self.out_dims = {"key": 1, "cls": num_classes}
        for kind in BRANCHES:       # the released layers' initialisation, in its order
            layers = {f"{kind}_{s}": nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, padding=1)
                      for s in STREAMS}
            layers.update({f"{kind}_tail_{s}": nn.Linear(hidden_dim, self.out_dims[kind])
                           for s in STREAMS})
            released = {f"{n}.{0 if isinstance(m, nn.Conv1d) else 1}.{p}": t.detach()
                        for n, m in layers.items() for p, t in m.named_parameters()}
            for n, t in zip("WbVc", packed_branch(kind, released)):
                self.register_parameter(f"{kind}_{n}", nn.Parameter(t.contiguous()))

    def weights(self, kind):
        """The branch's W, b, V, c ('key' or 'cls')."""
        return [getattr(self, f"{kind}_{n}") for n in "WbVc"]

    def branch_streams(self, kind, rgb, flow):
        """Per stream (B, T, O) through autograd (padded batches). rgb, flow: (B, T, D)."""
        _, _, y = branch_forward(torch.stack([rgb, flow]), *self.weights(kind))
        return y[0], y[1]

    def key_streams(self, rgb, flow):
        """q per stream: two tensors (B, T). rgb, flow: (B, T, D)."""
        q_rgb, q_flow = self.branch_streams("key", rgb, flow)
        return q_rgb[..., 0], q_flow[..., 0]

    def cls_streams(self, rgb, flow):
        """p per stream: two tensors (B, T, K)."""
        return self.branch_streams("cls", rgb, flow)

    def forward(self, rgb, flow):
        """Stream-averaged scores: q (B, T) and p (B, T, K). rgb, flow: (B, T, D)."""
        q_rgb, q_flow = self.key_streams(rgb, flow)
        p_rgb, p_flow = self.cls_streams(rgb, flow)
        return (q_rgb + q_flow) / 2, (p_rgb + p_flow) / 2

    def branch_loss(self, kind, xs, target, dtype=torch.float32, mask=None):
        """bce_loss of one branch on one video (xs (2, T, D), target (T, O) or (1, O)) with
        the hand-written backward; products in `dtype`. mask (T,): the video padded to T
        (zeros after its real snippets), the loss and gradients of the unpadded video."""
        return BranchBCE.apply(xs, target, *self.weights(kind), dtype, mask)

    @torch.no_grad()
    def branch_scorer(self, kind, dtype=torch.float32):
        """A function xs (2, ..., T, D) -> the branch's stream-averaged output (..., T, O) on
        one video (or on padded videos side by side), the weights converted to the products'
        dtype once: use it while they do not change (a frozen branch, the test pass)."""
        W, b, V, c = self.weights(kind)
        W, V, c = (p.detach().to(dtype) for p in (W, V, c))
        b = b.detach()

        @torch.no_grad()
        def scores(xs):
            return branch_forward(operand(xs, dtype), W, b, V, c)[2].mean(dim=0)
        return scores

    # -- the released names and layouts in state dicts ------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for kind in BRANCHES:
            for name, t in released_branch(kind, *self.weights(kind)).items():
                destination[prefix + name] = t

    def _load_from_state_dict(self, state_dict, prefix, *args):
        """Released names -> the packed parameters (released tensors missing or of the wrong
        shape are left for torch's own check to report)."""
        for kind in BRANCHES:
            shapes = {n: t.shape for n, t in released_branch(kind, *self.weights(kind)).items()}
            if all(prefix + n in state_dict and state_dict[prefix + n].shape == shape
                   for n, shape in shapes.items()):
                released = {n: state_dict.pop(prefix + n) for n in shapes}
                for n, t in zip("WbVc", packed_branch(kind, released)):
                    state_dict[f"{prefix}{kind}_{n}"] = t
        super()._load_from_state_dict(state_dict, prefix, *args)


def released_branch(kind, W, b, V, c):
    """One branch's weights under the released names and layouts, in the released order:
    <kind>_<stream>.0 the Conv1d (weight (H, D, 3)), <kind>_tail_<stream>.1 the Linear."""
    W, b, V, c = (p.detach() for p in (W, b, V, c))
    D, H = W.shape[1], b.shape[2]
    out = {}
    for s, name in enumerate(STREAMS):
        out[f"{kind}_{name}.0.weight"] = W[s].view(D, 3, H).permute(2, 0, 1).contiguous()
        out[f"{kind}_{name}.0.bias"] = b[s, 0].clone()
    for s, name in enumerate(STREAMS):
        out[f"{kind}_tail_{name}.1.weight"] = V[s].t().contiguous()               # (O, H)
        out[f"{kind}_tail_{name}.1.bias"] = c[s, 0].clone()
    return out


def packed_branch(kind, released):
    """The inverse of released_branch: W (2, D, 3H), b (2, 1, H), V (2, H, O), c (2, 1, O)."""
    conv = [released[f"{kind}_{s}.0.weight"] for s in STREAMS]                    # (H, D, 3)
    tail = [released[f"{kind}_tail_{s}.1.weight"] for s in STREAMS]               # (O, H)
    H, D, _ = conv[0].shape
    return (torch.stack([w.permute(1, 2, 0).reshape(D, 3 * H) for w in conv]),
            torch.stack([released[f"{kind}_{s}.0.bias"][None] for s in STREAMS]),
            torch.stack([w.t() for w in tail]),
            torch.stack([released[f"{kind}_tail_{s}.1.bias"][None] for s in STREAMS]))


def masked_softmax_time(logits, mask):
    """Softmax over time (dim 1) of logits (B, T) ignoring padded snippets."""
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=1)


class UntrimmedNetClassifier(nn.Module):
    """Video-level classifier: attention over time x class softmax, per stream, blended 0.5.

    Its weights are held once, both streams' attention and class layers side by side for one
    product: W (2, D, 1 + K) [stream, in, (attention, classes)], b (2, 1, 1 + K). Its state
    dict has the released names and layouts: att_rgb.0, att_flow.0 (1, D), cls_rgb.0,
    cls_flow.0 (K, D).
    """

    def __init__(self, num_classes, feature_dim=1024, blend=0.5):
        super().__init__()
        self.blend = blend
        att = [nn.Linear(feature_dim, 1) for _ in STREAMS]       # the released init order
        cls = [nn.Linear(feature_dim, num_classes) for _ in STREAMS]
        with torch.no_grad():
            self.W = nn.Parameter(torch.stack([torch.cat([a.weight, c.weight]).t()
                                               for a, c in zip(att, cls)]))
            self.b = nn.Parameter(torch.stack([torch.cat([a.bias, c.bias])[None]
                                               for a, c in zip(att, cls)]))
        # the streams' blend weights, made once (on a GPU, a tensor built from Python numbers
        # in every step would be a host-to-device copy in every step)
        self.register_buffer("blend_weights", torch.tensor([blend, 1 - blend]),
                             persistent=False)                               # (2,)

    def layer(self, s, cols, x):
        """Stream s's attention (cols 0:1) or class (cols 1:) logits of x (B, T, D), computed
        as the released nn.Linear does (its own weight (out, D), contiguous)."""
        return F.linear(x, self.W[s, :, cols].t().contiguous(), self.b[s, 0, cols])

    def attention_and_classes(self, rgb, flow, mask):
        """Blended attention a (B, T) (sums to 1 over real snippets) and class probs c (B, T, K)."""
        att, cls = slice(0, 1), slice(1, None)
        a_rgb = masked_softmax_time(self.layer(0, att, rgb)[..., 0], mask)
        a_flow = masked_softmax_time(self.layer(1, att, flow)[..., 0], mask)
        c_rgb = torch.softmax(self.layer(0, cls, rgb), dim=-1)
        c_flow = torch.softmax(self.layer(1, cls, flow), dim=-1)
        a = self.blend * a_rgb + (1 - self.blend) * a_flow
        c = self.blend * c_rgb + (1 - self.blend) * c_flow
        return a, c

    def forward(self, rgb, flow, mask):
        """Video class scores (B, K): sum over time of attention x class probabilities."""
        a, c = self.attention_and_classes(rgb, flow, mask)
        return (a[..., None] * c).sum(dim=1)

    def video_loss(self, xs, labels):
        """video_classifier_loss of one video (xs (2, T, D), labels (K,)) with the
        hand-written backward."""
        return ClassifierNLL.apply(xs, labels, self.W, self.b, self.blend_weights)

    # -- the released names and layouts in state dicts ------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        W, b = self.W.detach(), self.b.detach()
        for part, cols in (("att", slice(0, 1)), ("cls", slice(1, None))):
            for s, name in enumerate(STREAMS):
                destination[f"{prefix}{part}_{name}.0.weight"] = W[s, :, cols].t().contiguous()
                destination[f"{prefix}{part}_{name}.0.bias"] = b[s, 0, cols].clone()

    def _load_from_state_dict(self, state_dict, prefix, *args):
        """Released names -> W, b (misshapen or missing ones are left to torch to report)."""
        D, K = self.W.shape[1], self.W.shape[2] - 1
        shapes = {f"{prefix}{part}_{s}.0.{p}": shape for s in STREAMS
                  for part, n in (("att", 1), ("cls", K))
                  for p, shape in (("weight", (n, D)), ("bias", (n,)))}
        if all(n in state_dict and tuple(state_dict[n].shape) == shape
               for n, shape in shapes.items()):
            rows = [(state_dict.pop(f"{prefix}att_{s}.0.weight"),
                     state_dict.pop(f"{prefix}cls_{s}.0.weight"),
                     state_dict.pop(f"{prefix}att_{s}.0.bias"),
                     state_dict.pop(f"{prefix}cls_{s}.0.bias")) for s in STREAMS]
            state_dict[prefix + "W"] = torch.stack([torch.cat([aw, cw]).t()
                                                    for aw, cw, _, _ in rows])
            state_dict[prefix + "b"] = torch.stack([torch.cat([ab, cb])[None]
                                                    for _, _, ab, cb in rows])
        super()._load_from_state_dict(state_dict, prefix, *args)


def video_classifier_loss(scores, labels):
    """Negative log-likelihood of the L1-normalised label, summed over the batch.

    scores, labels: (B, K). (The released code minimises +log, the wrong sign.)
    """
    target = labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return -(target * torch.log(scores.clamp_min(1e-12))).sum()


class ClassifierNLL(torch.autograd.Function):
    """video_classifier_loss of the classifier on one video, its gradients written by hand.

    apply(xs (2, T, D), labels (K,), W (2, D, 1 + K), b (2, 1, 1 + K), blend (2,)) -> loss."""

    @staticmethod
    def forward(ctx, xs, labels, W, b, w):
        u = torch.baddbmm(b, xs, W)                                # (2, T, 1 + K)
        a_s = torch.softmax(u[:, :, 0], dim=1)                     # (2, T) over time
        c_s = torch.softmax(u[:, :, 1:], dim=2)                    # (2, T, K) over classes
        a = w @ a_s                                                # (T,)
        c = torch.einsum("s,stk->tk", w, c_s)                      # (T, K)
        score = a @ c                                              # (K,)
        loss = video_classifier_loss(score[None], labels[None])
        ctx.save_for_backward(xs, labels, a_s, c_s, a, c, score, w)
        return loss

    @staticmethod
    def backward(ctx, grad):
        xs, labels, a_s, c_s, a, c, score, w = ctx.saved_tensors
        y = labels / labels.sum().clamp_min(1e-12)
        g = -y / score * (score >= 1e-12) * grad                   # d loss / d score (K,)
        da_s = w[:, None] * (c @ g)[None]                          # (2, T)
        dc_s = w[:, None, None] * (a[:, None] * g[None])[None]     # (2, T, K)
        du = xs.new_empty(a_s.shape + (1 + c_s.shape[2],))         # softmax backward
        du[:, :, 0] = a_s * (da_s - (a_s * da_s).sum(dim=1, keepdim=True))
        du[:, :, 1:] = c_s * (dc_s - (c_s * dc_s).sum(dim=2, keepdim=True))
        dW = torch.bmm(xs.transpose(1, 2), du)                     # (2, D, 1 + K)
        db = du.sum(dim=1, keepdim=True)                           # (2, 1, 1 + K)
        # a softmax over time ignores a constant: the attention bias's gradient is exactly 0
        # (autograd leaves rounding noise there, which Adam would blow up to lr-sized steps)
        db[:, 0, 0] = 0
        return None, None, dW, db, None
