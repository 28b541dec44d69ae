"""One-video training steps of fixed shape: each video padded to its length bucket.

A one-video step (the paper's and the released code's setting) is tiny arithmetic of fixed
form; on a GPU what it costs is launching its kernels one by one. A step whose tensors have
the same shapes every time can be launched as one unit (a CUDA graph, one per bucket). So
each training video is padded with zeros up to the smallest of a few bucket lengths that
holds it, and masked: the pseudo-label rules (pseudo_labels.py) take their statistics over
the real snippets only, and the loss and its hand-written gradients (model.BranchBCE with a
mask) see only them, so the padded step's loss, gradients and Adam update are the unpadded
step's (to float32 rounding; tests/test_padded_step.py).

`padded_step` is that step, written without a host synchronisation: its statistics are
added into a device tensor, read once per epoch.
"""
import numpy as np
import torch

from pseudo_labels import step_targets

# run.py --step padded: padded snippets allowed per real snippet (bench_train.py measures
# with 0.125: 11 buckets for THUMOS14's lengths, docs/gpu.md)
MAX_PADDING = 0.25


# ---------------------------------------------------------------------------
# Bucket lengths
# ---------------------------------------------------------------------------

def bucket_lengths(lengths, max_padding):
    """The fewest bucket lengths such that padding every video to the smallest bucket that
    holds it adds at most `max_padding` x the real snippets, and of those the one with the
    least padding. Each bucket's length is the longest video in it. Exact (dynamic
    programming over the sorted distinct lengths, one product per bucket count).

    lengths: the videos' snippet counts (N,). Returns the bucket lengths, ascending."""
    u, w = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)    # (m,)
    m = len(u)
    count = np.concatenate([[0], np.cumsum(w)])                                  # (m + 1,)
    total = np.concatenate([[0], np.cumsum(w * u)])                              # (m + 1,)
    bound = max_padding * total[-1]
    # best[j]: the least padding of the j shortest distinct lengths in k buckets
    best = np.full(m + 1, np.inf)
    best[0] = 0.0
    splits = []                            # per k, per j: where the k-th bucket starts
    for _ in range(m):
        new, start = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=np.int64)
        for j in range(1, m + 1):          # the last bucket holds u[i:j], its length u[j-1]
            cost = best[:j] + (count[j] - count[:j]) * u[j - 1] - (total[j] - total[:j])
            start[j] = np.argmin(cost)
            new[j] = cost[start[j]]
        best = new
        splits.append(start)
        if best[m] <= bound:
            break
    tops, j = [], m
    for start in reversed(splits):
        tops.append(int(u[j - 1]))
        j = start[j]
    return sorted(tops)


def bucket_of(lengths, buckets):
    """Per video, the index of the smallest bucket length >= its length (N,)."""
    lengths = np.asarray(lengths)
    if len(lengths) and lengths.max() > buckets[-1]:
        raise ValueError(f"a video of {lengths.max()} snippets is longer than every bucket")
    return np.searchsorted(np.asarray(buckets), lengths)


def padding_overhead(lengths, buckets):
    """Padded snippets per real snippet when each video is padded to its bucket."""
    lengths = np.asarray(lengths)
    padded = np.asarray(buckets)[bucket_of(lengths, buckets)]
    return float((padded - lengths).sum() / max(lengths.sum(), 1))


# ---------------------------------------------------------------------------
# Padded inputs
# ---------------------------------------------------------------------------

class BucketedInputs:
    """Training videos padded to their buckets, each bucket's videos side by side:
    xs[b] (2, N_b, L_b, D) with zeros after each video's real snippets, mask[b] (N_b, L_b)
    bool, labels[b] (N_b, K), on the inputs' device; slot[i] = (b, j), video i's bucket and
    place. Buckets that hold no video are left out.

    inputs: per video (2, T_i, D) features and `.labels` (K,) (an em_trainer.VideoInputs)."""

    def __init__(self, inputs, lengths, buckets):
        where = bucket_of(lengths, buckets)
        self.xs, self.mask, self.labels, self.slot = [], [], [], [None] * len(lengths)
        for b, L in enumerate(buckets):
            members = [i for i in range(len(lengths)) if where[i] == b]
            if not members:
                continue
            first = inputs[members[0]]
            xs = first.new_zeros(2, len(members), L, first.shape[-1])   # (2, N_b, L, D)
            for j, i in enumerate(members):
                xs[:, j, :lengths[i]] = inputs[i]
                self.slot[i] = (len(self.xs), j)
            real = torch.tensor([lengths[i] for i in members], device=xs.device)
            self.xs.append(xs)
            self.mask.append(torch.arange(L, device=xs.device)[None] < real[:, None])
            self.labels.append(torch.stack([inputs.labels[i] for i in members]))

    @property
    def lengths(self):
        """The bucket lengths kept, ascending."""
        return [xs.shape[2] for xs in self.xs]

    def video(self, i):
        """Video i padded to its bucket: xs (2, L, D) (a view), mask (L,), labels (K,)."""
        b, j = self.slot[i]
        return self.xs[b][:, j], self.mask[b][j], self.labels[b][j]


# ---------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------

def padded_step(model, opt, kind, step, stage, video, frozen, gamma, dtype, stats):
    """One Adam step of `kind` ('cls' for M, 'key' for E) on one video padded to its
    bucket: pseudo-labels, loss, the hand-written weight gradients, the update. Fixed
    shapes for a bucket and no host synchronisation: the unit a CUDA graph would capture
    (the gradients must be None or zero before it: opt.zero_grad outside the step).

    video: (xs (2, L, D), mask (L,), labels (K,)); frozen: the frozen branch's output
    (L, O') padded to L (M2: q (L, 1); E: p (L, K); M1: None), any values after the real
    snippets; stats (2,): += [loss, positive real snippets]."""
    xs, mask, labels = video
    L = mask.shape[0]
    target, positive = step_targets(step, stage, labels[None], mask[None],
                                    None if frozen is None else frozen[None], gamma, L)
    loss = model.branch_loss(kind, xs, target[0], dtype, mask)              # target (L, O)
    loss.backward()
    opt.step()
    stats += torch.stack([loss.detach(), positive])
