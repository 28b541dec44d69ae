"""A plain per-video transcription of the released EM-MIL training loop (written for the
tests and the benchmark, never used by run.py).

airmachine/EM-MIL-WeaklyActionDetection, train.py: one video at a time, all four branches
forwarded, the frozen one with requires_grad off, the loss a Python loop over classes of
torch's BCELoss. Used to check em_trainer.EMTrainer (tests/test_em_trainer.py) and as the
baseline of bench/bench_train.py.
"""
import torch


def reference_epoch(model, videos, phase, gamma, optimizers, order, lr):
    """One epoch the way the released train.py does it: one video at a time, all four
    branches forwarded, the frozen one with requires_grad off, the loss as a Python loop
    over classes. `optimizers` = {'M': Adam(cls), 'E': Adam(key)} (separate, as ours)."""
    bce = torch.nn.BCELoss()
    trained = model.cls_parameters() if phase.step == "M" else model.key_parameters()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    opt = optimizers[phase.step]
    for g in opt.param_groups:
        g["lr"] = lr * phase.lr_mult
    losses = []
    for i in order:
        v = videos[i]
        rgb, flow = v.features[None, :, :1024], v.features[None, :, 1024:]
        T, K = v.features.shape[0], v.labels.shape[0]
        q_rgb, q_flow = model.key_streams(rgb, flow)
        p_rgb, p_flow = model.cls_streams(rgb, flow)
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        if phase.step == "M":
            if phase.stage == 1:
                one = torch.ones(T)
            else:
                key = ((q_rgb + q_flow) / 2)[0].detach()
                one = (key > key.mean() + gamma * (key.max() - key.min())).float()
            for c in range(K):
                target = one if v.labels[c] == 1 else torch.zeros(T)
                loss = loss + bce(p_rgb[0, :, c], target) + bce(p_flow[0, :, c], target)
        else:
            cls = ((p_rgb + p_flow) / 2)[0].detach()
            pseudo = torch.zeros(T)
            for c in range(K):
                if v.labels[c] == 1:
                    pseudo = torch.max(pseudo, (cls[:, c] > cls[:, c].mean()).float())
            loss = bce(q_rgb[0], pseudo) + bce(q_flow[0], pseudo)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for p in model.parameters():
        p.requires_grad_(True)
    return losses
