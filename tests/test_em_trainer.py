"""Losses against the released formulas, frozen branches, batching."""
import copy

import numpy as np
import torch

from dataset import Video
from training.batches import SnippetDataset
from em_trainer import EMTrainer, step_loss
from model import EMMIL
from pseudo_labels import e_step_targets, m_step_targets
from ref_released_training import reference_epoch, released_copy
from training.schedule import parse_schedule


def _video(g, T, K, name, labels):
    lab = torch.zeros(K)
    lab[labels] = 1
    return Video(name, "train", torch.rand(T, 2048, generator=g), lab, T * 0.64)


def test_losses_equal_the_released_per_class_loop():
    torch.manual_seed(0)
    K, T = 5, 9
    model = EMMIL(K)
    g = torch.Generator().manual_seed(3)
    rgb, flow = torch.rand(1, T, 1024, generator=g), torch.rand(1, T, 1024, generator=g)
    labels = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0]])
    mask = torch.ones(1, T, dtype=torch.bool)
    q_rgb, q_flow = model.key_streams(rgb, flow)
    p_rgb, p_flow = model.cls_streams(rgb, flow)
    bce = torch.nn.BCELoss()
    for stage in (1, 2):
        # the released forward_M, written out: per class, per stream, BCELoss over time
        key = ((q_rgb + q_flow) / 2)[0].detach()
        if stage == 1:
            one = torch.ones(T)
        else:
            thr = key.mean() + 0.15 * (key.max() - key.min())
            one = (key > thr).float()
        ref = 0.0
        for i in range(K):
            target = one if labels[0, i] == 1 else torch.zeros(T)
            ref = ref + bce(p_rgb[0, :, i], target) + bce(p_flow[0, :, i], target)
        targets = m_step_targets(labels, mask, stage, (q_rgb + q_flow) / 2, 0.15)
        ours = step_loss(p_rgb, p_flow, targets, mask)
        assert abs(ours.item() - ref.item()) < 1e-5 * max(1.0, ref.item())
    # the released forward_E
    cls = ((p_rgb + p_flow) / 2)[0]
    pseudo = torch.zeros(T)
    for i in range(K):
        if labels[0, i] == 1:
            pseudo = torch.max(pseudo, (cls[:, i] > cls[:, i].mean()).float())
    ref = bce(q_rgb[0], pseudo) + bce(q_flow[0], pseudo)
    e_targets = e_step_targets((p_rgb + p_flow) / 2, labels, mask)[..., None]    # (B, T, 1)
    ours = step_loss(q_rgb[..., None], q_flow[..., None], e_targets, mask)
    assert abs(ours.item() - ref.item()) < 1e-6


def _tiny_set(K=4):
    g = torch.Generator().manual_seed(5)
    vids = [_video(g, T, K, f"v{i}", [i % K, (i + 1) % K]) for i, T in enumerate([6, 11, 3, 8, 5])]
    vids.append(_video(g, 4, K, "unlabelled", []))
    return SnippetDataset(vids, 0.64)


def _params(params):
    return [p.detach().clone() for p in params]


def test_frozen_branch_is_bit_identical_after_a_phase():
    torch.manual_seed(0)
    model = EMMIL(4)
    trainer = EMTrainer(model, _tiny_set(), 1e-3, 0.15, 1, "cpu", seed=1, log=lambda *a: None)
    phases = parse_schedule("M1:1,E:2,M2:2,alt:2", 4.0)
    trainer.train_epoch(phases[0])                       # M1: gives p momentum
    for phase in phases[1:]:
        frozen = model.weights("cls") if phase.step == "E" else model.weights("key")
        trained = model.weights("key") if phase.step == "E" else model.weights("cls")
        before_frozen, before_trained = _params(frozen), _params(trained)
        trainer.train_epoch(phase)
        assert all(torch.equal(a, b) for a, b in zip(before_frozen, _params(frozen))), phase
        assert any(not torch.equal(a, b) for a, b in zip(before_trained, _params(trained))), phase


def test_unlabelled_videos_are_skipped():
    trainer = EMTrainer(EMMIL(4), _tiny_set(), 1e-3, 0.15, 1, "cpu", seed=1, log=lambda *a: None)
    assert [v.name for v in trainer.dataset.videos] == ["v0", "v1", "v2", "v3", "v4"]


def test_batched_padded_training_equals_sum_of_single_videos():
    """One step on a padded batch of videos = one step on the summed per-video losses."""
    torch.manual_seed(0)
    data = _tiny_set()
    base = EMMIL(4)
    items = [data[i] for i in range(5)]
    from training.batches import collate
    b = collate(items)
    for stage in (1, 2):
        m1, m2 = copy.deepcopy(base), copy.deepcopy(base)
        q = (lambda s: (s[0] + s[1]) / 2)(m1.key_streams(b["rgb"], b["flow"])).detach()
        t = m_step_targets(b["labels"], b["mask"], stage, q, 0.15)
        loss_b = step_loss(*m1.cls_streams(b["rgb"], b["flow"]), t, b["mask"])
        loss_b.backward()
        loss_s = 0.0
        for it in items:
            s = collate([it])
            qs = (lambda x: (x[0] + x[1]) / 2)(m2.key_streams(s["rgb"], s["flow"])).detach()
            ts = m_step_targets(s["labels"], s["mask"], stage, qs, 0.15)
            loss_s = loss_s + step_loss(*m2.cls_streams(s["rgb"], s["flow"]), ts, s["mask"])
        loss_s.backward()
        assert abs(loss_b.item() - loss_s.item()) < 1e-4
        for p1, p2 in zip(m1.weights("cls"), m2.weights("cls")):
            np.testing.assert_allclose(p1.grad.numpy(), p2.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_optimised_trainer_equals_the_released_reference_loop():
    """Same init, same video order: same losses and trained weights (to 1e-5), at the
    released learning rate."""
    torch.manual_seed(0)
    data = _tiny_set()
    labelled = SnippetDataset(data.videos[:5], 0.64)
    ours = EMMIL(4)
    ref = released_copy(ours)            # the released torch layers, the same weights
    trainer = EMTrainer(ours, labelled, 1e-4, 0.15, 1, "cpu", seed=7, log=lambda *a: None)
    opts_ref = {"M": torch.optim.Adam(ref.cls_parameters(), lr=1e-4),
                "E": torch.optim.Adam(ref.key_parameters(), lr=1e-4)}
    order_gen = torch.Generator().manual_seed(7)
    for phase in parse_schedule("M1:2,E:2,M2:2,alt:3", 4.0):
        stats = trainer.train_epoch(phase)
        order = torch.randperm(len(labelled), generator=order_gen).tolist()
        losses = reference_epoch(ref, labelled.videos, phase, 0.15, opts_ref, order, 1e-4)
        assert abs(stats["loss"] - np.mean(losses)) < 1e-5 * max(1.0, np.mean(losses)), phase
    trained, released = ours.state_dict(), ref.state_dict()
    assert sorted(trained) == sorted(released)
    for name, b in released.items():
        np.testing.assert_allclose(trained[name].numpy(), b.numpy(), atol=1e-5, rtol=0,
                                   err_msg=name)


def test_batches_are_bucketed_by_length_and_cover_every_video_once():
    from em_trainer import bucketed_batches
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 2000, size=300).tolist()
    g = torch.Generator().manual_seed(0)
    epochs = [bucketed_batches(lengths, 8, g) for _ in range(2)]
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(300))
        assert sorted(len(b) for b in batches) == [4] + [8] * 37     # pools of 256 + 44

    def padding(batches):       # padded snippets / real snippets
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b)
                   for b in batches) / sum(lengths)
    plain = [list(range(s, min(s + 8, 300))) for s in range(0, 300, 8)]   # unsorted batches
    assert padding(epochs[0]) < 0.25 * padding(plain)
    assert epochs[0] != epochs[1]                                          # a new order


def test_trainers_share_one_set_of_inputs():
    from em_trainer import ClassifierTrainer, VideoInputs
    from model import UntrimmedNetClassifier
    data = _tiny_set()                                      # 5 labelled videos + 1 without
    inputs = VideoInputs(data.videos, "cpu")
    inputs.held = [torch.zeros(2, 1, 1) for _ in data.videos]   # stand-ins for GPU copies
    em = EMTrainer(EMMIL(4), data, 1e-3, 0.15, 1, "cpu", seed=1, log=lambda *a: None,
                   inputs=inputs)
    cls = ClassifierTrainer(UntrimmedNetClassifier(4), data, 1e-3, 1, "cpu", seed=1,
                            inputs=inputs)
    assert cls.inputs is inputs
    assert len(em.inputs.held) == 5                          # the unlabelled video left out
    assert all(a is b for a, b in zip(em.inputs.held, inputs.held[:5]))
