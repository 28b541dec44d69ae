"""The hand-written step (model.BranchBCE, model.ClassifierNLL) against autograd through the
released layers (Conv1d, ReLU, Linear, Sigmoid, torch's BCE) with the same weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import EMMIL, bce_loss
from training.schedule import Phase


def _features(T, D, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, 2 * D, generator=g)              # (T, 2D): RGB then flow, as stored


def _released_grads(model, kind, x, target):
    """Loss and gradients (released names) by autograd through the released layers."""
    sd = {n: t.clone().requires_grad_(True) for n, t in model.state_dict().items()
          if n.startswith(kind)}
    D = x.shape[1] // 2
    streams = []
    for s, feats in (("rgb", x[:, :D]), ("flow", x[:, D:])):
        h = F.conv1d(feats.t()[None], sd[f"{kind}_{s}.0.weight"], sd[f"{kind}_{s}.0.bias"],
                     padding=1)                            # (1, H, T)
        streams.append(torch.sigmoid(F.linear(h[0].t().relu(), sd[f"{kind}_tail_{s}.1.weight"],
                                              sd[f"{kind}_tail_{s}.1.bias"])))    # (T, O)
    loss = sum(F.binary_cross_entropy(y, target.expand_as(y), reduction="mean") * y.shape[1]
               for y in streams)
    loss.backward()
    return loss.item(), {n: t.grad for n, t in sd.items()}


def _released_layout(model, kind, grads):
    """Our W, b, V, c gradients under the released names and layouts."""
    holder = EMMIL(model.num_classes, model.key_W.shape[1], model.key_b.shape[2])
    with torch.no_grad():
        for p, g in zip(holder.weights(kind), grads):
            p.copy_(g)
    return {n: t for n, t in holder.state_dict().items() if n.startswith(kind)}


def _hand_grads(model, kind, xs, target, dtype=torch.float32):
    model.zero_grad(set_to_none=True)
    loss = model.branch_loss(kind, xs, target, dtype)
    loss.backward()
    return loss.item(), [p.grad for p in model.weights(kind)]


@pytest.mark.parametrize("kind", ["cls", "key"])
@pytest.mark.parametrize("T", [1, 2, 37])
def test_loss_and_gradients_equal_autograd(kind, T):
    torch.manual_seed(T)
    D, K = 16, 5
    model = EMMIL(K, feature_dim=D, hidden_dim=8)
    x = _features(T, D, seed=T)
    O = K if kind == "cls" else 1
    target = (torch.rand(T, O) > 0.5).float()
    loss_ref, ref = _released_grads(model, kind, x, target)
    loss, grads = _hand_grads(model, kind, x.view(T, 2, D).transpose(0, 1), target)  # a view
    assert abs(loss - loss_ref) < 1e-6 * max(1.0, loss_ref)
    ours = _released_layout(model, kind, grads)
    assert set(ours) == set(ref) and len(ref) == 8
    for name, g in ref.items():
        np.testing.assert_allclose(ours[name].numpy(), g.numpy(), atol=1e-6, err_msg=name)


def test_hand_written_backward_equals_autograd_through_the_same_forward():
    """loss.backward() through BranchBCE = autograd through the plain path (cls_streams and
    m_step's loss), the one forward both use."""
    torch.manual_seed(1)
    D, K, T = 16, 4, 13
    model = EMMIL(K, feature_dim=D, hidden_dim=8)
    x = _features(T, D, seed=2)
    target = (torch.rand(T, K) > 0.5).float()
    loss, grads = _hand_grads(model, "cls", x.view(T, 2, D).transpose(0, 1), target)
    grads = [g.clone() for g in grads]
    model.zero_grad(set_to_none=True)
    p_rgb, p_flow = model.cls_streams(x[None, :, :D], x[None, :, D:])
    ref = bce_loss(torch.stack([p_rgb, p_flow]), target[None],
                   torch.ones(1, T, dtype=torch.bool))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    for g, p in zip(grads, model.weights("cls")):
        np.testing.assert_allclose(g.numpy(), p.grad.numpy(), atol=1e-6)


def test_saturated_sigmoid_gradient_vanishes_as_in_torch_bce():
    """Where y (1 - y) underflows, torch's BCE-after-sigmoid gives no gradient; so do we."""
    model = EMMIL(2, feature_dim=4, hidden_dim=3)
    with torch.no_grad():
        model.cls_c[0].fill_(40.0)                         # y == 1.0 in float32 on RGB
    x = _features(6, 4, seed=0)
    target = torch.zeros(6, 2)
    loss_ref, ref = _released_grads(model, "cls", x, target)
    loss, grads = _hand_grads(model, "cls", x.view(6, 2, 4).transpose(0, 1), target)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert loss_ref > 100                                  # the clamped log(0) = -100 counted
    assert torch.all(grads[3][0] == 0)                     # no gradient through y == 1
    assert torch.all(ref["cls_tail_rgb.1.bias"] == 0)
    np.testing.assert_allclose(grads[3][1, 0].numpy(), ref["cls_tail_flow.1.bias"].numpy(),
                               atol=1e-6)
    assert grads[3][1].abs().max() > 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_step_equals_cpu_autograd():
    torch.manual_seed(0)
    D, K, T = 64, 5, 50
    model = EMMIL(K, feature_dim=D, hidden_dim=32)
    x = _features(T, D, seed=1)
    target = (torch.rand(T, K) > 0.5).float()
    loss_ref, ref = _released_grads(model, "cls", x, target)
    model.cuda()
    loss, grads = _hand_grads(model, "cls", x.cuda().view(T, 2, D).transpose(0, 1), target.cuda())
    assert abs(loss - loss_ref) < 1e-5 * max(1.0, loss_ref)
    ours = _released_layout(model.cpu(), "cls", [g.cpu() for g in grads])
    np.testing.assert_allclose(ours["cls_rgb.0.weight"].numpy(),
                               ref["cls_rgb.0.weight"].numpy(), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_follows_cpu_training():
    """A few EM epochs on the GPU (features held there) end near the CPU's weights."""
    import copy
    from dataset import Video
    from training.batches import SnippetDataset
    from em_trainer import EMTrainer
    from training.schedule import parse_schedule
    g = torch.Generator().manual_seed(3)
    videos = [Video(f"v{i}", "train", torch.randn(T, 2 * 32, generator=g),
                    torch.eye(4)[i % 4], T * 0.64) for i, T in enumerate([9, 30, 4, 17])]
    data = SnippetDataset(videos, 0.64)
    torch.manual_seed(0)
    cpu = EMMIL(4, feature_dim=32, hidden_dim=16)
    gpu = copy.deepcopy(cpu).cuda()
    trainers = [EMTrainer(m, data, 1e-3, 0.15, 1, d, seed=1, log=lambda *a: None)
                for m, d in ((cpu, "cpu"), (gpu, "cuda"))]
    for phase in parse_schedule("M1:2,E:1,M2:1,alt:2", 4.0):
        a, b = (t.train_epoch(phase) for t in trainers)
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, a["loss"]), phase
        assert abs(a["positive"] - b["positive"]) < 0.05, phase       # a snippet or two
    for (name, x), y in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(x.numpy(), y.cpu().numpy(), atol=1e-4, err_msg=name)


@pytest.mark.parametrize("labels", [[1, 0, 0, 1], [0, 0, 1, 0]])
def test_classifier_loss_and_gradients_equal_autograd(labels):
    import copy
    from model import UntrimmedNetClassifier, video_classifier_loss
    torch.manual_seed(0)
    D, T = 16, 23
    clf = UntrimmedNetClassifier(4, feature_dim=D)
    ref = copy.deepcopy(clf)
    x = _features(T, D, seed=5)
    y = torch.tensor(labels, dtype=torch.float32)
    scores = ref(x[None, :, :D], x[None, :, D:], torch.ones(1, T, dtype=torch.bool))
    loss_ref = video_classifier_loss(scores, y[None])
    loss_ref.backward()
    loss = clf.video_loss(x.view(T, 2, D).transpose(0, 1), y)
    loss.backward()
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    for (name, p), q in zip(clf.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6, err_msg=name)
        assert p.grad.abs().max() > 0.01, name
    assert torch.all(clf.b.grad[:, 0, 0] == 0)          # attention bias: exactly (a softmax
    assert torch.all(clf.b.grad[:, 0, 1:] != 0)         # over time ignores a constant)


def test_classifier_trainer_equals_a_plain_autograd_loop():
    """Two epochs of the hand-written classifier step = the plain loop (same video order)."""
    import copy
    from dataset import Video
    from training.batches import SnippetDataset
    from em_trainer import ClassifierTrainer
    from model import UntrimmedNetClassifier, video_classifier_loss
    g = torch.Generator().manual_seed(2)
    D = 16
    videos = [Video(f"v{i}", "train", torch.randn(T, 2 * D, generator=g),
                    torch.tensor(lab, dtype=torch.float32), T * 0.64)
              for i, (T, lab) in enumerate([(7, [1, 0, 0]), (12, [0, 1, 1]), (3, [0, 0, 0]),
                                            (20, [0, 0, 1])])]
    data = SnippetDataset(videos, 0.64)
    torch.manual_seed(0)
    ours = UntrimmedNetClassifier(3, feature_dim=D)
    ref = copy.deepcopy(ours)
    start = copy.deepcopy(ours.state_dict())
    trainer = ClassifierTrainer(ours, data, 1e-3, 1, "cpu", seed=4)
    assert trainer.fast
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    order_gen = torch.Generator().manual_seed(4)
    for epoch in range(2):
        stats = trainer.train_epoch(Phase(epoch + 1, "C", 0, 1.0))
        losses = []
        for i in torch.randperm(len(videos), generator=order_gen).tolist():
            v = videos[i]
            if v.labels.sum() == 0:
                continue
            opt.zero_grad()
            mask = torch.ones(1, v.features.shape[0], dtype=torch.bool)
            loss = video_classifier_loss(ref(v.features[None, :, :D], v.features[None, :, D:],
                                             mask), v.labels[None])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert stats["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        if name.startswith("att_") and name.endswith("bias"):
            # no effect on any output (softmax over time); its true gradient is 0, which we
            # keep exactly, while autograd's rounding noise moves it by Adam-sized steps
            assert torch.equal(a, start[name])
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=name)
    x = videos[1].features[None]
    mask = torch.ones(1, x.shape[1], dtype=torch.bool)
    np.testing.assert_allclose(ours(x[..., :D], x[..., D:], mask).detach().numpy(),
                               ref(x[..., :D], x[..., D:], mask).detach().numpy(), atol=1e-6)


def test_bfloat16_products_stay_close_to_float32():
    """--amp: the products in bfloat16, the rest float32: loss and gradients near float32's."""
    torch.manual_seed(0)
    D, K, T = 64, 5, 40
    model = EMMIL(K, feature_dim=D, hidden_dim=32)
    xs = _features(T, D, seed=3).view(T, 2, D).transpose(0, 1)
    target = (torch.rand(T, K) > 0.5).float()
    loss32, grads32 = _hand_grads(model, "cls", xs, target)
    grads32 = [g.clone() for g in grads32]
    loss16, grads16 = _hand_grads(model, "cls", xs, target, torch.bfloat16)
    assert all(g.dtype == torch.float32 for g in grads16)
    assert model.cls_W.dtype == torch.float32
    assert abs(loss16 - loss32) < 1e-2 * loss32
    for g32, g16 in zip(grads32, grads16):
        err = (g16 - g32).norm() / g32.norm()
        # rounded, but the same gradient (autocast through the module errs up to 0.11 here)
        assert 0 < err < 0.1


def test_bfloat16_weights_follow_every_optimizer_step():
    """After each step the products use the updated weights (the fused Adam step changes
    them in place without moving their version counter, so no cache may rely on it)."""
    torch.manual_seed(0)
    D, K, T = 32, 3, 20
    model = EMMIL(K, feature_dim=D, hidden_dim=16)
    xs = _features(T, D, seed=4).view(T, 2, D).transpose(0, 1)
    target = torch.ones(T, K)
    opt = torch.optim.Adam(model.weights("cls"), lr=0.05, fused=True)
    before = model.branch_scorer("cls", torch.bfloat16)(xs)
    losses = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss = model.branch_loss("cls", xs, target, torch.bfloat16)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    fresh = EMMIL(K, feature_dim=D, hidden_dim=16)
    fresh.load_state_dict(model.state_dict())                   # the stepped weights
    after = model.branch_scorer("cls", torch.bfloat16)(xs)
    assert torch.equal(after, fresh.branch_scorer("cls", torch.bfloat16)(xs))
    assert (after - before).abs().max() > 0.05                  # the steps did move p
    assert losses[0] > losses[1] > losses[2]                    # each step saw the last one
    assert model.branch_loss("cls", xs, target, torch.bfloat16).item() == \
        fresh.branch_loss("cls", xs, target, torch.bfloat16).item()
