"""Pseudo-label rules of EM-MIL: pure functions, padding-aware, no options object.

Shapes: B videos, T snippets (padded), K classes. `mask` (B, T) is True on real snippets;
targets on padded snippets are 0 and must be ignored by the loss. mask=None: every snippet
is real (one video per step: no padding, and no masking work).
"""
import torch


def _masked_mean(x, mask):
    """Mean over time of x (B, T) or (B, T, K), counting only real snippets."""
    if mask is None:
        return x.mean(dim=1)
    m = mask if x.dim() == 2 else mask[..., None]
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)


@torch.no_grad()
def key_instances(q, mask, gamma):
    """Stage-2 positives from the key-instance score.

    q: (B, T) stream-averaged key score. Returns (B, T) float:
    1 where q > mean(q) + gamma * (max(q) - min(q)), statistics over real snippets only.
    """
    q = q.detach()
    if mask is None:
        threshold = q.mean(dim=1) + gamma * (q.amax(dim=1) - q.amin(dim=1))     # (B,)
        return (q > threshold[:, None]).float()
    big = torch.finfo(q.dtype).max
    q_max = q.masked_fill(~mask, -big).amax(dim=1)                 # (B,)
    q_min = q.masked_fill(~mask, big).amin(dim=1)                  # (B,)
    threshold = _masked_mean(q, mask) + gamma * (q_max - q_min)    # (B,)
    return ((q > threshold[:, None]) & mask).float()


@torch.no_grad()
def m_step_targets(labels, mask, stage, q=None, gamma=None):
    """Targets of the classifier p in the M-step.

    labels: (B, K) multi-hot video labels; mask: (B, T); q: (B, T) key score and gamma the
    key_instances margin (--gamma; stage 2 only).
    Returns (B, T, K): for a labelled class, stage 1 -> 1 on every real snippet,
    stage 2 -> key_instances(q); for an unlabelled class -> 0 everywhere. With mask=None,
    stage 1 returns (B, 1, K), the same for every snippet (broadcast over time).
    """
    if stage == 1:
        positive = mask.float() if mask is not None else labels.new_ones(len(labels), 1)
    elif stage == 2:
        if q is None or gamma is None:
            raise ValueError("stage-2 M-step targets need the key score q and gamma")
        positive = key_instances(q, mask, gamma)                   # (B, T)
    else:
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    return positive[:, :, None] * (labels[:, None, :] > 0).float()  # (B, T, K)


@torch.no_grad()
def e_step_targets(p, labels, mask):
    """Targets of the key-instance network q in the E-step.

    p: (B, T, K) stream-averaged class scores. Returns (B, T): 1 where, for some
    labelled class c, p_c > its mean over the video's real snippets.
    """
    p = p.detach()
    above = p > _masked_mean(p, mask)[:, None, :]                  # (B, T, K)
    above = above & (labels[:, None, :] > 0)
    if mask is not None:
        above = above & mask[..., None]
    return above.any(dim=2).float()                                # (B, T)
