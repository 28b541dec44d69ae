"""Networks: released parameter names, padding invariance, classifier scores."""
import torch

from model import EMMIL, UntrimmedNetClassifier, video_classifier_loss


def test_loads_a_state_dict_with_the_released_names():
    K = 20
    released = {}
    for s in ("rgb", "flow"):
        for branch, out in (("key", 1), ("cls", K)):
            released[f"{branch}_{s}.0.weight"] = torch.randn(256, 1024, 3)
            released[f"{branch}_{s}.0.bias"] = torch.randn(256)
            released[f"{branch}_tail_{s}.1.weight"] = torch.randn(out, 256)
            released[f"{branch}_tail_{s}.1.bias"] = torch.randn(out)
    model = EMMIL(K)
    model.load_state_dict(released, strict=True)
    assert torch.equal(model.cls_tail_flow[1].bias, released["cls_tail_flow.1.bias"])
    unt = {f"{n}_{s}.0.{p}": t for s in ("rgb", "flow") for n, shape in (("att", 1), ("cls", K))
           for p, t in (("weight", torch.randn(shape, 1024)), ("bias", torch.randn(shape)))}
    UntrimmedNetClassifier(K).load_state_dict(unt, strict=True)


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
