"""Networks: released parameter names, padding invariance, classifier scores."""
import torch

from model import EMMIL, UntrimmedNetClassifier, video_classifier_loss


def test_loads_a_state_dict_with_the_released_names():
    K = 20
    released = {}                                      # in the released modules' order
    for branch, out in (("key", 1), ("cls", K)):
        for s in ("rgb", "flow"):
            released[f"{branch}_{s}.0.weight"] = torch.randn(256, 1024, 3)
            released[f"{branch}_{s}.0.bias"] = torch.randn(256)
        for s in ("rgb", "flow"):
            released[f"{branch}_tail_{s}.1.weight"] = torch.randn(out, 256)
            released[f"{branch}_tail_{s}.1.bias"] = torch.randn(out)
    model = EMMIL(K)
    model.load_state_dict(released, strict=True)
    assert torch.equal(model.cls_c[1, 0], released["cls_tail_flow.1.bias"])
    assert torch.equal(model.key_W[0].view(1024, 3, 256)[:, 2, 7],
                       released["key_rgb.0.weight"][7, :, 2])                 # tap 2, out 7
    assert torch.equal(model.cls_V[1].t(), released["cls_tail_flow.1.weight"])
    saved = model.state_dict()                         # em_mil.pt: the released names again
    assert list(saved) == list(released)               # the released order too
    for name, t in released.items():
        assert torch.equal(saved[name], t) and saved[name].is_contiguous(), name
    unt = {f"{n}_{s}.0.{p}": t for s in ("rgb", "flow") for n, shape in (("att", 1), ("cls", K))
           for p, t in (("weight", torch.randn(shape, 1024)), ("bias", torch.randn(shape)))}
    clf = UntrimmedNetClassifier(K)
    clf.load_state_dict(unt, strict=True)
    assert torch.equal(clf.W[1, :, 1:].t(), unt["cls_flow.0.weight"])
    assert torch.equal(clf.b[0, 0, 0], unt["att_rgb.0.bias"][0])
    assert set(clf.state_dict()) == set(unt)
    assert all(torch.equal(t, unt[n]) for n, t in clf.state_dict().items())


def test_outputs_do_not_depend_on_padding():
    torch.manual_seed(0)
    model, clf = EMMIL(3), UntrimmedNetClassifier(3)
    rgb, flow = torch.rand(1, 6, 1024), torch.rand(1, 6, 1024)
    pad = lambda x: torch.cat([x, torch.zeros(1, 4, 1024)], 1)  # noqa: E731
    q, p = model(rgb, flow)
    qp, pp = model(pad(rgb), pad(flow))
    torch.testing.assert_close(q, qp[:, :6])
    torch.testing.assert_close(p, pp[:, :6])
    mask = torch.ones(1, 6, dtype=torch.bool)
    maskp = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)], 1)
    torch.testing.assert_close(clf(rgb, flow, mask), clf(pad(rgb), pad(flow), maskp))


def test_video_scores_are_a_distribution_and_loss_sign():
    torch.manual_seed(0)
    clf = UntrimmedNetClassifier(4)
    rgb, flow = torch.rand(2, 5, 1024), torch.rand(2, 5, 1024)
    v = clf(rgb, flow, torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(v.sum(1), torch.ones(2))
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    expected = -(0.5 * torch.log(v[0, 0]) + 0.5 * torch.log(v[0, 2]) + torch.log(v[1, 1]))
    torch.testing.assert_close(video_classifier_loss(v, labels), expected)
    assert video_classifier_loss(v, labels) > 0          # minimised NLL, not +log


def test_wrong_shapes_are_refused_by_torch():
    bad = EMMIL(3, feature_dim=8, hidden_dim=4).state_dict()
    bad["cls_rgb.0.weight"] = torch.zeros(4, 8, 2)
    import pytest
    with pytest.raises(RuntimeError, match="cls_rgb.0.weight"):
        EMMIL(3, feature_dim=8, hidden_dim=4).load_state_dict(bad)


def test_forward_equals_the_released_layers():
    """The one forward (products on the packed weights) = Conv1d, ReLU, Linear, Sigmoid with
    the same weights, the layers of the released code."""
    torch.manual_seed(0)
    D, H, K, T = 16, 8, 3, 11
    model = EMMIL(K, feature_dim=D, hidden_dim=H)
    sd = model.state_dict()
    rgb, flow = torch.rand(2, T, D), torch.rand(2, T, D)
    q, p = model(rgb, flow)
    for kind, out in (("key", q[..., None]), ("cls", p)):
        streams = []
        for s, x in (("rgb", rgb), ("flow", flow)):
            h = torch.nn.functional.conv1d(x.transpose(1, 2), sd[f"{kind}_{s}.0.weight"],
                                           sd[f"{kind}_{s}.0.bias"], padding=1)
            streams.append(torch.sigmoid(torch.nn.functional.linear(
                h.transpose(1, 2).relu(), sd[f"{kind}_tail_{s}.1.weight"],
                sd[f"{kind}_tail_{s}.1.bias"])))
        torch.testing.assert_close(out, (streams[0] + streams[1]) / 2, atol=1e-6, rtol=0)
