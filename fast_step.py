"""The EM step of one video, by hand: a few batched matrix products and nothing else.

With one video per step (the paper's and the released code's setting), autograd and
Conv1d spend a third of the time on things the step does not need: padding copies,
transposing copies, a general convolution backward, and graph bookkeeping. Here both
streams of a branch run as batched products over the feature rows as they are stored, and
the backward pass computes only the weight gradients Adam needs (features need none).

The kernel-3 convolution z[t] = b + W0 x[t-1] + W1 x[t] + W2 x[t+1] (x[-1] = x[T] = 0, as
Conv1d pads) is one product per stream with the three taps side by side, Z = x [W0|W1|W2]
(T, 3H), then a shifted sum: z[t] = b + Z[t-1, tap 0] + Z[t, tap 1] + Z[t+1, tap 2]. Its
weight gradient is one product too: x^T [dz[t+1] | dz[t] | dz[t-1]] (D, 3H).

`PackedBranch` holds a branch's weights laid out for these products (stream first);
`load` and `store` copy them from and to the nn.Module, whose layout is the released
code's. With --amp the products run in bfloat16; weights, gradients, Adam, the shifted sum,
the sigmoid and the loss stay float32. In float32 the gradients equal autograd's through
Conv1d, ReLU, Linear, Sigmoid and torch's BCE (its saturation included) to 1e-6
(tests/test_fast_step.py).
"""
import torch
import torch.nn.functional as F

BRANCH_MODULES = {"cls": ("cls_rgb", "cls_flow", "cls_tail_rgb", "cls_tail_flow"),
                  "key": ("key_rgb", "key_flow", "key_tail_rgb", "key_tail_flow")}
BCE_EPS = 1e-12       # torch's BCE backward divides by max(y (1 - y), 1e-12)


def compute_dtype(amp):
    """The matrix products' dtype: bfloat16 with --amp (as autocast), else float32."""
    return torch.bfloat16 if amp else torch.float32


def _bmm_into(out, a, b):
    """out = a @ b (batched), written into the float32 `out` (a, b may be bfloat16)."""
    if a.dtype == out.dtype:
        torch.bmm(a, b, out=out)
    else:
        out.copy_(torch.bmm(a, b))


class PackedBranch:
    """One branch (classifier p or key-instance q) of both streams.

    W (2, D, 3H): conv weight [stream, in, (tap, out)]; b (2, 1, H); V (2, H, O): the
    Linear weight transposed; c (2, 1, O). Gradients go to preallocated .grad tensors.
    """

    def __init__(self, model, kind, grads=True, dtype=torch.float32):
        trunk_rgb, trunk_flow, tail_rgb, tail_flow = (getattr(model, n)
                                                      for n in BRANCH_MODULES[kind])
        self.convs = [trunk_rgb[0], trunk_flow[0]]
        self.linears = [tail_rgb[1], tail_flow[1]]
        H, D, _ = self.convs[0].weight.shape
        O = self.linears[0].weight.shape[0]
        like = self.convs[0].weight
        self.dtype = dtype                 # of the matrix products
        self._low = None                   # the weights in that dtype, see _weights
        self.W = like.new_zeros(2, D, 3 * H)
        self.b = like.new_zeros(2, 1, H)
        self.V = like.new_zeros(2, H, O)
        self.c = like.new_zeros(2, 1, O)
        if grads:
            for p in self.params():
                p.grad = torch.zeros_like(p)
        self.load()

    def params(self):
        return [self.W, self.b, self.V, self.c]

    @torch.no_grad()
    def load(self):
        """Module -> packed (after a checkpoint was loaded into the module, for instance)."""
        self._low = None
        for s, (conv, lin) in enumerate(zip(self.convs, self.linears)):
            H, D, _ = conv.weight.shape                            # (H, D, 3) -> (D, 3, H)
            self.W[s].view(D, 3, H).copy_(conv.weight.permute(1, 2, 0))
            self.b[s, 0].copy_(conv.bias)
            self.V[s].copy_(lin.weight.t())                        # (O, H) -> (H, O)
            self.c[s, 0].copy_(lin.bias)

    @torch.no_grad()
    def store(self):
        """Packed -> module."""
        for s, (conv, lin) in enumerate(zip(self.convs, self.linears)):
            H, D, _ = conv.weight.shape
            conv.weight.copy_(self.W[s].view(D, 3, H).permute(2, 0, 1))
            conv.bias.copy_(self.b[s, 0])
            lin.weight.copy_(self.V[s].t())
            lin.bias.copy_(self.c[s, 0])

    def _weights(self):
        """W, V, b, c in the products' dtype. A bfloat16 copy is kept until load() or
        loss_and_grad() (an optimizer step follows it) drops it, so a frozen branch is
        converted once, not once per video. (Tensor version counters cannot tell: the fused
        Adam step updates weights in place without moving them.)"""
        if self.dtype == self.W.dtype:
            return self.W, self.V, self.b, self.c
        if self._low is None:
            self._low = [p.to(self.dtype) for p in (self.W, self.V, self.b, self.c)]
        return self._low

    def _operand(self, xs):
        """xs in the products' dtype; a bfloat16 copy is made contiguous (bfloat16 products
        on strided rows are slow), float32 rows are used as they are."""
        if self.dtype == xs.dtype:
            return xs
        return xs.to(self.dtype, memory_format=torch.contiguous_format)

    def forward(self, xs):
        """xs (2, T, D): RGB and flow rows of one video (any row stride). Returns x, the
        rows in the products' dtype; z (2, T, H) before the ReLU (float32); a = relu(z) in
        the products' dtype; y (2, T, O) after the sigmoid (float32)."""
        H = self.b.shape[2]
        W, V, _, c = self._weights()
        x = self._operand(xs)
        Z = torch.bmm(x, W).float()                                # (2, T, 3H)
        z = Z[:, :, H:2 * H] + self.b                              # W1 x[t]
        z[:, 1:] += Z[:, :-1, :H]                                  # W0 x[t-1]
        z[:, :-1] += Z[:, 1:, 2 * H:]                              # W2 x[t+1]
        a = z.clamp_min(0).to(self.dtype)
        y = torch.baddbmm(c, a, V).float().sigmoid_()              # (2, T, O)
        return x, z, a, y

    @torch.no_grad()
    def mean_scores(self, xs):
        """Stream-averaged output (T, O) of the branch, e.g. the frozen p or q."""
        return self.forward(xs)[3].mean(dim=0)

    @torch.no_grad()
    def loss_and_grad(self, xs, target):
        """Sum over streams and outputs of the mean BCE over the T snippets, and its
        gradients into .grad. xs (2, T, D); target (T, O). Returns the loss (0-d tensor)."""
        x, z, a, y = self.forward(xs)
        T = xs.shape[1]
        target = target.expand_as(y)
        loss = F.binary_cross_entropy(y, target, reduction="sum") / T
        # d loss / d logit: (y - t) / T, times torch's saturation factor s / max(s, eps)
        s = y * (1 - y)
        dl = (y - target) * (s / s.clamp_min(BCE_EPS)) / T        # (2, T, O)
        torch.sum(dl, dim=1, keepdim=True, out=self.c.grad)        # (2, 1, O)
        dl = dl.to(self.dtype)
        _bmm_into(self.V.grad, a.transpose(1, 2), dl)              # (2, H, O)
        dz = torch.bmm(dl, self._weights()[1].transpose(1, 2)).mul_(z > 0)     # (2, T, H)
        torch.sum(dz, dim=1, keepdim=True, dtype=torch.float32, out=self.b.grad)  # (2, 1, H)
        H = dz.shape[2]
        dZ = dz.new_empty(2, T, 3 * H)                             # what x[t] fed, per tap
        dZ[:, :-1, :H] = dz[:, 1:]                                 # tap 0 fed z[t+1]
        dZ[:, -1, :H] = 0                                          # (x[T-1] feeds no z[T])
        dZ[:, :, H:2 * H] = dz                                     # tap 1 fed z[t]
        dZ[:, 1:, 2 * H:] = dz[:, :-1]                             # tap 2 fed z[t-1]
        dZ[:, 0, 2 * H:] = 0                                       # (x[0] feeds no z[-1])
        _bmm_into(self.W.grad, x.transpose(1, 2), dZ)              # (2, D, 3H)
        self._low = None                   # the weights are about to change
        return loss


class PackedModel:
    """Test-time scores of an EMMIL model from packed copies of its weights (a snapshot:
    build a new one after the weights change)."""

    def __init__(self, model, dtype=torch.float32):
        self.key = PackedBranch(model, "key", grads=False, dtype=dtype)
        self.cls = PackedBranch(model, "cls", grads=False, dtype=dtype)

    @torch.no_grad()
    def __call__(self, xs):
        """xs (2, T, D) -> stream-averaged q (T,) and p (T, K), as EMMIL.forward."""
        return self.key.mean_scores(xs)[:, 0], self.cls.mean_scores(xs)


class PackedClassifier:
    """The UntrimmedNet-style video classifier, by hand, for one video per step.

    Float32 always (its products are small: bfloat16 does not pay). Both streams'
    attention and class layers are one product: W (2, D, 1 + K) [stream, in,
    (attention, classes)], b (2, 1, 1 + K). Layout of the module: att_<s>.0, cls_<s>.0.
    """

    def __init__(self, classifier):
        self.pairs = [(classifier.att_rgb[0], classifier.cls_rgb[0]),
                      (classifier.att_flow[0], classifier.cls_flow[0])]
        K, D = self.pairs[0][1].weight.shape
        like = self.pairs[0][1].weight
        self.W = like.new_zeros(2, D, 1 + K)
        self.b = like.new_zeros(2, 1, 1 + K)
        # the streams' blend weights, made once (on a GPU, a tensor built from Python
        # numbers in every step would be a host-to-device copy in every step)
        self.blend = like.new_tensor([classifier.blend, 1 - classifier.blend])     # (2,)
        for p in self.params():
            p.grad = torch.zeros_like(p)
        self.load()

    def params(self):
        return [self.W, self.b]

    @torch.no_grad()
    def load(self):
        for s, (att, cls) in enumerate(self.pairs):
            self.W[s, :, 0].copy_(att.weight[0])
            self.W[s, :, 1:].copy_(cls.weight.t())
            self.b[s, 0, 0].copy_(att.bias[0])
            self.b[s, 0, 1:].copy_(cls.bias)

    @torch.no_grad()
    def store(self):
        for s, (att, cls) in enumerate(self.pairs):
            att.weight[0].copy_(self.W[s, :, 0])
            cls.weight.copy_(self.W[s, :, 1:].t())
            att.bias[0].copy_(self.b[s, 0, 0])
            cls.bias.copy_(self.b[s, 0, 1:])

    @torch.no_grad()
    def loss_and_grad(self, xs, labels):
        """-sum_k y_k log(score_k) of one video (y: the L1-normalised label (K,)) and its
        gradients into .grad. xs (2, T, D). Returns the loss (0-d tensor)."""
        w = self.blend                                             # (2,)
        u = torch.baddbmm(self.b, xs, self.W)                      # (2, T, 1 + K)
        a_s = torch.softmax(u[:, :, 0], dim=1)                     # (2, T) over time
        c_s = torch.softmax(u[:, :, 1:], dim=2)                    # (2, T, K) over classes
        a = w @ a_s                                                # (T,)
        c = torch.einsum("s,stk->tk", w, c_s)                      # (T, K)
        score = a @ c                                              # (K,)
        y = labels / labels.sum().clamp_min(1e-12)
        loss = -(y * torch.log(score.clamp_min(1e-12))).sum()
        g = -y / score * (score >= 1e-12)                          # d loss / d score (K,)
        da_s = w[:, None] * (c @ g)[None]                          # (2, T)
        dc_s = w[:, None, None] * (a[:, None] * g[None])[None]     # (2, T, K)
        du = torch.empty_like(u)                                   # softmax backward
        du[:, :, 0] = a_s * (da_s - (a_s * da_s).sum(dim=1, keepdim=True))
        du[:, :, 1:] = c_s * (dc_s - (c_s * dc_s).sum(dim=2, keepdim=True))
        torch.bmm(xs.transpose(1, 2), du, out=self.W.grad)         # (2, D, 1 + K)
        torch.sum(du, dim=1, keepdim=True, out=self.b.grad)        # (2, 1, 1 + K)
        # a softmax over time ignores a constant: the attention bias's gradient is exactly 0
        # (autograd leaves rounding noise there, which Adam would blow up to lr-sized steps)
        self.b.grad[:, 0, 0] = 0
        return loss
