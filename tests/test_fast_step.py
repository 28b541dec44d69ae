"""The hand-written step against autograd through the nn.Module (the second implementation)."""
import numpy as np
import pytest
import torch

from em_trainer import e_step_loss, m_step_loss
from fast_step import PackedBranch
from model import EMMIL
from schedule import Phase


def _features(T, D, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, 2 * D, generator=g)              # (T, 2D): RGB then flow, as stored


def _conv_layout(w):
    """Packed (D, 3H) [in, (tap, out)] -> Conv1d's (H, D, 3)."""
    D, H = w.shape[0], w.shape[1] // 3
    return w.view(D, 3, H).permute(2, 0, 1)


def _module_grads(model, kind, x, target):
    """Loss and gradients by autograd through Conv1d, ReLU, Linear, Sigmoid, BCE."""
    model.zero_grad(set_to_none=True)
    D = x.shape[1] // 2
    rgb, flow = x[None, :, :D], x[None, :, D:]
    mask = torch.ones(1, x.shape[0], dtype=torch.bool)
    if kind == "cls":
        loss = m_step_loss(*model.cls_streams(rgb, flow), target[None], mask)
        mods = model.cls_branches()
    else:
        loss = e_step_loss(*model.key_streams(rgb, flow), target[None, :, 0], mask)
        mods = model.key_branches()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for m in mods for n, p in m.named_parameters()}, mods


@pytest.mark.parametrize("kind", ["cls", "key"])
@pytest.mark.parametrize("T", [1, 2, 37])
def test_loss_and_gradients_equal_autograd(kind, T):
    torch.manual_seed(T)
    D, K = 16, 5
    model = EMMIL(K, feature_dim=D, hidden_dim=8)
    x = _features(T, D, seed=T)
    O = K if kind == "cls" else 1
    target = (torch.rand(T, O) > 0.5).float()
    loss_ref, grads, mods = _module_grads(model, kind, x, target)

    packed = PackedBranch(model, kind)
    xs = x.view(T, 2, D).transpose(0, 1)                   # (2, T, D) view, no copy
    loss = packed.loss_and_grad(xs, target)
    assert abs(loss.item() - loss_ref) < 1e-6 * max(1.0, loss_ref)
    trunk_rgb, trunk_flow, tail_rgb, tail_flow = mods
    for s, (trunk, tail) in enumerate([(trunk_rgb, tail_rgb), (trunk_flow, tail_flow)]):
        conv, lin = trunk[0], tail[1]
        np.testing.assert_allclose(_conv_layout(packed.W.grad[s]).numpy(),
                                   conv.weight.grad.numpy(), atol=1e-6)
        np.testing.assert_allclose(packed.b.grad[s, 0].numpy(), conv.bias.grad.numpy(), atol=1e-6)
        np.testing.assert_allclose(packed.V.grad[s].t().numpy(), lin.weight.grad.numpy(), atol=1e-6)
        np.testing.assert_allclose(packed.c.grad[s, 0].numpy(), lin.bias.grad.numpy(), atol=1e-6)


def test_saturated_sigmoid_gradient_vanishes_as_in_torch_bce():
    """Where y (1 - y) underflows, torch's BCE-after-sigmoid gives no gradient; so do we."""
    model = EMMIL(2, feature_dim=4, hidden_dim=3)
    with torch.no_grad():
        model.cls_tail_rgb[1].bias.fill_(40.0)             # y == 1.0 in float32 on RGB
    x = _features(6, 4, seed=0)
    target = torch.zeros(6, 2)
    loss_ref, grads, mods = _module_grads(model, "cls", x, target)
    packed = PackedBranch(model, "cls")
    loss = packed.loss_and_grad(x.view(6, 2, 4).transpose(0, 1), target)
    assert loss.item() == pytest.approx(loss_ref, rel=1e-6)
    assert loss_ref > 100                                  # the clamped log(0) = -100 counted
    assert torch.all(packed.c.grad[0] == 0)                # no gradient through y == 1
    np.testing.assert_allclose(packed.c.grad[0, 0].numpy(),
                               mods[2][1].bias.grad.numpy(), atol=1e-7)
    np.testing.assert_allclose(packed.c.grad[1, 0].numpy(),
                               mods[3][1].bias.grad.numpy(), atol=1e-6)


def test_store_and_load_round_trip_the_module_layout():
    torch.manual_seed(0)
    model, other = EMMIL(3, feature_dim=8, hidden_dim=4), EMMIL(3, feature_dim=8, hidden_dim=4)
    PackedBranch(model, "key").store()                      # no change
    packed = PackedBranch(model, "cls")
    packed.convs, packed.linears = ([other.cls_rgb[0], other.cls_flow[0]],
                                    [other.cls_tail_rgb[1], other.cls_tail_flow[1]])
    packed.store()                                         # model's cls weights -> other
    for a, b in zip(model.cls_parameters(), other.cls_parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(model.key_rgb[0].weight, other.key_rgb[0].weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_step_equals_cpu_autograd():
    torch.manual_seed(0)
    D, K, T = 64, 5, 50
    model = EMMIL(K, feature_dim=D, hidden_dim=32)
    x = _features(T, D, seed=1)
    target = (torch.rand(T, K) > 0.5).float()
    loss_ref, _, mods = _module_grads(model, "cls", x, target)
    ref_grad = mods[0][0].weight.grad.clone()
    packed = PackedBranch(model.cuda(), "cls")
    loss = packed.loss_and_grad(x.cuda().view(T, 2, D).transpose(0, 1), target.cuda())
    assert abs(loss.item() - loss_ref) < 1e-5 * max(1.0, loss_ref)
    np.testing.assert_allclose(_conv_layout(packed.W.grad[0]).cpu().numpy(),
                               ref_grad.numpy(), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_follows_cpu_training():
    """A few EM epochs on the GPU (features held there) end near the CPU's weights."""
    import copy
    from dataset import SnippetDataset, Video
    from em_trainer import EMTrainer
    from schedule import parse_schedule
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
    from fast_step import PackedClassifier
    from model import UntrimmedNetClassifier, video_classifier_loss
    torch.manual_seed(0)
    D, T = 16, 23
    clf = UntrimmedNetClassifier(4, feature_dim=D)
    x = _features(T, D, seed=5)
    y = torch.tensor(labels, dtype=torch.float32)
    scores = clf(x[None, :, :D], x[None, :, D:], torch.ones(1, T, dtype=torch.bool))
    loss_ref = video_classifier_loss(scores, y[None])
    loss_ref.backward()
    packed = PackedClassifier(clf)
    loss = packed.loss_and_grad(x.view(T, 2, D).transpose(0, 1), y)
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    for s, (att, cls) in enumerate(packed.pairs):
        np.testing.assert_allclose(packed.W.grad[s, :, 0].numpy(), att.weight.grad[0].numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(packed.W.grad[s, :, 1:].t().numpy(), cls.weight.grad.numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(packed.b.grad[s, 0, 0].item(), att.bias.grad[0].item(),
                                   atol=1e-6)
        np.testing.assert_allclose(packed.b.grad[s, 0, 1:].numpy(), cls.bias.grad.numpy(),
                                   atol=1e-6)
    packed.W.add_(1.0)
    packed.store()
    np.testing.assert_allclose(clf.cls_flow[0].weight.detach().numpy(),
                               packed.W[1, :, 1:].t().numpy())


def test_classifier_trainer_equals_a_plain_autograd_loop():
    """Two epochs of the hand-written classifier step = the plain loop (same video order)."""
    import copy
    from dataset import SnippetDataset, Video
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
    full = PackedBranch(model, "cls")
    half = PackedBranch(model, "cls", dtype=torch.bfloat16)
    loss32, loss16 = full.loss_and_grad(xs, target), half.loss_and_grad(xs, target)
    assert half.W.grad.dtype == torch.float32 and half.W.dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) < 1e-2 * loss32.item()
    for p32, p16 in zip(full.params(), half.params()):
        err = (p16.grad - p32.grad).norm() / p32.grad.norm()
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
    trained = PackedBranch(model, "cls", dtype=torch.bfloat16)
    opt = torch.optim.Adam(trained.params(), lr=0.05, fused=True)
    before = trained.mean_scores(xs)
    for _ in range(3):
        trained.loss_and_grad(xs, target)
        opt.step()
    trained.store()
    fresh = PackedBranch(model, "cls", dtype=torch.bfloat16)      # from the stored weights
    after = trained.mean_scores(xs)
    assert torch.equal(after, fresh.mean_scores(xs))
    assert (after - before).abs().max() > 0.05                     # the steps did move p
