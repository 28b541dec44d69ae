"""Hand-worked pseudo-labels for both steps and both stages, and padding invariance."""
import pytest
import torch

from pseudo_labels import e_step_targets, key_instances, m_step_targets


def test_m_step_stage1_all_snippets_of_labelled_classes():
    labels = torch.tensor([[1.0, 0.0, 1.0]])             # (1, K=3)
    mask = torch.ones(1, 4, dtype=torch.bool)
    t = m_step_targets(labels, mask, stage=1)
    assert t.shape == (1, 4, 3)
    assert torch.equal(t[0, :, 0], torch.ones(4))
    assert torch.equal(t[0, :, 1], torch.zeros(4))
    assert torch.equal(t[0, :, 2], torch.ones(4))


def test_m_step_stage2_threshold_hand_worked():
    # q = [0.1, 0.9, 0.5, 0.3]: mean 0.45, range 0.8, gamma 0.15 -> threshold 0.57
    q = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    labels = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    t = m_step_targets(labels, mask, stage=2, q=q, gamma=0.15)
    assert torch.equal(t[0, :, 1], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.equal(t[0, :, 0], torch.zeros(4))
    # gamma 0: threshold = mean 0.45 -> 0.9 and 0.5 are positive
    t0 = m_step_targets(labels, mask, stage=2, q=q, gamma=0.0)
    assert torch.equal(t0[0, :, 1], torch.tensor([0.0, 1.0, 1.0, 0.0]))
    # gamma has no default here (it is --gamma's, in opts.py): stage 2 without it is refused
    with pytest.raises(ValueError, match="q and gamma"):
        m_step_targets(labels, mask, stage=2, q=q)


def test_e_step_hand_worked():
    # p (T=4, K=3); labels {0, 2}
    p = torch.tensor([[[0.9, 0.9, 0.1],
                       [0.1, 0.9, 0.2],
                       [0.2, 0.0, 0.3],
                       [0.2, 0.0, 0.8]]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    # class 0: mean 0.35 -> snippet 0; class 2: mean 0.35 -> snippet 3; class 1 unlabelled
    assert torch.equal(e_step_targets(p, labels, mask)[0], torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_padding_never_changes_a_result():
    g = torch.Generator().manual_seed(0)
    T, pad, K = 7, 5, 4
    q = torch.rand(1, T, generator=g)
    p = torch.rand(1, T, K, generator=g)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    mask = torch.ones(1, T, dtype=torch.bool)
    # padded copies with extreme values in the padding
    qp = torch.cat([q, torch.full((1, pad), 5.0)], 1)
    pp = torch.cat([p, torch.full((1, pad, K), 1.0)], 1)
    maskp = torch.cat([mask, torch.zeros(1, pad, dtype=torch.bool)], 1)
    for stage in (1, 2):
        a = m_step_targets(labels, mask, stage, q, 0.15)
        b = m_step_targets(labels, maskp, stage, qp, 0.15)
        assert torch.equal(a, b[:, :T]) and b[:, T:].sum() == 0
    a, b = e_step_targets(p, labels, mask), e_step_targets(pp, labels, maskp)
    assert torch.equal(a, b[:, :T]) and b[:, T:].sum() == 0
    # negative padding must not lower the min either
    qn = torch.cat([q, torch.full((1, pad), -5.0)], 1)
    assert torch.equal(key_instances(q, mask, 0.15), key_instances(qn, maskp, 0.15)[:, :T])


def test_batch_of_two_equals_each_alone():
    g = torch.Generator().manual_seed(1)
    q1, q2 = torch.rand(1, 6, generator=g), torch.rand(1, 3, generator=g)
    lab = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    q = torch.zeros(2, 6)
    q[0], q[1, :3] = q1[0], q2[0]
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    both = m_step_targets(lab, mask, 2, q, 0.15)
    one = m_step_targets(lab[:1], torch.ones(1, 6, dtype=torch.bool), 2, q1, 0.15)
    two = m_step_targets(lab[1:], torch.ones(1, 3, dtype=torch.bool), 2, q2, 0.15)
    assert torch.equal(both[0], one[0]) and torch.equal(both[1, :3], two[0])


def test_no_mask_equals_an_all_true_mask():
    """mask=None (one video, no padding) gives the masked rules' targets."""
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    q, p = torch.rand(1, 9, generator=g), torch.rand(1, 9, 4, generator=g)
    full = torch.ones(1, 9, dtype=torch.bool)
    for stage in (1, 2):
        a = m_step_targets(labels, full, stage, q, 0.15)
        b = m_step_targets(labels, None, stage, q, 0.15)
        assert torch.equal(a, b.expand_as(a)), stage
    assert m_step_targets(labels, None, 1).shape == (1, 1, 4)
    assert torch.equal(e_step_targets(p, labels, full), e_step_targets(p, labels, None))
