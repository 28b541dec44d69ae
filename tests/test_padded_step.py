"""The padded-and-masked one-video step (buckets.padded_step) against the unpadded step of
EMTrainer's fast path, and the bucket lengths."""
import itertools
import os

import numpy as np
import pytest
import torch

from training.buckets import (BucketedInputs, bucket_lengths, bucket_of, padded_step,
                              padding_overhead)
from dataset import Video
from training.batches import SnippetDataset
from em_trainer import EMTrainer, adam
from model import EMMIL
from pseudo_labels import e_step_targets, m_step_targets, step_targets
from core.safe_load import load_npy
from training.schedule import STEPS, parse_schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, H, K, L, GAMMA = 16, 8, 5, 12, 0.15
PHASES = {"M1": ("M", 1), "M2": ("M", 2), "E": ("E", 1)}


def _unpadded_step(model, opt, step, stage, xs, labels, frozen):
    """EMTrainer._fast_epoch's step on one unpadded video: (loss, positive snippets)."""
    T = xs.shape[1]
    if step == "M":
        q = frozen[None, :, 0] if stage == 2 else None
        target = m_step_targets(labels[None], None, stage, q, GAMMA)[0]   # (T, K) or (1, K)
        positive = target.amax(dim=1).sum() * (T // len(target))
    else:
        target = e_step_targets(frozen[None], labels[None], None)[0][:, None]    # (T, 1)
        positive = target.sum()
    opt.zero_grad(set_to_none=True)
    loss = model.branch_loss(STEPS[step].branch, xs, target)
    loss.backward()
    opt.step()
    return loss.item(), positive.item()


def _close(a, b, tol=1e-6):
    scale = max(1.0, float(b.abs().max()))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=tol * scale, rtol=0)


@pytest.mark.parametrize("name", ["M1", "M2", "E"])
@pytest.mark.parametrize("T", [1, 2, 7, L - 1, L])
def test_padded_step_equals_the_unpadded_step(name, T):
    step, stage = PHASES[name]
    torch.manual_seed(T)
    ours, plain = EMMIL(K, feature_dim=D, hidden_dim=H), EMMIL(K, feature_dim=D, hidden_dim=H)
    plain.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(100 + T)
    xs = torch.randn(2, T, D, generator=g)                                    # (2, T, D)
    labels = torch.tensor([0.0, 1, 0, 1, 0])
    frozen = plain.branch_scorer(STEPS[step].frozen_branch)(xs)                            # (T, O)
    kind = STEPS[step].branch
    opt_plain = adam(plain.weights(kind), 1e-3)
    loss, positive = _unpadded_step(plain, opt_plain, step, stage, xs, labels, frozen)

    padded = torch.zeros(2, L, D)
    padded[:, :T] = xs                                          # zeros after the video
    mask = torch.arange(L) < T                                  # (L,)
    junk = torch.rand(L - T, frozen.shape[1], generator=g)      # anything after the video
    frozen_padded = torch.cat([frozen, junk])                   # (L, O)
    opt = adam(ours.weights(kind), 1e-3, capturable=True)
    before = [p.detach().clone() for p in ours.weights(kind)]
    stats = torch.zeros(2)
    ours.zero_grad(set_to_none=True)
    padded_step(ours, opt, kind, step, stage, (padded, mask, labels), frozen_padded, GAMMA,
                torch.float32, stats)

    assert loss > 0.1
    assert abs(stats[0].item() - loss) < 1e-6 * max(1.0, loss)
    assert stats[1].item() == positive
    if name == "M1":
        assert positive == T                                    # labelled: every real snippet
    for p, q in zip(ours.weights(kind), plain.weights(kind)):
        _close(p.grad, q.grad)                                  # every weight gradient
        assert p.grad.abs().max() > 0
        _close(p.detach(), q.detach())                          # the weights after Adam
    assert all(not torch.equal(p.detach(), b) for p, b in zip(ours.weights(kind), before))


def test_the_mask_is_what_makes_them_equal():
    """Without the mask, the padded snippets enter the loss: the step differs."""
    torch.manual_seed(0)
    model = EMMIL(K, feature_dim=D, hidden_dim=H)
    xs = torch.zeros(2, L, D)
    xs[:, :5] = torch.randn(2, 5, D)
    target = m_step_targets(torch.tensor([[0.0, 1, 0, 0, 1]]), None, 1)[0]    # (1, K)
    masked = model.branch_loss("cls", xs, target.expand(L, K) * (torch.arange(L) < 5)[:, None],
                               mask=torch.arange(L) < 5)
    unpadded = model.branch_loss("cls", xs[:, :5], target)
    unmasked = model.branch_loss("cls", xs, target)
    assert abs(masked.item() - unpadded.item()) < 1e-6 * unpadded.item()
    assert abs(unmasked.item() - unpadded.item()) > 1e-2


def padded_targets(step, stage, labels, mask, frozen, gamma):
    """One padded video's targets (L, O) and positive real snippets, as padded_step makes them."""
    target, positive = step_targets(step, stage, labels[None], mask[None], frozen[None], gamma,
                                    len(mask))
    return target[0], positive


def test_padded_targets_ignore_what_follows_the_video():
    mask = torch.arange(6) < 4
    labels = torch.tensor([1.0, 0, 1])
    p = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.9, 0.8], [0.2, 0.5, 0.1], [0.3, 0.5, 0.1],
                      [9.0, 9.0, 9.0], [-9.0, -9.0, -9.0]])                   # (6, 3)
    target, positive = padded_targets("E", 1, labels, mask, p, GAMMA)
    # class 0: mean 0.375 -> snippet 0; class 2: mean 0.3 -> snippet 1
    assert target[:, 0].tolist() == [1, 1, 0, 0, 0, 0] and positive.item() == 2
    q = torch.tensor([[0.1], [0.9], [0.2], [0.3], [5.0], [5.0]])
    target, positive = padded_targets("M", 2, labels, mask, q, GAMMA)
    assert target.tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert positive.item() == 1


def _videos(lengths, seed=5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, T in enumerate(lengths):
        lab = torch.zeros(4)
        lab[[i % 4, (i + 1) % 4]] = 1
        out.append(Video(f"v{i}", "train", torch.rand(T, 2048, generator=g), lab, T * 0.64))
    return SnippetDataset(out, 0.64)


def test_padded_epochs_equal_the_unpadded_epochs():
    """The whole EM schedule's phases through padded steps (frozen outputs batched per
    bucket): the same losses, positives and trained weights as the one-video fast path."""
    lengths = [6, 11, 3, 8, 5, 14, 1, 9, 13]
    data = _videos(lengths)
    buckets = bucket_lengths(lengths, 0.25)
    assert padding_overhead(lengths, buckets) > 0 and len(buckets) < len(set(lengths))
    torch.manual_seed(0)
    plain, ours = EMMIL(4), EMMIL(4)
    ours.load_state_dict(plain.state_dict())
    quiet = dict(log=lambda *a: None)
    fast = EMTrainer(plain, data, 1e-4, GAMMA, 1, "cpu", seed=3, **quiet)
    padded = EMTrainer(ours, data, 1e-4, GAMMA, 1, "cpu", seed=3, buckets=buckets, **quiet)
    assert padded.padded.lengths == buckets
    for phase in parse_schedule("M1:2,E:2,M2:2,alt:4", 4.0):
        a, b = fast.train_epoch(phase), padded.train_epoch(phase)
        assert abs(a["loss"] - b["loss"]) < 1e-6 * a["loss"], phase
        assert a["positive"] == b["positive"] and a["lr"] == b["lr"], phase
        assert 0 < b["positive"] <= 1
    for name, t in plain.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name].numpy(), t.numpy(), atol=1e-5,
                                   rtol=0, err_msg=name)


def test_padded_trainer_needs_one_video_per_step():
    with pytest.raises(ValueError, match="one video per step"):
        EMTrainer(EMMIL(4), _videos([3, 4]), 1e-4, GAMMA, 2, "cpu", seed=1,
                  log=lambda *a: None, buckets=[4])


def test_bucketed_inputs_hold_each_video_zero_padded():
    data = _videos([6, 3, 8, 5])
    from em_trainer import VideoInputs
    inputs = VideoInputs(data.videos, "cpu")
    held = BucketedInputs(inputs, [6, 3, 8, 5], [5, 6, 8, 20])        # 20 holds no video
    assert held.lengths == [5, 6, 8]
    for i, T in enumerate([6, 3, 8, 5]):
        xs, mask, labels = held.video(i)
        assert xs.shape[1] == held.lengths[held.slot[i][0]] >= T
        assert torch.equal(xs[:, :T], inputs[i]) and not xs[:, T:].any()
        assert mask.tolist() == [True] * T + [False] * (xs.shape[1] - T)
        assert torch.equal(labels, inputs.labels[i])


def _fewest(lengths, bound):
    """Brute force: over every way to cut the sorted distinct lengths into buckets, the fewest
    buckets within the bound and their least padding."""
    u = sorted(set(lengths))
    best = None
    for cuts in itertools.product([False, True], repeat=len(u) - 1):
        tops = [x for x, cut in zip(u, list(cuts) + [True]) if cut]
        over = padding_overhead(lengths, tops)
        if over <= bound + 1e-12:
            key = (len(tops), over)
            best = key if best is None or key < best else best
    return best


def test_bucket_lengths_are_the_fewest_within_the_bound():
    rng = np.random.default_rng(0)
    for trial in range(30):
        lengths = rng.integers(1, 60, size=rng.integers(1, 14)).tolist()
        bound = [0.0, 0.05, 0.15, 0.3, 1.0][trial % 5]
        tops = bucket_lengths(lengths, bound)
        over = padding_overhead(lengths, tops)
        assert tops == sorted(tops) and tops[-1] == max(lengths) and set(tops) <= set(lengths)
        assert (len(tops), pytest.approx(over, abs=1e-12)) == _fewest(lengths, bound), lengths
    assert list(bucket_of([1, 5, 6, 9], [5, 9])) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="longer than every bucket"):
        bucket_of([10], [5, 9])


def test_buckets_of_the_real_thumos14_and_activitynet12_lengths():
    """The training videos' lengths (annotated duration / 0.64 s): how many buckets (one
    CUDA graph each per phase) and how much padding at the bound of 12.5 %."""
    found = {}
    for name, subset in (("thumos14/Thumos14reduced", b"validation"),
                         ("activitynet12/ActivityNet1.2", b"training")):
        folder = os.path.join(ROOT, "data", f"{name}-Annotations")
        duration = load_npy(f"{folder}/duration.npy").reshape(-1)
        lengths = np.maximum(1, np.round(duration[load_npy(f"{folder}/subset.npy") == subset]
                                         / 0.64)).astype(int)
        tops = bucket_lengths(lengths, 0.125)
        found[name] = (len(lengths), len(tops), padding_overhead(lengths, tops))
        print(name, found[name], tops)
    assert found["thumos14/Thumos14reduced"][:2] == (200, 11)
    assert found["activitynet12/ActivityNet1.2"][:2] == (4819, 8)
    assert all(0.10 < over <= 0.125 for _, _, over in found.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_padded_training_follows_cpu_training():
    """Padded steps on the GPU (eager, the padded videos held there) end near the CPU's
    one-video fast path (not run without a GPU: bench/gpu_check.sh runs it)."""
    lengths = [9, 30, 4, 17, 25, 12]
    data = _videos(lengths)
    torch.manual_seed(0)
    cpu, gpu = EMMIL(4), EMMIL(4)
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    quiet = dict(log=lambda *a: None)
    trainers = [EMTrainer(cpu, data, 1e-3, GAMMA, 1, "cpu", seed=1, **quiet),
                EMTrainer(gpu, data, 1e-3, GAMMA, 1, "cuda", seed=1,
                          buckets=bucket_lengths(lengths, 0.25), **quiet)]
    for phase in parse_schedule("M1:2,E:1,M2:1,alt:2", 4.0):
        a, b = (t.train_epoch(phase) for t in trainers)
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, a["loss"]), phase
        assert abs(a["positive"] - b["positive"]) < 0.05, phase       # a snippet or two
    for (name, x), y in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(x.numpy(), y.cpu().numpy(), atol=1e-4, err_msg=name)
