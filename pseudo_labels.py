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


@torch.no_grad()
def step_targets(step, stage, labels, mask, frozen, gamma, length):
    """The targets of one training step and how many real snippets are positive: the one
    place that says which frozen output feeds which rule.

    step 'M' trains p on m_step_targets from the frozen q (stage 2; stage 1 needs none);
    step 'E' trains q on e_step_targets from the frozen p.
    labels: (B, K); mask: (B, T) bool, or None (one unpadded video: every snippet real);
    frozen: the frozen branch's stream-averaged output, q (B, T, 1) for M2, p (B, T, K)
    for E, None for M1; length: T, the snippets of the video(s).
    Returns (targets, positive): targets (B, T, K) for M ((B, 1, K) for M1 without a mask,
    one row standing for every snippet), (B, T, 1) for E; positive: 0-d, the real snippets
    with a positive target for some class.
    """
    if step == "M":
        q = frozen[..., 0] if stage == 2 else None                     # (B, T)
        targets = m_step_targets(labels, mask, stage, q, gamma)         # (B, T or 1, K)
    elif step == "E":
        targets = e_step_targets(frozen, labels, mask)[..., None]      # (B, T, 1)
    else:
        raise ValueError(f"step must be 'M' or 'E', got {step!r}")
    positive = targets.amax(dim=2).sum() * (length // targets.shape[1])
    return targets, positive
